"""face.evoLVe IR-152 and ResNet-152 backbones: LowKey's original attack ensemble.

LowKey (Cherepanova et al., ICLR 2021) attacks four face.evoLVe backbones trained on MS1M
(112x112 crops, 512-d): IR-152 and ResNet-152, each with an ArcFace and a CosFace head
(``Backbone_IR_152_Arcface_Epoch_112.pth``, ``Backbone_IR_152_Cosface_Epoch_70.pth``,
``Backbone_ResNet_152_Arcface_Epoch_65.pth``, ``Backbone_ResNet_152_Cosface_Epoch_68.pth``).
The files are plain ``state_dict``s of face.evoLVe's ``IR_152`` / ``ResNet_152`` modules
(LowKey loads them with a strict ``load_state_dict``); a ``module.`` prefix from
``DataParallel`` is also accepted.

Both architectures are written here from face.evoLVe's layout, with its parameter names:

IR-152 (``Backbone``, mode ``ir``): ``input_layer`` = [conv 3x3 64, BN, PReLU]; ``body`` =
50 ``bottleneck_IR`` units in four stages (64, 128, 256, 512 channels; 3, 8, 36, 3 units; the
first unit of each stage has stride 2). A unit is ``res_layer`` = [BN, conv 3x3, PReLU,
conv 3x3 (stride), BN] plus ``shortcut_layer``: a parameter-free 1x1 max-pool with the stride
when the channel count is unchanged, else [conv 1x1 (stride), BN]. ``output_layer`` = [BN2d
512, Dropout, Flatten, Linear 512*7*7 -> 512, BN1d 512]. BatchNorm eps 1e-5 (PyTorch default).

ResNet-152 (``ResNet``): torchvision-style stem (conv 7x7/2, ``bn1``, ReLU, max-pool 3/2) and
bottleneck stages ``layer1..4`` (3, 8, 36, 3 blocks; stride on the 3x3 conv; ``downsample`` =
[conv 1x1, BN]), then ``bn_o1`` (BN2d 2048), Dropout, flatten (2048x4x4), ``fc`` (Linear ->
512), ``bn_o2`` (BN1d 512).

Input: RGB in [0, 1] normalised with mean 0.5, std 0.5 (i.e. to [-1, 1]), as in face.evoLVe's
training and LowKey's feature extractor.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..registry import register_extractor
from .common import PaperExtractor, load_state_dict_into

IR_UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
RESNET_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}

_LOWKEY_RELEASE = ("the LowKey weights release (Cherepanova et al., ICLR 2021), mirrored at "
                   "github.com/cmu-spuds/lowkey_gradio/releases/tag/weights; architectures from "
                   "face.evoLVe, github.com/ZhaoJ9014/face.evoLVe")


# -- IR-152 ---------------------------------------------------------------------------------
class IRUnit(nn.Module):
    """face.evoLVe ``bottleneck_IR``: BN-conv-PReLU-conv-BN residual + (pooled) shortcut."""

    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        if in_channels == channels:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False),
            nn.PReLU(channels),
            nn.Conv2d(channels, channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRBackbone(nn.Module):
    """face.evoLVe ``Backbone(input_size=[112, 112], num_layers, mode='ir')``."""

    def __init__(self, units: Sequence[int] = IR_UNITS[152], embedding_dim: int = 512):
        super().__init__()
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        body: list[nn.Module] = []
        in_ch = 64
        for width, count in zip((64, 128, 256, 512), units):
            body.append(IRUnit(in_ch, width, 2))
            body += [IRUnit(width, width, 1) for _ in range(count - 1)]
            in_ch = width
        self.body = nn.Sequential(*body)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512), nn.Dropout(), nn.Flatten(),
            nn.Linear(512 * 7 * 7, embedding_dim), nn.BatchNorm1d(embedding_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.body(self.input_layer(x)))


# -- ResNet-152 -----------------------------------------------------------------------------
class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 (x4 channels) bottleneck with ReLU, as in face.evoLVe."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(y + shortcut)


class ResNetBackbone(nn.Module):
    """face.evoLVe ``ResNet(input_size=[112, 112], Bottleneck, layers)``."""

    def __init__(self, blocks: Sequence[int] = RESNET_BLOCKS[152], embedding_dim: int = 512):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_ch = 64
        for i, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
            stride = 1 if i == 1 else 2
            stage = [Bottleneck(in_ch, planes, stride)]
            in_ch = planes * Bottleneck.expansion
            stage += [Bottleneck(in_ch, planes) for _ in range(count - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*stage))
        self.bn_o1 = nn.BatchNorm2d(2048)
        self.dropout = nn.Dropout()
        self.fc = nn.Linear(2048 * 4 * 4, embedding_dim)
        self.bn_o2 = nn.BatchNorm1d(embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn_o1(x))
        return self.bn_o2(self.fc(torch.flatten(x, 1)))


# -- extractors -----------------------------------------------------------------------------
class _EvolveExtractor(PaperExtractor):
    input_size = 112
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)
    embedding_dim = 512
    differentiable = True
    published_at = _LOWKEY_RELEASE
    release = "2019-06"

    def _build(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def __init__(self, name: str, spec: dict[str, Any] | None = None):
        super().__init__(name, spec)
        path, checkpoint = self.load_state()
        self.backbone = self._build()
        self._extra_info = load_state_dict_into(self, self.backbone, checkpoint, path,
                                                prefixes=("module.",))
        self.eval()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


@register_extractor
class EvolveIR152(_EvolveExtractor):
    """face.evoLVe IR-152 (MS1M; ArcFace or CosFace head), as used by LowKey."""

    type_name = "evolve_ir152"
    family = "IR-152 (face.evoLVe)"
    weights_filename = ("Backbone_IR_152_Arcface_Epoch_112.pth (or its CosFace sibling "
                        "Backbone_IR_152_Cosface_Epoch_70.pth)")
    metadata = {"architecture": "IR-152", "training_data": "MS-Celeb-1M (aligned 112x112)",
                "loss": "ArcFace or CosFace (per file)",
                "paper": "face.evoLVe (Zhao et al.); LowKey ensemble (Cherepanova et al., "
                         "ICLR 2021)"}

    def _build(self) -> nn.Module:
        return IRBackbone(IR_UNITS[152])


@register_extractor
class EvolveResNet152(_EvolveExtractor):
    """face.evoLVe ResNet-152 (MS1M; ArcFace or CosFace head), as used by LowKey."""

    type_name = "evolve_resnet152"
    family = "ResNet-152 (face.evoLVe)"
    weights_filename = ("Backbone_ResNet_152_Arcface_Epoch_65.pth (or its CosFace sibling "
                        "Backbone_ResNet_152_Cosface_Epoch_68.pth)")
    metadata = {"architecture": "ResNet-152", "training_data": "MS-Celeb-1M (aligned 112x112)",
                "loss": "ArcFace or CosFace (per file)",
                "paper": "face.evoLVe (Zhao et al.); LowKey ensemble (Cherepanova et al., "
                         "ICLR 2021)"}

    def _build(self) -> nn.Module:
        return ResNetBackbone(RESNET_BLOCKS[152])
