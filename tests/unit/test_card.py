"""The dataset card (cloakbench.card): dataset_quality (figures from embeddings) and contact_sheet."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cloakbench.card import contact_sheet, dataset_quality


def _clusters(n_ids=6, per=10, dim=128, spread=0.05, seed=0, merge_last_two=False):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_ids, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    if merge_last_two:
        centres[-1] = centres[-2]
    ids, emb = [], []
    for i, c in enumerate(centres):
        for _ in range(per):
            emb.append(c + spread * rng.standard_normal(dim))
            ids.append(f"id{i}")
    split = np.array((["train"] * 7 + ["test"] * 3) * n_ids)
    return np.array(emb), np.array(ids), split


def test_separated_identities_pass():
    emb, ids, split = _clusters()
    q = dataset_quality({"sface": emb, "dlib": emb * 1.5}, ids, split)
    for name in ("sface", "dlib"):
        r = q["extractors"][name]
        assert r["linear_accuracy"] == 1.0 and r["knn1_accuracy"] == 1.0
        assert r["merged_pair_rate"] == 0.0 and r["identity_pairs"] == 15
    assert q["extractors"]["sface"]["metric"] == "cosine"
    assert q["extractors"]["dlib"]["metric"] == "euclidean"
    assert q["passes"] is True
    assert (q["identities"], q["pictures"], q["test_pictures"]) == (6, 60, 18)


def test_merged_pair_is_counted_and_fails_the_bar():
    emb, ids, split = _clusters(n_ids=4, merge_last_two=True)
    q = dataset_quality({"sface": emb}, ids, split)
    r = q["extractors"]["sface"]
    assert r["merged_pairs"] == 1 and r["merged_pair_rate"] == pytest.approx(1 / 6)
    assert r["merged_examples"] == [["id2", "id3"]]
    assert r["linear_accuracy"] < 0.95          # the two merged identities are confused
    assert q["passes"] is False and r["passes"]["merged_pairs"] is False


def test_dlib_rule_uses_distance_below_threshold():
    emb, ids, split = _clusters(n_ids=3, spread=0.01)
    # scale so different identities sit closer than 0.6 in Euclidean distance
    q = dataset_quality({"dlib_resnet": emb * 0.2}, ids, split)
    r = q["extractors"]["dlib_resnet"]
    assert r["threshold"] == 0.6 and r["merged_pair_rate"] == 1.0
    q2 = dataset_quality({"other": emb}, ids, split)
    assert q2["extractors"]["other"]["merged_pair_rate"] is None
    q3 = dataset_quality({"other": emb}, ids, split, merge_rules={"other": ("cosine", 0.99)})
    assert q3["extractors"]["other"]["merged_pair_rate"] == 0.0


def test_shape_mismatch_is_an_error():
    emb, ids, split = _clusters(n_ids=2)
    with pytest.raises(ValueError):
        dataset_quality({"sface": emb[:-1]}, ids, split)


def test_contact_sheet_one_tile_per_identity(tmp_path):
    root = tmp_path / "ds"
    for i in range(5):
        (root / f"p{i}").mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (60, 80), (40 * i, 10 * k, 100)).save(root / f"p{i}" / f"{k}.jpg")
    out = contact_sheet(root, tmp_path / "sheet.png", tile=32, columns=3)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (3 * 32, 2 * (32 + 14))
        px = np.asarray(im.convert("RGB"))
    # tile 4 (row 1, column 1) holds identity p4's colour
    assert abs(int(px[32 + 14 + 16, 32 + 16, 0]) - 160) < 12


def test_run_dataset_card_from_files(tmp_path):
    # the rule's entry point: manifest + one clean-embeddings file per extractor (any row order)
    import json

    import pandas as pd

    from cloakbench.card import run_dataset_card

    emb, ids, split = _clusters(n_ids=3, per=10, dim=8)
    root = tmp_path / "ds"
    for i in range(3):
        (root / f"id{i}").mkdir(parents=True)
        Image.new("RGB", (20, 20), (80 * i, 0, 0)).save(root / f"id{i}" / "0.jpg")
    manifest = pd.DataFrame({"image_id": [f"{y}/{k}" for k, y in enumerate(ids)], "identity": ids, "split": split})
    manifest.to_parquet(tmp_path / "manifest.parquet")
    table = pd.DataFrame({"image_id": manifest["image_id"], "embedding": list(emb.astype(np.float32))})
    table.iloc[::-1].to_parquet(tmp_path / "sface.parquet")
    (table.assign(embedding=list((emb * 0.2).astype(np.float32)))).to_parquet(tmp_path / "dlib.parquet")
    out = run_dataset_card(manifest=tmp_path / "manifest.parquet", embeddings=[tmp_path / "sface.parquet",
                           tmp_path / "dlib.parquet"], extractors=["sface", "dl"], types={"sface": "sface",
                           "dl": "dlib_resnet"}, root=str(root), card=tmp_path / "card.json",
                           sheet=tmp_path / "sheet.png", seed=0)
    assert json.loads((tmp_path / "card.json").read_text()) == json.loads(json.dumps(out))
    q = out["quality"]["extractors"]
    assert q["sface"]["knn1_accuracy"] == 1.0 and q["sface"]["metric"] == "cosine"
    assert q["dl"]["metric"] == "euclidean" and q["dl"]["threshold"] == 0.6  # by type, not by name
    assert (out["n_pictures"], out["n_identities"]) == (30, 3) and (tmp_path / "sheet.png").stat().st_size > 0
