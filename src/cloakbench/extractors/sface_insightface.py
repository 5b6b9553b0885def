"""SFace through insightface's ONNX path (``model_zoo.get_model`` -> ``ArcFaceONNX``).

Why a second SFace: it runs the *same* float ONNX file as :class:`~.sface.SFace`, but through
the code path a real deployment would use (insightface + onnxruntime on uint8 BGR pictures),
so the benchmark exercises insightface's recogniser loader on a real model, and a test can
check that the torch conversion and insightface agree (to 1e-4) on the same pictures.

insightface guesses the input normalisation from the graph's first node names (``Sub``/``Mul``
-> raw pixels, else ``(x - 127.5) / 127.5``). Our float file has the normalisation stripped
(see sface.py), so we set it explicitly: ``input_mean = 127.5``, ``input_std = 128.0``, the
numbers baked into the original graph. ``get_feat`` swaps BGR -> RGB itself (``swapRB=True``),
which is the order the network was trained on.

Not differentiable: pictures are quantised to uint8 (exactly what a PNG on disk holds) and
cross into numpy. Use it as a recogniser, never in a cloak's ensemble.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import MissingWeightsError
from ..images import to_uint8
from .base import ExtractorInfo
from .registry import register_extractor
from .sface import SFaceModel

INPUT_MEAN = 127.5   # in pixel units (0..255), as insightface wants them
INPUT_STD = 128.0


@register_extractor
class SFaceInsightface(SFaceModel):
    """SFace run by ``insightface.model_zoo`` on uint8 BGR crops (black box)."""

    type_name = "sface_insightface"
    differentiable = False
    runtime = "insightface.model_zoo ArcFaceONNX (onnxruntime)"

    def __init__(self, name: str = "sface_insightface", spec: dict[str, Any] | None = None):
        super().__init__(name, spec)
        try:
            from insightface.model_zoo import get_model
        except ImportError as exc:  # pragma: no cover - insightface is a hard dependency
            raise MissingWeightsError(
                f"extractor '{name}' needs the 'insightface' package: .venv/bin/pip install "
                "insightface") from exc
        model = get_model(str(self.onnx_path), providers=["CPUExecutionProvider"])
        if model is None or not hasattr(model, "get_feat"):
            raise MissingWeightsError(
                f"extractor '{name}': insightface did not recognise {self.onnx_path} as a "
                "recognition model (ArcFaceONNX)")
        model.input_mean = INPUT_MEAN
        model.input_std = INPUT_STD
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[0,1] RGB Bx3xHxW -> uint8 BGR HxWx3 list -> insightface ``get_feat`` -> BxD."""
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x.detach().float(), size=(self.input_size, self.input_size),
                              mode="bilinear", align_corners=False)
        rgb = to_uint8(x)
        bgr = [np.ascontiguousarray(im[:, :, ::-1]) for im in rgb]
        feats = self.model.get_feat(bgr)
        return torch.from_numpy(np.asarray(feats, dtype=np.float32)).to(x.device)

    @classmethod
    def describe(cls, name: str, spec: dict[str, Any]) -> ExtractorInfo:
        info = super().describe(name, spec)
        return dataclasses.replace(info, extra={**info.extra, "input_mean_px": INPUT_MEAN,
                                                "input_std_px": INPUT_STD})
