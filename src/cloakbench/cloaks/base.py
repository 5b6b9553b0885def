"""Common base of every cloak (in the style of torchattacks / ART).

A cloak is built from an ensemble of :class:`~cloakbench.extractors.Extractor`
(the models its author knew), hyperparameters with defaults in the constructor
(validated, with a clear error), and a seed. ``__call__`` takes a batch of clean
pictures Bx3xHxW in [0, 1] and returns the cloaked batch, same shape and range.

Cloaks that need more than the pictures (Fawkes v0.3 picks a target identity
from reference features) receive it through :meth:`Cloak.prepare`, called once
per protected user before ``__call__``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import torch

from ..errors import ConfigError
from ..extractors.base import Extractor


class Cloak:
    type_name: ClassVar[str] = ""
    # Whether every extractor of the ensemble must be differentiable.
    needs_gradients: ClassVar[bool] = True

    def __init__(self, extractors: Sequence[Extractor], *, seed: int = 0,
                 device: str | torch.device = "cpu", **_: Any):
        self.extractors = list(extractors)
        if self.needs_gradients:
            for ex in self.extractors:
                if not ex.differentiable:
                    raise ConfigError(
                        f"cloak '{self.type_name}': extractor '{ex.name}' ({ex.type_name}) is not "
                        "differentiable and cannot be in a gradient-based cloak's ensemble; use it "
                        "only as a recogniser (extractors list), not in cloaks.*.ensemble")
        if self.needs_gradients and not self.extractors:
            raise ConfigError(f"cloak '{self.type_name}': the ensemble is empty")
        self.seed = int(seed)
        self.device = torch.device(device)
        for ex in self.extractors:
            ex.eval().requires_grad_(False)

    def prepare(self, context: dict[str, Any]) -> None:
        """Hook for cloaks that need reference data (default: nothing)."""

    def generator(self, offset: int = 0) -> torch.Generator:
        g = torch.Generator(device="cpu")
        g.manual_seed(self.seed + offset)
        return g

    def hyperparameters(self) -> dict[str, Any]:
        """The settings recorded next to every result of this cloak."""
        return {}

    def __call__(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def check(condition: bool, cloak: str, message: str) -> None:
    """Validate a hyperparameter, raising a ConfigError naming the cloak."""
    if not condition:
        raise ConfigError(f"cloak '{cloak}': {message}")
