"""``type: onnx``: any ONNX face recogniser, made differentiable with onnx2torch.

A researcher who has a recogniser as an ONNX file (exported from PyTorch, or converted from
Keras/TensorFlow with tf2onnx, e.g. the Fawkes extractors) declares it in the config with its
input convention, and cloaks can attack it (gradients flow to the input pixels) and every
classifier can use it::

    extractors:
      fawkes_v03_high:
        type: onnx
        release_date: 2020-07-01
        weights: weights/fawkes_high_extract.onnx
        params: {input_size: 224, layout: NHWC, channel_order: BGR,
                 mean: [0.48502, 0.45796, 0.40760], std: [0.0039216, 0.0039216, 0.0039216]}

The network sees ``(resize(x) - mean) / std`` of the [0, 1] RGB input (``mean``/``std``
in RGB order, on the [0, 1] scale: a model trained on 0..255 pixels minus a mean pixel ``m``
has ``mean = m / 255`` and ``std = 1 / 255``), then the channels flipped when
``channel_order`` is ``BGR``, then transposed to NHWC when ``layout`` is ``NHWC``.
The output (the ``output_index``-th output when the graph has several) is flattened to
B x D; ``l2_normalize`` divides it by its norm (Fawkes v1.0's ``Extractor.predict`` did).

The graph must have a dynamic batch dimension (tf2onnx and ``torch.onnx.export`` with
``dynamic_axes``/``dynamo`` give one) and only operators onnx2torch converts; a file it
cannot convert is reported with onnx2torch's message and the config key.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..errors import ConfigError, MissingWeightsError
from ..params import Param, resolve
from .base import Extractor, ExtractorInfo, resolve_weights
from .registry import register_extractor


def _three_numbers(v: Any) -> bool:
    return (isinstance(v, (list, tuple)) and len(v) == 3
            and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in v))


def _three_positive(v: Any) -> bool:
    return _three_numbers(v) and all(c > 0 for c in v)


PARAMS = (
    Param("input_size", int, 112, ge=8, deviation=False,
          doc="square input size the network takes (pictures are resized to it)"),
    Param("mean", list, [0.5, 0.5, 0.5], check=_three_numbers, deviation=False,
          accepted="a list of 3 numbers (RGB order, [0, 1] scale)",
          doc="per-channel mean subtracted from the [0, 1] RGB input"),
    Param("std", list, [0.5, 0.5, 0.5], check=_three_positive, deviation=False,
          accepted="a list of 3 positive numbers (RGB order, [0, 1] scale)",
          doc="per-channel divisor after the mean"),
    Param("channel_order", str, "RGB", choices=("RGB", "BGR"), deviation=False,
          doc="channel order the network was trained on"),
    Param("layout", str, "NCHW", choices=("NCHW", "NHWC"), deviation=False,
          doc="tensor layout of the graph's input (Keras models converted by tf2onnx: NHWC)"),
    Param("resize_mode", str, "bilinear", choices=("bilinear", "bicubic", "nearest", "area"),
          deviation=False, doc="interpolation used to reach input_size"),
    Param("output_index", int, 0, ge=0, deviation=False,
          doc="which graph output is the embedding"),
    Param("l2_normalize", bool, False, deviation=False,
          doc="divide the embedding by its L2 norm"),
    Param("embedding_dim", int, None, ge=1, nullable=True, deviation=False,
          doc="expected embedding size (checked when the model loads); null = whatever it gives"),
    Param("family", str, "ONNX recogniser", deviation=False,
          doc="architecture family, for the report"),
)


@register_extractor
class OnnxExtractor(Extractor):
    """Any ONNX recogniser (``extractors.<name>.weights``: the .onnx file), converted with
    onnx2torch into a differentiable module; its input convention is in ``params``."""

    type_name = "onnx"
    family = "ONNX recogniser"
    differentiable = True
    params: ClassVar[tuple[Param, ...]] = PARAMS

    def __init__(self, name: str, spec: dict[str, Any] | None = None):
        spec = dict(spec or {})
        values = self.validate_params(spec.get("params"), where=f"extractors.{name}.params")
        super().__init__(name, spec)
        self.settings = values
        self.input_size = values["input_size"]  # shadows the class attribute (used by describe)
        self.mean = tuple(float(c) for c in values["mean"])
        self.std = tuple(float(c) for c in values["std"])
        self._mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        self._std = torch.tensor(self.std).view(1, 3, 1, 1)
        self.onnx_path = resolve_weights(
            name, spec, filename="an ONNX face recogniser (.onnx)",
            published_at="wherever its authors publish it (convert Keras/TensorFlow models with "
                         "tf2onnx, PyTorch ones with torch.onnx.export; README 'ONNX extractors')")
        self.net = self._convert()
        self.embedding_dim = self._probe_dim()

    @classmethod
    def validate_params(cls, params: Any, *, where: str) -> dict[str, Any]:
        """The checked ``params`` (defaults filled), or a ConfigError naming ``where.<key>``."""
        values, _ = resolve(cls.params, None, params, where=where,
                            owner=f"extractor type '{cls.type_name}'")
        return values

    def _convert(self) -> torch.nn.Module:
        import onnx
        from onnx2torch import convert

        try:
            model = onnx.load(str(self.onnx_path))
        except Exception as exc:  # noqa: BLE001 - any failure means "not an ONNX file"
            raise MissingWeightsError(
                f"extractor '{self.name}': {self.onnx_path} (extractors.{self.name}.weights) is "
                f"not a readable ONNX file: {exc}") from exc
        try:
            net = convert(model)
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(
                f"extractor '{self.name}': onnx2torch cannot convert {self.onnx_path} "
                f"(extractors.{self.name}.weights): {type(exc).__name__}: {exc}") from exc
        return net.eval()

    def _probe_dim(self) -> int:
        with torch.no_grad():
            out = self.embed(self.preprocess(torch.full((2, 3, self.input_size, self.input_size),
                                                        0.5)))
        dim = int(out.shape[1])
        expected = self.settings["embedding_dim"]
        if expected is not None and expected != dim:
            raise ConfigError(
                f"extractor '{self.name}': {self.onnx_path} gives {dim}-d embeddings, but "
                f"extractors.{self.name}.params.embedding_dim says {expected}")
        return dim

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        s = self.input_size
        if x.shape[-1] != s or x.shape[-2] != s:
            mode = self.settings["resize_mode"]
            kwargs = {} if mode in ("nearest", "area") else {"align_corners": False}
            x = F.interpolate(x, size=(s, s), mode=mode, **kwargs)
        x = (x - self._mean) / self._std
        if self.settings["channel_order"] == "BGR":
            x = x.flip(1)
        if self.settings["layout"] == "NHWC":
            x = x.permute(0, 2, 3, 1)
        return x

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if isinstance(out, (list, tuple)):
            k = self.settings["output_index"]
            if k >= len(out):
                raise ConfigError(f"extractor '{self.name}': output_index {k}, but "
                                  f"{self.onnx_path} has {len(out)} outputs")
            out = out[k]
        elif self.settings["output_index"] != 0:
            raise ConfigError(f"extractor '{self.name}': output_index "
                              f"{self.settings['output_index']}, but {self.onnx_path} has one output")
        out = out.reshape(out.shape[0], -1)
        return F.normalize(out, dim=1) if self.settings["l2_normalize"] else out

    @classmethod
    def describe(cls, name: str, spec: dict[str, Any]) -> ExtractorInfo:
        values = cls.validate_params(spec.get("params"), where=f"extractors.{name}.params")
        info = super().describe(name, spec)
        return dataclasses.replace(
            info, family=values["family"], input_size=values["input_size"],
            mean=tuple(float(c) for c in values["mean"]),
            std=tuple(float(c) for c in values["std"]),
            embedding_dim=values["embedding_dim"] or 0,
            extra={"runtime": "onnx2torch conversion", "channel_order": values["channel_order"],
                   "layout": values["layout"], "l2_normalize": values["l2_normalize"]})

    def info(self) -> ExtractorInfo:
        return dataclasses.replace(super().info(), embedding_dim=self.embedding_dim)

