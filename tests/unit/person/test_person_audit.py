"""cloakbench audit: one person's protection against pretrained recognisers."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from face_photos import SKIP_REASON, fr_photos_available
from person_testlib import TEST_CONFIG, write_gallery, write_person


def test_match_photos_by_stem(tmp_path):
    from cloakbench.person.audit import match_photos

    clean, cloaked = tmp_path / "clean", tmp_path / "cloaked"
    clean.mkdir()
    cloaked.mkdir()
    for n in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        (clean / n).write_bytes(b"x")
    for n in ("a_cloaked.png", "b_attacked.png", "c.png", "e_cloaked.png", "cloak_table.csv"):
        (cloaked / n).write_bytes(b"x")
    pairs, skipped = match_photos(clean, cloaked)
    assert [(s, c.name, k.name) for s, c, k in pairs] == [
        ("a", "a.jpg", "a_cloaked.png"), ("b", "b.jpg", "b_attacked.png"), ("c", "c.jpg", "c.png")]
    reasons = {p.split("/")[-1]: r for p, r in ((s["file"], s["reason"]) for s in skipped)}
    assert reasons == {"d.jpg": "no cloaked copy with this stem", "e_cloaked.png": "no clean photo with this stem"}


def test_thresholds_declared_on_the_pretrained_recognisers():
    from cloakbench.extractors.registry import extractor_class
    from cloakbench.person.audit import default_extractor_types, same_person

    assert (extractor_class("sface").verify_metric, extractor_class("sface").verify_threshold) == ("cosine", 0.363)
    assert (extractor_class("dlib_resnet").verify_metric,
            extractor_class("dlib_resnet").verify_threshold) == ("euclidean", 0.6)
    assert {"sface", "dlib_resnet"} <= set(default_extractor_types())
    a = np.array([[1.0, 0.0]])
    b = np.array([[0.9, np.sqrt(1 - 0.81)], [0.3, np.sqrt(1 - 0.09)]])
    assert same_person("cosine", 0.363, a, b).tolist() == [[True, False]]
    assert same_person("euclidean", 0.6, a, b).tolist() == [[True, False]]  # distances 0.45, 1.18


def test_audit_embeddings_protection_figures():
    from cloakbench.person.audit import audit_embeddings

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 16))
    gl = [f"id{i}" for i in range(6) for _ in range(4)]
    g = np.repeat(centres, 4, axis=0) + 0.05 * rng.normal(size=(24, 16))
    me = rng.normal(size=16)
    clean = me + 0.05 * rng.normal(size=(3, 16))
    # cloaked copies moved onto identity 2's features: identification fooled
    cloaked = centres[2] + 0.05 * rng.normal(size=(3, 16))
    r = audit_embeddings(g, gl, clean, cloaked, metric="cosine", threshold=0.363)
    assert r["knn1_clean"] == 0.0 and r["linear_clean"] == 0.0
    assert r["knn1_cloaked"] == 1.0 and r["linear_cloaked"] == 1.0
    assert r["verify_clean"] == 0.0 and r["verify_same_photo"] == 1.0
    # an ineffective cloak (cloaked == clean) protects nobody
    r0 = audit_embeddings(g, gl, clean, clean.copy(), metric="cosine", threshold=0.363)
    assert r0["knn1_cloaked"] == 0.0 and r0["verify_cloaked"] == 0.0 and r0["verify_same_photo"] == 0.0
    # one photo: the leave-one-out figures are undefined, not invented
    r1 = audit_embeddings(g, gl, clean[:1], cloaked[:1], metric="cosine", threshold=0.363)
    assert r1["knn1_clean"] is None and r1["verify_cloaked"] is None and r1["knn1_cloaked"] == 1.0


@pytest.mark.skipif(not fr_photos_available(), reason=SKIP_REASON)
def test_audit_real_person_cloaked_against_sface(tmp_path, capsys):
    from cloakbench.cli import main

    clean = write_person(tmp_path / "clean")
    gallery = write_gallery(tmp_path / "gallery")
    cloaked = tmp_path / "cloaked"
    assert main(["cloak", str(clean), str(cloaked), "--cloak", "pgd", "--configfile", str(TEST_CONFIG),
                 "--device", "cpu"]) == 0
    t0 = time.perf_counter()
    out = tmp_path / "audit"
    assert main(["audit", "--clean", str(clean), "--cloaked", str(cloaked), "--gallery", str(gallery),
                 "--extractors", "sface", "dlib_resnet", "--out", str(out), "--device", "cpu"]) == 0
    assert time.perf_counter() - t0 < 180
    printed = capsys.readouterr().out
    result = json.loads((out / "audit.json").read_text())
    assert result["stems"] == ["obama", "obama2", "obama3"]
    assert result["gallery"]["identities"] == 9
    sface = result["recognisers"]["sface"]
    # without cloaking SFace recognises the person; the cloak (white box on SFace) protects them
    assert sface["knn1_clean"] == 0.0 and sface["verify_clean"] == 0.0
    # (identification against this small real gallery of 9 single-photo identities: the
    # untargeted cloak moves the photos away from the person but not nearer anyone else, so
    # 1-NN may still pick the person; with the default demo gallery it does not, see README)
    assert sface["verify_cloaked"] > sface["verify_clean"]
    assert sface["knn1_cloaked"] >= sface["knn1_clean"] and sface["linear_cloaked"] >= sface["linear_clean"]
    assert np.mean(sface["same_photo_score"]) < 0.5  # a clean photo and its own copy: cosine well below 1
    assert set(result["recognisers"]) == {"sface", "dlib_resnet"}
    assert (out / "audit.png").stat().st_size > 5000 and (out / "audit.csv").is_file()
    assert "sface" in printed and "cosine 0.363" in printed and "euclidean 0.6" in printed
