"""Helpers of the adaptive-trainer tests: a tiny trainable extractor and a tiny dataset.

Not a test module (no ``test_`` prefix); imported by tests/unit/adaptive/ and others.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn

from cloakbench.extractors.base import Extractor
from cloakbench.extractors.registry import EXTRACTORS, register_extractor
from cloakbench.io import write_parquet, write_png

SIZE = 32


class TinyTrainable(Extractor):
    """Two conv blocks with batch norm at 32x32 -> 16-d: trainable in well under a second."""

    type_name = "tiny_adaptive_test"
    family = "test"
    input_size = SIZE
    embedding_dim = 16

    def __init__(self, name: str = "tiny", spec: dict | None = None):
        spec = dict(spec or {"type": self.type_name})
        super().__init__(name, spec)
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, self.embedding_dim))
        g = torch.Generator().manual_seed(int(spec.get("seed", 0)))
        with torch.no_grad():
            for p in self.parameters():
                if p.dim() > 1:
                    p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
                else:  # biases (BN weights are reset below)
                    p.zero_()
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.fill_(1.0)
        self.eval()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


if TinyTrainable.type_name not in EXTRACTORS:
    register_extractor(TinyTrainable)
else:  # re-imported under another module name: reuse the registered class
    TinyTrainable = EXTRACTORS[TinyTrainable.type_name]  # type: ignore[misc]


def identity_image(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    noise = rng.normal(0, 10, base.shape)
    shift = rng.integers(-2, 3, size=2)
    return np.clip(np.roll(base, tuple(shift), axis=(0, 1)) + noise, 0, 255).astype(np.uint8)


def pattern(kind: str, size: int = SIZE) -> np.ndarray:
    """An obvious 'cloak': a visible additive pattern (float, in 0-255 units)."""
    yy, xx = np.mgrid[0:size, 0:size]
    if kind == "checker":
        p = ((yy + xx) % 2) * 2 - 1
    elif kind == "stripes":
        p = (xx % 4 < 2) * 2 - 1
    else:
        raise ValueError(kind)
    return 40.0 * p[..., None].astype(float)


def apply_pattern(rgb: np.ndarray, kind: str) -> np.ndarray:
    return np.clip(rgb.astype(float) + pattern(kind, rgb.shape[0]), 0, 255).astype(np.uint8)


def make_dataset(root: Path, *, n_identities: int = 6, pictures: int = 8, n_train: int = 6,
                 roles: dict[str, str] | None = None, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """A pre-aligned dataset under ``root/dataset``: (manifest, roles, dataset_dir).

    Default roles: first two identities protected, next two public, the rest other.
    """
    rng = np.random.default_rng(seed)
    dataset_dir = root / "dataset"
    rows = []
    for i in range(n_identities):
        ident = f"id_{i}"
        small = rng.integers(0, 256, size=(4, 4, 3)).astype(np.uint8)
        base = np.asarray(Image.fromarray(small).resize((SIZE, SIZE), Image.BICUBIC)).astype(float)
        for k in range(pictures):
            rel = f"images/{ident}/{k:02d}.png"
            write_png(identity_image(rng, base), dataset_dir / rel)
            rows.append({"image_id": f"{ident}/{k:02d}", "identity": ident, "source_path": rel,
                         "sha256": "", "split": "train" if k < n_train else "test", "path": rel})
    manifest = pd.DataFrame(rows)
    if roles is None:
        roles = {f"id_{i}": "protected" if i < 2 else "public" if i < 4 else "other" for i in range(n_identities)}
    role_df = pd.DataFrame({"identity": list(roles), "role": list(roles.values())})
    write_parquet(manifest, dataset_dir / "manifest.parquet")
    return manifest, role_df, dataset_dir


def cloak_subset(manifest: pd.DataFrame, roles: pd.DataFrame, dataset_dir: Path, out_dir: Path,
                 subset: str, kind: str) -> pd.DataFrame:
    """Apply the visible pattern to a subset's training pictures; (image_id, identity, path) table."""
    ids = set(roles.loc[roles["role"] == subset, "identity"])
    sel = manifest[manifest["identity"].isin(ids) & (manifest["split"] == "train")]
    rows = []
    for image_id, ident, rel in zip(sel["image_id"], sel["identity"], sel["path"]):
        rgb = np.asarray(Image.open(dataset_dir / rel).convert("RGB"))
        dest = out_dir / "images" / f"{image_id}.png"
        write_png(apply_pattern(rgb, kind), dest)
        rows.append({"image_id": image_id, "identity": ident, "path": str(dest)})
    return pd.DataFrame(rows)
