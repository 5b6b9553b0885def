"""Atomic file writers: a half-written file is never taken as done.

Every writer writes to a temporary name in the destination folder and renames it
into place (rename is atomic on POSIX), so a job killed midway leaves either the
previous file or nothing, never a truncated PNG/parquet/JSON.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from .errors import DataError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def cache_dir() -> Path:
    """cloakbench's cache outside the checkout (converted SFace weights, demo sources, the audit
    gallery, the reference check's side environment): ``$CLOAKBENCH_CACHE``, else
    ``$XDG_CACHE_HOME/cloakbench``, else ``~/.cache/cloakbench``."""
    if os.environ.get("CLOAKBENCH_CACHE"):
        return Path(os.environ["CLOAKBENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "cloakbench"


def write_state_dict(state: Any, path: str | os.PathLike) -> None:
    """``torch.save(state)`` to ``path``, atomically and byte-for-byte reproducibly.

    Saved to memory first: ``torch.save`` names the zip archive's top folder after the file it
    writes, and the atomic write's temporary file has a random name, so saving to it directly
    gave equal tensors different bytes (and sha256) from run to run. A buffer is always named
    ``archive``. (torch is imported here: this module stays importable without it.)"""
    import io as _io

    import torch

    buffer = _io.BytesIO()
    torch.save(state, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_png(image: np.ndarray, path: str | os.PathLike) -> None:
    """Write an HxWx3 uint8 RGB array as a lossless PNG."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"write_png expects HxWx3 uint8, got {image.dtype} {image.shape}")
    with atomic_path(path) as tmp:
        Image.fromarray(image, mode="RGB").save(tmp, format="PNG")


def write_npy(array: np.ndarray, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


class PictureTooLarge(DataError):
    """A picture has more pixels than allowed (``dataset.max_pixels``; decompression bombs)."""


_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


@contextlib.contextmanager
def _pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Pillow's decompression-bomb limit set to ``max_pixels`` (its warning raised as an error)."""
    if max_pixels is None:
        yield
        return
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = int(max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def _grey_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """16-bit, 32-bit integer and float grey levels -> uint8 (full range kept, rounded).

    ``I;16*`` modes are 16-bit by definition. Modes ``I`` and ``F`` carry no bit depth, so the
    range is taken from the values: floats up to 1.0 are [0, 1]; otherwise values up to 255
    are 8-bit, up to 65535 16-bit, and (``I`` only) larger ones 31-bit. Negative or non-finite
    values have no picture meaning and raise."""
    arr = arr.astype(np.float32)  # exact for 16-bit levels; half the memory of float64
    if not np.isfinite(arr).all() or (arr.size and arr.min() < 0):
        raise ValueError(f"mode {mode}: pixel values outside [0, inf) (negative or not finite); "
                         "not a photograph")
    top = float(arr.max()) if arr.size else 0.0
    if mode in _SIXTEEN_BIT_MODES:
        full = 65535.0
    elif mode == "F" and top <= 1.0:
        full = 1.0
    elif top <= 255:
        full = 255.0
    elif top <= 65535:
        full = 65535.0
    elif mode == "I":
        full = 2147483647.0
    else:
        raise ValueError(f"mode {mode}: values up to {top:g} have no known range (expected at most "
                         "1.0, 255 or 65535)")
    return np.clip(np.rint(arr * (255.0 / full)), 0, 255).astype(np.uint8)


def _to_rgb8(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        grey = _grey_to_uint8(np.asarray(im), mode)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:  # some transparency: composite over white
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            rgba = Image.alpha_composite(background, rgba)
        return np.asarray(rgba.convert("RGB"))
    try:
        return np.asarray(im.convert("RGB"))
    except ValueError as exc:
        raise ValueError(f"picture mode {mode} cannot be converted to RGB ({exc})") from None


def _header_size(path: str | os.PathLike) -> tuple[int, int]:
    """Width and height from the file header only (nothing decoded, no pixel limit)."""
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as im:
            return im.size
    finally:
        Image.MAX_IMAGE_PIXELS = old


def read_rgb(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Read a picture file as an upright HxWx3 uint8 RGB array (raises on unreadable files).

    - EXIF orientation is applied (``ImageOps.exif_transpose``): phone photos come upright.
    - 16-bit (``I;16``, ``I;16B``, ...), 32-bit ``I`` and float ``F`` grey pictures are scaled
      to 8 bits (Pillow's ``convert("RGB")`` would clip them to white); palette pictures are
      expanded; ``L``/``LA``/``P``/``RGBA`` pictures with transparency are composited over white;
      CMYK is converted by Pillow (no colour profile is applied).
    - ``max_pixels``: a picture with more pixels raises :class:`PictureTooLarge` from its header,
      before anything is decoded (Pillow's decompression-bomb limit is set to it meanwhile).
      ``None`` keeps Pillow's own limit.
    """
    with _pixel_limit(max_pixels):
        try:
            im = Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            w, h = _header_size(path)
            raise PictureTooLarge(f"too large: {w}x{h} = {w * h} pixels > dataset.max_pixels = "
                                  f"{max_pixels} (decompression-bomb guard; raise "
                                  "dataset.max_pixels to accept bigger pictures)") from None
        with im:
            im.load()
            ImageOps.exif_transpose(im, in_place=True)
            return _to_rgb8(im)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def stack_embeddings(df: pd.DataFrame) -> np.ndarray:
    """The ``embedding`` column of an embeddings table as one float32 matrix (rows in order)."""
    return np.stack(df["embedding"].to_numpy()).astype(np.float32) if len(df) else np.zeros((0, 0), np.float32)
