"""Generation 1 of the in-pipeline recognisers: a small, early (2015-2018 style) CNN.

Why this shape: it stands for the first recognisers a cloak may meet: a plain VGG-like stack of
4 conv blocks (conv3x3-BN-ReLU-maxpool), a flattened feature map and a 128-d linear embedding,
trained with a margin loss and weak augmentation (horizontal flips only).

It works at 64x64 (``input_size``; ``preprocess`` resizes the 112x112 crops), which keeps
training on ~800 pictures well under a minute on 2 CPU cores; at that size a face crop still
holds the identity cues such a model can use.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .registry import register_extractor
from .trained import TrainedExtractor


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


@register_extractor
class SmallCNN(TrainedExtractor):
    """4 conv blocks (24-48-96-128 channels) at 64x64 -> 128-d embedding."""

    type_name = "small_cnn"
    family = "small CNN (in-pipeline)"
    input_size = 64
    embedding_dim = 128
    augmentation = "flip"
    widths = (24, 48, 96, 128)

    def __init__(self, name: str = "small_cnn", spec: dict[str, Any] | None = None):
        super().__init__(name, spec)
        chans = (3,) + tuple(self.widths)
        self.features = nn.Sequential(*[_block(a, b) for a, b in zip(chans[:-1], chans[1:])])
        side = self.input_size // 2 ** len(self.widths)
        self.head = nn.Sequential(nn.Flatten(),
                                  nn.Linear(self.widths[-1] * side * side, self.embedding_dim),
                                  nn.BatchNorm1d(self.embedding_dim))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
