"""Shared by tests/test_person_*.py: one person's real photos (obama.jpg, obama2.jpg,
obama3.jpg from the face_recognition 1.3.0 sdist, see face_photos.py) in a folder, and
``cloakbench cloak`` run on them with the tiny config's SFace-ensemble PGD."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from face_photos import FR_MEMBER, FR_SDIST, different_people

from repo_paths import ROOT
TEST_CONFIG = ROOT / "config" / "test.yaml"
PERSON = ("obama.jpg", "obama2.jpg", "obama3.jpg")


def write_person(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(FR_SDIST) as tar:
        for name in PERSON:
            (folder / name).write_bytes(tar.extractfile(FR_MEMBER.format(name)).read())
    return folder


def write_gallery(folder: Path) -> Path:
    """8 other real people (one aligned crop each, from installed packages) plus biden.jpg."""
    for name, crop in different_people().items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(crop).save(folder / name / "0.png")
    (folder / "biden").mkdir(parents=True, exist_ok=True)
    with tarfile.open(FR_SDIST) as tar:
        (folder / "biden" / "biden.jpg").write_bytes(tar.extractfile(FR_MEMBER.format("biden.jpg")).read())
    return folder


def grey_picture(path: Path, size=(300, 200)) -> Path:
    Image.fromarray(np.full((size[1], size[0], 3), 128, np.uint8)).save(path)
    return path
