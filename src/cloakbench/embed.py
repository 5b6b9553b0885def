"""embed: embeddings of one image set by one extractor, stored once and reused."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .extractors.base import Extractor
from .extractors.embedding import embed_batches
from .extractors.registry import build_extractor
from .io import write_parquet
from .workflow import resolve_device

log = logging.getLogger(__name__)


def embed_paths(model: Extractor, paths: Sequence[str | Path], *, batch_size: int = 64,
                device: str = "cpu", desc: str = "embed") -> np.ndarray:
    """Raw embeddings (N x D float32) of the pictures at ``paths``."""
    return embed_batches(model, list(paths), batch_size=batch_size, device=device,
                         desc=desc).numpy()


def embed_table(model: Extractor, table: pd.DataFrame, out_path: str | Path, *, batch_size: int = 64,
                device: str = "cpu") -> pd.DataFrame:
    """Embed the pictures of ``table`` (columns image_id, path) and write a parquet with
    columns image_id and embedding (list of floats)."""
    start = time.perf_counter()
    emb = embed_paths(model, list(table["path"]), batch_size=batch_size, device=device,
                      desc=f"embed {model.name}")
    df = pd.DataFrame({"image_id": table["image_id"].to_numpy(), "embedding": list(emb.astype(np.float32))})
    write_parquet(df, out_path)
    log.info("embedded %d pictures with %s (dim %d) in %.1f s", len(df), model.name,
             emb.shape[1] if emb.ndim == 2 else 0, time.perf_counter() - start)
    return df


def read_embeddings(path: str | Path) -> pd.DataFrame:
    return pd.read_parquet(path)


def imageset_table(table: pd.DataFrame, imageset: str, images: str | Path) -> pd.DataFrame:
    """The pictures (image_id, path) of one image set: ``clean`` = the whole manifest (``table``;
    paths made absolute from the dataset's ``images`` folder), ``scraped-<cloak>`` = the rows of
    that cloak's scrape table (``table``) in that image set."""
    if imageset == "clean":
        root = Path(images).parent
        return table.assign(path=[str(root / q) for q in table["path"]])
    return table[table["imageset"] == imageset]


def run_embed(*, name: str, spec: dict, checkpoint: str | Path | None, table: str | Path, images: str | Path,
              imageset: str, out: str | Path, batch_size: int, device: str) -> pd.DataFrame:
    """Rule ``embed``: embed one image set with extractor ``name`` (``checkpoint``: only for
    extractors trained in the pipeline) -> ``out``."""
    device = resolve_device(device)
    pictures = imageset_table(pd.read_parquet(table), imageset, images)
    model = build_extractor(name, spec, checkpoint=checkpoint, device=device)
    return embed_table(model, pictures, out, batch_size=batch_size, device=device)
