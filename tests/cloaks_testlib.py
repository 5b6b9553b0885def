"""Helpers of the cloak tests: a tiny differentiable extractor and smooth pictures.

Not a test module (no ``test_`` prefix); imported by tests/unit/cloaks/ and others.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cloakbench.extractors.base import Extractor


class TinyNet(Extractor):
    """A random tanh conv net without biases, 128-d: cheap, differentiable, deterministic.

    No biases and a zero-mean activation keep different pictures' features apart (a
    random net with biases maps every picture to nearly the same direction, and no cloak
    could move it), so the tests exercise the cloaks as on a real recogniser.
    """

    type_name = "tiny_test"
    family = "test"
    input_size = 112
    embedding_dim = 128

    def __init__(self, name: str = "tiny", seed: int = 0, width: int = 16, gain: float = 2.0):
        super().__init__(name, {"type": self.type_name})
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 5, stride=2, padding=2, bias=False), nn.Tanh(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.Tanh(),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1, bias=False), nn.Tanh(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(4 * width * 16, self.embedding_dim, bias=False))
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(gain * torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
        self.eval().requires_grad_(False)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def smooth_images(n: int = 4, size: int = 112, seed: int = 0) -> torch.Tensor:
    """n smooth random RGB pictures in [0, 1] (bicubic-upsampled 6x6 noise plus a ramp)."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n, 3, 6, 6, generator=g)
    big = F.interpolate(small, size=(size, size), mode="bicubic", align_corners=False)
    ramp = torch.linspace(-0.1, 0.1, size).view(1, 1, 1, size)
    return (0.15 + 0.7 * big + ramp).clamp(0, 1)

