import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cloakbench.data.prepare import discover, prepare_dataset, split_identities
from cloakbench.errors import DataError


def test_pre_aligned_folders(folder_dataset, tmp_path):
    out = tmp_path / "out"
    manifest, rejects = prepare_dataset(folder_dataset, out, pre_aligned=True, min_face_size=32,
                                        min_pictures=4, seed=0)
    assert set(manifest.columns) >= {"image_id", "identity", "source_path", "sha256", "split", "path"}
    assert manifest["identity"].nunique() == 5 and len(manifest) == 30
    reasons = dict(zip([p.split("/")[-1] for p in rejects["source_path"]], rejects["reason"]))
    assert reasons["broken.jpg"].startswith("unreadable")
    assert reasons["tiny.png"].startswith("too small")
    assert "min_pictures" in reasons["0.png"] and "min_pictures" in reasons["1.png"]
    # every discovered file is either kept or rejected, never silently dropped
    assert len(manifest) + len(rejects) == len(discover(folder_dataset))
    img = np.asarray(Image.open(out / manifest["path"].iloc[0]))
    assert img.shape == (112, 112, 3)
    # 70/30 split per identity
    per = manifest.groupby("identity")["split"].apply(lambda s: (s == "train").sum())
    assert (per == 4).all()  # round(0.7 * 6)
    assert pd.read_parquet(out / "manifest.parquet").equals(manifest)


def test_split_is_seeded():
    m = pd.DataFrame({"identity": ["a"] * 10 + ["b"] * 10})
    assert split_identities(m, 0.7, 1).equals(split_identities(m, 0.7, 1))
    assert not split_identities(m, 0.7, 1).equals(split_identities(m, 0.7, 2))


def test_facescrub_layout(tmp_path):
    rng = np.random.default_rng(0)
    for name in ["Adam_Brody", "Zoe_Saldana"]:
        d = tmp_path / "download" / name / "face"
        d.mkdir(parents=True)
        for k in range(3):
            Image.fromarray(rng.integers(0, 255, (60, 60, 3), dtype=np.uint8)).save(d / f"{name}_{k}.jpg")
        (tmp_path / "download" / name / "uncropped").mkdir()
    found = discover(tmp_path)
    assert {f.identity for f in found} == {"Adam_Brody", "Zoe_Saldana"} and len(found) == 6
    assert len(discover(tmp_path / "download", "facescrub")) == 6


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        discover(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no pictures"):
        discover(tmp_path / "empty")


def test_faceless_pictures_are_rejected_not_crashed(folder_dataset, tmp_path):
    # smooth colour blobs contain no face: detection mode must reject them all with a reason
    with pytest.raises(DataError, match="min_pictures"):
        prepare_dataset(folder_dataset, tmp_path / "o", pre_aligned=False, min_pictures=4)
    rejects = pd.read_parquet(tmp_path / "o" / "rejects.parquet")
    assert (rejects["reason"] == "no face detected").sum() >= 25


def test_run_prepare_dataset_takes_the_config_section(folder_dataset, tmp_path):
    from cloakbench.data.prepare import run_prepare_dataset

    cfg = {"layout": "auto", "pre_aligned": True, "image_size": 64, "min_face_size": 32, "min_pictures": 4,
           "train_fraction": 0.5}
    manifest, _ = run_prepare_dataset(root=folder_dataset, manifest=tmp_path / "out" / "manifest.parquet",
                                      dataset_cfg=cfg, seed=0)
    assert (tmp_path / "out" / "manifest.parquet").is_file() and (manifest["split"] == "train").sum() == 15
    assert np.asarray(Image.open(tmp_path / "out" / manifest["path"].iloc[0])).shape == (64, 64, 3)
