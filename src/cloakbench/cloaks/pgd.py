"""Untargeted feature-space PGD cloak: the simple baseline."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..extractors.base import Extractor
from .base import Cloak, check
from .registry import register_cloak


@register_cloak
class PGDCloak(Cloak):
    """Untargeted L-inf PGD in feature space (Madry et al., ICLR 2018, applied to embeddings).

    Threat model: the user knows the extractors in the ensemble (white box) and perturbs each
    picture independently to push its L2-normalised embedding away from the clean one, i.e.
    maximise ``mean_models (1 - cos(f(x'), f(x)))``. Budget: ``||x' - x||_inf <= eps`` on
    [0, 1] pixels, ``steps`` signed-gradient steps of ``step_size``, random start in the
    eps-ball when ``random_start``.
    """

    type_name = "pgd"

    def __init__(self, extractors: Sequence[Extractor], *, eps: float = 8 / 255, steps: int = 10,
                 step_size: float = 2 / 255, random_start: bool = True, seed: int = 0,
                 device: str | torch.device = "cpu", **kwargs: Any):
        super().__init__(extractors, seed=seed, device=device)
        check(not kwargs, "pgd", f"unknown parameter(s) {sorted(kwargs)}; known: eps, steps, "
              "step_size, random_start")
        check(0 < eps <= 1, "pgd", f"eps must be in (0, 1], got {eps}")
        check(int(steps) == steps and steps >= 1, "pgd", f"steps must be a positive integer, got {steps}")
        check(0 < step_size <= 1, "pgd", f"step_size must be in (0, 1], got {step_size}")
        self.eps, self.steps, self.step_size = float(eps), int(steps), float(step_size)
        self.random_start = bool(random_start)
        self.loss_history: list[float] = []

    def hyperparameters(self) -> dict[str, Any]:
        return {"eps": self.eps, "steps": self.steps, "step_size": self.step_size,
                "random_start": self.random_start, "ensemble": [e.name for e in self.extractors]}

    def _loss(self, x_adv: torch.Tensor, clean_feats: list[torch.Tensor]) -> torch.Tensor:
        total = x_adv.new_zeros(x_adv.shape[0])
        for model, ref in zip(self.extractors, clean_feats):
            total = total + (1 - (F.normalize(model(x_adv), dim=1) * ref).sum(1))
        return total / len(self.extractors)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.detach().to(self.device)
        with torch.no_grad():
            clean = [F.normalize(m(x), dim=1) for m in self.extractors]
        if self.random_start:
            noise = torch.rand(x.shape, generator=self.generator()).to(self.device)
            x_adv = (x + (noise * 2 - 1) * self.eps).clamp(0, 1)
        else:
            x_adv = x.clone()
        self.loss_history = []
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            loss = self._loss(x_adv, clean)
            (grad,) = torch.autograd.grad(loss.sum(), x_adv)
            self.loss_history.append(float(loss.detach().mean()))
            with torch.no_grad():
                x_adv = x_adv + self.step_size * grad.sign()
                x_adv = torch.min(torch.max(x_adv, x - self.eps), x + self.eps).clamp(0, 1)
        return x_adv.detach()
