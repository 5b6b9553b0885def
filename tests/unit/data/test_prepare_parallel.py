"""prepare_dataset over several processes and over align_shard's shards (issue 15, item 2):
the manifest, the rejects and every PNG's bytes are those of the one-process, unsharded run.

The dataset is test_prepare.py's ``folder_dataset`` (faceless colour blobs, an unreadable file,
a tiny picture, a sparse identity) plus real faces (scikit-image's astronaut, crops of
insightface's t1.jpg), so that every outcome occurs: kept, not a picture, dangling symlink,
in a subfolder, unreadable, too large, too small, no face, face too small, too few pictures.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import face_photos
from cloakbench.data.prepare import SHARD_TABLE, align_shard, discover, prepare_dataset
from cloakbench.errors import DataError

SETTINGS = dict(min_face_size=40, max_pixels=1_000_000)  # t1.jpg (1280x886) is too large
MIN_PICTURES = 3


@pytest.fixture
def faces_dataset(folder_dataset: Path) -> Path:
    from skimage import data as skdata

    astro = skdata.astronaut()
    root = folder_dataset
    d = root / "astronaut"
    d.mkdir()
    for name, img in {"orig.png": astro, "flip.png": astro[:, ::-1], "crop.jpg": astro[20:480, 40:500],
                      "dark.png": (astro * 0.7).astype(np.uint8), "rot.png": np.rot90(astro),
                      # a 27 px wide face at 160x160: "face too small" (min_face_size 40)
                      "small.png": cv2.resize(astro, (160, 160), interpolation=cv2.INTER_AREA)}.items():
        Image.fromarray(np.ascontiguousarray(img)).save(d / name)
    (d / "notes.txt").write_text("not a picture")
    (d / "gone.jpg").symlink_to(d / "never_existed.jpg")
    (d / "extra").mkdir()
    Image.fromarray(astro).save(d / "extra" / "deep.png")
    t1_path = face_photos._package_dir("insightface") / "data" / "images" / "t1.jpg"
    t1 = np.asarray(Image.open(t1_path).convert("RGB"))
    g = root / "group"
    g.mkdir()
    Image.fromarray(t1).save(g / "whole.jpg")  # 1.13 megapixels > max_pixels: "too large"
    for k, (y, x) in enumerate([(0, 0), (0, 400), (200, 600), (150, 200)]):
        Image.fromarray(t1[y:y + 600, x:x + 640]).save(g / f"crop{k}.png")
    s = root / "astronaut_sparse"
    s.mkdir()
    for side in (400, 300):  # 2 usable pictures < min_pictures
        Image.fromarray(cv2.resize(astro, (side, side), interpolation=cv2.INTER_AREA)).save(s / f"{side}.png")
    return root


def _outputs(out: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, bytes]]:
    manifest = pd.read_parquet(out / "manifest.parquet")
    pngs = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted((out / "images").rglob("*.png"))}
    return manifest, pd.read_parquet(out / "rejects.parquet"), pngs


def _assert_same(a: Path, b: Path) -> None:
    (ma, ra, pa), (mb, rb, pb) = _outputs(a), _outputs(b)
    pd.testing.assert_frame_equal(ma, mb)
    pd.testing.assert_frame_equal(ra, rb)
    assert list(pa) == list(pb) and pa == pb


def _reference(root: Path, out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    manifest, rejects = prepare_dataset(root, out, min_pictures=MIN_PICTURES, **SETTINGS)
    # the dataset is what the tests claim: every kind of outcome occurs
    kinds = rejects["reason"].str.extract(r"^(not a picture|dangling symlink|in a subfolder|unreadable|"
                                          r"too large|too small|no face detected|face too small|"
                                          r"identity has)")[0]
    assert kinds.notna().all(), rejects["reason"][kinds.isna()].tolist()
    assert kinds.nunique() == 9, kinds.value_counts()
    assert set(manifest["identity"]) == {"astronaut", "group"} and len(manifest) == 9
    assert len(manifest) + len(rejects) == len(discover(root))
    return manifest, rejects


def test_two_workers_write_what_one_writes(faces_dataset, tmp_path):
    _reference(faces_dataset, tmp_path / "one")
    prepare_dataset(faces_dataset, tmp_path / "two", min_pictures=MIN_PICTURES, workers=2, **SETTINGS)
    _assert_same(tmp_path / "one", tmp_path / "two")


def test_three_shards_merge_to_the_unsharded_dataset(faces_dataset, tmp_path):
    manifest, _ = _reference(faces_dataset, tmp_path / "whole")
    dirs = [tmp_path / "aligned" / f"shard-{k}" for k in range(3)]
    tables = [align_shard(faces_dataset, d, shard=k, shards=3, **SETTINGS) for k, d in enumerate(dirs)]
    n = len(discover(faces_dataset))
    assert sorted(i for t in tables for i in t["index"]) == list(range(n))
    assert all((t["index"] % 3 == k).all() for k, t in enumerate(tables))
    prepare_dataset(faces_dataset, tmp_path / "merged", min_pictures=MIN_PICTURES, shard_dirs=dirs, **SETTINGS)
    _assert_same(tmp_path / "whole", tmp_path / "merged")
    # the merged PNGs are hard links to the shards' files, which stay in place
    for rel in manifest["path"]:
        merged = tmp_path / "merged" / rel
        shard = [d / rel for d in dirs if (d / rel).exists()]
        assert len(shard) == 1 and os.path.samefile(merged, shard[0])


def test_merge_refuses_shards_of_another_dataset(faces_dataset, tmp_path):
    dirs = [tmp_path / f"shard-{k}" for k in range(2)]
    for k, d in enumerate(dirs):
        align_shard(faces_dataset, d, shard=k, shards=2, pre_aligned=True, min_face_size=32)
    with pytest.raises(DataError, match="do not hold exactly"):
        prepare_dataset(faces_dataset, tmp_path / "a", min_pictures=MIN_PICTURES, shard_dirs=dirs[:1])
    (faces_dataset / "astronaut" / "new.png").write_bytes((faces_dataset / "astronaut" / "orig.png").read_bytes())
    with pytest.raises(DataError, match="dataset changed"):
        prepare_dataset(faces_dataset, tmp_path / "b", min_pictures=MIN_PICTURES, shard_dirs=dirs)
    (dirs[1] / SHARD_TABLE).unlink()
    with pytest.raises(DataError, match="missing"):
        prepare_dataset(faces_dataset, tmp_path / "c", min_pictures=MIN_PICTURES, shard_dirs=dirs)


def test_shard_number_is_checked(faces_dataset, tmp_path):
    with pytest.raises(DataError, match="shard 3 is not in 0..2"):
        align_shard(faces_dataset, tmp_path / "s", shard=3, shards=3)
