"""prepare_dataset: a folder-per-identity tree -> aligned crops, manifest and rejects.

Accepted layouts
- ``facescrub``: ``<root>/download/<First_Last>/face/*.jpg`` (FaceScrub's downloader output;
  ``<root>`` may also point at the ``download`` folder itself);
- ``folders``: ``<root>/<identity>/*.{jpg,jpeg,png}``.

Every discovered file ends up either in the manifest or in the rejects table with a
reason: unreadable, too small, no face, or identity with too few usable pictures.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..errors import DataError
from ..io import read_rgb, sha256_file, write_parquet, write_png

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
MANIFEST_COLUMNS = ["image_id", "identity", "source_path", "sha256", "split", "path"]
REJECT_COLUMNS = ["source_path", "identity", "reason"]


@dataclass
class Discovered:
    identity: str
    path: Path


def detect_layout(root: Path) -> str:
    if (root / "download").is_dir() and any((p / "face").is_dir() for p in (root / "download").iterdir()):
        return "facescrub"
    if root.is_dir() and any((p / "face").is_dir() for p in root.iterdir() if p.is_dir()):
        return "facescrub"
    return "folders"


def discover(root: str | Path, layout: str = "auto") -> list[Discovered]:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset.root: folder {root} does not exist (set dataset.root in the "
                        "config, or enable demo.enabled to generate the offline demo)")
    if layout == "auto":
        layout = detect_layout(root)
    found: list[Discovered] = []
    if layout == "facescrub":
        base = root / "download" if (root / "download").is_dir() else root
        for person in sorted(p for p in base.iterdir() if p.is_dir()):
            face_dir = person / "face"
            if face_dir.is_dir():
                found += [Discovered(person.name, f) for f in sorted(face_dir.iterdir())
                          if f.suffix.lower() in IMAGE_SUFFIXES]
    elif layout == "folders":
        for person in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            found += [Discovered(person.name, f) for f in sorted(person.iterdir())
                      if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    else:
        raise DataError(f"dataset.layout: unknown layout '{layout}' (auto, facescrub, folders)")
    if not found:
        raise DataError(f"dataset.root: no .jpg/.jpeg/.png pictures found under {root} "
                        f"with layout '{layout}'")
    return found


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def split_identities(manifest: pd.DataFrame, train_fraction: float, seed: int) -> pd.Series:
    """Seeded per-identity split: round(train_fraction * n) train pictures (at least 1 each side)."""
    split = pd.Series("test", index=manifest.index)
    for k, (_, group) in enumerate(sorted(manifest.groupby("identity"), key=lambda g: g[0])):
        rng = np.random.default_rng([seed, k])
        n = len(group)
        n_train = min(max(int(round(train_fraction * n)), 1), n - 1)
        order = rng.permutation(n)
        split.loc[group.index[order[:n_train]]] = "train"
    return split


def prepare_dataset(root: str | Path, out_dir: str | Path, *, layout: str = "auto",
                    pre_aligned: bool = False, image_size: int = 112, min_face_size: int = 40,
                    min_pictures: int = 8, train_fraction: float = 0.7, seed: int = 0
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Align every picture; write ``images/``, ``manifest.parquet`` and ``rejects.parquet``."""
    out_dir = Path(out_dir)
    found = discover(root, layout)
    log.info("discovered %d pictures of %d identities under %s", len(found),
             len({d.identity for d in found}), root)
    aligner = None
    if not pre_aligned:
        from .align import FaceAligner
        aligner = FaceAligner(size=image_size)

    rows, rejects = [], []
    for item in tqdm(found, desc="prepare_dataset", unit="img", mininterval=2):
        reason = None
        try:
            rgb = read_rgb(item.path)
        except Exception as exc:  # any decoder failure -> rejects table, not a crash
            rejects.append((str(item.path), item.identity, f"unreadable: {type(exc).__name__}: {exc}"))
            continue
        if pre_aligned:
            if min(rgb.shape[:2]) < min_face_size:
                reason = f"too small: {rgb.shape[1]}x{rgb.shape[0]} < {min_face_size}px"
            else:
                from .align import resize_square
                crop = resize_square(rgb, image_size)
        else:
            det = aligner.detect(rgb) if min(rgb.shape[:2]) >= min_face_size else None
            if min(rgb.shape[:2]) < min_face_size:
                reason = f"too small: {rgb.shape[1]}x{rgb.shape[0]} < {min_face_size}px"
            elif det is None:
                reason = "no face detected"
            elif min(det.box[2], det.box[3]) < min_face_size:
                reason = f"face too small: {det.box[2]:.0f}x{det.box[3]:.0f} < {min_face_size}px"
            else:
                crop = aligner.align(rgb, det)
        if reason:
            rejects.append((str(item.path), item.identity, reason))
            continue
        image_id = f"{_safe(item.identity)}/{_safe(item.path.stem)}"
        rel = Path("images") / f"{image_id}.png"
        write_png(crop, out_dir / rel)
        rows.append((image_id, item.identity, str(item.path), sha256_file(item.path), str(rel)))

    manifest = pd.DataFrame(rows, columns=["image_id", "identity", "source_path", "sha256", "path"])
    dup = manifest["image_id"].duplicated(keep="first")
    for _, r in manifest[dup].iterrows():
        rejects.append((r.source_path, r.identity, f"duplicate image_id {r.image_id} (same stem)"))
    manifest = manifest[~dup]
    counts = manifest["identity"].value_counts()
    few = counts[counts < min_pictures].index
    for _, r in manifest[manifest["identity"].isin(few)].iterrows():
        rejects.append((r.source_path, r.identity,
                        f"identity has {counts[r.identity]} usable pictures < min_pictures={min_pictures}"))
    manifest = manifest[~manifest["identity"].isin(few)].reset_index(drop=True)
    rejects_df = pd.DataFrame(rejects, columns=REJECT_COLUMNS)
    write_parquet(rejects_df, out_dir / "rejects.parquet")
    if manifest.empty:
        raise DataError(f"dataset.root: no identity under {root} has at least min_pictures="
                        f"{min_pictures} usable pictures (reasons in {out_dir / 'rejects.parquet'})")
    manifest["split"] = split_identities(manifest, train_fraction, seed)
    manifest = manifest[MANIFEST_COLUMNS]
    write_parquet(manifest, out_dir / "manifest.parquet")
    log.info("kept %d pictures of %d identities (%d train / %d test); rejected %d (%s)",
             len(manifest), manifest["identity"].nunique(), (manifest.split == "train").sum(),
             (manifest.split == "test").sum(), len(rejects_df),
             rejects_df["reason"].str.split(":").str[0].value_counts().to_dict())
    return manifest, rejects_df


def run_prepare_dataset(*, root: str | Path, manifest: str | Path, dataset_cfg: dict, seed: int
                        ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rule ``prepare_dataset``: align ``root`` into the folder of ``manifest`` (``dataset_cfg``:
    the config's ``dataset`` section)."""
    d = dataset_cfg
    return prepare_dataset(root, Path(manifest).parent, layout=d["layout"], pre_aligned=d["pre_aligned"],
                           image_size=d["image_size"], min_face_size=d["min_face_size"],
                           min_pictures=d["min_pictures"], train_fraction=d["train_fraction"], seed=seed)
