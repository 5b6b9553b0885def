"""The plan (cloakbench.plan): the config validated once into a read-only tree the rules read; and
the rule files' names (each .smk file uses only names of rules/common.smk or its own)."""

from __future__ import annotations

import ast
import builtins
import copy
import json
import pickle
import types
from pathlib import Path

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
    assert plan.cloak_spec("none") is None and plan.cloak_spec("pgd")["params"]["steps"] == 4
    assert plan.ensemble("pgd") == ["sface"] and not plan.missing_inputs
    # platform re-encoding makes even the baseline's scraped pictures differ from the clean ones
    cfg = config()
    cfg["scrape"] = {"jpeg_quality": 80}
    assert build_plan(cfg, SCHEMA, base_dir=ROOT).imagesets("none") == ["clean", "scraped-none"]


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


# ---------------------------------------------------------------------------
# the rule files' names
# ---------------------------------------------------------------------------
def _python_of(smk: Path) -> str:
    """The Python Snakemake makes of a rule file (its own parser, no workflow run)."""
    import snakemake.parser as sp

    class Source:
        def __init__(self, path: Path):
            self.path = path

        def get_path_or_uri(self, secret_free: bool = True) -> str:
            return str(self.path)

    class Cache:
        def open(self, source: Source):
            return open(source.path)

    code, _ = sp.parse(Source(smk), types.SimpleNamespace(sourcecache=Cache()), {})
    return code


def _walk(tree: ast.AST):
    """Every node, except the body of the functions Snakemake generates for a rule's action
    (their decorators hold the rule's input, params, ...)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.FunctionDef) and node.name.startswith("__rule_"):
            todo.extend(node.decorator_list)
        else:
            todo.extend(ast.iter_child_nodes(node))


def _bound_and_used(code: str) -> tuple[set[str], set[str]]:
    bound, used = set(), set()
    for node in _walk(ast.parse(code)):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return bound, used


def test_rule_files_use_only_names_of_common_smk_or_their_own():
    import snakemake.api  # noqa: F401  (imports snakemake.workflow in the order it needs)
    import snakemake.workflow

    # what Snakemake puts in every Snakefile's namespace (expand, directory, unpack, config, ...)
    snakemake_names = set(dir(snakemake.workflow)) | {"workflow", "rules", "checkpoints", "config", "scatter",
                                                     "gather", "storage", "access"}
    common, _ = _bound_and_used(_python_of(ROOT / "rules" / "common.smk"))
    assert {"PLAN", "MANIFEST", "ADAPTIVE_TARGETS", "dataset_root_input"} <= common
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        bound, used = _bound_and_used(_python_of(smk))
        foreign = used - bound - common - snakemake_names - set(dir(builtins))
        assert not foreign, f"{smk.name} uses names defined in another rule file: {sorted(foreign)}"
        if smk.name != "common.smk":
            assert "config" not in used, f"{smk.name} reads Snakemake's config (read the PLAN instead)"
