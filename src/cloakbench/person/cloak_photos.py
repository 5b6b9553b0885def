"""``cloakbench cloak IN_DIR OUT_DIR --cloak NAME``: cloak one person's photos at full resolution.

As the Fawkes tool does, each photo's main face is detected and aligned (the pipeline's own
intake, :class:`~cloakbench.person.common.FaceIntake`), the configured cloak perturbs the
aligned crop, and the perturbation (cloaked crop - clean crop, in float) is mapped back into
the original photo through the inverse of the alignment's similarity transform
(``cv2.warpAffine`` with ``WARP_INVERSE_MAP``), only inside the face crop's footprint and
under a mask that fades to zero at the crop's border. Every other pixel of the photo is
left as read. The result is written as ``<stem>_cloaked.png`` (the name the ``external``
cloak imports), with a table of per-photo figures:

* ``dssim``, ``linf``: on the face, between the clean crop and the crop re-aligned from the
  written photo (with the same landmarks), i.e. what the written file changed on the face;
  ``linf_photo``: the largest change anywhere in the photo;
* ``shift_<extractor>``: how far the re-aligned face moved on each extractor of the cloak's
  ensemble (L2 between normalised features), and ``shift_<extractor>_crop``: the same for the
  cloaked crop itself (what the pipeline's ``perturb`` stores), for comparison;
* ``seconds``: time for the photo (detection to writing).

Photos that cannot be read or show no face are listed with the reason; the others are done.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..cloaks.metrics import feature_shift, perturbation_stats
from ..cloaks.registry import build_cloak, cloak_class
from ..errors import ConfigError, DataError, MissingWeightsError
from ..extractors.registry import extractor_loader
from ..images import to_tensor
from ..io import write_parquet, write_png, write_text
from ..plan import Plan
from ..workflow import resolve_device
from .common import FaceIntake, list_photos, load_plan, table_text

log = logging.getLogger(__name__)

TABLE_NAME = "cloak_table"
COLUMNS = ["photo", "status", "reason", "width", "height", "faces", "dssim", "linf", "linf_photo",
           "seconds", "output"]


def border_mask(size: int, feather: float) -> np.ndarray:
    """size x size float32 mask: 1 inside, a smooth (cosine) ramp to 0 over ``feather`` pixels
    at the border, 0 on the outermost pixel row/column."""
    idx = np.arange(size, dtype=np.float32)
    edge = np.minimum(idx, size - 1 - idx)  # distance to the nearest border, in pixels
    ramp = np.clip(edge / max(feather, 1e-6), 0.0, 1.0)
    ramp = 0.5 - 0.5 * np.cos(np.pi * ramp)
    return np.minimum.outer(ramp, ramp).astype(np.float32)


def paste_perturbation(photo: np.ndarray, delta: np.ndarray, matrix: np.ndarray,
                       mask: np.ndarray) -> np.ndarray:
    """Add a crop-space perturbation ``delta`` (SxSx3 float, [0, 1] units) to ``photo`` (HxWx3
    uint8) through the inverse of ``matrix`` (2x3, photo -> crop), weighted by ``mask`` (SxS).

    Only the crop's footprint in the photo is touched; pixels where the mapped mask is 0 keep
    their value exactly.
    """
    h, w = photo.shape[:2]
    s = delta.shape[0]
    inv = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0], [s, 0], [0, s], [s, s]], np.float64)
    foot = corners @ inv[:, :2].T + inv[:, 2]
    x0, y0 = (max(0, int(np.floor(foot[:, k].min())) - 1) for k in (0, 1))
    x1 = min(w, int(np.ceil(foot[:, 0].max())) + 2)
    y1 = min(h, int(np.ceil(foot[:, 1].max())) + 2)
    out = photo.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    # photo pixel (x0 + u, y0 + v) -> crop A (x0 + u, y0 + v) + b = A (u, v) + (A (x0, y0) + b)
    m_roi = matrix.astype(np.float64).copy()
    m_roi[:, 2] += m_roi[:, :2] @ np.array([x0, y0], np.float64)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    size = (x1 - x0, y1 - y0)
    weighted = (delta * mask[:, :, None]).astype(np.float32)
    d = cv2.warpAffine(weighted, m_roi, size, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    roi = photo[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(np.rint(roi + 255.0 * d), 0, 255).astype(np.uint8)
    return out


class PhotoCloaker:
    """A configured cloak applied to full-resolution photos (see the module docstring)."""

    def __init__(self, plan: Plan, cloak_name: str, *, device: str | None = None,
                 checkpoints_dir: str | Path = "results/extractors", feather: float | None = None,
                 refine: int = 2):
        if cloak_name not in plan.cloaks:
            raise ConfigError(f"--cloak {cloak_name}: not a configured cloak (configured: "
                              f"{', '.join(plan.cloaks) or 'none'})")
        spec = plan.cloak_spec(cloak_name)
        cls = cloak_class(spec["type"], name=cloak_name)
        if cls.needs_image_ids or cls.needs_reference:
            what = "imports the official tools' files" if cls.needs_image_ids else \
                "needs the dataset's other identities (prepare)"
            raise ConfigError(f"--cloak {cloak_name}: cloak type '{spec['type']}' {what} and cannot "
                              "cloak single photos; pick a cloak of another type")
        self.device = resolve_device(device or plan["device"])
        ensemble_names = plan.ensemble(cloak_name)
        checkpoints = {}
        for name in ensemble_names:
            if name in plan.trained:
                path = Path(checkpoints_dir) / f"{name}.pt"
                if not path.is_file():
                    raise MissingWeightsError(
                        f"cloak {cloak_name}: its ensemble extractor '{name}' is trained by the pipeline "
                        f"and {path} is missing; run `snakemake {path}` first (or pass --checkpoints-dir)")
                checkpoints[name] = str(path)
        load = extractor_loader(plan.plain("extractors"), checkpoints, self.device)
        self.ensemble = [load(n) for n in ensemble_names]
        self.cloak = build_cloak(cloak_name, spec, self.ensemble, seed=int(plan["seed"]), device=self.device)
        self.name = cloak_name
        self.refine = int(refine)
        self.intake = FaceIntake.from_plan(plan)
        size = self.intake.size
        self.mask = border_mask(size, feather if feather is not None else size / 16)

    def cloak_photo(self, photo: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """(cloaked photo, figures) for one HxWx3 uint8 photo; DataError when it has no face."""
        face = self.intake.face(photo)
        clean = to_tensor(face.crop)
        cloaked = self.cloak(clean.to(self.device)).detach().cpu().float()
        target = cloaked[0].permute(1, 2, 0).numpy()
        out, current = photo, face.crop
        # The budget the cloak spent on the crop bounds every photo pixel's change too (so the
        # re-aligned face, an interpolation of photo pixels, stays within it as well).
        bound = int(round(255.0 * float((cloaked - clean).abs().max())))
        lo = photo.astype(np.int16) - bound
        hi = photo.astype(np.int16) + bound
        # The first pass adds the crop's perturbation; the next ones add what the written
        # photo's re-aligned crop still misses of it (resampling through the warp both ways
        # blurs the perturbation), so the face recognisers see what the cloak made.
        for _ in range(1 + self.refine):
            residual = target - current.astype(np.float32) / 255.0
            out = paste_perturbation(out, residual, face.matrix, self.mask)
            out = np.clip(out.astype(np.int16), lo, hi).astype(np.uint8)
            current = self.intake.face(out, landmarks=face.landmarks).crop
        again = to_tensor(current)
        stats = perturbation_stats(clean, again)
        figs: dict[str, Any] = {
            "width": photo.shape[1], "height": photo.shape[0], "faces": face.n_faces,
            "dssim": float(stats["dssim"][0]), "linf": float(stats["linf"][0]),
            "linf_photo": float(np.abs(out.astype(np.int16) - photo.astype(np.int16)).max()) / 255.0}
        if self.ensemble:
            dev = torch.device(self.device)
            on_photo = feature_shift(clean.to(dev), again.to(dev), self.ensemble)
            on_crop = feature_shift(clean.to(dev), cloaked.to(dev), self.ensemble)
            for n in on_photo:
                figs[f"shift_{n}"] = float(on_photo[n][0])
                figs[f"shift_{n}_crop"] = float(on_crop[n][0])
        return out, figs


def cloak_folder(in_dir: str | Path, out_dir: str | Path, cloaker: PhotoCloaker) -> pd.DataFrame:
    """Cloak every photo of ``in_dir`` into ``out_dir/<stem>_cloaked.png``; returns (and writes as
    ``out_dir/cloak_table.csv`` and ``.parquet``) one row per file, skipped ones with a reason."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    files = list_photos(in_dir)
    if not files:
        raise DataError(f"{in_dir}: no files to cloak")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for path in tqdm(files, desc=f"cloak {cloaker.name}", unit="photo"):
        row: dict[str, Any] = {"photo": path.name, "status": "skipped", "reason": "", "output": ""}
        t0 = time.perf_counter()
        try:
            if path.stem in seen:
                raise DataError(f"same stem as {seen[path.stem]}: both would be {path.stem}_cloaked.png")
            photo = cloaker.intake.read(path)
            out, figs = cloaker.cloak_photo(photo)
            target = out_dir / f"{path.stem}_cloaked.png"
            write_png(out, target)
            seen[path.stem] = path.name
            row.update(figs, status="cloaked", output=target.name)
        except DataError as exc:
            row["reason"] = str(exc)
            log.warning("%s: skipped (%s)", path, exc)
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
    table = pd.DataFrame(rows)
    shift_cols = sorted(c for c in table.columns if c.startswith("shift_"))
    table = table.reindex(columns=COLUMNS + shift_cols)
    table[["width", "height", "faces"]] = table[["width", "height", "faces"]].astype("Int64")
    write_parquet(table, out_dir / f"{TABLE_NAME}.parquet")
    write_text(table.to_csv(index=False), out_dir / f"{TABLE_NAME}.csv")
    return table


# -- command line -------------------------------------------------------------------------

HELP = "cloak one person's photos at full resolution (writes <stem>_cloaked.png)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("in_dir", help="folder of the person's photos (any size, EXIF orientation applied)")
    parser.add_argument("out_dir", help="folder for <stem>_cloaked.png and cloak_table.csv/.parquet")
    parser.add_argument("--cloak", required=True, help="a cloak configured under cloaks: (e.g. fawkes_v10, pgd)")
    parser.add_argument("--configfile", default=None, help="configuration (default: config/config.yaml)")
    parser.add_argument("--device", default=None, help="cpu, cuda or auto (default: the config's device)")
    parser.add_argument("--checkpoints-dir", default="results/extractors",
                        help="where the pipeline's trained extractors are (for ensembles that use them)")


def main(args: argparse.Namespace) -> int:
    plan = load_plan(args.configfile)
    cloaker = PhotoCloaker(plan, args.cloak, device=args.device, checkpoints_dir=args.checkpoints_dir)
    print(f"cloak {args.cloak} ({cloaker.cloak.type_name}, ensemble: "
          f"{', '.join(e.name for e in cloaker.ensemble) or '-'}) on {cloaker.device}")
    table = cloak_folder(args.in_dir, args.out_dir, cloaker)
    shift_cols = [c for c in table.columns if c.startswith("shift_")]
    print(table_text(table, COLUMNS[:2] + COLUMNS[3:10] + shift_cols))
    skipped = table[table.status != "cloaked"]
    for _, r in skipped.iterrows():
        print(f"skipped {r.photo}: {r.reason}")
    done = int((table.status == "cloaked").sum())
    print(f"{done} of {len(table)} photos cloaked into {args.out_dir} "
          f"(table: {Path(args.out_dir) / (TABLE_NAME + '.csv')})")
    return 0 if done else 1


__all__ = ["PhotoCloaker", "cloak_folder", "paste_perturbation", "border_mask", "add_arguments", "main"]
