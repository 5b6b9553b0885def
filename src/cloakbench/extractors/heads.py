"""Margin-based classification heads used to train the in-pipeline recognisers.

Why margin heads: modern face recognisers (SphereFace, CosFace, ArcFace) are trained as
identity classifiers over normalised embeddings and normalised class centres, with a margin
that pulls each picture closer to its own centre than plain softmax would. The head is thrown
away after training; only the backbone's embeddings are used, compared by cosine or Euclidean
distance, which is why the margin matters: it shapes that embedding geometry.

* :class:`CosFaceHead` (Wang et al. 2018, "large margin cosine loss"):
  logit_y = s * (cos(theta_y) - m). Robust on small, noisy data: the default.
* :class:`ArcFaceHead` (Deng et al. 2019, "additive angular margin"):
  logit_y = s * cos(theta_y + m), with the usual fallback when theta_y + m > pi so the
  logit stays monotonic in theta.

Both return the margin logits for the loss; ``cosine`` gives the margin-free logits used to
report training accuracy.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MarginHead(nn.Module):
    """Normalised class centres W (num_classes x dim); subclasses apply the margin."""

    def __init__(self, embedding_dim: int, num_classes: int, *, scale: float, margin: float,
                 generator: torch.Generator | None = None):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a margin head needs at least 2 identities, got {num_classes}")
        self.scale = float(scale)
        self.margin = float(margin)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.normal_(self.weight, 0.0, 0.01, generator=generator)

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(embeddings, dim=1), F.normalize(self.weight, dim=1))

    def margin_logits(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (margin logits for the loss, plain scaled cosine logits for accuracy)."""
        cos = self.cosine(embeddings)
        return self.margin_logits(cos, labels), cos * self.scale


class CosFaceHead(MarginHead):
    def margin_logits(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(labels, cos.shape[1]).to(cos.dtype)
        return self.scale * (cos - self.margin * onehot)


class ArcFaceHead(MarginHead):
    def margin_logits(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos_m, sin_m = math.cos(self.margin), math.sin(self.margin)
        th = math.cos(math.pi - self.margin)
        mm = math.sin(math.pi - self.margin) * self.margin
        sin = torch.sqrt((1.0 - cos * cos).clamp(min=1e-7))
        phi = cos * cos_m - sin * sin_m                     # cos(theta + m)
        phi = torch.where(cos > th, phi, cos - mm)          # keep monotonic past pi - m
        onehot = F.one_hot(labels, cos.shape[1]).to(cos.dtype)
        return self.scale * (onehot * phi + (1.0 - onehot) * cos)


HEADS: dict[str, type[MarginHead]] = {"cosface": CosFaceHead, "arcface": ArcFaceHead}
