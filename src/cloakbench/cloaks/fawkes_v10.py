"""Fawkes v1.0 (March to April 2021): the untargeted cloak of the Fawkes software 1.0.

Paper: S. Shan, E. Wenger, J. Zhang, H. Li, H. Zheng, B. Y. Zhao, "Fawkes: Protecting
Privacy against Unauthorized Deep Learning Models", USENIX Security 2020; the 1.0
software (github.com/Shawn-Shan/fawkes, TensorFlow 2.4) changed the objective to an
untargeted one against new extractors. This module reimplements that algorithm in torch
against any ensemble of our extractors; nothing of the original code is used.

Threat model: as Fawkes v0.3 (cloaked pictures poison a tracker's training set), but the
user no longer picks a target identity: each picture's features are pushed away from
where they were, for the extractors the user knows (the ensemble).

Algorithm (defaults follow the original; every difference is stated where it occurs):
- Cloaked picture x' parametrised in tanh space; every pixel change clipped to
  +-15/255 (``max_change``) before it reaches the models and the budget.
- Maximise ``sum_models ||n(f(x')) - n(f(x))||^2 / ||n(f(x))||`` (n = L2 normalisation)
  under a DSSIM penalty: the loss minimised is
  ``penalty * max(DSSIM(x, x') - rho, 0)^2 - w * feature_term`` with penalty 1e6 and
  a per-picture weight w that doubles while DSSIM <= 0.9 rho (up to 129, then resets to
  1), halves while DSSIM >= 1.1 rho (down to 1/129), and resets to 1 when the DSSIM
  crosses from one side to the other or lands inside the band.
- Adadelta (TensorFlow 2 Keras defaults rho 0.95, eps 1e-7). Start from uniform noise
  +-1e-4 in tanh space; after the first update one extra signed step of 0.01 against
  the gradient, after which the optimiser starts fresh (the original re-created its
  variable there, which gave it new Adadelta accumulators).
- Returned picture: among the steps whose DSSIM <= 1.1 rho, the one with the largest
  feature term; with ``save_last_on_failed`` (on, as the original) the last step's
  picture replaces it when the best term stayed < 0.3, the last DSSIM is < 0.015 and the
  last term is larger.

Budget: L-inf <= 15/255 always; DSSIM <= 1.1 rho for the best-step picture (the last
step's picture, when ``save_last_on_failed`` takes it, only has DSSIM < 0.015).

Modes (rho, steps, lr, number of ensemble models): low (0.004, 40, 25, 1),
mid (0.012, 75, 20, 2), high (0.017, 150, 15, 2, the default here). The original's modes
fixed its own extractors; here ``n_models`` must equal the configured ensemble's size, so
a run with a different number of models says so in its record (set ``n_models``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .base import CUDA_GRAPH, FROM_MODE, Cloak, Param
from .metrics import dssim
from .optim import adadelta_update, from_tanh_space, to_tanh_space
from .registry import register_cloak

MODES: dict[str, dict[str, Any]] = {
    "low": {"rho": 0.004, "steps": 40, "lr": 25.0, "n_models": 1},
    "mid": {"rho": 0.012, "steps": 75, "lr": 20.0, "n_models": 2},
    "high": {"rho": 0.017, "steps": 150, "lr": 15.0, "n_models": 2},
}

# Constants of the original's adaptive weight and last-step rescue (not configurable there).
WEIGHT_LIMIT = 129.0
RESCUE_MAX_BEST = 0.3
RESCUE_MAX_DSSIM = 0.015


@register_cloak
class FawkesV10(Cloak):
    """Fawkes v1.0: untargeted feature-space cloak, DSSIM budget, L-inf clip (module docstring).

    Parameters: see ``params`` (``rho``, ``steps``, ``lr``, ``n_models`` left out or ``null``
    come from ``mode``; ``n_models`` must equal the configured ensemble's size).
    After a call, ``history`` holds per-step batch means of ``loss``, ``feature`` (the
    term maximised), ``dssim`` and ``weight`` (entry i = the picture after i updates).
    ``loss_history`` is the loss minimised (DSSIM penalty - weight x feature term); the
    weight changes every step, so ``history["feature"]`` shows the progress better.
    """

    type_name: ClassVar[str] = "fawkes_v10"
    # cloak(images, start=...): the initial tanh-space modifier (see ``perturb``), e.g. the
    # start the official Fawkes drew, to compare the two on equal terms (tests/reference).
    accepts_start: ClassVar[bool] = True
    modes = MODES
    params = (
        Param("mode", str, "high", choices=tuple(MODES), deviation=False,
              doc="preset of rho, steps, lr and n_models"),
        Param("rho", float, FROM_MODE, gt=0, lt=1, doc="DSSIM budget"),
        Param("steps", int, FROM_MODE, ge=1, doc="optimisation steps"),
        Param("lr", float, FROM_MODE, gt=0, doc="Adadelta learning rate"),
        Param("n_models", int, FROM_MODE, ge=1,
              doc="ensemble size the mode expects; must equal the configured ensemble's"),
        Param("penalty", float, 1e6, ge=0, doc="weight of the squared DSSIM excess"),
        Param("max_change", float, 15.0 / 255.0, gt=0, le=1,
              doc="per-pixel change limit on the [0, 1] scale"),
        Param("init_noise", float, 1e-4, ge=0, doc="half-width of the uniform start in tanh space"),
        Param("signed_step", float, 0.01, ge=0,
              doc="size of the extra signed step after the first update"),
        Param("adadelta_rho", float, 0.95, ge=0, lt=1, doc="TensorFlow 2's Adadelta rho"),
        Param("adadelta_eps", float, 1e-7, gt=0, doc="TensorFlow 2's Adadelta epsilon"),
        Param("save_last_on_failed", bool, True, doc="the original's last-step rescue"),
        CUDA_GRAPH,
    )

    @classmethod
    def check_resolved(cls, values: dict[str, Any], *, ensemble: list[str], where: str) -> None:
        if values["n_models"] != len(ensemble):
            name = where.split(".")[1] if where.count(".") >= 2 else "<name>"
            raise ConfigError(
                f"cloak '{cls.type_name}': mode '{values['mode']}' of the original uses "
                f"{values['n_models']} model(s) but the ensemble has {len(ensemble)} "
                f"({', '.join(ensemble)}). Add models to cloaks.{name}.ensemble, or set "
                f"cloaks.{name}.params.n_models: {len(ensemble)} (recorded as a deviation from "
                "the preset)")

    def perturb(self, x: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
        """``start``: the initial modifier in tanh space (the variable the optimiser moves; the
        picture is ``tanh(atanh(x) + modifier)`` up to the original's scaling), same shape as
        the batch. Default: the seeded uniform draw of ``init_noise`` (per picture, from the
        cloak's seed). The untargeted objective has zero gradient at the clean picture, so the
        start picks the direction the features move: pass the start another implementation
        used (e.g. the official Fawkes) to compare the two on equal terms."""
        if start is not None and not torch.isfinite(start).all():
            raise ValueError(f"cloak '{self.type_name}': start holds non-finite values")
        b = x.shape[0]
        with torch.no_grad():
            clean = [F.normalize(ex(x).float(), dim=1) for ex in self.extractors]
            clean_norms = [c.norm(dim=1) for c in clean]

        # Seeded start, drawn per picture (same seed and picture -> same cloak in any batch),
        # unless the caller gave one.
        w0 = to_tanh_space(x)
        if start is None:
            modifier = self.picture_noise(x, self.init_noise)
        else:
            modifier = start.detach().to(self.device, torch.float32).clone()
        modifier.requires_grad_(True)
        square_avg, acc_delta = torch.zeros_like(x), torch.zeros_like(x)
        weight = torch.ones(b, device=self.device)
        side = torch.zeros(b, device=self.device)  # +1 below the band, -1 above, 0 inside
        best = x.clone()
        best_feat = torch.zeros(b, device=self.device)
        last_adv = x.clone()
        last_d, last_f = torch.zeros_like(best_feat), torch.zeros_like(best_feat)
        hist = self.new_history(self.steps, "loss", "feature", "dssim", "weight")
        lo, hi = 0.9 * self.rho, 1.1 * self.rho

        def step(first: bool) -> None:
            raw = from_tanh_space(w0 + modifier)
            adv = x + torch.clamp(raw - x, -self.max_change, self.max_change)
            dist = dssim(adv, x)
            feat = sum((F.normalize(ex(adv).float(), dim=1) - c).pow(2).sum(dim=1) / n
                       for ex, c, n in zip(self.extractors, clean, clean_norms))
            loss = self.penalty * torch.clamp(dist - self.rho, min=0.0) ** 2 - weight * feat
            (grad,) = torch.autograd.grad(loss.sum(), modifier)
            adadelta_update(modifier, grad, square_avg, acc_delta, self.lr, self.adadelta_rho,
                            self.adadelta_eps)
            with torch.no_grad():
                if first:  # the original re-created its variable here: fresh Adadelta state
                    modifier.sub_(grad.sign().mul_(self.signed_step))
                    square_avg.zero_()
                    acc_delta.zero_()
                d, f = dist.detach(), feat.detach()
                hist.add(loss=loss, feature=f, dssim=d, weight=weight)
                # Adaptive feature weight, exactly the original's if / elif / else.
                grow = (d <= lo) & (weight <= WEIGHT_LIMIT)
                shrink = ~grow & (d >= hi) & (weight >= 1.0 / WEIGHT_LIMIT)
                weight.copy_(torch.where(
                    grow, torch.where(side == -1, 1.0, weight * 2),
                    torch.where(shrink, torch.where(side == 1, 1.0, weight / 2), 1.0)))
                side.copy_(torch.where(grow, 1.0, torch.where(shrink, -1.0, 0.0)))
                better = (d <= hi) & (f > best_feat)
                best.copy_(torch.where(better[:, None, None, None], adv, best))
                best_feat.copy_(torch.where(better, f, best_feat))
                last_adv.copy_(adv)
                last_d.copy_(d)
                last_f.copy_(f)
            hist.advance()

        step(True)
        runner = self.step_runner(lambda: step(False))
        for _ in range(1, self.steps):
            runner()

        if self.save_last_on_failed:
            rescue = ((best_feat < RESCUE_MAX_BEST) & (last_d < RESCUE_MAX_DSSIM)
                      & (last_f > best_feat))
            best = torch.where(rescue[:, None, None, None], last_adv, best)
        self.best_feature = best_feat
        return best  # the template clamps to [0, 1]

    def record_extras(self) -> dict[str, Any]:
        return {"optimizer": "adadelta", "execution": self.execution,
                "budget": "dssim (adaptive) + linf 15/255"}
