"""Adaptive config checks (cloakbench.adaptive.settings, through the plan) and the report's adaptive
sections (cloakbench.report.adaptive)."""

from __future__ import annotations

import copy

import pytest
import yaml

from cloakbench.errors import ConfigError
from cloakbench.plan import build_plan
from cloakbench.records import Record
from cloakbench.report import adaptive as rs
from cloakbench.report.figures import combinations_scatter_png, detection_roc_png
from repo_paths import ROOT


def base_config() -> dict:
    cfg = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    cfg["cloaks"]["pgd_b"] = {"type": "pgd", "ensemble": ["sface"], "release_date": "2022-02-01"}
    cfg["extractors"]["sface_robust"] = {"type": "robust", "base": "sface", "cloaks": ["pgd"],
                                         "release_date": "2022-03-01"}
    cfg["adaptive"] = {
        "finetune": {"extractors": ["cnn_2018"], "train": {"epochs": 1}},
        "detection": {"detectors": {"cnn": {"type": "cnn"}, "feat": {"type": "features", "extractor": "sface"}},
                      "test_cloaks": ["pgd"]},
        "timetravel": {"pairs": [{"old": "pgd", "new": "pgd_b"}]},
        "combine": {"pairs": [{"accurate": "sface", "robust": "sface_robust"}]},
    }
    return cfg


def test_adaptive_config_resolves_with_defaults(tmp_path):
    raw = base_config()
    full = build_plan(raw, ROOT / "config" / "schema.yaml", base_dir=ROOT)
    plan = full.plain("adaptive")  # a plain copy (the plan itself is read-only)
    assert plan["robust"]["sface_robust"]["base"] == "sface"
    assert full["extractors"]["sface_robust"]["base_spec"]["type"] == "sface"
    assert "base_spec" not in raw["extractors"]["sface_robust"]  # the given config is not modified
    assert full.detector_extractor("feat") == "sface" and full.detector_extractor("cnn") is None
    assert plan["finetune"]["cloaks"] == ["none", "pgd", "pgd_b"]
    assert plan["finetune"]["train"]["optimizer"] == "adadelta"
    assert plan["detection"]["train_cloaks"] == ["pgd", "pgd_b"] and plan["detection"]["test_cloaks"] == ["pgd"]
    assert plan["detection"]["detectors"]["cnn"]["epochs"] == 100
    assert plan["timetravel"]["pairs"] == [["pgd", "pgd_b"]] and plan["timetravel"]["switch_fraction"] == 0.5
    assert plan["combine"]["pairs"] == [["sface", "sface_robust"]] and plan["combine"]["quantile"] == 0.9
    assert plan["public_cloaks"] == ["pgd", "pgd_b"]
    # the default (no adaptive section) is a plan that does nothing
    raw = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    raw.pop("adaptive", None)
    empty = build_plan(raw, ROOT / "config" / "schema.yaml", base_dir=ROOT)["adaptive"]
    assert not empty["robust"] and not empty["finetune"]["extractors"] and not empty["detection"]["train_cloaks"]


@pytest.mark.parametrize("edit,msg", [
    (lambda c: c["adaptive"]["timetravel"]["pairs"].append({"old": "pgd", "new": "fawkes"}),
     "adaptive.timetravel.pairs\\[1\\].new: unknown cloak 'fawkes'"),
    (lambda c: c["adaptive"]["combine"]["pairs"].append({"accurate": "x", "robust": "sface"}),
     "adaptive.combine.pairs\\[1\\].accurate: unknown extractor 'x'"),
    (lambda c: c["adaptive"]["timetravel"]["pairs"].append({"old": "pgd", "new": "pgd"}),
     "adaptive.timetravel.pairs\\[1\\]: old and new are the same cloak 'pgd'"),
    (lambda c: c["adaptive"]["combine"]["pairs"].append({"accurate": "sface", "robust": "sface"}),
     "adaptive.combine.pairs\\[1\\]: accurate and robust are the same extractor 'sface'"),
    (lambda c: c["adaptive"]["finetune"].update(extractors=["nope"]), "adaptive.finetune.extractors"),
    (lambda c: c["adaptive"]["finetune"].update(train={"epochz": 1}), "adaptive.finetune.train: unknown keys"),
    (lambda c: c["adaptive"]["detection"]["detectors"].update(bad={"type": "features", "extractor": "zz"}),
     "detectors.bad.extractor: unknown extractor 'zz'"),
    (lambda c: c["adaptive"]["detection"]["detectors"].update(ft={"type": "finetune", "extractor": "zz"}),
     "detectors.ft.extractor: unknown extractor 'zz'"),
    (lambda c: (c["extractors"].update(dlib={"type": "dlib_resnet", "release_date": "2017-02-12"}),
                c["adaptive"]["detection"]["detectors"].update(ft={"type": "finetune", "extractor": "dlib"})),
     "detectors.ft.extractor: 'dlib' \\(dlib_resnet\\) is not differentiable"),
    (lambda c: c["extractors"]["sface_robust"].update(cloaks=["lowkey"]), "unknown cloak 'lowkey'"),
])
def test_adaptive_config_errors_name_the_key(edit, msg):
    cfg = base_config()
    edit(cfg)
    with pytest.raises(ConfigError, match=msg):
        build_plan(cfg, ROOT / "config" / "schema.yaml", base_dir=ROOT)


def _rec(cloak, extractor, clf, prot, acc, *, ext_type="small_cnn", extra=None, ensemble=("sface",),
         rel_e="2021-12-01", rel_c="2022-01-01", kind="evaluation", settings=None):
    return Record.make(
        kind, {"cloak": cloak, "extractor": extractor, "classifier": clf},
        settings=settings or {"cloak_spec": None if cloak == "none" else {"ensemble": list(ensemble), "release_date": rel_c},
                              "extractor_info": {"type": ext_type, "release_date": rel_e, "extra": extra or {}}},
        metrics={"protection": prot, "protection_ci95": [prot - 0.1, prot + 0.1], "clean_accuracy": acc})


def test_sections_and_figures_render_from_records(tmp_path):
    records = [
        _rec("none", "sface", "knn1", 0.05, 0.9), _rec("pgd", "sface", "knn1", 0.8, 0.9),
        _rec("pgd", "cnn_2024", "knn1", 0.3, 0.8, rel_e="2024-01-01"),
        _rec("pgd", "sface_robust", "knn1", 0.123, 0.85, ext_type="robust",
             extra={"base": "sface", "cloaks": ["pgd"]}),
    ]
    finetune = [_rec("pgd", "sface", "finetune", 0.456, 0.7), _rec("pgd", "sface", "finetune_adaptive", 0.0345, 0.75)]
    finetune[1].settings["adaptive_cloaks"] = ["pgd", "pgd_b"]
    detection = [Record.make(
        "detection", {"detector": "cnn", "detector_type": "cnn", "train_cloak": "pgd", "test_cloak": "pgd",
                      "cross_cloak": False}, settings={},
        metrics={"precision": 0.987, "recall": 0.876, "roc_auc": 0.999, "tpr_at_1pct_fpr": 0.9,
                 "n_positive": 10, "n_negative": 40, "roc": {"fpr": [0, 0.1, 1], "tpr": [0, 0.9, 1]}})]
    tt = [_rec("pgd->pgd_b", "sface", "knn1", 0.321, 0.9, kind="timetravel",
               settings={"old_cloak": "pgd", "new_cloak": "pgd_b", "n_old": 2, "n_new": 3,
                         "old_cloak_spec": {"ensemble": ["sface"]}, "extractor_info": {"type": "sface"}})]
    combos = []
    for method, p, a, q, sweep in (("accurate", 0.8, 0.9, 0.9, False), ("robust", 0.1, 0.7, 0.9, False),
                                   ("top2", 0.05, 0.95, 0.9, False), ("threshold", 0.2, 0.88, 0.9, False),
                                   ("threshold_q0.5", 0.2, 0.88, 0.5, True)):
        combos.append(Record.make(
            "combination", {"cloak": "pgd", "extractor": "sface+sface_robust", "classifier": "knn1",
                            "method": method, "sweep": sweep},
            settings={"accurate": "sface", "robust": "sface_robust"},
            metrics={"protection": p, "protection_ci95": [p, p], "clean_accuracy": a, "quantile": q,
                     "threshold": 0.7, "fallback_rate_protected": 0.6, "fallback_rate_clean": 0.1}))
    meta = [{"name": "sface_robust", "extractor": "sface", "base": "sface", "cloaks": ["pgd"], "identities": 18, "n_clean": 252,
             "n_cloaked": 252, "settings": {"epochs": 2, "optimizer": "adadelta", "lr": 1.0, "batch_size": 32},
             "deviations": ["epochs"],
             "head_acc_clean": 0.9, "head_acc_cloaked": 0.8, "protected_reads": 0, "seconds": 100.0}]
    text = "\n".join(rs.adaptive_sections(records, finetune=finetune, robust_meta=meta, detection=detection,
                                          timetravel=tt, combine=combos))
    for needle in ("0.12 [0.02, 0.22]", "adaptive (robust sface, trained on this cloak)",
                   "targeted (in the cloak's ensemble)", "oblivious-future (released after the cloak)", "0.46",
                   "#### Classifier `finetune`", "0.987", "0.999",
                   "0.32 [0.22, 0.42]", "top-2 (either model right)", "0.60 / 0.10", "| sface_robust | sface | pgd",
                   "detection_roc.png", "combinations.png", "#### Classifier `finetune_adaptive`",
                   "### End-to-end training: oblivious vs adaptive",
                   "| pgd | sface | 0.46 [0.36, 0.56] | 0.70 | 0.03 [-0.07, 0.13] | 0.75 | pgd, pgd_b | "
                   "sface_robust knn1 0.12 |", "deviations from FaceCure: epochs"):
        assert needle in text, needle
    assert "threshold_q0.5" not in text  # sweep points only in the figure
    detection_roc_png(detection, tmp_path / "roc.png")
    combinations_scatter_png(combos, tmp_path / "comb.png")
    assert (tmp_path / "roc.png").stat().st_size > 1000 and (tmp_path / "comb.png").stat().st_size > 1000
    # empty inputs: only the header, and figures still render
    assert len(rs.adaptive_sections([])) == 4
    detection_roc_png([], tmp_path / "empty.png")
