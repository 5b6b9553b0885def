"""prepare_dataset: a folder-per-identity tree -> aligned crops, manifest and rejects.

Accepted layouts
- ``facescrub``: ``<root>/download/<First_Last>/face/*.jpg`` (FaceScrub's downloader output;
  ``<root>`` may also point at the ``download`` folder itself);
- ``folders``: ``<root>/<identity>/*.{jpg,jpeg,png,tif,tiff,webp,bmp}``.

Every file under an identity folder (``<identity>/`` or ``<First_Last>/face/``) ends up either
in the manifest or in the rejects table with a reason: not a picture, dangling symlink, inside
a subfolder, unreadable, too large (``dataset.max_pixels``), too small, no face, or identity
with too few usable pictures.

Ids: ``image_id`` is ``<identity id>/<picture id>``, both the folder/file name with characters
outside ``[A-Za-z0-9_.-]`` replaced by ``_``. Names that would share an id stay apart: identity
folders whose names sanitise alike get ``_<6 hex digits of the name's SHA-1>`` appended, except
the one (if any) whose name is already its sanitised form; pictures of one identity with the
same sanitised stem get their extension appended (``a.jpg``, ``a.png`` -> ``a_jpg``, ``a_png``),
then, if still shared, a hash of the file name. Names that collide with nothing keep the plain
sanitised form, so ids of ordinary datasets do not change.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..errors import DataError
from ..io import PictureTooLarge, read_rgb, sha256_file, write_parquet, write_png

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp"}
MANIFEST_COLUMNS = ["image_id", "identity", "source_path", "sha256", "split", "path", "n_faces"]
REJECT_COLUMNS = ["source_path", "identity", "reason"]
# Largest picture read (pixels, checked from the file header before decoding): above every
# common camera (61 MP) and below Pillow's own decompression-bomb warning (89.5 MP).
DEFAULT_MAX_PIXELS = 64_000_000


@dataclass
class Discovered:
    identity: str
    path: Path
    problem: str | None = None  # reject reason known from the file system alone


def detect_layout(root: Path) -> str:
    if (root / "download").is_dir() and any((p / "face").is_dir() for p in (root / "download").iterdir()):
        return "facescrub"
    if root.is_dir() and any((p / "face").is_dir() for p in root.iterdir() if p.is_dir()):
        return "facescrub"
    return "folders"


def _suffix_list() -> str:
    return ", ".join(sorted(IMAGE_SUFFIXES))


def _folder_entries(identity: str, folder: Path) -> list[Discovered]:
    """Every entry of one identity folder, with a reject reason for the ones that are not
    pictures to read."""
    found: list[Discovered] = []
    for f in sorted(folder.iterdir()):
        if f.is_symlink() and not f.exists():
            found.append(Discovered(identity, f, f"dangling symlink: target {os.readlink(f)} "
                                                 "does not exist"))
        elif f.is_dir():
            nested = []
            for dirpath, dirnames, filenames in os.walk(f):
                base = Path(dirpath)
                nested += [base / n for n in filenames]
                nested += [base / n for n in dirnames if (base / n).is_symlink()]
            found += [Discovered(identity, p, f"in a subfolder: only files directly inside "
                                              f"{folder} are read") for p in sorted(nested)]
        elif not f.is_file():
            found.append(Discovered(identity, f, "not a regular file"))
        elif f.suffix.lower() not in IMAGE_SUFFIXES:
            found.append(Discovered(identity, f, f"not a picture: suffix '{f.suffix}' is not one "
                                                 f"of {_suffix_list()} (rename it if it is one)"))
        else:
            found.append(Discovered(identity, f))
    return found


def discover(root: str | Path, layout: str = "auto") -> list[Discovered]:
    """Every file under every identity folder; ``problem`` set for those that are not read."""
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
                found += _folder_entries(person.name, face_dir)
    elif layout == "folders":
        for person in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            found += _folder_entries(person.name, person)
    else:
        raise DataError(f"dataset.layout: unknown layout '{layout}' (auto, facescrub, folders)")
    if not any(d.problem is None for d in found):
        raise DataError(f"dataset.root: no pictures ({_suffix_list()}) found under {root} "
                        f"with layout '{layout}'")
    return found


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _short_hash(name: str) -> str:
    return hashlib.sha1(name.encode("utf-8")).hexdigest()[:6]


def identity_ids(names) -> dict[str, str]:
    """Identity folder name -> id used in image_id and paths (unique; see the module doc)."""
    names = sorted(set(names))
    safe = {n: _safe(n) for n in names}
    shared = {s for s, c in Counter(safe.values()).items() if c > 1}
    ids = {n: s if s not in shared or n == s else f"{s}_{_short_hash(n)}" for n, s in safe.items()}
    _require_unique(ids, "identity folders")
    return ids


def picture_ids(paths) -> dict[Path, str]:
    """Picture file (of one identity) -> picture id (unique within the identity)."""
    ids = {p: _safe(p.stem) for p in paths}
    shared = {i for i, c in Counter(ids.values()).items() if c > 1}
    ids = {p: _safe(f"{p.stem}_{p.suffix.lstrip('.')}") if i in shared else i
           for p, i in ids.items()}
    shared = {i for i, c in Counter(ids.values()).items() if c > 1}
    ids = {p: f"{i}_{_short_hash(p.name)}" if i in shared else i for p, i in ids.items()}
    _require_unique(ids, "pictures")
    return ids


def _require_unique(ids: dict, what: str) -> None:
    by_id: dict[str, list] = {}
    for name, i in ids.items():
        by_id.setdefault(i, []).append(str(name))
    clash = {i: n for i, n in by_id.items() if len(n) > 1}
    if clash:
        raise DataError(f"{what} {sorted(clash.values())} map to the same ids {sorted(clash)}; "
                        "rename one of them")


def assign_image_ids(found: list[Discovered]) -> list[str | None]:
    """image_id of every discovered picture (None for entries with a problem)."""
    ident = identity_ids(d.identity for d in found)
    per_identity: dict[str, list[Path]] = {}
    for d in found:
        if d.problem is None:
            per_identity.setdefault(d.identity, []).append(d.path)
    pic = {name: picture_ids(paths) for name, paths in per_identity.items()}
    return [None if d.problem else f"{ident[d.identity]}/{pic[d.identity][d.path]}" for d in found]


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
                    min_pictures: int = 8, train_fraction: float = 0.7, seed: int = 0,
                    max_pixels: int = DEFAULT_MAX_PIXELS, detect_size: int | None = None
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Align every picture; write ``images/``, ``manifest.parquet`` and ``rejects.parquet``.

    ``n_faces`` (manifest): confident faces found in the picture, the largest kept (missing
    when ``pre_aligned``)."""
    out_dir = Path(out_dir)
    found = discover(root, layout)
    image_ids = assign_image_ids(found)
    log.info("discovered %d files of %d identities under %s (%d not pictures to read)",
             len(found), len({d.identity for d in found}), root,
             sum(d.problem is not None for d in found))
    aligner = None
    if not pre_aligned:
        from .align import DEFAULT_DETECT_SIZE, FaceAligner
        aligner = FaceAligner(size=image_size, detect_size=detect_size or DEFAULT_DETECT_SIZE)

    rows, rejects = [], []
    for item, image_id in tqdm(list(zip(found, image_ids)), desc="prepare_dataset", unit="img",
                               mininterval=2):
        if item.problem:
            rejects.append((str(item.path), item.identity, item.problem))
            continue
        reason, n_faces = None, pd.NA
        try:
            rgb = read_rgb(item.path, max_pixels=max_pixels)
        except PictureTooLarge as exc:
            rejects.append((str(item.path), item.identity, str(exc)))
            continue
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
                n_faces = det.n_faces
        if reason:
            rejects.append((str(item.path), item.identity, reason))
            continue
        rel = Path("images") / f"{image_id}.png"
        write_png(crop, out_dir / rel)
        rows.append((image_id, item.identity, str(item.path), sha256_file(item.path), str(rel),
                     n_faces))

    manifest = pd.DataFrame(rows, columns=["image_id", "identity", "source_path", "sha256", "path",
                                           "n_faces"])
    manifest["n_faces"] = manifest["n_faces"].astype("Int64")
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
                           min_pictures=d["min_pictures"], train_fraction=d["train_fraction"], seed=seed,
                           max_pixels=d.get("max_pixels", DEFAULT_MAX_PIXELS),
                           detect_size=d.get("detect_size"))
