"""Generation 2 of the in-pipeline recognisers: a ResNet-18-style face model (2019+ style).

Why this shape: real progress after the early CNNs came from deeper residual networks in the
"IR" arrangement of ArcFace (BN-conv-BN-PReLU-conv-BN blocks, a BN-FC-BN embedding head;
ArcFace's dropout is left out because it would draw from the global RNG), trained with margin losses and stronger augmentation. This is that recipe at a scale a
2-core CPU trains in a few minutes: ResNet-18 depth ([2, 2, 2, 2] basic blocks) with narrow
widths (24-48-96-192) at 64x64 input (the 112x112 crops are resized in ``preprocess``; about
3.3x the FLOPs and 4.6x the parameters of generation 1 at the same resolution), and
flips + random resized crops + colour jitter during training (``augmentation = "strong"``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .registry import register_extractor
from .trained import TrainedExtractor


class IRBlock(nn.Module):
    """ArcFace-style improved residual block: BN-conv-BN-PReLU-conv-BN (+ projection)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.PReLU(cout),
            nn.Conv2d(cout, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))
        if stride == 1 and cin == cout:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


@register_extractor
class ResNetFace(TrainedExtractor):
    """IR-ResNet-18-like backbone (narrow) at 64x64 -> 128-d embedding."""

    type_name = "resnet_face"
    family = "ResNet-18 IR (in-pipeline)"
    input_size = 64
    embedding_dim = 128
    augmentation = "strong"
    widths = (24, 48, 96, 192)
    depths = (2, 2, 2, 2)

    def __init__(self, name: str = "resnet_face", spec: dict[str, Any] | None = None):
        super().__init__(name, spec)
        w0 = self.widths[0]
        # Stride-2 stem 64 -> 32, then stages at 32, 16, 8, 4 (first block of stages 2-4 strides).
        self.stem = nn.Sequential(nn.Conv2d(3, w0, 3, 2, 1, bias=False), nn.BatchNorm2d(w0),
                                  nn.PReLU(w0))
        blocks = []
        cin = w0
        for i, (width, depth) in enumerate(zip(self.widths, self.depths)):
            for j in range(depth):
                stride = 2 if (j == 0 and i > 0) else 1
                blocks.append(IRBlock(cin, width, stride))
                cin = width
        self.body = nn.Sequential(*blocks)
        side = self.input_size // 2 // 2 ** (len(self.widths) - 1)
        self.head = nn.Sequential(nn.BatchNorm2d(cin), nn.Flatten(),
                                  nn.Linear(cin * side * side, self.embedding_dim),
                                  nn.BatchNorm1d(self.embedding_dim))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)))
