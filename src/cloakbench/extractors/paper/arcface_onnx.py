"""ArcFace recognisers of insightface's model packs (ONNX), e.g. ``w600k_r50.onnx``.

insightface distributes its recognisers as ONNX files inside model packs: ``buffalo_l``
(``w600k_r50.onnx``: iResNet50, WebFace600K, ArcFace loss) and ``antelopev2``
(``glintr100.onnx``: iResNet100, Glint360K), among others. Two extractor types read the same
file, because "differentiable" must be known from the type alone (a cloak's ensemble may only
name differentiable extractors):

``arcface_onnx`` - loaded by ``insightface.model_zoo.get_model(path)``, exactly as insightface
    deploys it: onnxruntime, insightface's own input normalisation (it guesses
    ``input_mean``/``input_std`` from the graph: ``127.5``/``127.5`` for PyTorch-exported
    packs, raw pixels for MXNet-converted graphs that normalise inside). A black box: no
    gradients (use it as a recogniser / oblivious trainer's model, not in a cloak's ensemble).

``arcface_onnx_torch`` - the same file converted to a torch module with ``onnx2torch``, so it
    can be attacked with gradients and fine-tuned. It still asks insightface for the input
    normalisation (and checks the file is a recogniser), then converts the graph. Before
    conversion, two exporter artefacts onnx2torch cannot read are rewritten without changing
    the function: ``Identity`` nodes that merely forward a weight (the TorchScript exporter
    emits them for shared initialisers) and ``Reshape(allowzero=1)`` with a constant target
    shape that has no zero (newer exporters). Conversion failures name the file and point to
    ``arcface_onnx``.

Both take RGB [0, 1] Bx3xHxW, resize to the file's input size (112) and feed insightface's
layout: RGB, ``(255 * x - input_mean) / input_std``. The spec may override the guess with
``input_mean`` / ``input_std`` (pixel units, as insightface takes them) for packs that differ.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..registry import register_extractor
from .common import PaperExtractor, short_error

_PUBLISHED_AT = ("insightface's model packs (buffalo_l.zip holds w600k_r50.onnx, antelopev2.zip "
                 "holds glintr100.onnx), github.com/deepinsight/insightface/releases, listed "
                 "in insightface's python-package README")


class _InsightfaceRecogniser(PaperExtractor):
    family = "iResNet (insightface ArcFace, ONNX)"
    input_size = 112
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)
    embedding_dim = 512
    spec_keys = ("input_mean", "input_std")  # override what insightface guesses from the graph
    weights_filename = ("w600k_r50.onnx (or another insightface pack's recogniser, "
                        "e.g. glintr100.onnx)")
    published_at = _PUBLISHED_AT
    release = "2021-08"
    metadata = {"architecture": "iResNet50 (w600k_r50) / iResNet100 (glintr100), per file",
                "training_data": "WebFace600K (w600k_r50) / Glint360K (glintr100), per file",
                "loss": "ArcFace", "paper": "Deng et al., ArcFace, CVPR 2019; insightface packs"}

    def _load_insightface(self) -> Any:
        path = self.weights_path()
        if path.suffix.lower() != ".onnx":
            raise self.format_error(path, "insightface only loads recognisers from '*.onnx' files")
        from insightface.model_zoo import get_model

        try:
            model = get_model(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several types
            raise self.format_error(path, f"insightface/onnxruntime could not load it: "
                                          f"{short_error(exc)}") from exc
        if model is None or not hasattr(model, "get_feat") or not hasattr(model, "input_mean"):
            shape = None
            try:
                import onnxruntime
                shape = onnxruntime.InferenceSession(
                    str(path), providers=["CPUExecutionProvider"]).get_inputs()[0].shape
            except Exception:  # noqa: BLE001
                pass
            raise self.format_error(
                path, f"insightface does not route it to a recogniser (ArcFaceONNX) but to "
                      f"{type(model).__name__}; input shape {shape}, expected Nx3x112x112")
        if "input_mean" in self.spec:
            model.input_mean = float(self.spec["input_mean"])
        if "input_std" in self.spec:
            model.input_std = float(self.spec["input_std"])
        self.weights_file = path
        self.input_size = int(model.input_size[0])
        out_dim = model.output_shape[-1] if model.output_shape else None
        if isinstance(out_dim, int) and out_dim > 0:
            self.embedding_dim = out_dim
        # insightface feeds (255 x - input_mean) / input_std; on [0, 1] input that is
        # (x - input_mean / 255) / (input_std / 255).
        self.mean = (model.input_mean / 255.0,) * 3
        self.std = (model.input_std / 255.0,) * 3
        self._mean.fill_(self.mean[0])
        self._std.fill_(self.std[0])
        self._extra_info = {"input_mean_px": model.input_mean, "input_std_px": model.input_std,
                            "onnx_input": model.input_name, "onnx_output": model.output_names[0]}
        return model


@register_extractor
class ArcFaceONNX(_InsightfaceRecogniser):
    """An insightface-pack recogniser run by insightface + onnxruntime (black box)."""

    type_name = "arcface_onnx"
    differentiable = False

    def __init__(self, name: str, spec: dict[str, Any] | None = None):
        super().__init__(name, spec)
        self.model = self._load_insightface()
        self._extra_info["runtime"] = "insightface.model_zoo ArcFaceONNX (onnxruntime)"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """RGB [0, 1] -> pixel-scale RGB float -> ``ArcFaceONNX.forward`` (its normalisation)."""
        with torch.no_grad():
            x = x.detach().float()
            if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
                x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                                  align_corners=False)
            feats = self.model.forward((x * 255.0).cpu().numpy())
        return torch.from_numpy(np.asarray(feats, dtype=np.float32)).to(x.device)


@register_extractor
class ArcFaceONNXTorch(_InsightfaceRecogniser):
    """The same recogniser converted to torch by onnx2torch (differentiable)."""

    type_name = "arcface_onnx_torch"
    differentiable = True

    def __init__(self, name: str, spec: dict[str, Any] | None = None):
        super().__init__(name, spec)
        model = self._load_insightface()
        path = self.weights_file
        del model  # only its normalisation and checks were needed
        import onnx
        from onnx2torch import convert

        try:
            graph = prepare_for_onnx2torch(onnx.load(str(path)))
            self.net = convert(graph)
        except Exception as exc:  # noqa: BLE001 - onnx2torch raises many types
            raise self.format_error(
                path, f"onnx2torch could not convert it ({type(exc).__name__}: "
                      f"{short_error(exc, 200)}); "
                      f"the black-box type 'arcface_onnx' still runs it through insightface"
            ) from exc
        self._extra_info["runtime"] = "onnx2torch conversion (differentiable)"
        self.eval()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.flatten(1)


def prepare_for_onnx2torch(model: Any) -> Any:
    """Rewrite exporter artefacts onnx2torch cannot read, keeping the function identical.

    - ``Identity`` nodes whose input is an initializer (weight sharing in TorchScript-exported
      graphs): consumers read the initializer directly.
    - ``Reshape`` with ``allowzero=1`` whose target shape is a constant without zeros:
      ``allowzero`` only matters for zero entries, so it is dropped.
    """
    from onnx import numpy_helper

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    outputs = {out.name for out in graph.output}
    alias: dict[str, str] = {}
    kept = []
    for node in graph.node:
        if (node.op_type == "Identity" and len(node.input) == 1 and node.input[0] in initializers
                and node.output[0] not in outputs):
            alias[node.output[0]] = node.input[0]
        else:
            kept.append(node)
    if alias:
        for node in kept:
            for i, name in enumerate(node.input):
                while name in alias:
                    name = alias[name]
                node.input[i] = name
        del graph.node[:]
        graph.node.extend(kept)
    constants = {}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    constants[node.output[0]] = numpy_helper.to_array(attr.t)
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        for attr in list(node.attribute):
            if attr.name == "allowzero" and attr.i == 1:
                shape_name = node.input[1]
                if shape_name in initializers:
                    shape = numpy_helper.to_array(initializers[shape_name])
                else:
                    shape = constants.get(shape_name)
                if shape is not None and not np.any(np.asarray(shape) == 0):
                    node.attribute.remove(attr)
    return model


__all__ = ["ArcFaceONNX", "ArcFaceONNXTorch", "prepare_for_onnx2torch"]
