"""Fawkes v1.0 (March to April 2021): the untargeted cloak of the Fawkes software 1.0.

Paper: S. Shan, E. Wenger, J. Zhang, H. Li, H. Zheng, B. Y. Zhao, "Fawkes: Protecting
Privacy against Unauthorized Deep Learning Models", USENIX Security 2020; the 1.0
software (github.com/Shawn-Shan/fawkes, TensorFlow 2.4) changed the objective to an
untargeted one against new extractors. This module reimplements that algorithm in torch
against any ensemble of our extractors; nothing of the original code is used.

Threat model: as Fawkes v0.3 (cloaked pictures poison a tracker's training set), but the
user no longer picks a target identity: each picture's features are pushed away from
where they were, for the extractors the user knows (the ensemble).

Algorithm (defaults are the original's):
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

from typing import Any, ClassVar, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..extractors.base import Extractor
from ._common import (History, StepRunner, adadelta_update, from_tanh_space, is_int, is_number,
                      changed_from_defaults, resolve_mode, to_tanh_space, uniform_start)
from .base import Cloak, check
from .metrics import dssim
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

    Parameters (``None`` = take it from ``mode``):
        mode: ``low | mid | high`` (default ``high``).
        rho: DSSIM budget. steps: optimisation steps. lr: Adadelta learning rate.
        n_models: ensemble size the mode expects; must equal the configured ensemble's.
        penalty: weight of the squared DSSIM excess (1e6).
        max_change: per-pixel change limit on the [0, 1] scale (15/255).
        init_noise: half-width of the uniform start in tanh space (1e-4).
        signed_step: size of the extra signed step after the first update (0.01).
        adadelta_rho, adadelta_eps: TensorFlow 2's Adadelta defaults (0.95, 1e-7).
        save_last_on_failed: the original's last-step rescue (True).
        cuda_graph: on CUDA, replay each step as a captured CUDA graph (True; an execution
            setting, the numbers are the same; see ``_common.StepRunner``).

    After a call, ``history`` holds per-step batch means of ``loss``, ``feature`` (the
    term maximised), ``dssim`` and ``weight`` (entry i = the picture after i updates).
    """

    type_name: ClassVar[str] = "fawkes_v10"

    def __init__(self, extractors: Sequence[Extractor], *, seed: int = 0,
                 device: str | torch.device = "cpu", mode: str = "high",
                 rho: float | None = None, steps: int | None = None, lr: float | None = None,
                 n_models: int | None = None, penalty: float = 1e6,
                 max_change: float = 15.0 / 255.0, init_noise: float = 1e-4,
                 signed_step: float = 0.01, adadelta_rho: float = 0.95,
                 adadelta_eps: float = 1e-7, save_last_on_failed: bool = True,
                 cuda_graph: bool = True):
        super().__init__(extractors, seed=seed, device=device)
        name = self.type_name
        values, self.overridden = resolve_mode(
            name, MODES, mode, {"rho": rho, "steps": steps, "lr": lr, "n_models": n_models})
        self.mode = mode
        self.rho = values["rho"]
        self.steps = values["steps"]
        self.lr = values["lr"]
        self.n_models = values["n_models"]
        check(is_number(self.rho) and 0 < self.rho < 1, name,
              f"rho must be in (0, 1), got {self.rho!r}")
        check(is_int(self.steps) and self.steps >= 1, name,
              f"steps must be an integer >= 1, got {self.steps!r}")
        check(is_number(self.lr) and self.lr > 0, name, f"lr must be > 0, got {self.lr!r}")
        check(is_int(self.n_models) and self.n_models >= 1, name,
              f"n_models must be an integer >= 1, got {self.n_models!r}")
        if self.n_models != len(self.extractors):
            names = [ex.name for ex in self.extractors]
            raise ConfigError(
                f"cloak '{name}': mode '{mode}' of the original uses {values['n_models']} "
                f"model(s) but the ensemble has {len(names)} ({', '.join(names)}). Add models "
                f"to cloaks.<name>.ensemble, or set cloaks.<name>.params.n_models: {len(names)} "
                "(recorded as a deviation from the preset)")
        check(is_number(penalty) and penalty >= 0, name, f"penalty must be >= 0, got {penalty!r}")
        check(is_number(max_change) and 0 < max_change <= 1, name,
              f"max_change must be in (0, 1], got {max_change!r}")
        check(is_number(init_noise) and init_noise >= 0, name,
              f"init_noise must be >= 0, got {init_noise!r}")
        check(is_number(signed_step) and signed_step >= 0, name,
              f"signed_step must be >= 0, got {signed_step!r}")
        check(is_number(adadelta_rho) and 0 <= adadelta_rho < 1, name,
              f"adadelta_rho must be in [0, 1), got {adadelta_rho!r}")
        check(is_number(adadelta_eps) and adadelta_eps > 0, name,
              f"adadelta_eps must be > 0, got {adadelta_eps!r}")
        check(isinstance(save_last_on_failed, bool), name,
              f"save_last_on_failed must be true or false, got {save_last_on_failed!r}")
        check(isinstance(cuda_graph, bool), name,
              f"cuda_graph must be true or false, got {cuda_graph!r}")
        self.overridden += changed_from_defaults(type(self), {
            "penalty": penalty, "max_change": max_change, "init_noise": init_noise,
            "signed_step": signed_step, "adadelta_rho": adadelta_rho,
            "adadelta_eps": adadelta_eps, "save_last_on_failed": save_last_on_failed})
        self.penalty = float(penalty)
        self.max_change = float(max_change)
        self.init_noise = float(init_noise)
        self.signed_step = float(signed_step)
        self.adadelta_rho = float(adadelta_rho)
        self.adadelta_eps = float(adadelta_eps)
        self.save_last_on_failed = save_last_on_failed
        self.cuda_graph = cuda_graph
        self.execution = "eager"
        for ex in self.extractors:
            ex.to(self.device)
        self.history = History()

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out_device = images.device
        x = images.detach().to(self.device, torch.float32)
        b = x.shape[0]
        with torch.no_grad():
            clean = [F.normalize(ex(x).float(), dim=1) for ex in self.extractors]
            clean_norms = [c.norm(dim=1) for c in clean]

        # Seeded start, drawn per picture (same seed and picture -> same cloak in any batch).
        w0 = to_tanh_space(x)
        modifier = uniform_start(self.generator, x, self.init_noise).requires_grad_(True)
        square_avg, acc_delta = torch.zeros_like(x), torch.zeros_like(x)
        weight = torch.ones(b, device=self.device)
        side = torch.zeros(b, device=self.device)  # +1 below the band, -1 above, 0 inside
        best = x.clone()
        best_feat = torch.zeros(b, device=self.device)
        last_adv = x.clone()
        last_d, last_f = torch.zeros_like(best_feat), torch.zeros_like(best_feat)
        hist = self.history = History(self.steps, ("loss", "feature", "dssim", "weight"),
                                      self.device)
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
        runner = StepRunner(lambda: step(False), self.device, self.cuda_graph)
        for _ in range(1, self.steps):
            runner()
        self.execution = runner.mode

        if self.save_last_on_failed:
            rescue = ((best_feat < RESCUE_MAX_BEST) & (last_d < RESCUE_MAX_DSSIM)
                      & (last_f > best_feat))
            best = torch.where(rescue[:, None, None, None], last_adv, best)
        self.best_feature = best_feat
        return best.clamp_(0.0, 1.0).to(out_device)

    @property
    def loss_history(self) -> list[float]:
        """Per-step batch mean of the loss minimised (DSSIM penalty - weight x feature term).

        The weight changes every step, so ``history["feature"]`` shows the progress better.
        """
        return self.history["loss"] if "loss" in self.history else []

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "type": self.type_name, "mode": self.mode, "rho": self.rho, "steps": self.steps,
            "lr": self.lr, "n_models": self.n_models, "penalty": self.penalty,
            "max_change": self.max_change, "init_noise": self.init_noise,
            "signed_step": self.signed_step, "optimizer": "adadelta",
            "adadelta_rho": self.adadelta_rho, "adadelta_eps": self.adadelta_eps,
            "save_last_on_failed": self.save_last_on_failed, "cuda_graph": self.cuda_graph,
            "execution": self.execution,
            "budget": "dssim (adaptive) + linf 15/255",
            "ensemble": [ex.name for ex in self.extractors],
            "overridden": list(self.overridden), "seed": self.seed,
        }
