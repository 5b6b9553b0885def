"""Measurements of a cloak: how much the picture changed, how far the features moved.

The perturb stage records these for every cloaked picture, so a result can be read
next to the budget it was bought with (DSSIM for the Fawkes family, L-inf for
LowKey, which does not bound it) and next to how well the shift transfers to
extractors that were not in the cloak's ensemble. The perceptual distances the cloaks
optimise through live here too: DSSIM (Fawkes) and LPIPS (:class:`LPIPSAlex`, LowKey).

DSSIM is ``(1 - SSIM) / 2`` with SSIM from ``pytorch-msssim`` (Gaussian window 11,
sigma 1.5, K = (0.01, 0.03), no padding), which is the SSIM that Fawkes took from
``tf.image.ssim``: the numbers are comparable with the budgets the Fawkes papers quote.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Mapping, Sequence

import torch
from pytorch_msssim import SSIM, ssim
from torch import nn

from ..errors import MissingWeightsError
from ..extractors.base import Extractor
from ..extractors.embedding import embed_batches

SSIM_WIN_SIZE = 11
SSIM_WIN_SIGMA = 1.5


_WINDOWS: dict[tuple[torch.device, torch.dtype, int], torch.Tensor] = {}


def _window(x: torch.Tensor) -> torch.Tensor:
    """pytorch-msssim's own Gaussian window (built by its ``SSIM`` module), once per
    device/dtype/channels.

    ``ssim`` would otherwise rebuild it on the CPU and copy it to the device on every
    call, i.e. at every optimisation step of a cloak (and inside a captured CUDA graph).
    """
    key = (x.device, x.dtype, x.shape[1])
    win = _WINDOWS.get(key)
    if win is None:
        module = SSIM(data_range=1.0, win_size=SSIM_WIN_SIZE, win_sigma=SSIM_WIN_SIGMA,
                      channel=x.shape[1], spatial_dims=x.dim() - 2)
        win = module.win.to(x.device, x.dtype)
        _WINDOWS[key] = win
    return win


def dssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image structural dissimilarity ``(1 - SSIM) / 2`` of Bx3xHxW pictures in [0, 1].

    Differentiable (the Fawkes cloaks optimise through it). Returns a tensor of shape (B,).
    """
    s = ssim(x, y, data_range=1.0, size_average=False, win_size=SSIM_WIN_SIZE,
             win_sigma=SSIM_WIN_SIGMA, win=_window(x))
    return (1.0 - s) / 2.0


def linf(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image largest absolute pixel change (on the [0, 1] scale)."""
    return (x - y).flatten(1).abs().amax(dim=1)


def l2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image Euclidean norm of the change (on the [0, 1] scale)."""
    return (x - y).flatten(1).norm(dim=1)


@torch.no_grad()
def perturbation_stats(clean: torch.Tensor, cloaked: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"dssim", "linf", "l2"}`` -> per-image tensors (on CPU) for one batch."""
    clean = clean.float()
    cloaked = cloaked.float().to(clean.device)
    return {"dssim": dssim(cloaked, clean).cpu(), "linf": linf(cloaked, clean).cpu(),
            "l2": l2(cloaked, clean).cpu()}


def normalized_features(extractor: Extractor, images: torch.Tensor, *,
                        batch_size: int = 64) -> torch.Tensor:
    """L2-normalised embeddings (BxD, on CPU), computed in batches on the extractor's device."""
    return embed_batches(extractor, images, batch_size=batch_size, normalize=True)


@torch.no_grad()
def feature_shift(clean: torch.Tensor, cloaked: torch.Tensor,
                  extractors: Sequence[Extractor] | Mapping[str, Extractor], *,
                  metric: str = "l2", batch_size: int = 64) -> dict[str, torch.Tensor]:
    """How far a cloak moved each picture's identity features, per extractor.

    Features are L2-normalised first (what a cosine / nearest-neighbour recogniser
    compares), so the shift is comparable across extractors of any scale.

    ``metric="l2"``: Euclidean distance between the normalised features, in [0, 2];
    ``metric="cosine"``: cosine distance ``1 - cos``, in [0, 2] (``l2**2 / 2``).
    Returns ``{extractor name: tensor (B,)}`` on CPU; the dict keys are
    ``Extractor.name`` (or the mapping's keys when a mapping is given).
    """
    if metric not in ("l2", "cosine"):
        raise ValueError(f"feature_shift: metric must be 'l2' or 'cosine', not {metric!r}")
    if clean.shape != cloaked.shape:
        raise ValueError(f"feature_shift: clean {tuple(clean.shape)} and cloaked "
                         f"{tuple(cloaked.shape)} differ in shape")
    items = extractors.items() if isinstance(extractors, Mapping) else (
        (ex.name, ex) for ex in extractors)
    result: dict[str, torch.Tensor] = {}
    for name, ex in items:
        a = normalized_features(ex, clean, batch_size=batch_size)
        b = normalized_features(ex, cloaked, batch_size=batch_size)
        if metric == "l2":
            result[name] = (a - b).norm(dim=1)
        else:
            result[name] = 1.0 - (a * b).sum(dim=1)
    return result


# ---------------------------------------------------------------------------
# LPIPS (LowKey's perceptual term)
# ---------------------------------------------------------------------------
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
