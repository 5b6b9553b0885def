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

Work: one picture is one call of ``prepare_picture``; ``prepare_pictures`` runs it in this
process or over a pool of ``workers`` processes, in the same order either way. For a cluster,
``align_shard`` aligns every ``shards``-th discovered file into a shard folder and
``prepare_dataset(shard_dirs=...)`` merges the folders; the dataset is byte for byte the same
whatever the number of workers or shards.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import re
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
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


@dataclass(frozen=True)
class AlignSettings:
    """What one picture's work depends on (the ``dataset`` keys of the config that shape a crop)."""
    pre_aligned: bool = False
    image_size: int = 112
    min_face_size: int = 40
    max_pixels: int = DEFAULT_MAX_PIXELS
    detect_size: int | None = None

    def aligner(self):
        """The face aligner (None when ``pre_aligned``: pictures are only resized)."""
        if self.pre_aligned:
            return None
        from .align import DEFAULT_DETECT_SIZE, FaceAligner
        return FaceAligner(size=self.image_size, detect_size=self.detect_size or DEFAULT_DETECT_SIZE)

    def check(self) -> None:
        """Fail before any worker starts when the detector's model is missing (its message says
        how to install it), rather than in every worker's initializer."""
        if not self.pre_aligned:
            from .align import yunet_path
            yunet_path()


#: one picture's outcome: ("keep", manifest row) or ("reject", rejects row)
Outcome = tuple[str, tuple]


def prepare_picture(item: Discovered, image_id: str | None, out_dir: Path, settings: AlignSettings,
                    aligner) -> Outcome:
    """One picture's whole work: read -> checks -> detect -> align -> write
    ``out_dir/images/<image_id>.png``. Returns the manifest row (image_id, identity,
    source_path, sha256, path, n_faces) or the rejects row (source_path, identity, reason).
    Depends on nothing but its arguments, so any process may run it, in any order."""
    if item.problem:
        return "reject", (str(item.path), item.identity, item.problem)
    s = settings
    reason, n_faces = None, pd.NA
    try:
        rgb = read_rgb(item.path, max_pixels=s.max_pixels)
    except PictureTooLarge as exc:
        return "reject", (str(item.path), item.identity, str(exc))
    except Exception as exc:  # any decoder failure -> rejects table, not a crash
        return "reject", (str(item.path), item.identity, f"unreadable: {type(exc).__name__}: {exc}")
    if s.pre_aligned:
        if min(rgb.shape[:2]) < s.min_face_size:
            reason = f"too small: {rgb.shape[1]}x{rgb.shape[0]} < {s.min_face_size}px"
        else:
            from .align import resize_square
            crop = resize_square(rgb, s.image_size)
    else:
        det = aligner.detect(rgb) if min(rgb.shape[:2]) >= s.min_face_size else None
        if min(rgb.shape[:2]) < s.min_face_size:
            reason = f"too small: {rgb.shape[1]}x{rgb.shape[0]} < {s.min_face_size}px"
        elif det is None:
            reason = "no face detected"
        elif min(det.box[2], det.box[3]) < s.min_face_size:
            reason = f"face too small: {det.box[2]:.0f}x{det.box[3]:.0f} < {s.min_face_size}px"
        else:
            crop = aligner.align(rgb, det)
            n_faces = det.n_faces
    if reason:
        return "reject", (str(item.path), item.identity, reason)
    rel = Path("images") / f"{image_id}.png"
    write_png(crop, Path(out_dir) / rel)
    return "keep", (image_id, item.identity, str(item.path), sha256_file(item.path), str(rel), n_faces)


# The state of one worker process of the pool (set by its initializer).
_WORKER: tuple | None = None


def _init_worker(out_dir: str, settings: AlignSettings) -> None:
    import cv2

    cv2.setNumThreads(1)  # one core per worker: the pool is the parallelism
    global _WORKER
    _WORKER = (Path(out_dir), settings, settings.aligner())


def _prepare_in_worker(task: tuple[Discovered, str | None]) -> Outcome:
    out_dir, settings, aligner = _WORKER
    return prepare_picture(task[0], task[1], out_dir, settings, aligner)


def prepare_pictures(tasks, out_dir: str | Path, settings: AlignSettings, *, workers: int = 1,
                     desc: str = "prepare_dataset") -> list[Outcome]:
    """``prepare_picture`` over ``tasks`` ((Discovered, image_id) pairs), outcomes in the
    order of ``tasks`` whatever ``workers`` is. ``workers`` > 1: a pool of that many processes
    (spawned: OpenCV's and tqdm's threads make forking unsafe), one aligner each, OpenCV held
    to one thread each; 1: in this process, no pool. A script that calls this with workers > 1
    needs an ``if __name__ == "__main__":`` guard (spawned workers re-import the main module)."""
    import cv2

    tasks = list(tasks)
    settings.check()
    workers = max(1, min(int(workers), len(tasks)))
    out: list[Outcome] = []
    with tqdm(total=len(tasks), desc=desc, unit="img", mininterval=2) as bar:
        if workers == 1:
            threads = cv2.getNumThreads()
            cv2.setNumThreads(1)  # as in the workers, so that a crop never depends on `workers`
            try:
                aligner = settings.aligner()
                for item, image_id in tasks:
                    out.append(prepare_picture(item, image_id, Path(out_dir), settings, aligner))
                    bar.update()
            finally:
                cv2.setNumThreads(threads)
            return out
        # chunks: few enough round trips, small enough that the workers finish together
        chunksize = max(1, min(64, len(tasks) // (8 * workers)))
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(str(out_dir), settings)) as pool:
            for outcome in pool.map(_prepare_in_worker, tasks, chunksize=chunksize):
                out.append(outcome)
                bar.update()
    return out


# align_shard's table: one row per discovered file of the shard (its discovery index), kept or not.
SHARD_TABLE = "pictures.parquet"
SHARD_COLUMNS = ["index", "kept", "image_id", "identity", "source_path", "sha256", "path", "n_faces",
                 "reason"]


def align_shard(root: str | Path, out_dir: str | Path, *, shard: int, shards: int,
                layout: str = "auto", workers: int = 1, **settings) -> pd.DataFrame:
    """Rule ``align_shard``: the files whose discovery index i has ``i % shards == shard``,
    aligned into ``out_dir/images/`` (the paths the merged dataset uses), and their outcomes in
    ``out_dir/pictures.parquet`` (``SHARD_COLUMNS``). ``prepare_dataset(shard_dirs=...)``
    merges the shards. ``settings``: the ``AlignSettings`` fields."""
    if not 0 <= shard < shards:
        raise DataError(f"align_shard: shard {shard} is not in 0..{shards - 1} (dataset.shards = {shards})")
    out_dir = Path(out_dir)
    found = discover(root, layout)
    image_ids = assign_image_ids(found)  # ids depend on the whole dataset: every shard sees it all
    picked = list(range(shard, len(found), shards))
    log.info("shard %d of %d: %d of the %d files discovered under %s", shard, shards, len(picked),
             len(found), root)
    outcomes = prepare_pictures([(found[i], image_ids[i]) for i in picked], out_dir,
                                AlignSettings(**settings), workers=workers,
                                desc=f"align_shard {shard}/{shards}")
    records = []
    for i, (kind, row) in zip(picked, outcomes):
        if kind == "keep":
            image_id, identity, source, sha, path, n_faces = row
            records.append((i, True, image_id, identity, source, sha, path, n_faces, None))
        else:
            source, identity, reason = row
            records.append((i, False, None, identity, source, None, None, pd.NA, reason))
    table = pd.DataFrame(records, columns=SHARD_COLUMNS)
    table["index"] = table["index"].astype("int64")
    table["kept"] = table["kept"].astype(bool)
    table["n_faces"] = table["n_faces"].astype("Int64")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_parquet(table, out_dir / SHARD_TABLE)
    log.info("shard %d: kept %d, rejected %d", shard, int(table["kept"].sum()), int((~table["kept"]).sum()))
    return table


def merge_shards(shard_dirs, found: list[Discovered], out_dir: Path) -> list[Outcome]:
    """align_shard's outcomes in discovery order, their PNGs hard-linked into ``out_dir``.

    Hard links, not moves or copies: the shard folders stay intact (a move would empty them,
    and Snakemake would then rerun every align_shard job), and no picture is written twice
    (the links share the shard's file; the folders are on one file system, both under the
    dataset folder)."""
    tables = []
    for d in shard_dirs:
        path = Path(d) / SHARD_TABLE
        if not path.is_file():
            raise DataError(f"prepare_dataset: {path} is missing (rerun rule align_shard for {d})")
        tables.append(pd.read_parquet(path).assign(shard_dir=str(d)))
    table = pd.concat(tables, ignore_index=True).sort_values("index", kind="stable")
    expected = [str(d.path) for d in found]
    if table["index"].tolist() != list(range(len(found))) or table["source_path"].tolist() != expected:
        raise DataError(f"prepare_dataset: the shards {[str(d) for d in shard_dirs]} do not hold "
                        f"exactly the {len(found)} files discovered now (the dataset changed since "
                        "they were aligned, or a shard is missing); rerun the align_shard jobs "
                        "(snakemake --forcerun align_shard)")
    out: list[Outcome] = []
    linked = 0
    for r in tqdm(table.itertuples(index=False), total=len(table), desc="merge shards", unit="img",
                  mininterval=2):
        if not r.kept:
            out.append(("reject", (r.source_path, r.identity, r.reason)))
            continue
        src, dst = Path(r.shard_dir) / r.path, out_dir / r.path
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists():
            dst.unlink()
        os.link(src, dst)
        linked += 1
        out.append(("keep", (r.image_id, r.identity, r.source_path, r.sha256, r.path, r.n_faces)))
    log.info("merged %d shards: %d pictures hard-linked into %s", len(tables), linked, out_dir / "images")
    return out


def prepare_dataset(root: str | Path, out_dir: str | Path, *, layout: str = "auto",
                    pre_aligned: bool = False, image_size: int = 112, min_face_size: int = 40,
                    min_pictures: int = 8, train_fraction: float = 0.7, seed: int = 0,
                    max_pixels: int = DEFAULT_MAX_PIXELS, detect_size: int | None = None,
                    workers: int = 1, shard_dirs=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Align every picture; write ``images/``, ``manifest.parquet`` and ``rejects.parquet``.

    ``workers``: processes that align pictures side by side (outputs do not depend on it).
    ``shard_dirs``: align_shard's folders to merge instead of aligning here (the alignment
    settings are then the shards').

    ``n_faces`` (manifest): confident faces found in the picture, the largest kept (missing
    when ``pre_aligned``)."""
    out_dir = Path(out_dir)
    found = discover(root, layout)
    image_ids = assign_image_ids(found)
    log.info("discovered %d files of %d identities under %s (%d not pictures to read)",
             len(found), len({d.identity for d in found}), root,
             sum(d.problem is not None for d in found))
    if shard_dirs:
        outcomes = merge_shards(shard_dirs, found, out_dir)
    else:
        settings = AlignSettings(pre_aligned=pre_aligned, image_size=image_size,
                                 min_face_size=min_face_size, max_pixels=max_pixels,
                                 detect_size=detect_size)
        outcomes = prepare_pictures(list(zip(found, image_ids)), out_dir, settings, workers=workers)
    rows = [row for kind, row in outcomes if kind == "keep"]
    rejects = [row for kind, row in outcomes if kind == "reject"]

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


def _align_settings(d: dict) -> dict:
    """The ``AlignSettings`` fields from the config's ``dataset`` section."""
    return dict(pre_aligned=d["pre_aligned"], image_size=d["image_size"], min_face_size=d["min_face_size"],
                max_pixels=d.get("max_pixels", DEFAULT_MAX_PIXELS), detect_size=d.get("detect_size"))


def run_prepare_dataset(*, root: str | Path, manifest: str | Path, dataset_cfg: dict, seed: int,
                        workers: int = 1, shard_dirs=()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rule ``prepare_dataset``: align ``root`` into the folder of ``manifest`` (``dataset_cfg``:
    the config's ``dataset`` section) with ``workers`` processes, or merge align_shard's
    ``shard_dirs`` (``dataset.shards`` > 1)."""
    d = dataset_cfg
    return prepare_dataset(root, Path(manifest).parent, layout=d["layout"], min_pictures=d["min_pictures"],
                           train_fraction=d["train_fraction"], seed=seed, workers=workers,
                           shard_dirs=list(shard_dirs) or None, **_align_settings(d))


def run_align_shard(*, root: str | Path, out_dir: str | Path, dataset_cfg: dict, shard: int, shards: int,
                    workers: int = 1) -> pd.DataFrame:
    """Rule ``align_shard``: one shard of ``root`` into ``out_dir`` (``dataset.shards`` > 1)."""
    return align_shard(root, out_dir, shard=shard, shards=shards, layout=dataset_cfg["layout"],
                       workers=workers, **_align_settings(dataset_cfg))
