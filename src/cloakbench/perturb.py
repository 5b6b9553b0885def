"""perturb: apply one cloak to one shard of a subset of pictures.

Writes lossless PNGs of the cloaked pictures plus ``figures.parquet`` with one row per
picture: the perceptual budget actually used (DSSIM, L-inf, L2 on [0, 1] pixels, measured
on the stored 8-bit PNG) and the seconds spent.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from pytorch_msssim import ssim
from tqdm import tqdm

from .attacks.registry import build_cloak
from .data.roles import pictures_for_subset, shard_of
from .extractors.base import Extractor
from .images import load_batch, to_tensor, to_uint8
from .io import write_parquet, write_png

log = logging.getLogger(__name__)


def image_figures(clean: torch.Tensor, cloaked: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-picture DSSIM = (1 - SSIM) / 2 (Gaussian window 11, sigma 1.5), L-inf and L2."""
    with torch.no_grad():
        s = ssim(clean, cloaked, data_range=1.0, size_average=False, win_size=11, win_sigma=1.5)
        diff = (cloaked - clean).flatten(1)
        return {"dssim": ((1 - s) / 2).cpu().numpy(),
                "linf": diff.abs().max(1).values.cpu().numpy(),
                "l2": diff.norm(dim=1).cpu().numpy()}


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
    rows = []
    for ident, group in mine.groupby("identity", sort=True):
        # Context for cloaks that need more than the pictures (e.g. Fawkes v0.3's target choice):
        # all of this user's pictures in the subset (not only this shard), so shards agree.
        user_all = pictures[pictures["identity"] == ident]
        cloak.prepare({"identity": ident, "seed": seed, "manifest": manifest, "roles": roles,
                       "dataset_dir": dataset_dir,
                       "user_paths": [str(dataset_dir / p) for p in user_all["path"]]})
        for start in tqdm(range(0, len(group), batch_size), desc=f"{cloak_name}:{ident}",
                          unit="batch", mininterval=2):
            part = group.iloc[start:start + batch_size]
            clean = load_batch([dataset_dir / p for p in part["path"]]).to(device)
            t0 = time.perf_counter()
            cloaked = cloak(clean)
            seconds = (time.perf_counter() - t0) / len(part)
            stored = to_uint8(cloaked)
            figs = image_figures(clean.cpu(), to_tensor(stored))
            for j, (image_id, identity) in enumerate(zip(part["image_id"], part["identity"])):
                rel = Path("images") / f"{image_id}.png"
                write_png(stored[j], out_dir / rel)
                rows.append({"image_id": image_id, "identity": identity, "path": str(rel),
                             "dssim": float(figs["dssim"][j]), "linf": float(figs["linf"][j]),
                             "l2": float(figs["l2"][j]), "seconds": seconds})
    figures = pd.DataFrame(rows, columns=["image_id", "identity", "path", "dssim", "linf", "l2", "seconds"])
    write_parquet(figures, out_dir / "figures.parquet")
    if len(figures):
        log.info("mean DSSIM %.4f, max L-inf %.4f, mean L2 %.3f, %.2f s/picture",
                 figures.dssim.mean(), figures.linf.max(), figures.l2.mean(), figures.seconds.mean())
    return figures


def collect_shards(shard_dirs: list[str | Path]) -> pd.DataFrame:
    """Concatenate the shards' figures with absolute picture paths."""
    parts = []
    for d in shard_dirs:
        f = pd.read_parquet(Path(d) / "figures.parquet")
        f["path"] = [str(Path(d) / p) for p in f["path"]]
        parts.append(f)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["image_id", "path"])
