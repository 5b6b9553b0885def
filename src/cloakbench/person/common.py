"""What ``cloakbench cloak`` and ``cloakbench audit`` share: the configuration, the photo
listing and the face intake (the pipeline's own detector and alignment)."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..data.align import FaceAligner
from ..errors import ConfigError, DataError
from ..io import read_rgb
from ..plan import Plan, build_plan

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")
# Suffixes the official tools append to a cloaked photo's stem (Fawkes: _cloaked, LowKey: _attacked).
CLOAKED_SUFFIXES = ("_cloaked", "_attacked")


def repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def schema_path(configfile: Path) -> Path:
    """config/schema.yaml of this checkout, else the one beside the config file."""
    for cand in (repo_root() / "config" / "schema.yaml", configfile.parent / "schema.yaml"):
        if cand.is_file():
            return cand
    raise ConfigError(f"cannot find the configuration schema (config/schema.yaml) next to {configfile} "
                      f"or in {repo_root() / 'config'}")


def load_plan(configfile: str | os.PathLike | None) -> Plan:
    """The validated plan of ``configfile`` (default: config/config.yaml in the working
    directory, else this checkout's)."""
    if configfile is None:
        cands = [Path("config/config.yaml"), repo_root() / "config" / "config.yaml"]
        found = [c for c in cands if c.is_file()]
        if not found:
            raise ConfigError("no configuration: pass --configfile (config/config.yaml not found in "
                              f"{Path.cwd()} or {repo_root()})")
        configfile = found[0]
    configfile = Path(configfile)
    if not configfile.is_file():
        raise ConfigError(f"--configfile {configfile}: no such file")
    with open(configfile) as fh:
        config = yaml.safe_load(fh) or {}
    return build_plan(config, schema_path(configfile), base_dir=Path.cwd())


def list_photos(folder: str | os.PathLike) -> list[Path]:
    """Every regular, non-hidden file of ``folder`` (not recursive), sorted by name; files
    that are not photos are returned too, so the caller lists them with a reason."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of photos")
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def person_stem(path: Path) -> str:
    """The clean photo's stem a cloaked file belongs to (``x_cloaked.png`` / ``x_attacked.png`` -> ``x``)."""
    stem = path.stem
    for suffix in CLOAKED_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


@dataclass
class Face:
    """One photo's main face: the full-resolution photo, its aligned crop and the similarity
    transform ``matrix`` (2x3, photo -> crop coordinates) the crop was taken with."""

    photo: np.ndarray
    crop: np.ndarray
    matrix: np.ndarray
    landmarks: np.ndarray
    n_faces: int


class FaceIntake:
    """The pipeline's intake for single photos: ``io.read_rgb`` (EXIF, 16-bit, ...), YuNet
    detection and ArcFace alignment (``data.align.FaceAligner``)."""

    def __init__(self, size: int = 112, detect_size: int = 1024, max_pixels: int | None = None):
        self.aligner = FaceAligner(size=size, detect_size=detect_size)
        self.size = size
        self.max_pixels = max_pixels

    @classmethod
    def from_plan(cls, plan: Plan) -> "FaceIntake":
        ds = plan["dataset"]
        return cls(size=int(ds["image_size"]), detect_size=int(ds.get("detect_size", 1024)),
                   max_pixels=ds.get("max_pixels"))

    def read(self, path: Path) -> np.ndarray:
        try:
            return read_rgb(path, max_pixels=self.max_pixels)
        except Exception as exc:  # unreadable: the caller lists the reason
            raise DataError(f"unreadable: {type(exc).__name__}: {exc}") from None

    def face(self, photo: np.ndarray, landmarks: np.ndarray | None = None) -> Face:
        """The main face (DataError when none); ``landmarks``: reuse these instead of detecting."""
        n_faces = 1
        if landmarks is None:
            det = self.aligner.detect(photo)
            if det is None:
                raise DataError("no face found")
            landmarks, n_faces = det.landmarks, det.n_faces
        from ..data.align import Detection
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            crop = self.aligner.align(photo, Detection(box=np.zeros(4, np.float32), landmarks=landmarks,
                                                       score=1.0, n_faces=n_faces))
        base = self.size if self.size % 112 == 0 else 112
        with warnings.catch_warnings():  # scikit-image's deprecation notice inside insightface
            warnings.simplefilter("ignore", FutureWarning)
            from insightface.utils import face_align
            m = face_align.estimate_norm(landmarks, base).astype(np.float64)
        m *= self.size / base  # crops of other sizes are resized from the base size
        return Face(photo=photo, crop=crop, matrix=m, landmarks=np.asarray(landmarks), n_faces=n_faces)


def table_text(rows: "list[dict[str, Any]] | pd.DataFrame", columns: list[str]) -> str:
    """A plain terminal table (pandas' to_string) of ``rows`` restricted to ``columns``."""
    import pandas as pd

    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    if not len(df):
        return "(no rows)"
    cols = [c for c in columns if c in df.columns]
    return df[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="-")
