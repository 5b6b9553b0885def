"""FaceNet: Inception-ResNet-v1 (Schroff et al. 2015; weights of David Sandberg's TensorFlow
models converted by facenet-pytorch), 160x160 input, 512-d embeddings.

The weight files are facenet-pytorch's releases ``20180402-114759-vggface2.pt`` (VGGFace2) and
``20180408-102900-casia-webface.pt`` (CASIA-WebFace): plain ``state_dict``s of its
``InceptionResnetV1``, including the classification layer ``logits.*`` (8631 or 10575
classes), which the embedding does not use.

facenet-pytorch itself is not a dependency: its 2.6.0 release pins torch<2.3, numpy<2 and
Pillow<10.3. The network is written here from the Inception-ResNet-v1 description with
facenet-pytorch's module names, so its files load key for key:

``conv2d_1a`` (3x3/2, 32), ``conv2d_2a`` (3x3, 32), ``conv2d_2b`` (3x3 pad 1, 64),
``maxpool_3a`` (3/2), ``conv2d_3b`` (1x1, 80), ``conv2d_4a`` (3x3, 192), ``conv2d_4b`` (3x3/2,
256); ``repeat_1`` = 5 x Block35 (scale 0.17); ``mixed_6a``; ``repeat_2`` = 10 x Block17
(scale 0.10); ``mixed_7a``; ``repeat_3`` = 5 x Block8 (scale 0.20); ``block8`` (Block8, scale
1, no ReLU); global average pool, dropout, ``last_linear`` (1792 -> 512, no bias),
``last_bn`` (BN1d). Every conv unit is conv (no bias) -> BN (eps 1e-3) -> ReLU, stored as
``<name>.conv`` / ``<name>.bn``; the residual blocks' ``conv2d`` projections have a bias.

Input: RGB, ``fixed_image_standardization`` = (x * 255 - 127.5) / 128, i.e. mean 0.5 and
std 128/255 on [0, 1] pictures. The reference forward L2-normalises; this extractor returns
the ``last_bn`` output (the contract: embeddings not normalised).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..registry import register_extractor
from .common import PaperExtractor, load_state_dict_into


class ConvUnit(nn.Module):
    """conv (no bias) -> BatchNorm (eps 1e-3, TensorFlow's) -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class _Residual(nn.Module):
    """Inception-ResNet block: concatenated branches -> 1x1 projection, scaled, + input."""

    def __init__(self, width: int, branch_width: int, scale: float, relu: bool):
        super().__init__()
        self.scale = scale
        self.conv2d = nn.Conv2d(branch_width, width, 1)
        self.relu = nn.ReLU() if relu else None

    def branches(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x + self.scale * self.conv2d(torch.cat(self.branches(x), 1))
        return out if self.relu is None else self.relu(out)


class Block35(_Residual):
    """35x35 grid (here 17x17 at 160 input) block on 256 channels."""

    def __init__(self, scale: float = 1.0):
        super().__init__(256, 96, scale, relu=True)
        self.branch0 = ConvUnit(256, 32, 1)
        self.branch1 = nn.Sequential(ConvUnit(256, 32, 1), ConvUnit(32, 32, 3, padding=1))
        self.branch2 = nn.Sequential(ConvUnit(256, 32, 1), ConvUnit(32, 32, 3, padding=1),
                                     ConvUnit(32, 32, 3, padding=1))

    def branches(self, x):
        return [self.branch0(x), self.branch1(x), self.branch2(x)]


class _Factorised(_Residual):
    """Inception-ResNet block with a 1x1 branch and a factorised 1xk / kx1 branch."""

    def __init__(self, width: int, branch: int, k: int, scale: float, relu: bool):
        super().__init__(width, 2 * branch, scale, relu=relu)
        self.branch0 = ConvUnit(width, branch, 1)
        self.branch1 = nn.Sequential(ConvUnit(width, branch, 1),
                                     ConvUnit(branch, branch, (1, k), padding=(0, k // 2)),
                                     ConvUnit(branch, branch, (k, 1), padding=(k // 2, 0)))

    def branches(self, x):
        return [self.branch0(x), self.branch1(x)]


class Block17(_Factorised):
    """17x17 grid block on 896 channels with factorised 1x7 / 7x1 convolutions."""

    def __init__(self, scale: float = 1.0):
        super().__init__(896, 128, 7, scale, relu=True)


class Block8(_Factorised):
    """8x8 grid block on 1792 channels with factorised 1x3 / 3x1 convolutions."""

    def __init__(self, scale: float = 1.0, relu: bool = True):
        super().__init__(1792, 192, 3, scale, relu=relu)


class Mixed6a(nn.Module):
    """Reduction 256 -> 896 channels (stride 2)."""

    def __init__(self):
        super().__init__()
        self.branch0 = ConvUnit(256, 384, 3, stride=2)
        self.branch1 = nn.Sequential(ConvUnit(256, 192, 1), ConvUnit(192, 192, 3, padding=1),
                                     ConvUnit(192, 256, 3, stride=2))
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x):
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)


class Mixed7a(nn.Module):
    """Reduction 896 -> 1792 channels (stride 2)."""

    def __init__(self):
        super().__init__()
        self.branch0 = nn.Sequential(ConvUnit(896, 256, 1), ConvUnit(256, 384, 3, stride=2))
        self.branch1 = nn.Sequential(ConvUnit(896, 256, 1), ConvUnit(256, 256, 3, stride=2))
        self.branch2 = nn.Sequential(ConvUnit(896, 256, 1), ConvUnit(256, 256, 3, padding=1),
                                     ConvUnit(256, 256, 3, stride=2))
        self.branch3 = nn.MaxPool2d(3, stride=2)

    def forward(self, x):
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class InceptionResnetV1(nn.Module):
    """Inception-ResNet-v1 embedding network (no classification layer)."""

    def __init__(self, embedding_dim: int = 512, dropout: float = 0.6):
        super().__init__()
        self.conv2d_1a = ConvUnit(3, 32, 3, stride=2)
        self.conv2d_2a = ConvUnit(32, 32, 3)
        self.conv2d_2b = ConvUnit(32, 64, 3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = ConvUnit(64, 80, 1)
        self.conv2d_4a = ConvUnit(80, 192, 3)
        self.conv2d_4b = ConvUnit(192, 256, 3, stride=2)
        self.repeat_1 = nn.Sequential(*[Block35(0.17) for _ in range(5)])
        self.mixed_6a = Mixed6a()
        self.repeat_2 = nn.Sequential(*[Block17(0.10) for _ in range(10)])
        self.mixed_7a = Mixed7a()
        self.repeat_3 = nn.Sequential(*[Block8(0.20) for _ in range(5)])
        self.block8 = Block8(1.0, relu=False)
        self.avgpool_1a = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.last_linear = nn.Linear(1792, embedding_dim, bias=False)
        self.last_bn = nn.BatchNorm1d(embedding_dim, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in (self.conv2d_1a, self.conv2d_2a, self.conv2d_2b, self.maxpool_3a,
                      self.conv2d_3b, self.conv2d_4a, self.conv2d_4b, self.repeat_1,
                      self.mixed_6a, self.repeat_2, self.mixed_7a, self.repeat_3, self.block8,
                      self.avgpool_1a):
            x = layer(x)
        x = self.dropout(torch.flatten(x, 1))
        return self.last_bn(self.last_linear(x))


@register_extractor
class FaceNet(PaperExtractor):
    """FaceNet Inception-ResNet-v1 from a facenet-pytorch weight file (VGGFace2 or CASIA)."""

    type_name = "facenet"
    family = "Inception-ResNet-v1 (FaceNet)"
    input_size = 160
    mean = (127.5 / 255.0,) * 3
    std = (128.0 / 255.0,) * 3
    embedding_dim = 512
    differentiable = True
    weights_filename = ("20180402-114759-vggface2.pt (or the CASIA-WebFace model "
                        "20180408-102900-casia-webface.pt)")
    published_at = ("facenet-pytorch's GitHub release v2.2.9, "
                    "github.com/timesler/facenet-pytorch/releases/tag/v2.2.9")
    release = "2018-04"
    metadata = {"architecture": "Inception-ResNet-v1",
                "training_data": "VGGFace2 (or CASIA-WebFace, per file)",
                "loss": "softmax + center loss (David Sandberg's facenet)",
                "paper": "Schroff et al., FaceNet, CVPR 2015"}

    def __init__(self, name: str, spec: dict[str, Any] | None = None):
        super().__init__(name, spec)
        path, checkpoint = self.load_state()
        self.backbone = InceptionResnetV1()
        info = load_state_dict_into(self, self.backbone, checkpoint, path, prefixes=("module.",),
                                    ignore=("logits.",))
        logits = checkpoint.get(f"{info['prefix']}logits.weight") if isinstance(checkpoint, dict) \
            else None
        self._extra_info = {**info, "classes_in_file": None if logits is None
                            else int(logits.shape[0])}
        self.eval()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)
