"""MagFace (Meng et al., CVPR 2021): iResNet100 trained on MS1MV2, 512-d embeddings.

Architecture: the "improved residual network" (iResNet) used by MagFace and insightface's
``arcface_torch``, written here from the paper/reference layout with the original parameter
names, so the published checkpoint loads key for key:

- stem ``conv1`` (3x3, 64) -> ``bn1`` -> ``prelu``;
- four stages ``layer1..layer4`` (64, 128, 256, 512 channels; 3, 13, 30, 3 blocks for
  iResNet100), each starting with a stride-2 block with a ``downsample`` (1x1 conv + BN);
  a block is ``bn1 -> conv1 (3x3) -> bn2 -> prelu -> conv2 (3x3, stride) -> bn3`` plus the
  shortcut, with no activation after the addition;
- head ``bn2`` (BN2d 512) -> dropout -> flatten (512x7x7) -> ``fc`` (Linear -> 512) ->
  ``features`` (BN1d 512). All BatchNorms use eps 2e-5.

Checkpoint (``magface_epoch_00025.pth``): a dict with ``epoch``, ``arch``, ``state_dict``
(and ``optimizer``); ``state_dict`` holds the backbone under ``features.module.`` (the
``features`` member of MagFace's SoftmaxBuilder, wrapped by DistributedDataParallel) and the
MagLinear head as ``fc.weight`` (512 x 85742), which the embedding does not use.

Input: MagFace's own inference code reads pictures with OpenCV (BGR) and only divides by 255
(``ToTensor`` and ``Normalize(mean=0, std=1)``), 112x112 ArcFace-aligned crops. FaceCure's
``eval_oblivious.py`` feeds the network RGB pictures (it loads them with PIL), and its MagFace
numbers were measured so: ``extractors.<name>.params.channel_order`` is ``RGB`` by default
(FaceCure's), ``BGR`` for MagFace's own order (a recorded deviation from FaceCure).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ...params import Param, resolve
from ..base import ExtractorInfo
from ..registry import register_extractor
from .common import PaperExtractor, load_state_dict_into

IRESNET_LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}
_EPS = 2e-5


def _bn2d(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_EPS)


class IBasicBlock(nn.Module):
    """Pre-activation-style residual unit of iResNet (BN-conv-BN-PReLU-conv-BN + shortcut)."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.bn1 = _bn2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False)
        self.bn2 = _bn2d(channels)
        self.prelu = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn3 = _bn2d(channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), _bn2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


class IResNet(nn.Module):
    """iResNet backbone for 112x112 inputs -> ``embedding_dim`` features."""

    def __init__(self, layers: Sequence[int] = IRESNET_LAYERS[100], embedding_dim: int = 512,
                 dropout: float = 0.4):
        super().__init__()
        widths = (64, 128, 256, 512)
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = _bn2d(64)
        self.prelu = nn.PReLU(64)
        in_ch = 64
        for i, (width, blocks) in enumerate(zip(widths, layers), start=1):
            stage = [IBasicBlock(in_ch, width, stride=2)]
            stage += [IBasicBlock(width, width) for _ in range(blocks - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*stage))
            in_ch = width
        self.bn2 = _bn2d(512)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(512 * 7 * 7, embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim, eps=_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn2(x))
        return self.features(self.fc(torch.flatten(x, 1)))


@register_extractor
class MagFace(PaperExtractor):
    """MagFace iResNet100 (MS1MV2) from the authors' ``magface_epoch_00025.pth``."""

    type_name = "magface"
    family = "iResNet100 (MagFace)"
    input_size = 112
    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)
    channel_order = "RGB"   # the default of params.channel_order (set per instance from the config)
    embedding_dim = 512
    differentiable = True
    weights_filename = "magface_epoch_00025.pth"
    published_at = ("the MagFace repository's model zoo, github.com/IrvingMeng/MagFace "
                    "(iResNet100 / MS1MV2, Google Drive or Baidu Drive links in its README)")
    release = "2021-03"
    metadata = {"architecture": "iResNet100", "training_data": "MS1MV2",
                "loss": "MagFace (magnitude-aware ArcFace)",
                "paper": "Meng et al., MagFace, CVPR 2021"}

    params = (
        Param("channel_order", str, "RGB", choices=("RGB", "BGR"),
              doc="channel order fed to the network: RGB as FaceCure's eval_oblivious.py, "
                  "BGR as MagFace's own OpenCV-based inference"),
    )

    @classmethod
    def resolve_params(cls, name: str, spec: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
        """``extractors.<name>.params`` checked against :attr:`params` (ConfigError naming the key)."""
        return resolve(cls.params, None, (spec or {}).get("params"), where=f"extractors.{name}.params",
                       owner=f"extractor type '{cls.type_name}'")

    @classmethod
    def describe(cls, name: str, spec: dict[str, Any]) -> ExtractorInfo:
        info = super().describe(name, spec)
        values, overridden = cls.resolve_params(name, spec)
        return ExtractorInfo(**{**info.__dict__, "extra": {**info.extra, **values, "params_overridden": overridden}})

    def __init__(self, name: str, spec: dict[str, Any] | None = None):
        super().__init__(name, spec)
        values, self._params_overridden = self.resolve_params(name, spec)
        self.channel_order = values["channel_order"]
        path, checkpoint = self.load_checkpoint()
        if not isinstance(checkpoint, dict):
            raise self.format_error(path, f"expected a dict, found {type(checkpoint).__name__}")
        state = checkpoint.get("state_dict", checkpoint)
        self.backbone = IResNet(IRESNET_LAYERS[100])
        self._extra_info = load_state_dict_into(
            self, self.backbone, state, path,
            prefixes=("features.module.", "module.features.", "features.", "module."))
        self._extra_info = {**self._extra_info, "checkpoint_epoch": checkpoint.get("epoch"),
                            "checkpoint_arch": checkpoint.get("arch"),
                            "params_overridden": self._params_overridden}
        self.eval()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)
