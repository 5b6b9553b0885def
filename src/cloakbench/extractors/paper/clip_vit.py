"""CLIP ViT-B/32 image encoder (Radford et al., OpenAI, January 2021) through ``open_clip``.

A general-purpose vision model rather than a face recogniser: the paper uses it as a "future"
feature extractor that no cloak was optimised against. ``forward`` returns the 512-d projected
image embedding (``encode_image`` without normalisation).

Weights (``extractors.<name>.weights``), any of the formats open_clip reads:

- OpenAI's original ``ViT-B-32.pt`` (a TorchScript archive);
- open_clip's conversion ``open_clip_pytorch_model.bin`` / ``open_clip_model.safetensors``
  (Hugging Face ``timm/vit_base_patch32_clip_224.openai``), a plain state dict;
- an open_clip training checkpoint (``{"state_dict": {"module.…": …}}``).

The architecture is open_clip's ``ViT-B-32-quickgelu`` (OpenAI's weights were trained with
QuickGELU; open_clip's plain ``ViT-B-32`` uses exact GELU and gives different features with
them). Another open_clip model name may be set with the ``arch`` spec key (e.g. ``ViT-B-32``
for LAION-2B weights). Loading is strict: a checkpoint of another architecture is refused.

Input: RGB, bicubic resize to 224x224 (CLIP's preprocessing; our square aligned crops need no
centre crop), normalised with CLIP's mean (0.48145466, 0.4578275, 0.40821073) and std
(0.26862954, 0.26130258, 0.27577711).
"""

from __future__ import annotations

import logging
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from ...errors import ConfigError, MissingWeightsError
from ..registry import register_extractor
from .common import PaperExtractor, short_error

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_ARCH = "ViT-B-32-quickgelu"
# Entries of OpenAI's TorchScript state dict that are not parameters of open_clip's CLIP.
_JIT_EXTRAS = ("input_resolution", "context_length", "vocab_size", "attn_mask")


@contextmanager
def _quiet_root_warning() -> Iterator[None]:
    """open_clip logs "initialized randomly" on the root logger before we load the weights."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def is_torchscript_archive(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in zf.namelist())


@register_extractor
class ClipViT(PaperExtractor):
    """CLIP ViT-B/32 image tower (OpenAI weights by default) loaded through open_clip."""

    type_name = "clip_vit"
    spec_keys = ("arch",)         # open_clip architecture name
    family = "ViT-B/32 (CLIP)"
    input_size = 224
    mean = CLIP_MEAN
    std = CLIP_STD
    embedding_dim = 512
    differentiable = True
    resize_mode = "bicubic"
    weights_filename = ("ViT-B-32.pt (OpenAI CLIP) or open_clip_pytorch_model.bin "
                        "(open_clip's conversion of the same weights)")
    published_at = ("OpenAI's CLIP release, github.com/openai/CLIP (clip/clip.py lists the "
                    "ViT-B/32 URL), or Hugging Face timm/vit_base_patch32_clip_224.openai")
    release = "2021-01"
    metadata = {"architecture": "ViT-B/32 image encoder", "training_data": "WIT-400M "
                "(OpenAI's image-text pairs)", "loss": "contrastive image-text (CLIP)",
                "paper": "Radford et al., CLIP, ICML 2021 (released January 2021)"}

    def __init__(self, name: str, spec: dict[str, Any] | None = None):
        super().__init__(name, spec)
        path = self.weights_path()
        arch = str(self.spec.get("arch") or DEFAULT_ARCH)
        try:
            import open_clip
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise MissingWeightsError(
                f"extractor '{name}' ({self.type_name}) needs the open_clip_torch package: "
                ".venv/bin/pip install open_clip_torch==3.3.0") from exc

        try:
            with _quiet_root_warning():
                model = open_clip.create_model(arch, pretrained=None, device="cpu")
        except RuntimeError as exc:
            raise ConfigError(f"extractors.{name}.arch: {exc}") from exc
        try:
            if is_torchscript_archive(path):
                self._load_torchscript(model, path)
                fmt = "OpenAI TorchScript archive"
            else:
                open_clip.load_checkpoint(model, str(path), strict=True, weights_only=True)
                fmt = "state dict (open_clip load_checkpoint)"
        except Exception as exc:  # noqa: BLE001 - torch/open_clip raise many types
            raise self.format_error(
                path, f"{type(exc).__name__}: {short_error(exc)}; open_clip architecture "
                      f"'{arch}'") from exc
        self.visual = model.visual
        del model  # the text tower is not used
        size = self.visual.image_size
        self.input_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.embedding_dim = int(self.visual.output_dim)
        self._extra_info = {"arch": arch, "format": fmt}
        self.eval()

    @staticmethod
    def _load_torchscript(model: torch.nn.Module, path: Path) -> None:
        scripted = torch.jit.load(str(path), map_location="cpu")
        state = {k: v for k, v in scripted.state_dict().items() if k not in _JIT_EXTRAS}
        del scripted
        target = model.state_dict()
        state = {k: v.to(target[k].dtype) if k in target else v for k, v in state.items()}
        model.load_state_dict(state, strict=True)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)
