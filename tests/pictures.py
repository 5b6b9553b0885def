"""Synthetic pictures for the data tests (numpy; the torch ones are in cloaks_testlib)."""

import numpy as np
from PIL import Image


def smooth_image(rng: np.random.Generator, size: int = 112) -> np.ndarray:
    """A smooth random RGB picture (low-frequency colour blobs), uint8 HxWx3."""
    small = rng.integers(0, 256, size=(6, 6, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.BICUBIC))
