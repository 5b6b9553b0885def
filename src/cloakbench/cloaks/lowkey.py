"""LowKey (ICLR 2021): untargeted ensemble cloak with a perceptual (LPIPS) penalty.

Paper: V. Cherepanova, M. Goldblum, H. Foley, S. Duan, J. Dickerson, G. Taylor,
T. Goldstein, "LowKey: Leveraging Adversarial Attacks to Protect Social Media Users from
Facial Recognition", ICLR 2021. Code: the paper's supplementary material (PyTorch),
also used by Radiya-Dixit et al. (FaceCure). Reimplemented here in torch against any
ensemble of our extractors; nothing of the original code is used.

Threat model: the user perturbs the pictures they post so that a recogniser's gallery
built from them (or a classifier trained on them) no longer matches their clean photos.
The user knows an ensemble of extractors and pushes each picture's features away from
where they were on all of them, including through a Gaussian blur so the change survives
smoothing.

Algorithm (defaults follow the original; every difference is stated where it occurs):
- Ensemble: every backbone appears twice, once behind a Gaussian blur (kernel 7,
  sigma 3, reflect padding) and once as is. For each entry the feature is
  ``n(F(v) + F(flip(v)))``: the sum of the picture's and its mirror image's embeddings,
  L2-normalised. The clean reference is the un-blurred feature of the clean picture,
  for both entries of a backbone.
- Objective maximised per picture: ``mean over entries and feature dimensions of
  (F_i(x') - F_i(x))^2 / ||F_i(x)||  -  c_sim * LPIPS_alex(x, x')``, c_sim 0.05. The
  original averaged over its 512 embedding dimensions; that mean sets the balance with
  the LPIPS term, so we divide by ``feature_norm_dim`` (512) whatever the embedding
  size, which keeps the original's balance for 128-d models such as SFace.
- Signed-gradient ascent, step 0.0025, 50 steps, 1 start, start at the clean picture
  plus uniform noise +-0.005. The original clipped only to [0, 1], once, at the end, and
  did not enforce its eps (0.05) in LPIPS mode: kept (``eps: null``), and the perturb stage
  records the L-inf this produces. ``eps`` set to a number projects to that L-inf ball.
- With several starts, a picture keeps the start with the largest feature term.
- The original backbones took [-1, 1] inputs: here each extractor does its own
  normalisation from [0, 1]. Original ensemble: IR-152 and ResNet-152, each trained with
  ArcFace and with CosFace heads.

Perceptual term (``perceptual``): ``lpips`` (the original) uses the ``lpips`` package's
AlexNet v0.1 linear heads, which ship with it, on the torchvision ImageNet AlexNet
backbone, which cannot be downloaded here: ``lpips_weights`` must name that state-dict
file (``alexnet-owt-7be5be79.pth``), else construction fails. ``dssim`` uses
(1 - SSIM) / 2 in its place with the same weight c_sim (not calibrated against LPIPS).
There is no silent fallback; the record says which was used.

Budget: none enforced beyond [0, 1] (LPIPS is a soft penalty); report the L-inf / DSSIM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from kornia.filters import filter2d_separable, get_gaussian_kernel1d

from ..errors import MissingWeightsError
from ..extractors.base import Extractor
from .base import CUDA_GRAPH, FROM_MODE, Cloak, Param
from .metrics import ALEXNET_FILE, ALEXNET_URL, LPIPSAlex, dssim
from .registry import register_cloak

MODES: dict[str, dict[str, Any]] = {
    # The supplement's single setting.
    "default": {"steps": 50, "step_size": 0.0025, "n_starts": 1, "init_noise": 0.005,
                "c_sim": 0.05},
}


@register_cloak
class LowKey(Cloak):
    """LowKey: untargeted ensemble attack with blur branch, flip averaging and LPIPS.

    Parameters: see ``params`` (``steps``, ``step_size``, ``n_starts``, ``init_noise`` and
    ``c_sim`` left out or ``null`` come from ``mode``; the only mode is ``default``).
    After a call, ``history`` holds per-step batch means of ``objective`` (maximised),
    ``feature``, ``perceptual`` and ``linf``; the last entry is the returned picture.
    """

    type_name: ClassVar[str] = "lowkey"
    loss_key: ClassVar[str] = "objective"
    modes = MODES
    params = (
        Param("mode", str, "default", choices=tuple(MODES), deviation=False,
              doc="preset of steps, step_size, n_starts, init_noise and c_sim"),
        Param("steps", int, FROM_MODE, ge=1, doc="signed-gradient ascent steps"),
        Param("step_size", float, FROM_MODE, gt=0, doc="size of each signed step"),
        Param("n_starts", int, FROM_MODE, ge=1,
              doc="random starts; a picture keeps the one with the largest feature term"),
        Param("init_noise", float, FROM_MODE, ge=0, doc="half-width of the uniform start"),
        Param("c_sim", float, FROM_MODE, ge=0, doc="weight of the perceptual term"),
        Param("perceptual", str, "lpips", choices=("lpips", "dssim"),
              doc="lpips (the original; needs lpips_weights) or dssim in its place"),
        Param("lpips_weights", str, None, nullable=True, deviation=False,
              doc=f"path to the torchvision ImageNet AlexNet state dict ({ALEXNET_FILE})"),
        Param("blur_kernel", int, 7, ge=0, check=lambda v: v == 0 or v % 2 == 1,
              accepted="0 (no blur branch) or an odd integer",
              doc="Gaussian blur kernel of the blurred branch; 0 drops the branch"),
        Param("blur_sigma", float, 3.0, gt=0, doc="Gaussian blur sigma"),
        Param("flip", bool, True, doc="average each embedding with its mirror image's"),
        Param("eps", float, None, gt=0, nullable=True,
              doc="L-inf projection radius; null = not enforced (as the original with LPIPS)"),
        Param("feature_norm_dim", int, 512, ge=1,
              doc="divisor of the squared feature distance (the original's 512 dimensions)"),
        CUDA_GRAPH,
    )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._kernel = (get_gaussian_kernel1d(self.blur_kernel, self.blur_sigma, device=self.device)
                        if self.blur_kernel else None)
        self.lpips: LPIPSAlex | None = None
        if self.perceptual == "lpips":
            self.lpips = LPIPSAlex(self._lpips_path()).to(self.device)

    def _lpips_path(self) -> Path:
        how = (f"Download {ALEXNET_FILE} (the torchvision ImageNet AlexNet, published at "
               f"{ALEXNET_URL}) and set {self.params_key(self.name)}.lpips_weights to its path, "
               f"or set {self.params_key(self.name)}.perceptual: dssim (recorded as a deviation)")
        if not self.lpips_weights:
            raise MissingWeightsError(
                f"cloak '{self.type_name}': perceptual: lpips needs AlexNet backbone weights, "
                f"which the lpips package does not ship and cannot be downloaded here. {how}")
        path = Path(self.lpips_weights).expanduser()
        if not path.is_file():
            raise MissingWeightsError(
                f"cloak '{self.type_name}': lpips_weights file {path} not found. {how}")
        return path

    # ------------------------------------------------------------------ pieces
    @property
    def entries_per_model(self) -> int:
        """Extractor passes per model and step (blur branch x mirror image)."""
        return (2 if self.blur_kernel else 1) * (2 if self.flip else 1)

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        # kornia's gaussian_blur2d, with its 1-D kernel built once rather than every step.
        k = self._kernel
        return filter2d_separable(x, k, k, border_type="reflect")

    def _views(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x, self._blur(x)] if self.blur_kernel else [x]

    def _embed_views(self, ex: Extractor, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """Normalised (flip-averaged) features of each view, in one forward pass."""
        b = views[0].shape[0]
        if self.flip:
            views = [v for view in views for v in (view, torch.flip(view, dims=[3]))]
        emb = ex(torch.cat(views) if len(views) > 1 else views[0]).float().split(b)
        if self.flip:
            emb = [emb[i] + emb[i + 1] for i in range(0, len(emb), 2)]
        return [F.normalize(e, dim=1) for e in emb]

    @torch.no_grad()
    def _clean_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self._embed_views(ex, [x])[0] for ex in self.extractors]

    @staticmethod
    def _feature_distance(feat: torch.Tensor, ref: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
        """One (extractor, view) entry of the feature term: squared distance to the clean
        features, relative to their norm (before the common ``_feature_scale``)."""
        return (feat - ref).pow(2).sum(dim=1) / norm

    @property
    def _feature_scale(self) -> float:
        entries = len(self.extractors) * (2 if self.blur_kernel else 1)
        return 1.0 / (entries * self.feature_norm_dim)

    def _feature_term(self, adv: torch.Tensor, clean: list[torch.Tensor],
                      norms: list[torch.Tensor]) -> torch.Tensor:
        total = 0
        for ex, ref, n in zip(self.extractors, clean, norms):
            for feat in self._embed_views(ex, self._views(adv)):
                total = total + self._feature_distance(feat, ref, n)
        return total * self._feature_scale

    def _objective_and_grad(self, adv: torch.Tensor, x: torch.Tensor, clean: list[torch.Tensor],
                            norms: list[torch.Tensor], ref: Any
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-picture objective, its feature and perceptual parts, and d mean(objective)/d adv.

        On CUDA: one forward over all views and one backward. On the CPU: one backward per
        branch (plain, blurred), so only two passes' activations are alive at a time
        instead of four: measured 35 % faster on SFace at batch 32. Same gradient.
        """
        if adv.device.type == "cuda":
            feat = self._feature_term(adv, clean, norms)
            perc = self._perceptual_term(ref, x, adv)
            objective = feat - self.c_sim * perc
            (grad,) = torch.autograd.grad(objective.mean(), adv)
            return objective, feat, perc, grad
        grad = torch.zeros_like(adv)
        feat = torch.zeros(adv.shape[0], device=adv.device)
        for ex, ref_feat, n in zip(self.extractors, clean, norms):
            for branch in range(2 if self.blur_kernel else 1):
                view = self._blur(adv) if branch else adv
                emb = self._embed_views(ex, [view])[0]
                term = self._feature_distance(emb, ref_feat, n) * self._feature_scale
                grad += torch.autograd.grad(term.mean(), adv)[0]
                feat += term.detach()
        perc = self._perceptual_term(ref, x, adv)
        if self.c_sim:
            grad -= torch.autograd.grad(self.c_sim * perc.mean(), adv)[0]
        perc = perc.detach()
        return feat - self.c_sim * perc, feat, perc, grad

    def _perceptual_term(self, ref: Any, x: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
        if self.lpips is not None:
            return self.lpips.distance(ref, adv)
        return dssim(adv, x)

    # ------------------------------------------------------------------ attack
    def perturb(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        clean = self._clean_features(x)
        norms = [c.norm(dim=1) for c in clean]
        ref = self.lpips.reference(x) if self.lpips is not None else None
        hist = self.new_history(self.n_starts * self.steps + 1,
                                "objective", "feature", "perceptual", "linf")
        best = x.clone()
        best_feat = torch.full((b,), -float("inf"), device=self.device)
        best_perc = torch.zeros(b, device=self.device)
        adv = x.clone().requires_grad_(True)  # one leaf for all starts, updated in place

        def step() -> None:
            objective, feat, perc, grad = self._objective_and_grad(adv, x, clean, norms, ref)
            with torch.no_grad():
                hist.add(objective=objective, feature=feat, perceptual=perc,
                         linf=(adv - x).flatten(1).abs().amax(1))
                adv.add_(grad.sign().mul_(self.step_size))  # signed-gradient ascent
                if self.eps is not None:
                    adv.copy_(x + torch.clamp(adv - x, -self.eps, self.eps))
            hist.advance()

        runner = self.step_runner(step, warmup=2)
        for start in range(self.n_starts):
            with torch.no_grad():
                adv.copy_(x + self.picture_noise(x, self.init_noise, offset=start * 7919))
            for _ in range(self.steps):
                runner()
            with torch.no_grad():  # the original clipped to [0, 1] once, after the steps
                final = adv.detach().clamp(0.0, 1.0)
                feat = self._feature_term(final, clean, norms)
                perc = self._perceptual_term(ref, x, final)
                better = feat > best_feat
                best = torch.where(better[:, None, None, None], final, best)
                best_feat = torch.where(better, feat, best_feat)
                best_perc = torch.where(better, perc, best_perc)
        hist.add(objective=best_feat - self.c_sim * best_perc, feature=best_feat,
                 perceptual=best_perc, linf=(best - x).flatten(1).abs().amax(1))
        hist.advance()
        return best

    def record_extras(self) -> dict[str, Any]:
        return {"lpips_weights": self.lpips_weights if self.perceptual == "lpips" else None,
                "execution": self.execution,
                "budget": "none (clip to [0, 1])" if self.eps is None else f"linf {self.eps}"}
