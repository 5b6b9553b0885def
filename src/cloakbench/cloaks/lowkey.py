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

Algorithm (defaults are the original's):
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

import warnings
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch
import torch.nn.functional as F
from kornia.filters import filter2d_separable, get_gaussian_kernel1d
from torch import nn

from ..errors import MissingWeightsError
from ..extractors.base import Extractor
from ._common import (History, StepRunner, changed_from_defaults, is_int, is_number, resolve_mode,
                      uniform_start)
from .base import Cloak, check
from .metrics import dssim
from .registry import register_cloak

MODES: dict[str, dict[str, Any]] = {
    # The supplement's single setting.
    "default": {"steps": 50, "step_size": 0.0025, "n_starts": 1, "init_noise": 0.005,
                "c_sim": 0.05},
}

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"


class LPIPSAlex(nn.Module):
    """LPIPS v0.1 (AlexNet) from the ``lpips`` package, with clean-picture features cached.

    The package computes both pictures' AlexNet features on every call; the clean
    picture does not change during an attack, so :meth:`reference` computes its
    normalised features once and :meth:`distance` only runs the cloaked picture. The
    arithmetic is the package's own modules (scaling layer, trunk, ``normalize_tensor``,
    linear heads, spatial average); ``tests`` check it equals ``lpips.LPIPS.forward``.
    """

    # Convolutions of torchvision's AlexNet ``features`` (index -> weight shape).
    CONV_SHAPES = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3),
                   8: (256, 384, 3, 3), 10: (256, 256, 3, 3)}

    def __init__(self, weights: str | Path):
        super().__init__()
        import lpips

        self._lpips = lpips
        state = self._load_backbone(Path(weights))  # check the file before building anything
        with warnings.catch_warnings():  # torchvision's deprecated ``pretrained=False``
            warnings.simplefilter("ignore")
            model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True,
                                verbose=False)
        loaded = set()
        for block in model.net.children():
            for idx, layer in block.named_children():
                if isinstance(layer, nn.Conv2d):
                    with torch.no_grad():
                        layer.weight.copy_(state[f"features.{idx}.weight"])
                        layer.bias.copy_(state[f"features.{idx}.bias"])
                    loaded.add(int(idx))
        if loaded != set(self.CONV_SHAPES):  # pragma: no cover - lpips' trunk is fixed
            raise MissingWeightsError(f"LPIPS AlexNet: loaded conv layers {sorted(loaded)}")
        self.model = model.eval().requires_grad_(False)

    @classmethod
    def _load_backbone(cls, path: Path) -> dict[str, torch.Tensor]:
        hint = (f"Expected the torchvision ImageNet AlexNet state dict ({ALEXNET_FILE}, "
                f"published at {ALEXNET_URL})")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise MissingWeightsError(f"LPIPS AlexNet weights {path}: cannot be read ({exc}). "
                                      f"{hint}") from exc
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise MissingWeightsError(f"LPIPS AlexNet weights {path}: not a state dict. {hint}")
        for idx, shape in cls.CONV_SHAPES.items():
            for pname, want in (("weight", shape), ("bias", shape[:1])):
                key = f"features.{idx}.{pname}"
                if key not in state:
                    raise MissingWeightsError(f"LPIPS AlexNet weights {path}: no '{key}'. {hint}")
                if tuple(state[key].shape) != want:
                    raise MissingWeightsError(
                        f"LPIPS AlexNet weights {path}: '{key}' has shape "
                        f"{tuple(state[key].shape)}, expected {want}. {hint}")
        return state

    def _features(self, x01: torch.Tensor) -> list[torch.Tensor]:
        m = self.model
        outs = m.net.forward(m.scaling_layer(2 * x01 - 1))
        return [self._lpips.normalize_tensor(o) for o in outs]

    @torch.no_grad()
    def reference(self, x01: torch.Tensor) -> list[torch.Tensor]:
        return self._features(x01)

    def distance(self, reference: list[torch.Tensor], x01: torch.Tensor) -> torch.Tensor:
        """Per-picture LPIPS between the cached reference and ``x01`` (shape (B,))."""
        m = self.model
        total = 0
        for k, feat in enumerate(self._features(x01)):
            diff = (reference[k] - feat) ** 2
            total = total + self._lpips.spatial_average(m.lins[k](diff), keepdim=False)
        return total.flatten()


@register_cloak
class LowKey(Cloak):
    """LowKey: untargeted ensemble attack with blur branch, flip averaging and LPIPS.

    Parameters (``None`` = take it from ``mode``; the only mode is ``default``):
        steps (50), step_size (0.0025), n_starts (1), init_noise (0.005), c_sim (0.05).
        perceptual: ``lpips`` (original; needs ``lpips_weights``) or ``dssim``.
        lpips_weights: path to the torchvision ImageNet AlexNet state dict.
        blur_kernel (7), blur_sigma (3.0): the blurred branch; ``blur_kernel: 0`` drops it.
        flip: average each embedding with its mirror image's (True).
        eps: L-inf projection radius, ``None`` = not enforced (as the original in LPIPS mode).
        feature_norm_dim: divisor of the squared feature distance (512, see module docstring).
        cuda_graph: on CUDA, replay each step as a captured CUDA graph (True; an execution
            setting, the numbers are the same; see ``_common.StepRunner``).

    After a call, ``history`` holds per-step batch means of ``objective`` (maximised),
    ``feature``, ``perceptual`` and ``linf``; the last entry is the returned picture.
    """

    type_name: ClassVar[str] = "lowkey"

    def __init__(self, extractors: Sequence[Extractor], *, seed: int = 0,
                 device: str | torch.device = "cpu", mode: str = "default",
                 steps: int | None = None, step_size: float | None = None,
                 n_starts: int | None = None, init_noise: float | None = None,
                 c_sim: float | None = None, perceptual: str = "lpips",
                 lpips_weights: str | None = None, blur_kernel: int = 7,
                 blur_sigma: float = 3.0, flip: bool = True, eps: float | None = None,
                 feature_norm_dim: int = 512, cuda_graph: bool = True):
        super().__init__(extractors, seed=seed, device=device)
        name = self.type_name
        values, self.overridden = resolve_mode(name, MODES, mode, {
            "steps": steps, "step_size": step_size, "n_starts": n_starts,
            "init_noise": init_noise, "c_sim": c_sim})
        self.mode = mode
        self.steps = values["steps"]
        self.step_size = values["step_size"]
        self.n_starts = values["n_starts"]
        self.init_noise = values["init_noise"]
        self.c_sim = values["c_sim"]
        check(is_int(self.steps) and self.steps >= 1, name,
              f"steps must be an integer >= 1, got {self.steps!r}")
        check(is_number(self.step_size) and self.step_size > 0, name,
              f"step_size must be > 0, got {self.step_size!r}")
        check(is_int(self.n_starts) and self.n_starts >= 1, name,
              f"n_starts must be an integer >= 1, got {self.n_starts!r}")
        check(is_number(self.init_noise) and self.init_noise >= 0, name,
              f"init_noise must be >= 0, got {self.init_noise!r}")
        check(is_number(self.c_sim) and self.c_sim >= 0, name,
              f"c_sim must be >= 0, got {self.c_sim!r}")
        check(perceptual in ("lpips", "dssim"), name,
              f"perceptual must be 'lpips' or 'dssim', got {perceptual!r}")
        check(is_int(blur_kernel) and blur_kernel >= 0 and (blur_kernel == 0 or blur_kernel % 2),
              name, f"blur_kernel must be 0 (no blur branch) or odd, got {blur_kernel!r}")
        check(is_number(blur_sigma) and blur_sigma > 0, name,
              f"blur_sigma must be > 0, got {blur_sigma!r}")
        check(isinstance(flip, bool), name, f"flip must be true or false, got {flip!r}")
        check(eps is None or (is_number(eps) and eps > 0), name,
              f"eps must be null or > 0, got {eps!r}")
        check(is_int(feature_norm_dim) and feature_norm_dim >= 1, name,
              f"feature_norm_dim must be an integer >= 1, got {feature_norm_dim!r}")
        check(isinstance(cuda_graph, bool), name,
              f"cuda_graph must be true or false, got {cuda_graph!r}")
        self.overridden += changed_from_defaults(type(self), {
            "perceptual": perceptual, "blur_kernel": blur_kernel, "blur_sigma": blur_sigma,
            "flip": flip, "eps": eps, "feature_norm_dim": feature_norm_dim})
        self.perceptual = perceptual
        self.lpips_weights = None if lpips_weights is None else str(lpips_weights)
        self.blur_kernel = blur_kernel
        self.blur_sigma = float(blur_sigma)
        self.flip = flip
        self.eps = None if eps is None else float(eps)
        self.feature_norm_dim = feature_norm_dim
        self.cuda_graph = cuda_graph
        self.execution = "eager"
        self._kernel = (get_gaussian_kernel1d(blur_kernel, self.blur_sigma, device=self.device)
                        if blur_kernel else None)
        self.lpips: LPIPSAlex | None = None
        if perceptual == "lpips":
            self.lpips = LPIPSAlex(self._lpips_path()).to(self.device)
        for ex in self.extractors:
            ex.to(self.device)
        self.history = History()

    def _lpips_path(self) -> Path:
        how = (f"Download {ALEXNET_FILE} (the torchvision ImageNet AlexNet, published at "
               f"{ALEXNET_URL}) and set cloaks.<name>.params.lpips_weights to its path, or set "
               "cloaks.<name>.params.perceptual: dssim (recorded as a deviation)")
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
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out_device = images.device
        x = images.detach().to(self.device, torch.float32)
        b = x.shape[0]
        clean = self._clean_features(x)
        norms = [c.norm(dim=1) for c in clean]
        ref = self.lpips.reference(x) if self.lpips is not None else None
        hist = self.history = History(self.n_starts * self.steps + 1,
                                      ("objective", "feature", "perceptual", "linf"), self.device)
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

        runner = StepRunner(step, self.device, self.cuda_graph, warmup=2)
        for start in range(self.n_starts):
            gen = (lambda off, s=start: self.generator(off + s * 7919))
            with torch.no_grad():
                adv.copy_(x + uniform_start(gen, x, self.init_noise))
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
        self.execution = runner.mode
        hist.add(objective=best_feat - self.c_sim * best_perc, feature=best_feat,
                 perceptual=best_perc, linf=(best - x).flatten(1).abs().amax(1))
        hist.advance()
        return best.to(out_device)

    @property
    def loss_history(self) -> list[float]:
        """Per-step batch mean of the objective maximised (feature - c_sim x perceptual)."""
        return self.history["objective"] if "objective" in self.history else []

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "type": self.type_name, "mode": self.mode, "steps": self.steps,
            "step_size": self.step_size, "n_starts": self.n_starts,
            "init_noise": self.init_noise, "c_sim": self.c_sim,
            "perceptual": self.perceptual,
            "lpips_weights": self.lpips_weights if self.perceptual == "lpips" else None,
            "blur_kernel": self.blur_kernel, "blur_sigma": self.blur_sigma, "flip": self.flip,
            "eps": self.eps, "feature_norm_dim": self.feature_norm_dim,
            "cuda_graph": self.cuda_graph, "execution": self.execution,
            "budget": "none (clip to [0, 1])" if self.eps is None else f"linf {self.eps}",
            "ensemble": [ex.name for ex in self.extractors],
            "overridden": list(self.overridden), "seed": self.seed,
        }
