"""The dataset card: how recognisable a dataset's identities are for real recognisers, from
the clean embeddings the pipeline computes anyway, and a contact sheet of its identities.

Serves any dataset (the demo's and a user's own). ``dataset_quality`` is what the pipeline's
``dataset_card`` rule runs after the embed rule, so the card carries measured (not typed)
figures: linear-probe and 1-NN identification accuracy on the clean test pictures
(:mod:`cloakbench.classifiers`), and the share of identity pairs a verifier would merge (mean
cross-picture cosine above SFace's 0.363, or mean dlib distance below 0.6).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .classifiers import linear_probe, nearest_neighbour
from .errors import DataError
from .io import stack_embeddings as stack, write_json, write_png

log = logging.getLogger(__name__)

# extractor name (or type) substring -> (metric, threshold) of "same person"
DEFAULT_MERGE_RULES: dict[str, tuple[str, float]] = {
    "sface": ("cosine", 0.363),
    "dlib": ("euclidean", 0.6),
}
BARS = {"linear_accuracy_min": 0.90, "merged_pairs_max": 0.10}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def merge_rule(name: str, rules: Mapping[str, tuple[str, float]] | None = None) -> tuple[str, float] | None:
    rules = DEFAULT_MERGE_RULES if rules is None else rules
    if name in rules:
        return tuple(rules[name])  # type: ignore[return-value]
    for key, rule in rules.items():
        if key in name.lower():
            return tuple(rule)  # type: ignore[return-value]
    return None


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)


def _pairwise(x: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        u = _unit(x)
        return u @ u.T
    sq = (x ** 2).sum(1)
    return np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0))


def quality_one(emb: np.ndarray, ids: np.ndarray, split: np.ndarray,
                rule: tuple[str, float] | None, seed: int = 0) -> dict:
    emb = np.asarray(emb, np.float64)
    tr, te = split == "train", split == "test"
    if tr.sum() == 0 or te.sum() == 0:
        raise ValueError("dataset_quality needs both train and test pictures")
    out: dict = {"n_train": int(tr.sum()), "n_test": int(te.sum())}
    out["linear_accuracy"] = float(np.mean(linear_probe(emb[tr], ids[tr], emb[te], seed, max_iter=3000) == ids[te]))
    out["knn1_accuracy"] = float(np.mean(nearest_neighbour(emb[tr], ids[tr], emb[te])[0] == ids[te]))
    u = _unit(emb)
    out["knn1_cosine_accuracy"] = float(np.mean(nearest_neighbour(u[tr], ids[tr], u[te])[0] == ids[te]))

    labels = np.unique(ids)
    metric, thr = rule if rule is not None else ("cosine", None)
    s = _pairwise(emb, metric)
    onehot = (ids[:, None] == labels[None, :]).astype(np.float64)         # N x K
    counts = onehot.sum(0)
    # mean score between every two identities' pictures (same identity: without self-pairs)
    sums = onehot.T @ s @ onehot
    diag_self = np.array([np.trace(s[np.ix_(ids == l, ids == l)]) for l in labels])
    denom = np.outer(counts, counts)
    mean = sums / denom
    same = (np.diag(sums) - diag_self) / np.maximum(counts * (counts - 1), 1)
    iu = np.triu_indices(len(labels), 1)
    cross = mean[iu]
    out["metric"] = metric
    out["threshold"] = thr
    out["same_identity_mean"] = float(np.mean(same))
    out["different_identity_mean"] = float(np.mean(cross))
    closer_better = metric == "cosine"
    out["closest_identity_pair"] = float(cross.max() if closer_better else cross.min())
    if thr is not None:
        merged = cross > thr if closer_better else cross < thr
        out["merged_pairs"] = int(merged.sum())
        out["identity_pairs"] = int(len(cross))
        out["merged_pair_rate"] = float(merged.mean()) if len(cross) else 0.0
        out["merged_examples"] = [[str(labels[i]), str(labels[j])]
                                  for i, j, m in zip(*iu, merged) if m][:10]
        # picture-pair verification at the threshold
        same_mask = ids[:, None] == ids[None, :]
        off = ~np.eye(len(ids), dtype=bool)
        acc = s > thr if closer_better else s < thr
        out["genuine_pairs_accepted"] = float(acc[same_mask & off].mean())
        out["impostor_pairs_accepted"] = float(acc[~same_mask].mean())
    else:
        out["merged_pair_rate"] = None
    return out


def dataset_quality(embeddings_by_extractor: Mapping[str, np.ndarray], identities: Sequence,
                    split: Sequence[str], *, merge_rules: Mapping[str, tuple[str, float]] | None = None,
                    bars: Mapping[str, float] | None = None, seed: int = 0) -> dict:
    """Identification and separation figures of a dataset, per extractor.

    ``embeddings_by_extractor``: name -> N x D embeddings (row i is picture i);
    ``identities``: N labels; ``split``: N values in {"train", "test"} (the pipeline's split).
    Per extractor: ``linear_accuracy`` (standardise + logistic regression, trained on train,
    scored on test), ``knn1_accuracy`` (Euclidean) and ``knn1_cosine_accuracy``, mean
    same/different identity scores, and ``merged_pair_rate``: the share of identity pairs
    whose mean cross-picture score says "same person" (cosine > 0.363 for SFace, Euclidean
    distance < 0.6 for dlib; ``merge_rules`` maps other extractor names to
    ``(metric, threshold)``). ``passes`` checks the demo's acceptance bars."""
    ids = np.asarray([str(i) for i in identities])
    spl = np.asarray([str(s) for s in split])
    bars = dict(BARS if bars is None else bars)
    per = {}
    for name, emb in embeddings_by_extractor.items():
        emb = np.asarray(emb)
        if len(emb) != len(ids) or len(spl) != len(ids):
            raise ValueError(f"{name}: {len(emb)} embeddings, {len(ids)} identities, {len(spl)} split values")
        q = quality_one(emb, ids, spl, merge_rule(name, merge_rules), seed=seed)
        checks = {"linear_accuracy": q["linear_accuracy"] >= bars["linear_accuracy_min"]}
        if q.get("merged_pair_rate") is not None:
            checks["merged_pairs"] = q["merged_pair_rate"] <= bars["merged_pairs_max"]
        q["passes"] = checks
        per[name] = q
    return {
        "identities": int(len(np.unique(ids))), "pictures": int(len(ids)),
        "train_pictures": int((spl == "train").sum()), "test_pictures": int((spl == "test").sum()),
        "bars": bars, "extractors": per,
        "passes": bool(all(all(q["passes"].values()) for q in per.values())),
    }


def _identity_pictures(root: Path) -> list[tuple[str, Path]]:
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        pics = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if pics:
            out.append((d.name, pics[0]))
    return out


def contact_sheet(dataset_root: str | os.PathLike, out_png: str | os.PathLike, *,
                  tile: int = 128, columns: int | None = None, label: bool = True) -> Path:
    """A PNG grid with one picture per identity (its first, by name), labelled."""
    from PIL import Image, ImageDraw

    root = Path(dataset_root)
    items = _identity_pictures(root)
    if not items:
        raise DataError(f"contact sheet: no identity folders with pictures in {root}")
    cols = columns or max(1, math.ceil(math.sqrt(len(items) * 1.3)))
    rows = math.ceil(len(items) / cols)
    lab_h = 14 if label else 0
    sheet = Image.new("RGB", (cols * tile, rows * (tile + lab_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (name, path) in enumerate(items):
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((tile, tile), Image.Resampling.LANCZOS)
            x = (i % cols) * tile + (tile - im.width) // 2
            y = (i // cols) * (tile + lab_h) + (tile - im.height) // 2
            sheet.paste(im, (x, y))
        if label:
            draw.text(((i % cols) * tile + 3, (i // cols) * (tile + lab_h) + tile), name[:20],
                      fill=(0, 0, 0))
    out_png = Path(out_png)
    write_png(np.asarray(sheet), out_png)
    return out_png


def merge_rules_for(types: Mapping[str, str]) -> dict[str, tuple[str, float]]:
    """{extractor name: merge rule} by extractor type (``sface``: cosine > 0.363, otherwise dlib's
    distance < 0.6); the card is made for the real recognisers only (see ``CARD_TYPES``)."""
    return {n: DEFAULT_MERGE_RULES["sface" if t == "sface" else "dlib"] for n, t in types.items()}


#: extractor types the dataset card measures (the real, pretrained recognisers)
CARD_TYPES = ("sface", "dlib_resnet")


def run_dataset_card(*, manifest: str | Path, embeddings: Sequence[str | Path], extractors: Sequence[str],
                     types: Mapping[str, str], root: str | Path, card: str | Path, sheet: str | Path,
                     seed: int) -> dict:
    """Rule ``dataset_card``: the card of the dataset at ``root`` from each extractor's clean
    embeddings (``embeddings``, in the order of ``extractors``) -> ``card`` (JSON) and ``sheet`` (PNG)."""
    table = pd.read_parquet(manifest)
    by_extractor = {}
    for name, path in zip(extractors, embeddings, strict=True):
        emb = pd.read_parquet(path).set_index("image_id").loc[table["image_id"]].reset_index()
        by_extractor[name] = stack(emb)
    quality = dataset_quality(by_extractor, table["identity"].to_numpy(), table["split"].to_numpy(),
                              merge_rules=merge_rules_for(types), seed=seed)
    out = {"dataset": root, "n_pictures": int(len(table)), "n_identities": int(table["identity"].nunique()),
           "quality": quality}
    write_json(out, card)
    contact_sheet(root, sheet)
    for name, q in quality["extractors"].items():
        log.info("%s: linear probe %.3f, 1-NN %.3f, merged identity pairs %s", name,
                 q["linear_accuracy"], q["knn1_accuracy"], q.get("merged_pair_rate"))
    return out
