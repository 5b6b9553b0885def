"""Nothing lost, nothing merged (issue 13, item 4): every file under an identity folder ends in
the manifest or in rejects.parquet with a reason; identity folders and pictures whose names
sanitise alike keep distinct ids; ids of ordinary names do not change."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cloakbench.data.prepare import (_short_hash, assign_image_ids, discover, identity_ids,
                                     picture_ids, prepare_dataset)
from pictures import smooth_image


def _pictures(folder: Path, names, seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    base = smooth_image(rng)
    for name in names:
        noisy = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / name)


def _every_file_under(folder: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(folder):
        out |= {str(Path(dirpath) / n) for n in filenames}
        out |= {str(Path(dirpath) / n) for n in dirnames if (Path(dirpath) / n).is_symlink()}
    return out


@pytest.fixture
def messy(tmp_path) -> Path:
    root = tmp_path / "ds"
    _pictures(root / "Anne Hathaway", [f"{k}.jpg" for k in range(4)], 0)
    _pictures(root / "Anne_Hathaway", [f"{k}.jpg" for k in range(4)], 1)
    d = root / "person_a"
    _pictures(d, ["0.jpg", "1.jpg", "a.jpg", "a.png", "x y.jpg", "x_y.jpg", "IMG 7.JPEG"], 2)
    (d / "notes.txt").write_text("not a picture")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    (d / "gone.jpg").symlink_to(d / "never_existed.jpg")
    (d / "link.jpg").symlink_to(d / "0.jpg")                 # a working symlink is a picture
    _pictures(d / "extra", ["deep.jpg"], 3)
    _pictures(root / ".hidden_identity", ["0.jpg"], 4)       # hidden folders are not identities
    (root / "README.txt").write_text("a file next to the identity folders, not in one")
    return root


def test_every_file_ends_in_manifest_or_rejects(messy, tmp_path):
    manifest, rejects = prepare_dataset(messy, tmp_path / "out", pre_aligned=True,
                                        min_face_size=32, min_pictures=4)
    identity_dirs = [messy / n for n in ("Anne Hathaway", "Anne_Hathaway", "person_a")]
    expected = set().union(*(_every_file_under(d) for d in identity_dirs))
    kept, rejected = set(manifest["source_path"]), set(rejects["source_path"])
    assert kept | rejected == expected and not kept & rejected
    assert len(manifest) + len(rejects) == len(expected) == len(discover(messy))
    reason = dict(zip(rejects["source_path"], rejects["reason"]))
    a = messy / "person_a"
    assert reason[str(a / "notes.txt")].startswith("not a picture: suffix '.txt'")
    assert reason[str(a / "broken.jpg")].startswith("unreadable:")
    assert reason[str(a / "gone.jpg")] == (f"dangling symlink: target {a / 'never_existed.jpg'} "
                                           "does not exist")
    assert reason[str(a / "extra" / "deep.jpg")].startswith("in a subfolder")
    assert str(a / "link.jpg") in kept
    # the pictures on disk are exactly the manifest's
    on_disk = {str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out" / "images").rglob("*.png")}
    assert on_disk == set(manifest["path"])
    assert manifest["n_faces"].isna().all()  # pre_aligned: nothing detected


def test_identities_that_sanitise_alike_stay_separate(messy, tmp_path):
    manifest, rejects = prepare_dataset(messy, tmp_path / "out", pre_aligned=True,
                                        min_face_size=32, min_pictures=4)
    assert not rejects["reason"].str.contains("duplicate").any()
    per = manifest.groupby("identity")["image_id"].apply(lambda s: {i.split("/")[0] for i in s})
    hashed = f"Anne_Hathaway_{_short_hash('Anne Hathaway')}"
    assert per["Anne_Hathaway"] == {"Anne_Hathaway"}          # already safe: unchanged
    assert per["Anne Hathaway"] == {hashed}
    assert re.fullmatch(r"Anne_Hathaway_[0-9a-f]{6}", hashed)
    assert (manifest["identity"] == "Anne Hathaway").sum() == 4
    assert (manifest["identity"] == "Anne_Hathaway").sum() == 4
    assert manifest["image_id"].is_unique
    # separate identities in the split too (each has its own train/test pictures)
    assert manifest.groupby("identity")["split"].nunique().eq(2).all()


def test_same_stem_two_extensions_both_kept(messy, tmp_path):
    manifest, _ = prepare_dataset(messy, tmp_path / "out", pre_aligned=True, min_face_size=32,
                                  min_pictures=4)
    ids = dict(zip(manifest["source_path"].map(lambda p: Path(p).name), manifest["image_id"]))
    assert ids["a.jpg"] == "person_a/a_jpg" and ids["a.png"] == "person_a/a_png"
    # "x y" and "x_y" sanitise alike with the same extension: a hash of the file name
    assert ids["x y.jpg"] == f"person_a/x_y_jpg_{_short_hash('x y.jpg')}"
    assert ids["x_y.jpg"] == f"person_a/x_y_jpg_{_short_hash('x_y.jpg')}"
    # names that collide with nothing keep the plain sanitised stem (as before)
    assert ids["0.jpg"] == "person_a/0" and ids["IMG 7.JPEG"] == "person_a/IMG_7"
    assert ids["link.jpg"] == "person_a/link"
    a = np.asarray(Image.open(tmp_path / "out" / "images" / "person_a" / "a_jpg.png"))
    b = np.asarray(Image.open(tmp_path / "out" / "images" / "person_a" / "a_png.png"))
    assert a.shape == b.shape == (112, 112, 3) and not np.array_equal(a, b)


def test_ids_are_stable_and_unique():
    assert identity_ids(["person_00", "Adam_Brody"]) == {"person_00": "person_00",
                                                         "Adam_Brody": "Adam_Brody"}
    assert identity_ids(["Zoë Saldana"]) == {"Zoë Saldana": "Zo_Saldana"}  # no clash: no hash
    two = identity_ids(["Anne Hathaway", "Anne  Hathaway"])                # neither is safe
    assert len(set(two.values())) == 2 and all(v.startswith("Anne_Hathaway_") for v in two.values())
    # an identity's id does not depend on the order of discovery
    assert identity_ids(["b c", "b_c"]) == identity_ids(["b_c", "b c"])
    paths = [Path("p/a.jpg"), Path("p/a.png"), Path("p/b.jpg"), Path("p/a_jpg.png")]
    ids = picture_ids(paths)
    assert len(set(ids.values())) == 4 and ids[Path("p/b.jpg")] == "b"


def test_facescrub_non_pictures_are_rejected(tmp_path):
    face = tmp_path / "download" / "Adam_Brody" / "face"
    _pictures(face, ["Adam_Brody_1.jpg", "Adam_Brody_2.jpg"], 0)
    (face / "Adam_Brody_3.gif.part").write_bytes(b"partial download")
    _pictures(tmp_path / "download" / "Adam_Brody" / "uncropped", ["Adam_Brody_1.jpg"], 1)
    found = discover(tmp_path)
    assert [f.path.name for f in found] == ["Adam_Brody_1.jpg", "Adam_Brody_2.jpg",
                                            "Adam_Brody_3.gif.part"]
    assert found[2].problem.startswith("not a picture") and found[0].problem is None
    assert assign_image_ids(found) == ["Adam_Brody/Adam_Brody_1", "Adam_Brody/Adam_Brody_2", None]


def test_folder_of_non_pictures_only(tmp_path):
    (tmp_path / "someone").mkdir()
    (tmp_path / "someone" / "x.txt").write_text("x")
    from cloakbench.errors import DataError
    with pytest.raises(DataError, match="no pictures"):
        discover(tmp_path)
