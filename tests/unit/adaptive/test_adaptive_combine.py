"""Accuracy-preserving combinations (cloakbench.adaptive.combine)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cloakbench.adaptive import combine
from cloakbench.classifiers import knn1
from cloakbench.evaluate import Split, assemble, protection_metrics
from cloakbench.records import read_records


def make_splits(seed: int = 0):
    """6 identities (2 protected). The accurate model separates identities well except the
    protected users' cloaked training pictures, which sit elsewhere; the robust one is noisier
    but puts cloaked pictures where the clean ones are."""
    rng = np.random.default_rng(seed)
    ids = [f"p{i}" for i in range(2)] + [f"u{i}" for i in range(4)]
    centres_a = rng.normal(size=(6, 8)) * 3
    centres_r = rng.normal(size=(6, 8)) * 3
    xa_tr, xr_tr, y_tr, xa_te, xr_te, y_te, role = [], [], [], [], [], [], []
    for k, ident in enumerate(ids):
        prot = ident.startswith("p")
        # the cloak moves the protected user's training features elsewhere (accurate model only)
        where = rng.normal(size=8) * 3 if prot else centres_a[k]
        for _ in range(6):
            xa_tr.append(where + rng.normal(size=8) * 0.5)
            xr_tr.append(centres_r[k] + rng.normal(size=8) * 1.5)
            y_tr.append(ident)
        for _ in range(4):
            xa_te.append(centres_a[k] + rng.normal(size=8) * 0.5)
            xr_te.append(centres_r[k] + rng.normal(size=8) * 1.5)
            y_te.append(ident)
            role.append("protected" if prot else "other")
    y_tr, y_te, role = np.array(y_tr), np.array(y_te), np.array(role)
    test_ids = np.array([f"t{i}" for i in range(len(y_te))])
    a = Split(np.array(xa_tr), y_tr, np.array(xa_te), y_te, role, test_ids)
    r = Split(np.array(xr_tr), y_tr, np.array(xr_te), y_te, role, test_ids)
    calibrate = np.array([not i.startswith("p") for i in y_tr])
    return a, r, calibrate


def test_nn_predict_matches_evaluate_knn1():
    a, _, _ = make_splits()
    pred, dist = combine.nn_predict(a.x_train, a.y_train, a.x_test)
    assert np.array_equal(pred, knn1(a.x_train, a.y_train, a.x_test, 0))
    assert (dist >= 0).all() and (dist <= 2).all()


def test_threshold_extremes_equal_the_single_models():
    a, r, _ = make_splits()
    pa, da = combine.nn_predict(a.x_train, a.y_train, a.x_test)
    pr, _ = combine.nn_predict(r.x_train, r.y_train, r.x_test)
    assert np.array_equal(combine.threshold_predictions(pa, da, pr, float("inf")), pa)
    assert np.array_equal(combine.threshold_predictions(pa, da, pr, 0.0), pr)
    held = np.array([0.1, 0.2, 0.3])
    assert combine.choose_threshold(held, 1.0) == float("inf")
    assert combine.choose_threshold(held, 0.0) == 0.0
    assert combine.choose_threshold(held, 0.5) == pytest.approx(0.2)


def test_top2_at_least_each_model_and_records():
    a, r, cal = make_splits()
    recs = combine.combine_records(a, r, calibrate=cal, names=("acc", "rob"), cloak="c", quantile=0.9,
                                   sweep=[0.0, 0.5, 1.0], bootstrap=20, seed=0)
    by = {x.labels["method"]: x.metrics for x in recs}
    assert {x.kind for x in recs} == {"combination"}
    assert [x.labels["sweep"] for x in recs] == [False] * 4 + [True] * 3
    assert set(by) >= {"accurate", "robust", "top2", "threshold", "threshold_q0", "threshold_q1"}
    for key in ("clean_accuracy", "protected_accuracy"):
        assert by["top2"][key] >= max(by["accurate"][key], by["robust"][key])
    assert by["top2"]["protection"] <= min(by["accurate"]["protection"], by["robust"]["protection"])
    # sweep ends reproduce the single models exactly
    assert by["threshold_q1"]["protection"] == by["accurate"]["protection"]
    assert by["threshold_q1"]["clean_accuracy"] == by["accurate"]["clean_accuracy"]
    assert by["threshold_q0"]["protection"] == by["robust"]["protection"]
    assert by["threshold_q0"]["fallback_rate"] == 1.0 and by["threshold_q1"]["fallback_rate"] == 0.0
    # accurate model: cloak works (protected users missed); robust: they are found
    assert by["accurate"]["protection"] > 0.5 and by["robust"]["protection"] < 0.5
    # the chosen threshold falls back mostly on the protected users' pictures
    t = by["threshold"]
    assert t["fallback_rate_protected"] > t["fallback_rate_clean"]
    assert t["protection"] < by["accurate"]["protection"]
    acc = by["accurate"]
    ref = protection_metrics(a.y_test, knn1(a.x_train, a.y_train, a.x_test, 0), a.test_role,
                             bootstrap=20, seed=0)
    assert acc["protection"] == ref["protection"] and acc["clean_accuracy"] == ref["clean_accuracy"]


def test_calibration_is_leave_one_out():
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    d = combine.calibration_distances(x, np.array(["a", "a", "b"]), np.array([True, False, True]))
    assert d[0] == pytest.approx(0.0) and d[1] == pytest.approx(np.sqrt(2))


def test_mismatched_splits_rejected():
    a, r, cal = make_splits()
    r.test_ids = r.test_ids[::-1]
    with pytest.raises(ValueError, match="different scrape tables"):
        combine.combine_records(a, r, calibrate=cal, names=("a", "r"), cloak="c", quantile=0.9,
                                bootstrap=0, seed=0)


def test_run_combine_reads_both_models_files(tmp_path):
    # 3 identities, 2 train + 1 test each; u0 protected (its training pictures cloaked), u1 public
    a, r, _ = make_splits()
    rows, emb_a, emb_r = [], [], []
    for k, ident in enumerate(["p0", "u0", "u1"]):
        role = {"p0": "protected", "u0": "public", "u1": "other"}[ident]
        for j in range(3):
            split = "train" if j < 2 else "test"
            iid = f"{ident}/{j}"
            rows.append((iid, ident, role, split, role == "protected" and split == "train", "clean", ""))
            emb_a.append((iid, a.x_train[6 * k + j].astype(np.float32)))
            emb_r.append((iid, r.x_train[6 * k + j].astype(np.float32)))
    scrape = pd.DataFrame(rows, columns=["image_id", "identity", "role", "split", "cloaked", "imageset", "path"])
    scrape.iloc[::-1].to_parquet(tmp_path / "scrape.parquet")  # file order must not matter
    pd.DataFrame(emb_a, columns=["image_id", "embedding"]).to_parquet(tmp_path / "a.parquet")
    pd.DataFrame(emb_r, columns=["image_id", "embedding"]).to_parquet(tmp_path / "r.parquet")
    out = tmp_path / "c.json"
    recs = combine.run_combine(scrape=tmp_path / "scrape.parquet", embeddings=[tmp_path / "a.parquet",
                               tmp_path / "r.parquet"], imagesets=["clean"], out=out, cloak="c", accurate="acc",
                               robust="rob", quantile=0.9, sweep=[], bootstrap=5, scrape_cfg={}, seed=0)
    back = read_records([out], kind="combination")
    assert [x.experiment for x in back] == [f"c/acc+rob/{m}" for m in ("accurate", "robust", "top2", "threshold")]
    assert [x.metrics for x in back] == [x.metrics for x in recs]
    # the threshold is calibrated on the public identity's uncloaked training pictures only
    table = pd.read_parquet(tmp_path / "scrape.parquet")
    held = combine.held_out_public(table)
    split = assemble(table, {"clean": pd.DataFrame(emb_a, columns=["image_id", "embedding"])})
    assert held.tolist() == [y == "u0" for y in split.y_train] and back[0].settings["n_calibration"] == 2
