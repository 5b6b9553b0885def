"""Importing the official tools' outputs: name matching, unmatched report, the external cloak."""

import numpy as np
import pytest
import torch
from PIL import Image

from cloakbench.cloaks import build_cloak
from cloakbench.cloaks.external import ExternalCloak, import_external, parse_name
from cloakbench.errors import ConfigError, DataError
from cloakbench.images import to_tensor


def _png(path, value, size=112):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "official"
    _png(root / "alice" / "img1_cloaked.png", 10)   # Fawkes 1.0, identity sub-folder
    _png(root / "img2_attacked.png", 20)            # LowKey, flat, unique stem
    _png(root / "img3_high_cloaked.png", 30)        # Fawkes 0.3 names carry the mode
    _png(root / "bob" / "img1_cloaked.png", 40)
    _png(root / "img2_small.png", 50)               # LowKey's resized original: not a cloak
    _png(root / "zed_cloaked.png", 60)              # no such picture in the dataset
    (root / "notes.txt").write_text("log")
    return root


IDS = ["alice/img1", "alice/img2", "alice/img3", "bob/img1", "carol/img9"]


def test_parse_names():
    from pathlib import Path
    assert parse_name(Path("a_cloaked.png")) == (("a",), "fawkes")
    assert parse_name(Path("a_mid_cloaked.jpeg")) == (("a_mid", "a"), "fawkes")
    assert parse_name(Path("a_attacked.png")) == (("a",), "lowkey")
    assert parse_name(Path("a_attacked.png"), tool="fawkes") is None
    assert parse_name(Path("a.png")) is None and parse_name(Path("a_cloaked.txt")) is None


def test_matching_and_unmatched_report(folder):
    matches, unmatched = import_external(folder, IDS)
    assert {k: v.relative_to(folder).as_posix() for k, v in matches.items()} == {
        "alice/img1": "alice/img1_cloaked.png",
        "alice/img2": "img2_attacked.png",
        "alice/img3": "img3_high_cloaked.png",
        "bob/img1": "bob/img1_cloaked.png",
    }
    assert list(unmatched.columns) == ["side", "name", "reason"]
    rows = {(r.side, r.name): r.reason for r in unmatched.itertuples()}
    assert set(rows) == {("file", "img2_small.png"), ("file", "notes.txt"),
                         ("file", "zed_cloaked.png"), ("image", "carol/img9")}
    assert "no dataset picture with stem 'zed'" in rows[("file", "zed_cloaked.png")]
    assert "not a cloaked picture" in rows[("file", "img2_small.png")]


def test_ambiguous_duplicate_and_literal_stems(tmp_path):
    root = tmp_path / "flat"
    _png(root / "img1_cloaked.png", 1)           # img1 exists for alice and bob
    _png(root / "x_high_cloaked.png", 2)         # dataset has x_high: literal stem wins
    _png(root / "y_cloaked.png", 3)
    _png(root / "y_attacked.png", 4)             # second file for y
    matches, unmatched = import_external(root, ["alice/img1", "bob/img1", "p/x_high", "p/x", "p/y"])
    assert matches["p/x_high"].name == "x_high_cloaked.png" and "p/x" not in matches
    assert matches["p/y"].name == "y_attacked.png"  # sorted order: _attacked before _cloaked
    reasons = dict(zip(unmatched["name"], unmatched["reason"]))
    assert reasons["img1_cloaked.png"].startswith("ambiguous: stem 'img1' names 2 pictures")
    assert reasons["y_cloaked.png"].startswith("duplicate: 'p/y' already matched")
    assert reasons["p/x"] == "no cloaked picture in the folder"
    # bare stems work as ids too
    assert set(import_external(root, ["y"])[0]) == {"y"}


def test_external_cloak_reads_pictures_and_errors_on_missing(folder):
    cloak = build_cloak("official", {"type": "external", "params": {"folder": str(folder)}}, [],
                        seed=0)
    assert isinstance(cloak, ExternalCloak) and not cloak.needs_gradients
    clean = torch.zeros(2, 3, 112, 112)
    out = cloak(clean, image_ids=["alice/img1", "bob/img1"])
    assert torch.allclose(out[0], torch.full((3, 112, 112), 10 / 255))
    assert torch.allclose(out[1], torch.full((3, 112, 112), 40 / 255))
    with pytest.raises(DataError, match="carol/img9") as err:
        cloak(clean, image_ids=["alice/img1", "carol/img9"])
    assert "1 of 2 pictures" in str(err.value)
    with pytest.raises(TypeError, match="image_ids"):
        cloak(clean)
    assert set(cloak.report(IDS)["side"]) == {"file", "image"}
    assert cloak.hyperparameters()["files_found"] == 5


def test_external_cloak_size_check_and_resize(tmp_path):
    root = tmp_path / "big"
    _png(root / "a_cloaked.png", 100, size=224)
    clean = torch.zeros(1, 3, 112, 112)
    with pytest.raises(DataError, match="224x224.*--no-align"):
        ExternalCloak(folder=str(root))(clean, image_ids=["p/a"])
    out = ExternalCloak(folder=str(root), resize=True)(clean, image_ids=["p/a"])
    assert out.shape == (1, 3, 112, 112)
    assert torch.allclose(out, to_tensor(np.full((112, 112, 3), 100, np.uint8)), atol=1e-6)


def test_external_cloak_configuration_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"cloaks\.e\.params\.folder .*: required"):
        build_cloak("e", {"type": "external"}, [], seed=0)
    with pytest.raises(ConfigError, match="does not exist"):
        build_cloak("e", {"type": "external", "params": {"folder": str(tmp_path / "no")}}, [],
                    seed=0)
    with pytest.raises(ConfigError, match=r"params\.tool .*must be one of 'fawkes', 'lowkey', 'any'"):
        ExternalCloak(folder=str(tmp_path), tool="photoshop")
    with pytest.raises(DataError, match="does not exist"):
        import_external(tmp_path / "missing", ["a"])
