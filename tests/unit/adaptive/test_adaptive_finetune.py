"""End-to-end classifier (cloakbench.adaptive.finetune): learns, deterministic, evaluate-shaped records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from adaptive_testlib import TinyTrainable, make_dataset
from cloakbench.adaptive import finetune

FAST = {"epochs": 6, "batch_size": 8, "optimizer": "adam", "lr": 3e-3}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def scrape(tmp_path_factory):
    manifest, roles, dataset_dir = make_dataset(tmp_path_factory.mktemp("ft"))
    df = manifest.merge(roles, on="identity")
    df["cloaked"] = False
    df["imageset"] = "clean"
    df["path"] = [str(dataset_dir / p) for p in df["path"]]
    return df[["image_id", "identity", "role", "split", "cloaked", "imageset", "path"]]


def test_finetune_learns_and_is_deterministic(scrape):
    tr, te = scrape[scrape["split"] == "train"], scrape[scrape["split"] == "test"]
    train = list(zip(tr["path"], tr["identity"]))
    a = finetune.finetune_classify(TinyTrainable(), train, list(te["path"]), seed=1, settings=FAST)
    b = finetune.finetune_classify(TinyTrainable(), train, list(te["path"]), seed=1, settings=FAST)
    assert np.array_equal(a.predictions, b.predictions) and a.history == b.history
    assert a.settings["balanced"] and a.settings["flip"] and a.classes == sorted(tr["identity"].unique())
    acc = float((a.predictions == te["identity"].to_numpy()).mean())
    assert acc > 2 / 6, acc  # 6 identities: chance is 1/6


def test_finetune_records_match_evaluate_shape(scrape):
    recs = finetune.finetune_evaluate(scrape, TinyTrainable(), settings={"cloak": "none", "extractor": "tiny"},
                                      train_settings=FAST, bootstrap=10, seed=0)
    assert len(recs) == 1
    r = recs[0]
    assert r.experiment == "none/tiny/finetune" and r.kind == "evaluation" and r.labels["classifier"] == "finetune"
    m = r.metrics
    for key in ("protection", "protection_ci95", "protection_per_user", "clean_accuracy",
                "n_protected_users", "n_train", "n_train_cloaked"):
        assert key in m, key
    assert m["n_protected_users"] == 2 and m["n_train"] == 36 and m["n_train_cloaked"] == 0
    assert r.settings["finetune"]["optimizer"] == "adam"
    # report.summarise accepts it beside evaluate's records
    from cloakbench.report.tables import summarise
    assert summarise(recs).loc[0, "classifier"] == "finetune"


def test_run_finetune_evaluate_from_files(scrape, tmp_path):
    from cloakbench.records import read_records

    scrape.to_parquet(tmp_path / "scrape.parquet")
    out = tmp_path / "ft.json"
    finetune.run_finetune_evaluate(
        scrape=tmp_path / "scrape.parquet", out=out, cloak="none", extractor="tiny",
        extractor_spec={"type": TinyTrainable.type_name}, checkpoint=None, cloak_spec=None, train=FAST,
        evaluate_cfg={"classifiers": ["knn1"], "bootstrap": 5, "batch_size": 8}, scrape_cfg={},
        dataset_cfg={"root": "d"}, seed=1, device="cpu")
    (rec,) = read_records([out], kind="evaluation")
    direct = finetune.finetune_evaluate(scrape, TinyTrainable(), settings={"cloak": "none", "extractor": "tiny"},
                                        train_settings=FAST, bootstrap=5, seed=1)[0]
    assert rec.experiment == "none/tiny/finetune" and rec.settings["dataset"]["n_pictures"] == len(scrape)
    for key in ("protection", "clean_accuracy", "protection_per_user"):
        assert rec.metrics[key] == direct.metrics[key], key
