"""Per-image measurements of a cloak: how much the picture changed, how far the features moved.

The perturb stage records these for every cloaked picture, so a result can be read
next to the budget it was bought with (DSSIM for the Fawkes family, L-inf for
LowKey, which does not bound it) and next to how well the shift transfers to
extractors that were not in the cloak's ensemble.

DSSIM is ``(1 - SSIM) / 2`` with SSIM from ``pytorch-msssim`` (Gaussian window 11,
sigma 1.5, K = (0.01, 0.03), no padding), which is the SSIM that Fawkes took from
``tf.image.ssim``: the numbers are comparable with the budgets the Fawkes papers quote.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim

try:  # the library's own window builder (private name, stable since 2019)
    from pytorch_msssim.ssim import _fspecial_gauss_1d
except ImportError:  # pragma: no cover - newer release: let ssim build it each call
    _fspecial_gauss_1d = None

from ..extractors.base import Extractor

SSIM_WIN_SIZE = 11
SSIM_WIN_SIGMA = 1.5


_WINDOWS: dict[tuple[torch.device, torch.dtype, int], torch.Tensor] = {}


def _window(x: torch.Tensor) -> torch.Tensor | None:
    """pytorch-msssim's own Gaussian window, built once per device/dtype/channels.

    ``ssim`` would otherwise rebuild it on the CPU and copy it to the device on every
    call, i.e. at every optimisation step of a cloak.
    """
    if _fspecial_gauss_1d is None:  # pragma: no cover
        return None
    key = (x.device, x.dtype, x.shape[1])
    win = _WINDOWS.get(key)
    if win is None:
        win = _fspecial_gauss_1d(SSIM_WIN_SIZE, SSIM_WIN_SIGMA)
        win = win.repeat([x.shape[1]] + [1] * (x.dim() - 1)).to(x.device, x.dtype)
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


def _device_of(module: torch.nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def normalized_features(extractor: Extractor, images: torch.Tensor, *,
                        batch_size: int = 64) -> torch.Tensor:
    """L2-normalised embeddings (BxD, on CPU), computed in batches on the extractor's device."""
    device = _device_of(extractor)
    out = []
    for start in range(0, images.shape[0], batch_size):
        chunk = images[start:start + batch_size].to(device, torch.float32)
        out.append(F.normalize(extractor(chunk).float(), dim=1).cpu())
    return torch.cat(out) if out else torch.empty(0, 0)


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
