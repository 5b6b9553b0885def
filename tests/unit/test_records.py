"""The one record type (cloakbench.records) and the classifiers module (cloakbench.classifiers)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cloakbench.classifiers import l2n, linear, nearest_neighbour
from cloakbench.errors import DataError
from cloakbench.records import KINDS, Record, read_records, write_records


def test_make_derives_the_experiment_and_checks_the_labels():
    ev = Record.make("evaluation", {"classifier": "knn1", "cloak": "pgd", "extractor": "sface"},
                     settings={"seed": 0}, metrics={"protection": 0.5})
    assert ev.experiment == "pgd/sface/knn1" and list(ev.labels) == list(KINDS["evaluation"])
    cb = Record.make("combination", {"cloak": "pgd", "extractor": "a+b", "classifier": "knn1", "method": "top2",
                                     "sweep": False}, settings={}, metrics={})
    det = Record.make("detection", {"detector": "cnn", "detector_type": "cnn", "train_cloak": "a", "test_cloak": "b",
                                    "cross_cloak": True}, settings={}, metrics={})
    assert cb.experiment == "pgd/a+b/top2" and det.experiment == "detect/cnn/a->b"
    with pytest.raises(ValueError, match="record kind 'evaluate'"):
        Record.make("evaluate", ev.labels, settings={}, metrics={})
    with pytest.raises(ValueError, match="labels"):
        Record.make("evaluation", {"cloak": "pgd", "extractor": "sface"}, settings={}, metrics={})


def test_round_trip_and_refusals(tmp_path):
    recs = [Record.make("timetravel", {"cloak": "a->b", "extractor": "e", "classifier": c}, settings={"n_old": 2},
                        metrics={"protection": float("nan"), "protection_ci95": [0.1, 0.2]}) for c in ("knn1", "linear")]
    write_records(recs, tmp_path / "r.json")
    back = read_records([tmp_path / "r.json"], kind="timetravel")
    assert [r.experiment for r in back] == ["a->b/e/knn1", "a->b/e/linear"]
    assert np.isnan(back[0].metrics["protection"]) and back[1].settings == {"n_old": 2}
    with pytest.raises(DataError, match="timetravel record where evaluation"):
        read_records([tmp_path / "r.json"], kind="evaluation")
    # the flat layout of older versions: refused with what to do
    old = {"experiment": "pgd/e/knn1", "cloak": "pgd", "extractor": "e", "classifier": "knn1", "settings": {},
           "metrics": {}}
    (tmp_path / "old.json").write_text(json.dumps([old]))
    with pytest.raises(DataError, match="old.json.*not a cloakbench record.*--forcerun"):
        read_records([tmp_path / "old.json"])
    bad = recs[0].to_json() | {"experiment": "x/y/z"}
    (tmp_path / "bad.json").write_text(json.dumps([bad]))
    with pytest.raises(DataError, match="does not match its labels"):
        read_records([tmp_path / "bad.json"])


def test_nearest_neighbour_distances_and_leave_one_out():
    x = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    y = np.array(["a", "b", "c"])
    labels, dist = nearest_neighbour(x, y, np.array([[3.0, 3.0]]))
    assert labels.tolist() == ["b"] and dist[0] == pytest.approx(1.0)
    labels, dist = nearest_neighbour(x, y, x, exclude_self=True)
    assert labels.tolist() == ["c", "c", "a"] and dist.tolist() == pytest.approx([1.0, np.sqrt(18), 1.0])
    assert np.array_equal(l2n(np.zeros((1, 3))), np.zeros((1, 3)))
    rng = np.random.default_rng(0)
    xtr = np.r_[rng.normal(0, 0.1, (10, 4)) + 1, rng.normal(0, 0.1, (10, 4)) - 1]
    ytr = np.array(["p"] * 10 + ["n"] * 10)
    assert linear(xtr, ytr, np.array([[1.0, 1, 1, 1], [-1.0, -1, -1, -1]]), 0).tolist() == ["p", "n"]
