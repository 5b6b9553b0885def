"""Conversions between uint8 RGB arrays and float tensors in [0, 1] (Bx3xHxW)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .io import read_rgb


def to_tensor(images: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
    arr = np.stack(list(images)) if not isinstance(images, np.ndarray) else images
    if arr.ndim == 3:
        arr = arr[None]
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Bx3xHxW float in [0,1] -> BxHxWx3 uint8 (rounded, as a PNG stores it)."""
    arr = images.detach().clamp(0, 1).mul(255.0).round().to(torch.uint8)
    return arr.permute(0, 2, 3, 1).cpu().numpy()


def load_batch(paths: Sequence[str | Path]) -> torch.Tensor:
    return to_tensor([read_rgb(p) for p in paths])
