"""``cloakbench audit --clean DIR --cloaked DIR``: does cloaking protect this one person?

The person's clean photos and their cloaked copies are matched by stem (``x.jpg`` <->
``x_cloaked.png`` from Fawkes or ``cloakbench cloak``, ``x_attacked.png`` from LowKey, or
the same stem), every photo goes through the pipeline's intake (YuNet + ArcFace alignment),
and for each pretrained recogniser:

* identification (the study's question): a recogniser trained on a gallery of other
  identities plus the person's *cloaked* photos must recognise the person's *clean* photos.
  Leave one photo out: clean photo ``i`` is tested against a classifier trained on the
  gallery and the cloaked copies of the person's other photos (the same photo's cloaked copy
  would be a near duplicate no tracker has). Protection = share of clean photos not
  classified as the person, for the 1-NN and the linear probe of
  :mod:`cloakbench.classifiers`. The baseline trains on the other *clean* photos instead
  (how exposed the person is without cloaking).
* verification: every (cloaked photo ``j``, clean photo ``i != j``) pair is compared with the
  recogniser's published threshold (SFace cosine 0.363, dlib Euclidean 0.6, declared on the
  extractor classes); protection = share of pairs judged "different people". The baseline
  uses (clean ``j``, clean ``i``) pairs. ``same_photo``: the share for (cloaked ``i``, clean
  ``i``).

With a single photo, the leave-one-out figures are undefined (reported as null) and only
``same_photo`` verification and the all-photo identification are given.

The default gallery is the project's demo dataset at a small size (20 identities x 6
pictures), built once with the demo generator and cached under the cloakbench cache.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..classifiers import CLASSIFIERS
from ..errors import ConfigError, DataError, MissingWeightsError
from ..extractors.base import Extractor
from ..extractors.embedding import embed_batches
from ..extractors.registry import EXTRACTORS, build_extractor, extractor_class
from ..images import to_tensor
from ..io import cache_dir, write_json, write_text
from ..workflow import resolve_device
from .common import FaceIntake, list_photos, person_stem, table_text

log = logging.getLogger(__name__)

PERSON = "__person__"
GALLERY_IDENTITIES = 20
GALLERY_PICTURES = 6


# -- inputs --------------------------------------------------------------------------------

def default_gallery(n_identities: int = GALLERY_IDENTITIES, n_pictures: int = GALLERY_PICTURES,
                    seed: int = 0) -> Path:
    """The cached demo gallery, built with the demo generator when missing."""
    root = cache_dir() / f"audit-gallery-{n_identities}x{n_pictures}-seed{seed}"
    if not (root / "card.json").is_file():
        from ..demo.generate import make_demo_dataset

        print(f"building the default gallery (demo generator, {n_identities} identities x "
              f"{n_pictures} pictures) in {root}; done once")
        make_demo_dataset(root, n_identities=n_identities, n_pictures=n_pictures, seed=seed)
    return root


def match_photos(clean_dir: str | Path, cloaked_dir: str | Path) -> tuple[list[tuple[str, Path, Path]], list[dict]]:
    """(stem, clean file, cloaked file) for every stem found in both folders, and the files
    left out with the reason."""
    clean = {p.stem: p for p in list_photos(clean_dir)}
    cloaked: dict[str, Path] = {}
    skipped = []
    for p in list_photos(cloaked_dir):
        stem = person_stem(p)
        if p.suffix.lower() in (".csv", ".parquet", ".json"):
            continue  # cloakbench cloak's own table
        if stem in cloaked:
            skipped.append({"file": str(p), "reason": f"second cloaked file for stem {stem!r} "
                            f"(kept {cloaked[stem].name})"})
            continue
        cloaked[stem] = p
    pairs = [(s, clean[s], cloaked[s]) for s in sorted(clean) if s in cloaked]
    skipped += [{"file": str(clean[s]), "reason": "no cloaked copy with this stem"}
                for s in sorted(clean) if s not in cloaked]
    skipped += [{"file": str(cloaked[s]), "reason": "no clean photo with this stem"}
                for s in sorted(cloaked) if s not in clean]
    return pairs, skipped


def person_crops(pairs: list[tuple[str, Path, Path]], intake: FaceIntake):
    """Aligned clean and cloaked crops of the matched photos (each detected on its own file,
    as a recogniser meeting the photo would); pairs with a file lacking a face are skipped."""
    stems, clean, cloaked, skipped = [], [], [], []
    for stem, cpath, kpath in tqdm(pairs, desc="person's photos", unit="pair"):
        try:
            c = intake.face(intake.read(cpath)).crop
        except DataError as exc:
            skipped.append({"file": str(cpath), "reason": str(exc)})
            continue
        try:
            k = intake.face(intake.read(kpath)).crop
        except DataError as exc:
            skipped.append({"file": str(kpath), "reason": str(exc)})
            continue
        stems.append(stem)
        clean.append(c)
        cloaked.append(k)
    return stems, clean, cloaked, skipped


def gallery_crops(gallery: str | Path, intake: FaceIntake):
    """Aligned crops and identity labels of a gallery (``<identity>/<photo>`` folders)."""
    gallery = Path(gallery)
    if not gallery.is_dir():
        raise DataError(f"--gallery {gallery}: not a folder")
    crops, labels, skipped = [], [], []
    folders = sorted(d for d in gallery.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = [(d.name, p) for d in folders for p in list_photos(d)]
    for ident, path in tqdm(files, desc="gallery", unit="photo", mininterval=2):
        try:
            crops.append(intake.face(intake.read(path)).crop)
            labels.append(ident)
        except DataError as exc:
            skipped.append({"file": str(path), "reason": str(exc)})
    if len(set(labels)) < 1:
        raise DataError(f"--gallery {gallery}: no identity folder with a usable face "
                        "(expected <identity>/<photo> sub-folders)")
    return crops, labels, skipped


def default_extractor_types() -> list[str]:
    """Every registered pretrained extractor type that declares a verification threshold."""
    return [t for t in EXTRACTORS.names()
            if extractor_class(t).verify_threshold is not None and not extractor_class(t).trained_in_pipeline]


def load_extractors(types: list[str] | None, device: str) -> tuple[dict[str, Extractor], list[dict]]:
    """Build the recognisers; with the default list, ones whose weights are absent are skipped
    (listed with the reason); an explicitly requested one that fails raises."""
    explicit = types is not None
    out, skipped = {}, []
    for t in types or default_extractor_types():
        try:
            out[t] = build_extractor(t, {"type": t}, device=device)
        except MissingWeightsError as exc:
            if explicit:
                raise
            skipped.append({"extractor": t, "reason": str(exc)})
    if not out:
        raise MissingWeightsError("no recogniser could be loaded: " +
                                  "; ".join(f"{s['extractor']}: {s['reason']}" for s in skipped))
    return out, skipped


# -- the measures ------------------------------------------------------------------------

def _loo_identification(fit_predict: Callable, g: np.ndarray, gl: list[str], train_person: np.ndarray,
                        test_person: np.ndarray, seed: int, leave_out: bool) -> list[bool]:
    """Per test photo: is it NOT recognised as the person? (train: gallery + the person's
    ``train_person`` photos except the test photo's own when ``leave_out``)."""
    n = len(test_person)
    result = []
    for i in range(n):
        keep = [j for j in range(n) if not (leave_out and j == i)]
        x = np.concatenate([g, train_person[keep]])
        y = np.array(list(gl) + [PERSON] * len(keep))
        pred = fit_predict(x, y, test_person[i:i + 1], seed)
        result.append(bool(pred[0] != PERSON))
    return result


def same_person(metric: str, threshold: float, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A x B booleans: does the recogniser's published threshold call the pair the same person?"""
    if metric == "cosine":
        an = a / np.linalg.norm(a, axis=1, keepdims=True)
        bn = b / np.linalg.norm(b, axis=1, keepdims=True)
        return an @ bn.T >= threshold
    if metric == "euclidean":
        d = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
        return d <= threshold
    raise ConfigError(f"unknown verification metric {metric!r} (cosine or euclidean)")


def _mean(flags: list[bool] | np.ndarray) -> float | None:
    flags = np.asarray(flags, dtype=float)
    return float(flags.mean()) if flags.size else None


def audit_embeddings(g: np.ndarray, gl: list[str], clean: np.ndarray, cloaked: np.ndarray, *,
                     metric: str | None, threshold: float | None, seed: int = 0) -> dict[str, Any]:
    """Protection figures of one recogniser from its embeddings (gallery ``g`` with labels
    ``gl``, the person's ``clean`` and ``cloaked`` photos, row i of both = the same photo)."""
    n = len(clean)
    loo = n >= 2
    res: dict[str, Any] = {"photos": n}
    for cname, fit_predict in CLASSIFIERS.items():
        cl = _loo_identification(fit_predict, g, gl, cloaked, clean, seed, leave_out=loo)
        base = _loo_identification(fit_predict, g, gl, clean, clean, seed, leave_out=True) if loo else []
        res[f"{cname}_cloaked"] = _mean(cl)
        res[f"{cname}_clean"] = _mean(base) if loo else None
        res[f"{cname}_per_photo"] = cl
    if metric is not None and threshold is not None:
        off = ~np.eye(n, dtype=bool)
        kc = same_person(metric, threshold, cloaked, clean)
        cc = same_person(metric, threshold, clean, clean)
        res["verify_cloaked"] = _mean(~kc[off]) if loo else None
        res["verify_clean"] = _mean(~cc[off]) if loo else None
        res["verify_same_photo"] = _mean(~np.diag(kc))
        if metric == "cosine":
            an = cloaked / np.linalg.norm(cloaked, axis=1, keepdims=True)
            bn = clean / np.linalg.norm(clean, axis=1, keepdims=True)
            res["same_photo_score"] = [float(v) for v in (an * bn).sum(1)]
        else:
            res["same_photo_score"] = [float(v) for v in np.linalg.norm(cloaked - clean, axis=1)]
    res["metric"], res["threshold"] = metric, threshold
    return res


def audit_person(stems: list[str], clean: list[np.ndarray], cloaked: list[np.ndarray],
                 gallery: list[np.ndarray], gallery_labels: list[str],
                 extractors: dict[str, Extractor], *, seed: int = 0, batch_size: int = 32) -> dict[str, Any]:
    """Every recogniser's figures for one person (see the module docstring)."""
    if not stems:
        raise DataError("no matched pair of clean and cloaked photos with a face")
    if PERSON in gallery_labels:
        raise DataError(f"the gallery has an identity named {PERSON!r}; rename that folder")
    t_clean, t_cloaked, t_gallery = to_tensor(clean), to_tensor(cloaked), to_tensor(gallery)
    results = {}
    for name, ex in extractors.items():
        with torch.no_grad():
            g, c, k = (embed_batches(ex, t, batch_size=batch_size).numpy().astype(np.float64)
                       for t in (t_gallery, t_clean, t_cloaked))
        results[name] = audit_embeddings(g, gallery_labels, c, k, metric=ex.verify_metric,
                                         threshold=ex.verify_threshold, seed=seed)
    return {"stems": stems, "gallery": {"identities": len(set(gallery_labels)), "photos": len(gallery)},
            "recognisers": results}


TABLE_COLUMNS = [("knn1", "1-NN"), ("linear", "linear"), ("verify", "verification")]


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, r in result["recognisers"].items():
        for key, label in TABLE_COLUMNS:
            if f"{key}_cloaked" not in r:
                continue
            rows.append({"recogniser": name, "test": label, "clean photos": r[f"{key}_clean"],
                         "cloaked photos": r[f"{key}_cloaked"],
                         "threshold": f"{r['metric']} {r['threshold']}" if key == "verify" else ""})
    return rows


def figure(result: dict[str, Any], path: str | Path) -> None:
    """Grouped bars: protection without and with cloaking, per recogniser and test."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ..io import atomic_path

    rows = summary_rows(result)
    labels = [f"{r['recogniser']}\n{r['test']}" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(rows) + 1), 3.4))
    for off, key, colour in ((-0.2, "clean photos", "#999999"), (0.2, "cloaked photos", "#1f77b4")):
        vals = [np.nan if r[key] is None else 100 * r[key] for r in rows]
        ax.bar(x + off, vals, width=0.4, label={"clean photos": "enrolled with clean photos (baseline)",
                                                    "cloaked photos": "enrolled with cloaked photos"}[key], color=colour)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("protection (%)")
    ax.set_title(f"one person, {len(result['stems'])} photos, gallery of "
                 f"{result['gallery']['identities']} identities", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


# -- command line -------------------------------------------------------------------------

HELP = "how well one person's cloaked photos protect them against pretrained recognisers"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clean", required=True, help="folder of the person's clean photos")
    parser.add_argument("--cloaked", required=True,
                        help="folder of their cloaked copies (<stem>_cloaked.png, <stem>_attacked.png or <stem>.*)")
    parser.add_argument("--gallery", default=None,
                        help="folder of other identities (<identity>/<photo>); default: the demo dataset "
                             f"({GALLERY_IDENTITIES} identities, built once into the cloakbench cache)")
    parser.add_argument("--extractors", nargs="+", default=None,
                        help="recogniser types (default: every pretrained one with a published "
                             f"threshold whose weights are present: {', '.join(default_extractor_types())})")
    parser.add_argument("--out", default=None, help="folder for audit.json/.csv/.png (default: <cloaked>/audit)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--seed", type=int, default=0)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f} %"


def main(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    intake = FaceIntake()
    pairs, skipped = match_photos(args.clean, args.cloaked)
    stems, clean, cloaked, more = person_crops(pairs, intake)
    skipped += more
    gallery_dir = Path(args.gallery) if args.gallery else default_gallery(seed=args.seed)
    g, gl, g_skipped = gallery_crops(gallery_dir, intake)
    extractors, ex_skipped = load_extractors(args.extractors, device)
    result = audit_person(stems, clean, cloaked, g, gl, extractors, seed=args.seed)
    result.update(clean_dir=str(args.clean), cloaked_dir=str(args.cloaked), gallery_dir=str(gallery_dir),
                  skipped=skipped, gallery_skipped=len(g_skipped), extractors_skipped=ex_skipped)
    out = Path(args.out) if args.out else Path(args.cloaked) / "audit"
    out.mkdir(parents=True, exist_ok=True)
    rows = summary_rows(result)
    write_json(result, out / "audit.json")
    write_text(pd.DataFrame(rows).to_csv(index=False), out / "audit.csv")
    figure(result, out / "audit.png")
    print(f"audit of {len(stems)} photo pairs ({', '.join(stems)}) against a gallery of "
          f"{result['gallery']['identities']} identities ({result['gallery']['photos']} photos); "
          "protection = share of the person's clean photos NOT recognised")
    shown = [{**r, "clean photos": _pct(r["clean photos"]), "cloaked photos": _pct(r["cloaked photos"])}
             for r in rows]
    print(table_text(shown, ["recogniser", "test", "clean photos", "cloaked photos", "threshold"]))
    for s in skipped:
        print(f"skipped {s['file']}: {s['reason']}")
    for s in ex_skipped:
        print(f"recogniser {s['extractor']} skipped: {s['reason']}")
    print(f"written: {out / 'audit.json'}, {out / 'audit.csv'}, {out / 'audit.png'}")
    return 0
