"""Detection of cloaked pictures (cloakbench.adaptive.detection)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from adaptive_testlib import TinyTrainable, cloak_subset, make_dataset
from cloakbench.adaptive import detection
from cloakbench.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("detect")
    # 8 identities: 2 protected, 3 public (the detector's training data), 3 other (never seen)
    roles = {f"id_{i}": "protected" if i < 2 else "public" if i < 5 else "other" for i in range(8)}
    manifest, roles_df, dataset_dir = make_dataset(root, n_identities=8, pictures=10, n_train=8, roles=roles)
    out = {}
    for kind in ("checker", "stripes"):
        pub = cloak_subset(manifest, roles_df, dataset_dir, root / kind / "public", "public", kind)
        prot = cloak_subset(manifest, roles_df, dataset_dir, root / kind / "protected", "protected", kind)
        # the scrape table of this cloak (scrape.py's format)
        df = manifest.merge(roles_df, on="identity")
        df["cloaked"] = df["identity"].isin(["id_0", "id_1"]) & (df["split"] == "train")
        df["imageset"] = np.where(df["cloaked"], f"scraped-{kind}", "clean")
        paths = dict(zip(prot["image_id"], prot["path"]))
        df["path"] = [paths[i] if c else str(dataset_dir / p) for i, c, p in zip(df["image_id"], df["cloaked"], df["path"])]
        out[kind] = (pub, df)
    public_train = manifest[manifest["identity"].isin(["id_2", "id_3", "id_4"]) & (manifest["split"] == "train")]
    clean = [str(dataset_dir / p) for p in public_train.sort_values("image_id")["path"]]
    return clean, out


@pytest.mark.parametrize("spec", [
    {"type": "cnn", "epochs": 10, "batch_size": 16, "width": 8},
    {"type": "features", "inputs": "stats"},
    {"type": "features", "inputs": "both", "extractor": "tiny"},
    {"type": "finetune", "extractor": "tiny", "epochs": 8, "batch_size": 16, "lr": 1e-2},
])
def test_detector_beats_chance_on_an_obvious_cloak(data, spec):
    clean, by_cloak = data
    pub, scrape = by_cloak["checker"]
    det = detection.train_detector("d", spec, clean, pub.sort_values("image_id")["path"].tolist(), seed=0,
                                   extractor=TinyTrainable() if spec.get("extractor") else None)
    pos, neg = detection.detection_sets(scrape, seen_identities=["id_2", "id_3", "id_4"])
    assert len(pos) == 16 and len(neg) == 24  # 2 protected x 8 cloaked; 3 unseen others x 8
    m = detection.evaluate_detector(det, pos, neg)
    assert m["roc_auc"] > 0.9, m
    assert m["precision"] > 0.7 and m["recall"] > 0.7, m
    rec = detection.detection_record(det, train_cloak="checker", test_cloak="checker", metrics=m,
                                     settings={"seed": 0})
    assert rec.kind == "detection" and rec.experiment == "detect/d/checker->checker"
    assert not rec.labels["cross_cloak"] and rec.labels["detector_type"] == spec["type"]
    assert len(rec.metrics["roc"]["fpr"]) == len(rec.metrics["roc"]["tpr"]) >= 2


def test_detector_is_deterministic_and_cross_cloak_runs(data):
    clean, by_cloak = data
    pub = by_cloak["checker"][0].sort_values("image_id")["path"].tolist()
    spec = {"type": "cnn", "epochs": 2, "batch_size": 16, "width": 8}
    a = detection.train_detector("d", spec, clean, pub, seed=5)
    b = detection.train_detector("d", spec, clean, pub, seed=5)
    pos, neg = detection.detection_sets(by_cloak["stripes"][1], seen_identities=["id_2", "id_3", "id_4"])
    sa, sb = a.score(pos + neg), b.score(pos + neg)
    assert np.array_equal(sa, sb)
    m = detection.evaluate_detector(a, pos, neg)  # trained on checker, tested on stripes
    assert 0.0 <= m["roc_auc"] <= 1.0 and m["n_positive"] == 16


def test_detection_metrics():
    labels = np.r_[np.ones(50), np.zeros(200)]
    perfect = detection.detection_metrics(np.r_[np.full(50, 0.9), np.full(200, 0.1)], labels)
    assert perfect["roc_auc"] == 1.0 and perfect["tpr_at_1pct_fpr"] == 1.0
    assert perfect["precision"] == 1.0 and perfect["recall"] == 1.0
    # one negative above every positive: still AUC ~ 1 but TPR at 1 % FPR counts it
    s = np.r_[np.linspace(0.6, 0.9, 50), np.full(199, 0.1), [0.95]]
    m = detection.detection_metrics(s, labels)
    assert m["tpr_at_1pct_fpr"] == 1.0  # 1/200 = 0.5 % FPR is allowed
    s2 = np.r_[np.linspace(0.6, 0.9, 50), np.full(197, 0.1), [0.95, 0.96, 0.97]]
    assert detection.detection_metrics(s2, labels)["tpr_at_1pct_fpr"] == 0.0  # 1.5 % FPR before any TP
    rnd = detection.detection_metrics(np.random.default_rng(0).random(250), labels)
    assert 0.35 < rnd["roc_auc"] < 0.65
    assert len(detection.detection_metrics(np.random.default_rng(1).random(250), labels,
                                           max_roc_points=20)["roc"]["fpr"]) <= 22


def test_detector_settings_validation():
    assert detection.detector_settings("x", {"type": "cnn"})["epochs"] == 100
    assert detection.detector_settings("x", {"type": "finetune", "extractor": "e"})["optimizer"] == "adam"
    assert detection.needs_extractor({"type": "features", "inputs": "stats", "extractor": None}) is None
    assert detection.needs_extractor(detection.detector_settings("x", {"type": "finetune", "extractor": "e"})) == "e"
    for spec, msg in [({"type": "svm"}, "one of"), ({"type": "cnn", "depth": 3}, "unknown keys"),
                      ({"type": "features"}, "extractor: required"),
                      ({"type": "features", "inputs": "pixels"}, "inputs"),
                      ({"type": "cnn", "epochs": 0}, "positive integer"),
                      ({"type": "finetune"}, "extractor: required"),
                      ({"type": "finetune", "extractor": "e", "optimizer": "lbfgs"}, "optimizer"),
                      ({"type": "finetune", "extractor": "e", "inputs": "both"}, "unknown keys")]:
        with pytest.raises(ConfigError, match=msg):
            detection.detector_settings("x", spec)


def test_run_detect_trains_on_public_pairs_only(tmp_path):
    # the rule's entry point, fed shard folders that (wrongly) also hold protected users' cloaked
    # pictures: the detector must still train on the public identities' pairs only
    from cloakbench.io import write_parquet
    from cloakbench.records import read_records

    roles = {f"id_{i}": "protected" if i < 2 else "public" if i < 4 else "other" for i in range(6)}
    manifest, roles_df, dataset_dir = make_dataset(tmp_path, roles=roles)
    write_parquet(roles_df, tmp_path / "roles.parquet")
    shard = tmp_path / "shard-0"
    pub = cloak_subset(manifest, roles_df, dataset_dir, shard, "public", "checker")
    prot = cloak_subset(manifest, roles_df, dataset_dir, shard, "protected", "checker")
    both = pd.concat([pub, prot], ignore_index=True)
    write_parquet(both.assign(path=[f"images/{i}.png" for i in both["image_id"]]), shard / "figures.parquet")
    df = manifest.merge(roles_df, on="identity")
    df["cloaked"] = (df["role"] == "protected") & (df["split"] == "train")
    df["imageset"] = np.where(df["cloaked"], "scraped-checker", "clean")
    paths = dict(zip(prot["image_id"], prot["path"]))
    df["path"] = [paths[i] if c else str(dataset_dir / p) for i, c, p in zip(df["image_id"], df["cloaked"], df["path"])]
    df.to_parquet(tmp_path / "scrape.parquet")
    out = tmp_path / "det.json"
    detection.run_detect(manifest=dataset_dir / "manifest.parquet", roles=tmp_path / "roles.parquet",
                         images=dataset_dir / "images", shards=[shard], scrapes=[tmp_path / "scrape.parquet"],
                         out=out, detector="stats", settings={"type": "features", "inputs": "stats"},
                         train_cloak="checker", test_cloaks=["checker"], extractor_spec={}, checkpoints={},
                         seed=0, device="cpu")
    (rec,) = read_records([out], kind="detection")
    assert rec.experiment == "detect/stats/checker->checker"
    # 2 public identities x 6 training pictures, clean + cloaked; no protected picture
    assert rec.settings["n_train"] == 24 and rec.settings["public_identities"] == 2
    assert rec.metrics["n_positive"] == 12 and rec.metrics["roc_auc"] > 0.9
