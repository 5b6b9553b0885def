"""Embeddings of many pictures in batches: the one function every stage uses.

``embed`` (image sets -> parquet), the cloaks' reference features (``cloaks.context``), the
feature shift of the perturb stage (``cloaks.metrics``) and the ``features`` detector of the
adaptive trainer all call :func:`embed_batches`, so batch order, dtype, device and
``no_grad`` are the same everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..images import load_batch
from .base import Extractor


def device_of(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter (or buffer); CPU for a module with none."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def embed_batches(extractor: Extractor, images: torch.Tensor | Sequence[str | Path], *,
                  batch_size: int = 64, device: str | torch.device | None = None,
                  normalize: bool = False, desc: str | None = None) -> torch.Tensor:
    """Embeddings (N x D, float32, on CPU) of ``images``, ``batch_size`` pictures at a time.

    ``images``: an Nx3xHxW tensor in [0, 1] or a list of picture files (read one batch at a
    time). Each batch goes to ``device`` (default: the extractor's) as float32.
    ``normalize``: L2-normalise each embedding (on the device, before the copy to the CPU).
    ``desc``: show a tqdm progress bar with this label.
    """
    if batch_size < 1:
        raise ValueError(f"embed_batches: batch_size must be >= 1, got {batch_size}")
    device = device_of(extractor) if device is None else torch.device(device)
    is_paths = not isinstance(images, torch.Tensor)
    n = len(images)
    starts = range(0, n, batch_size)
    if desc is not None:
        starts = tqdm(starts, desc=desc, unit="batch", mininterval=2)
    out = []
    for start in starts:
        chunk = images[start:start + batch_size]
        batch = load_batch(list(chunk)) if is_paths else chunk
        emb = extractor(batch.to(device, torch.float32)).float()
        if normalize:
            emb = F.normalize(emb, dim=1)
        out.append(emb.cpu())
    if not out:
        return torch.zeros((0, extractor.embedding_dim or 0), dtype=torch.float32)
    return torch.cat(out)
