"""evaluate: train a recogniser on the scraped set, measure protection and clean accuracy.

Classifiers on frozen features (as the study; :mod:`cloakbench.classifiers`):
- ``knn1``: 1-nearest neighbour, Euclidean distance on L2-normalised embeddings;
- ``linear``: linear probe, standardised features + multinomial logistic regression.

Protection rate of a protected user = 1 - accuracy on that user's clean test pictures.
The record reports the mean over protected users with a 95 % percentile bootstrap interval
(resampling users), and the clean accuracy on every other identity's test pictures.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .classifiers import CLASSIFIERS, l2n
from .embed import stack
from .extractors.registry import extractor_class
from .records import Record, write_records

log = logging.getLogger(__name__)


@dataclass
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    test_role: np.ndarray
    test_ids: np.ndarray


def assemble(scrape: pd.DataFrame, embeddings: dict[str, pd.DataFrame]) -> Split:
    """Join the scrape table with the embeddings of each image set it references."""
    parts = []
    for imageset, rows in scrape.groupby("imageset", sort=True):
        if imageset not in embeddings:
            raise KeyError(f"no embeddings for image set '{imageset}'")
        emb = embeddings[imageset].set_index("image_id")
        missing = set(rows["image_id"]) - set(emb.index)
        if missing:
            raise KeyError(f"image set '{imageset}' lacks embeddings of {sorted(missing)[:3]}")
        x = stack(emb.loc[rows["image_id"]].reset_index())
        parts.append((rows.index.to_numpy(), x))
    order = np.concatenate([p[0] for p in parts])
    x_all = np.concatenate([p[1] for p in parts])[np.argsort(order)]
    table = scrape.loc[np.sort(order)]
    tr = (table["split"] == "train").to_numpy()
    return Split(x_all[tr], table["identity"].to_numpy()[tr], x_all[~tr],
                 table["identity"].to_numpy()[~tr], table["role"].to_numpy()[~tr],
                 table["image_id"].to_numpy()[~tr])


def bootstrap_ci(values: np.ndarray, n: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    if len(values) == 0:
        return (float("nan"), float("nan"))
    if n == 0 or len(values) == 1:
        return (float(values.mean()), float(values.mean()))
    rng = np.random.default_rng([seed, 3])
    means = values[rng.integers(0, len(values), size=(n, len(values)))].mean(1)
    alpha = (1 - level) / 2
    return (float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha)))


def protection_metrics(y_true: np.ndarray, y_pred: np.ndarray, role: np.ndarray, *,
                       bootstrap: int, seed: int) -> dict[str, Any]:
    correct = y_true == y_pred
    prot = role == "protected"
    per_user = {u: float(1 - correct[prot & (y_true == u)].mean()) for u in sorted(set(y_true[prot]))}
    values = np.array(list(per_user.values()))
    lo, hi = bootstrap_ci(values, bootstrap, seed)
    clean = ~prot
    return {
        "protection": float(values.mean()) if len(values) else float("nan"),
        "protection_ci95": [lo, hi],
        "protection_per_user": per_user,
        "protected_accuracy": float(correct[prot].mean()) if prot.any() else float("nan"),
        "clean_accuracy": float(correct[clean].mean()) if clean.any() else float("nan"),
        "n_protected_users": int(len(values)),
        "n_test_protected": int(prot.sum()),
        "n_test_clean": int(clean.sum()),
    }


def feature_shift_from_embeddings(scrape: pd.DataFrame, embeddings: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per cloaked training picture: L2 distance between the L2-normalised embeddings of its
    clean and its scraped (cloaked) version, i.e. how far the cloak moved it for this
    extractor. Computed from embeddings the pipeline has anyway (no extra forward pass)."""
    rows = scrape[scrape["cloaked"]]
    if rows.empty:
        return pd.DataFrame(columns=["image_id", "identity", "shift"])
    clean = embeddings["clean"].set_index("image_id")
    parts = []
    for imageset, group in rows.groupby("imageset"):
        other = embeddings[imageset].set_index("image_id")
        a = l2n(stack(clean.loc[group["image_id"]].reset_index()))
        b = l2n(stack(other.loc[group["image_id"]].reset_index()))
        parts.append(pd.DataFrame({"image_id": group["image_id"].to_numpy(),
                                   "identity": group["identity"].to_numpy(),
                                   "shift": np.linalg.norm(a - b, axis=1)}))
    return pd.concat(parts, ignore_index=True)


def evaluation_settings(*, cloak: str, extractor: str, extractor_spec: dict[str, Any],
                        cloak_spec: dict[str, Any] | None, seed: int, scrape_cfg: dict[str, Any],
                        evaluate_cfg: dict[str, Any], dataset_cfg: dict[str, Any],
                        scrape: pd.DataFrame) -> dict[str, Any]:
    """The ``settings`` of an evaluation record (also the end-to-end and time-travel ones)."""
    info = extractor_class(extractor_spec["type"], name=extractor).describe(extractor, extractor_spec)
    return {
        "cloak": cloak, "extractor": extractor, "seed": seed, "cloak_spec": cloak_spec,
        "extractor_info": dataclasses.asdict(info), "scrape": scrape_cfg, "evaluate": evaluate_cfg,
        "dataset": {"root": dataset_cfg["root"], "n_pictures": int(len(scrape)),
                    "n_identities": int(scrape["identity"].nunique())},
        "protected_users": sorted(scrape.loc[scrape["role"] == "protected", "identity"].unique().tolist()),
    }


def evaluate(scrape: pd.DataFrame, embeddings: dict[str, pd.DataFrame], *, classifiers: list[str],
             bootstrap: int, seed: int, settings: dict[str, Any], kind: str = "evaluation") -> list[Record]:
    """One record per classifier: settings + metrics (``kind``: evaluation or timetravel)."""
    split = assemble(scrape, embeddings)
    shift = feature_shift_from_embeddings(scrape, embeddings)
    records = []
    for name in classifiers:
        pred = CLASSIFIERS[name](split.x_train, split.y_train, split.x_test, seed)
        metrics = protection_metrics(split.y_test, pred, split.test_role, bootstrap=bootstrap, seed=seed)
        metrics["n_train"] = int(len(split.y_train))
        metrics["n_train_cloaked"] = int(scrape.loc[scrape["split"] == "train", "cloaked"].sum())
        # how far the cloak moved the user's features for this extractor (0..2, L2 of unit vectors)
        metrics["feature_shift_mean"] = float(shift["shift"].mean()) if len(shift) else None
        rec = Record.make(kind, {"cloak": settings["cloak"], "extractor": settings["extractor"],
                                 "classifier": name}, settings=settings, metrics=metrics)
        log.info("%s: protection %.3f [%.3f, %.3f], clean accuracy %.3f", rec.experiment,
                 metrics["protection"], *metrics["protection_ci95"], metrics["clean_accuracy"])
        records.append(rec)
    return records


def read_embedding_sets(imagesets: Sequence[str], paths: Sequence[str | Path]) -> dict[str, pd.DataFrame]:
    """{image set: embeddings table} from the files ``paths`` (in the order of ``imagesets``)."""
    if len(imagesets) != len(paths):
        raise ValueError(f"{len(imagesets)} image sets {list(imagesets)} but {len(paths)} embedding files")
    return {s: pd.read_parquet(f) for s, f in zip(imagesets, paths)}


def run_evaluate(*, scrape: str | Path, embeddings: Sequence[str | Path], imagesets: Sequence[str],
                 out: str | Path, cloak: str, extractor: str, extractor_spec: dict[str, Any],
                 cloak_spec: dict[str, Any] | None, evaluate_cfg: dict[str, Any], scrape_cfg: dict[str, Any],
                 dataset_cfg: dict[str, Any], seed: int) -> list[Record]:
    """Rule ``evaluate``: every configured classifier for one (cloak, extractor) -> ``out``."""
    table = pd.read_parquet(scrape)
    settings = evaluation_settings(cloak=cloak, extractor=extractor, extractor_spec=extractor_spec,
                                   cloak_spec=cloak_spec, seed=seed, scrape_cfg=scrape_cfg,
                                   evaluate_cfg=evaluate_cfg, dataset_cfg=dataset_cfg, scrape=table)
    records = evaluate(table, read_embedding_sets(imagesets, embeddings), classifiers=evaluate_cfg["classifiers"],
                       bootstrap=evaluate_cfg["bootstrap"], seed=seed, settings=settings)
    write_records(records, out)
    return records
