"""The plan (cloakbench.plan): the config validated once into a read-only tree the rules read
(the rule files' names: tests/workflow/test_rule_files.py)."""

from __future__ import annotations

import copy
import json
import pickle

import pytest
import yaml

from cloakbench.errors import ConfigError
from cloakbench.plan import build_plan
from repo_paths import ROOT

SCHEMA = ROOT / "config" / "schema.yaml"


def config() -> dict:
    cfg = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    cfg["extractors"]["cnn_robust"] = {"type": "robust", "base": "cnn_2018", "cloaks": ["pgd"]}
    cfg["adaptive"]["detection"]["detectors"]["ft"] = {"type": "finetune", "extractor": "cnn_2018"}
    return cfg


def test_plan_is_read_only_and_leaves_the_config_alone():
    raw = config()
    before = copy.deepcopy(raw)
    plan = build_plan(raw, SCHEMA, base_dir=ROOT)
    assert raw == before
    with pytest.raises(TypeError):
        plan["evaluate"]["bootstrap"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        plan.tree["seed"] = 3  # type: ignore[index]
    assert isinstance(plan["evaluate"]["classifiers"], tuple)
    # plain copies are what rules pass to scripts: JSON-safe, picklable, detached from the plan
    spec = plan.plain("extractors", "cnn_robust")
    assert json.loads(json.dumps(spec)) == spec and pickle.loads(pickle.dumps(spec)) == spec
    spec["base"] = "changed"
    assert plan["extractors"]["cnn_robust"]["base"] == "cnn_2018"
    with pytest.raises(KeyError, match="plan has no extractors.ghost"):
        plan.plain("extractors", "ghost")


def test_plan_resolves_what_the_rules_need():
    plan = build_plan(config(), SCHEMA, base_dir=ROOT)
    # defaults filled, robust extractors carry their base's spec
    assert plan["evaluate"]["classifiers"] == ("knn1", "linear") and plan["perturb"]["shards"] == 2
    assert plan.plain("extractors", "cnn_robust", "base_spec") == plan.plain("extractors", "cnn_2018")
    assert plan.trained == ("cnn_2018", "cnn_robust") and plan.card_extractors == ("sface",)
    assert plan.extractors == ("sface", "cnn_2018", "cnn_robust") and plan.cloaks == ("pgd",)
    assert plan.shards == (0, 1)
    assert plan.detector_extractor("stats") is None and plan.detector_extractor("ft") == "cnn_2018"
    assert plan.imagesets("none") == ["clean"] and plan.imagesets("pgd") == ["clean", "scraped-pgd"]
    assert plan.cloak_spec("none") is None and plan.cloak_spec("pgd")["params"]["steps"] == 8
    assert plan.ensemble("pgd") == ["sface"] and not plan.missing_inputs
    # platform re-encoding makes even the baseline's scraped pictures differ from the clean ones
    cfg = config()
    cfg["scrape"] = {"jpeg_quality": 80}
    assert build_plan(cfg, SCHEMA, base_dir=ROOT).imagesets("none") == ["clean", "scraped-none"]
    # ... and per_user (the default) then needs the baseline's re-encoded uncloaked pictures too
    # (the other protected users' pictures in a user's set); joint does not
    assert build_plan(cfg, SCHEMA, base_dir=ROOT).imagesets("pgd") == ["clean", "scraped-pgd", "scraped-none"]
    cfg["scrape"] = {"jpeg_quality": 80, "protocol": "joint"}
    assert build_plan(cfg, SCHEMA, base_dir=ROOT).imagesets("pgd") == ["clean", "scraped-pgd"]
    assert build_plan(cfg, SCHEMA, base_dir=ROOT)["scrape"]["protocol"] == "joint"
    assert plan["scrape"]["protocol"] == "per_user" and plan["evaluate"]["features"] == "raw"
    # the scrape table's settings leave out the protocol (same table under both protocols)
    joint = build_plan(cfg, SCHEMA, base_dir=ROOT)
    assert "protocol" not in plan.scrape_table_settings()
    assert {**plan.scrape_table_settings(), "protocol": "per_user"} == plan.plain("scrape")
    assert joint.scrape_table_settings() == {k: v for k, v in joint.plain("scrape").items() if k != "protocol"}
    assert plan.dataset_align_settings() == {k: v for k, v in plan.plain("dataset").items() if k != "shards"}
    assert "shards" in plan.plain("dataset") and "shards" not in plan.dataset_align_settings()
    # what the records say of an extractor, from the plan (the evaluate jobs import no model code)
    info = plan.extractor_info("cnn_robust")
    assert info["name"] == "cnn_robust" and info["type"] == "robust" and json.loads(json.dumps(info))


def test_plan_errors_name_the_key(tmp_path):
    cfg = config()
    cfg["cloaks"]["pgd"]["type"] = "pgdd"
    with pytest.raises(ConfigError, match="cloaks.pgd.type: unknown cloak type 'pgdd'"):
        build_plan(cfg, SCHEMA, base_dir=ROOT)
    cfg = config()
    cfg["extractors"]["cnn_robust"]["base"] = "ghost"
    with pytest.raises(ConfigError, match="extractors.cnn_robust.base"):
        build_plan(cfg, SCHEMA, base_dir=ROOT)
    cfg = config()
    cfg["adaptive"]["combine"]["pairs"] = [{"accurate": "sface", "robust": "ghost"}]
    with pytest.raises(ConfigError, match="adaptive.combine.pairs\\[0\\].robust: unknown extractor 'ghost'"):
        build_plan(cfg, SCHEMA, base_dir=ROOT)
    # missing inputs are listed (a dry run still plans), or raised when asked
    cfg = config()
    cfg["demo"]["enabled"] = False
    cfg["dataset"]["root"] = str(tmp_path / "absent")
    plan = build_plan(cfg, SCHEMA, base_dir=ROOT)
    assert len(plan.missing_inputs) == 1 and "dataset.root" in plan.missing_inputs[0]
    with pytest.raises(ConfigError, match="dataset.root.*absent"):
        build_plan(cfg, SCHEMA, base_dir=ROOT, require_inputs=True)
