"""Time travel (cloakbench.adaptive.timetravel): first half old cloak, second half new."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cloakbench.extractors.registry import describe_extractor
from cloakbench.adaptive.timetravel import run_timetravel, timetravel_scrape
from cloakbench.data.scrape import SCRAPE_COLUMNS
from cloakbench.errors import DataError
from cloakbench.evaluate import evaluate
from cloakbench.records import read_records


def scrape_table(cloak: str) -> pd.DataFrame:
    rows = []
    for ident, role in (("alice", "protected"), ("bob", "protected"), ("carol", "other"), ("dan", "public")):
        for k in range(7):
            split = "train" if k < 5 else "test"
            cloaked = role == "protected" and split == "train"
            rows.append({"image_id": f"{ident}/{k}", "identity": ident, "role": role, "split": split,
                         "cloaked": cloaked, "imageset": f"scraped-{cloak}" if cloaked else "clean",
                         "path": f"/{cloak if cloaked else 'clean'}/{ident}/{k}.png",
                         "clean_imageset": "clean", "clean_path": f"/clean/{ident}/{k}.png"})
    return pd.DataFrame(rows)[SCRAPE_COLUMNS].sample(frac=1, random_state=0)  # order must not matter


def test_timetravel_scrape_mixes_two_cloaks_by_picture_order():
    t = timetravel_scrape(scrape_table("v03"), scrape_table("v10"), old_cloak="v03", new_cloak="v10")
    assert list(t.columns[:len(SCRAPE_COLUMNS)]) == SCRAPE_COLUMNS and len(t) == 28
    for ident in ("alice", "bob"):
        rows = t[(t["identity"] == ident) & (t["split"] == "train")].sort_values("image_id")
        # 5 pictures, switch at round(2.5) = 2: the first 2 old, the last 3 new
        assert rows["imageset"].tolist() == ["scraped-v03"] * 2 + ["scraped-v10"] * 3
        assert rows["cloak_used"].tolist() == ["v03"] * 2 + ["v10"] * 3
        assert all(p.startswith("/v03/") for p in rows["path"][:2])
        assert all(p.startswith("/v10/") for p in rows["path"][2:])
        assert rows["cloaked"].all()
    others = t[~((t["role"] == "protected") & (t["split"] == "train"))]
    assert (others["imageset"] == "clean").all() and not others["cloaked"].any()
    assert t["cloaked"].dtype == bool
    # switch_fraction 1 -> only the old cloak; 0 -> only the new one
    t1 = timetravel_scrape(scrape_table("v03"), scrape_table("v10"), old_cloak="v03", new_cloak="v10",
                          switch_fraction=1.0)
    assert set(t1.loc[t1["cloaked"], "imageset"]) == {"scraped-v03"}
    t0 = timetravel_scrape(scrape_table("v03"), scrape_table("v10"), old_cloak="v03", new_cloak="v10",
                          switch_fraction=0.0)
    assert set(t0.loc[t0["cloaked"], "imageset"]) == {"scraped-v10"}


def test_timetravel_scrape_feeds_evaluate():
    t = timetravel_scrape(scrape_table("v03"), scrape_table("v10"), old_cloak="v03", new_cloak="v10")
    rng = np.random.default_rng(0)
    emb = {s: pd.DataFrame({"image_id": g["image_id"].tolist(),
                            "embedding": list(rng.normal(size=(len(g), 4)).astype(np.float32))})
           for s, g in t.groupby("imageset")}
    # as in the pipeline, the clean set holds every picture of the dataset
    emb["clean"] = pd.DataFrame({"image_id": t["image_id"].tolist(),
                                 "embedding": list(rng.normal(size=(len(t), 4)).astype(np.float32))})
    recs = evaluate(t, emb, classifiers=["knn1"], bootstrap=10, seed=0,
                    settings={"cloak": "v03->v10", "extractor": "x", "protocol": "per_user",
                              "features": "raw"})
    assert recs[0].metrics["n_train_cloaked"] == 10 and recs[0].metrics["n_protected_users"] == 2
    assert recs[0].metrics["n_models"] == 2  # per_user: one model per protected user


def test_run_timetravel_writes_timetravel_records(tmp_path):
    old, new = scrape_table("v03"), scrape_table("v10")
    old.to_parquet(tmp_path / "old.parquet")
    new.to_parquet(tmp_path / "new.parquet")
    rng = np.random.default_rng(0)
    files = []
    for s, t in (("clean", old), ("scraped-v03", old[old["cloaked"]]), ("scraped-v10", new[new["cloaked"]])):
        files.append(tmp_path / f"{s}.parquet")
        pd.DataFrame({"image_id": t["image_id"].tolist(),
                      "embedding": list(rng.normal(size=(len(t), 4)).astype(np.float32))}).to_parquet(files[-1])
    spec = {"type": "small_cnn", "release_date": "2018-06-01"}
    out = tmp_path / "tt.json"
    run_timetravel(old=tmp_path / "old.parquet", new=tmp_path / "new.parquet", embeddings=files,
                   imagesets=["clean", "scraped-v03", "scraped-v10"], out=out, old_cloak="v03", new_cloak="v10",
                   switch_fraction=0.5, extractor="x", extractor_info=describe_extractor("x", spec), old_spec={"type": "pgd"},
                   new_spec={"type": "pgd"},
                   evaluate_cfg={"classifiers": ["knn1", "linear"], "bootstrap": 5, "features": "raw"},
                   scrape_cfg={"protocol": "per_user"}, dataset_cfg={"root": "d"}, seed=0)
    recs = read_records([out], kind="timetravel")
    assert [r.experiment for r in recs] == ["v03->v10/x/knn1", "v03->v10/x/linear"]
    s = recs[0].settings
    assert (s["old_cloak"], s["new_cloak"], s["n_old"], s["n_new"]) == ("v03", "v10", 4, 6)
    assert s["cloak_spec"] is None and s["old_cloak_spec"] == {"type": "pgd"}


def test_timetravel_rejects_mismatched_tables():
    a, b = scrape_table("v03"), scrape_table("v10")
    b.loc[b["identity"] == "carol", "role"] = "public"
    with pytest.raises(DataError, match="same pictures"):
        timetravel_scrape(a, b, old_cloak="v03", new_cloak="v10")
