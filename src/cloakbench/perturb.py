"""perturb: apply one cloak to one shard of a subset of pictures.

Writes lossless PNGs of the cloaked pictures plus ``figures.parquet`` with one row per
picture: the perceptual budget actually used (DSSIM, L-inf, L2 on [0, 1] pixels, measured
on the stored 8-bit PNG), the seconds spent, and ``shift_<extractor>``: how far the stored
picture's L2-normalised features moved on each model of the cloak's ensemble. (The shift on
every other extractor, i.e. how far the cloak transfers, is measured by ``evaluate`` from
the embeddings the pipeline computes anyway, so adding an extractor never reruns a cloak.)
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from tqdm import tqdm

from .cloaks.metrics import feature_shift, perturbation_stats
from .cloaks.registry import build_cloak
from .data.roles import pictures_for_subset, shard_of
from .extractors.base import Extractor
from .extractors.registry import extractor_loader
from .images import load_batch, to_tensor, to_uint8
from .io import write_parquet, write_png
from .workflow import resolve_device

log = logging.getLogger(__name__)


def perturb_shard(manifest: pd.DataFrame, roles: pd.DataFrame, dataset_dir: str | Path, *,
                  subset: str, shard: int, shards: int, cloak_name: str, cloak_spec: dict[str, Any],
                  load_extractor: Callable[[str], Extractor], out_dir: str | Path, seed: int,
                  batch_size: int = 16, device: str = "cpu") -> pd.DataFrame:
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    pictures = pictures_for_subset(manifest, roles, subset)
    mine = shard_of(pictures, shard, shards)
    log.info("cloak %s, subset %s, shard %d/%d: %d of %d pictures", cloak_name, subset, shard,
             shards, len(mine), len(pictures))
    ensemble = [load_extractor(n) for n in cloak_spec.get("ensemble", [])]
    cloak = build_cloak(cloak_name, cloak_spec, ensemble, seed=seed, device=device)
    log.info("cloak hyperparameters: %s", cloak.hyperparameters())
    rows = []
    for ident, group in mine.groupby("identity", sort=True):
        # Context for cloaks that need more than the pictures (e.g. Fawkes v0.3's target choice):
        # all of this user's pictures in the subset (not only this shard), so shards agree.
        if cloak.needs_reference:
            user_all = pictures[pictures["identity"] == ident]
            cloak.prepare({"identity": ident, "seed": seed, "manifest": manifest, "roles": roles,
                           "dataset_dir": dataset_dir,
                           "user_paths": [str(dataset_dir / p) for p in user_all["path"]]})
        for start in tqdm(range(0, len(group), batch_size), desc=f"{cloak_name}:{ident}",
                          unit="batch", mininterval=2):
            part = group.iloc[start:start + batch_size]
            clean = load_batch([dataset_dir / p for p in part["path"]]).to(device)
            t0 = time.perf_counter()
            cloaked = cloak(clean, image_ids=list(part["image_id"]))  # used by `external`
            seconds = (time.perf_counter() - t0) / len(part)
            stored = to_uint8(cloaked)
            stored_t = to_tensor(stored)
            figs = perturbation_stats(clean.cpu(), stored_t)
            shifts = feature_shift(clean, stored_t.to(device), ensemble) if ensemble else {}
            for j, (image_id, identity) in enumerate(zip(part["image_id"], part["identity"])):
                rel = Path("images") / f"{image_id}.png"
                write_png(stored[j], out_dir / rel)
                rows.append({"image_id": image_id, "identity": identity, "path": str(rel),
                             "dssim": float(figs["dssim"][j]), "linf": float(figs["linf"][j]),
                             "l2": float(figs["l2"][j]), "seconds": seconds,
                             **{f"shift_{n}": float(v[j]) for n, v in shifts.items()}})
    columns = ["image_id", "identity", "path", "dssim", "linf", "l2", "seconds"]
    figures = pd.DataFrame(rows, columns=columns + [f"shift_{m.name}" for m in ensemble])
    write_parquet(figures, out_dir / "figures.parquet")
    if len(figures):
        log.info("mean DSSIM %.4f, max L-inf %.4f, mean L2 %.3f, %.2f s/picture",
                 figures.dssim.mean(), figures.linf.max(), figures.l2.mean(), figures.seconds.mean())
    return figures


def run_perturb(*, manifest: str | Path, roles: str | Path, images: str | Path, checkpoints: dict[str, str],
                subset: str, shard: int, shards: int, cloak: str, cloak_spec: dict[str, Any],
                extractors: dict[str, dict[str, Any]], out_dir: str | Path, seed: int, batch_size: int,
                device: str) -> pd.DataFrame:
    """Rule ``perturb``: cloak one shard of ``subset`` with ``cloak`` -> ``out_dir``.

    ``extractors``: the specs of the cloak's ensemble; ``checkpoints``: {extractor name: file}
    for those trained in the pipeline (other keys are ignored); ``images``: the dataset's
    ``images`` folder.
    """
    device = resolve_device(device)
    return perturb_shard(pd.read_parquet(manifest), pd.read_parquet(roles), Path(images).parent, subset=subset,
                         shard=int(shard), shards=shards, cloak_name=cloak, cloak_spec=cloak_spec,
                         load_extractor=extractor_loader(extractors, checkpoints, device), out_dir=out_dir,
                         seed=seed, batch_size=batch_size, device=device)
