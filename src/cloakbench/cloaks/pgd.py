"""Untargeted feature-space PGD cloak: the simple baseline."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from .base import Cloak, Param
from .registry import register_cloak


@register_cloak
class PGDCloak(Cloak):
    """Untargeted L-inf PGD in feature space (Madry et al., ICLR 2018, applied to embeddings).

    Threat model: the user knows the extractors in the ensemble (white box) and perturbs each
    picture independently to push its L2-normalised embedding away from the clean one, i.e.
    maximise ``mean_models (1 - cos(f(x'), f(x)))``. Budget: ``||x' - x||_inf <= eps`` on
    [0, 1] pixels, ``steps`` signed-gradient steps of ``step_size``, random start in the
    eps-ball when ``random_start`` (one draw for the whole batch from the cloak's seed).
    After a call, ``history["loss"]`` holds the per-step batch mean of the loss maximised.
    """

    type_name: ClassVar[str] = "pgd"
    params = (
        Param("eps", float, 8 / 255, gt=0, le=1, doc="L-inf budget on [0, 1] pixels"),
        Param("steps", int, 10, ge=1, doc="signed-gradient steps"),
        Param("step_size", float, 2 / 255, gt=0, le=1, doc="size of each step"),
        Param("random_start", bool, True, doc="start from uniform noise in the eps-ball"),
    )

    def _loss(self, x_adv: torch.Tensor, clean_feats: list[torch.Tensor]) -> torch.Tensor:
        total = x_adv.new_zeros(x_adv.shape[0])
        for model, ref in zip(self.extractors, clean_feats):
            total = total + (1 - (F.normalize(model(x_adv), dim=1) * ref).sum(1))
        return total / len(self.extractors)

    def perturb(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            clean = [F.normalize(m(x), dim=1) for m in self.extractors]
        if self.random_start:
            noise = torch.rand(x.shape, generator=self.generator()).to(self.device)
            x_adv = (x + (noise * 2 - 1) * self.eps).clamp(0, 1)
        else:
            x_adv = x.clone()
        hist = self.new_history(self.steps, "loss")
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            loss = self._loss(x_adv, clean)
            (grad,) = torch.autograd.grad(loss.sum(), x_adv)
            hist.add(loss=loss)
            hist.advance()
            with torch.no_grad():
                x_adv = x_adv + self.step_size * grad.sign()
                x_adv = torch.min(torch.max(x_adv, x - self.eps), x + self.eps).clamp(0, 1)
        return x_adv.detach()
