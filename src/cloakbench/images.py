"""Conversions between uint8 RGB arrays and float tensors in [0, 1] (Bx3xHxW)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .errors import DataError
from .io import read_rgb


def to_tensor(images: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
    arr = np.stack(list(images)) if not isinstance(images, np.ndarray) else images
    if arr.ndim == 3:
        arr = arr[None]
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:  # e.g. np.asarray(PIL image): torch warns on read-only buffers
        arr = arr.copy()
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Bx3xHxW float in [0,1] -> BxHxWx3 uint8 (rounded, as a PNG stores it)."""
    arr = images.detach().clamp(0, 1).mul(255.0).round().to(torch.uint8)
    return arr.permute(0, 2, 3, 1).cpu().numpy()


def load_batch(paths: Sequence[str | Path]) -> torch.Tensor:
    return to_tensor([read_rgb(p) for p in paths])


def read_pictures(paths: Sequence[str | Path], *, reads: list[str] | None = None,
                  size: int | None = None, desc: str = "read pictures") -> torch.Tensor:
    """All pictures as one uint8 tensor Nx3xSxS (resized to ``size``, or to the first
    picture's size); every opened path is appended to ``reads`` (the adaptive trainer's
    read manifest)."""
    arrays = []
    for path in tqdm(paths, desc=desc, leave=False, mininterval=2.0):
        if reads is not None:
            reads.append(str(path))
        try:
            arr = read_rgb(path)
        except Exception as exc:
            raise DataError(f"cannot read picture {path}: {exc}") from exc
        size = size or arr.shape[0]
        if arr.shape[:2] != (size, size):
            arr = np.asarray(Image.fromarray(arr).resize((size, size), Image.BILINEAR))
        arrays.append(arr)
    if not arrays:
        return torch.zeros((0, 3, size or 1, size or 1), dtype=torch.uint8)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
