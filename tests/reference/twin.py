"""Torch twins of the Keras models that tf_side.py hands to the original Fawkes code.

A twin is a cloakbench :class:`~cloakbench.extractors.base.Extractor` (Bx3xHxW RGB in [0, 1] in,
embedding out) that computes exactly the function the Keras model computes on the input the
original feeds it, loaded from the very weight arrays the Keras model held (saved by tf_side.py).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

import arch
from cloakbench.extractors.base import Extractor


class Twin(Extractor):
    """The arch.py network. ``input_kind``: what the original feeds its Keras model.

    ``raw01`` (Fawkes 1.0): RGB in [0, 1], scaled to [-1, 1] by the model.
    ``imagenet`` (Fawkes 0.0.8): BGR on 0..255 minus the ImageNet means, divided by 127.5.
    """

    type_name = "reference_twin"
    family = "test"
    input_size = arch.SIZE
    embedding_dim = arch.EMBED

    def __init__(self, name: str, weights: Sequence[np.ndarray], input_kind: str):
        if input_kind == "raw01":
            self.mean, self.std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
        elif input_kind == "imagenet":  # RGB order here; embed() flips to BGR
            self.mean = tuple(m / 255.0 for m in reversed(arch.IMAGENET_MEAN_BGR))
            self.std = (127.5 / 255.0,) * 3
        else:
            raise ValueError(f"unknown input kind {input_kind!r}")
        super().__init__(name, {"type": self.type_name})
        self.bgr = input_kind == "imagenet"
        layers: list[nn.Module] = []
        cin = 3
        for k, s, cout in arch.CONVS:
            layers += [nn.Conv2d(cin, cout, k, stride=s, bias=False), nn.Tanh()]
            cin = cout
        layers.append(nn.AvgPool2d(arch.POOL))
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(arch.FLAT, arch.EMBED, bias=False)
        if len(weights) != len(arch.CONVS) + 1:
            raise ValueError(f"expected {len(arch.CONVS) + 1} weight arrays, got {len(weights)}")
        convs = [m for m in self.body if isinstance(m, nn.Conv2d)]
        with torch.no_grad():
            for conv, w in zip(convs, weights[:-1]):  # Keras (kh, kw, in, out) -> (out, in, kh, kw)
                conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))))
            self.fc.weight.copy_(torch.from_numpy(np.ascontiguousarray(weights[-1].T)))
        self.eval().requires_grad_(False)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            x = x.flip(1)
        h = self.body(x)
        # Keras flattens channels last: (height, width, channel) order.
        return self.fc(h.permute(0, 2, 3, 1).flatten(1))


def twins_from(result, case: str, n_models: int, input_kind: str) -> list[Twin]:
    """The twins of a case's Keras models, from tf_side.py's ``<case>/weights<j>_<i>`` arrays."""
    twins = []
    for j in range(n_models):
        weights = [result[f"{case}/weights{j}_{i}"] for i in range(len(arch.CONVS) + 1)]
        twins.append(Twin(f"{case}_model{j}", weights, input_kind))
    return twins
