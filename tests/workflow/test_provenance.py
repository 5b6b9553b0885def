"""Every record carries its provenance (cloakbench.provenance): version, git commit, the plan's
hash, library versions; numbers unaffected; outside a git checkout no failure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

import cloakbench
from cloakbench.plan import build_plan
from cloakbench.provenance import CONFIG_HASH_ENV, LIBRARIES, plan_hash, provenance
from cloakbench.records import Record, read_records, write_records

from repo_paths import ROOT
SCHEMA = ROOT / "config" / "schema.yaml"
PKG = Path(cloakbench.__file__).resolve().parent


def _record() -> Record:
    return Record.make("evaluation", {"cloak": "pgd", "extractor": "sface", "classifier": "knn1"},
                       settings={"seed": 0}, metrics={"protection": 0.25})


def test_record_carries_version_commit_config_hash_and_library_versions(monkeypatch, tmp_path):
    monkeypatch.setenv(CONFIG_HASH_ENV, "abc123")
    rec = _record()
    p = rec.provenance
    assert p["cloakbench"] == cloakbench.__version__
    head = subprocess.run(["git", "-C", str(PKG), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert head.returncode == 0, "these tests run from a git checkout"
    assert p["git_commit"] == head.stdout.strip() and isinstance(p["git_dirty"], bool)
    assert p["config_hash"] == "abc123"
    assert set(p["versions"]) == set(LIBRARIES) == {"torch", "insightface", "onnxruntime", "snakemake"}
    assert p["versions"]["torch"] == metadata.version("torch") and p["versions"]["snakemake"] == metadata.version("snakemake")
    # numbers and settings are untouched; the provenance is not part of a record's identity
    assert rec.metrics == {"protection": 0.25} and rec.settings == {"seed": 0}
    write_records([rec], tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())[0]["provenance"] == p
    monkeypatch.setenv(CONFIG_HASH_ENV, "other")
    back = read_records([tmp_path / "r.json"])[0]
    assert back.provenance == p  # what was written, not this process's
    assert back == _record()
    # a record file from before provenance existed still reads
    old = rec.to_json()
    del old["provenance"]
    (tmp_path / "old.json").write_text(json.dumps([old]))
    assert read_records([tmp_path / "old.json"])[0].provenance == {}


def test_plan_hash_is_stable_and_follows_the_config():
    cfg = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    a = plan_hash(build_plan(cfg, SCHEMA, base_dir=ROOT).tree)
    assert a == plan_hash(build_plan(cfg, SCHEMA, base_dir=ROOT).tree) and len(a) == 64
    cfg["seed"] = 1
    assert plan_hash(build_plan(cfg, SCHEMA, base_dir=ROOT).tree) != a


def test_outside_a_git_checkout_no_failure(tmp_path):
    shutil.copytree(PKG, tmp_path / "cloakbench", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "GIT_CEILING_DIRECTORIES": str(tmp_path.parent)}
    env.pop(CONFIG_HASH_ENV, None)
    code = "import json; from cloakbench.provenance import provenance; print(json.dumps(provenance()))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    p = json.loads(proc.stdout)
    assert p["git_commit"] is None and p["git_dirty"] is None and p["config_hash"] is None
    assert p["cloakbench"] == cloakbench.__version__ and p["versions"]["torch"]


def test_computed_once_per_process(monkeypatch):
    from cloakbench import provenance as mod
    provenance()
    monkeypatch.setattr(mod, "_git", lambda *a: (_ for _ in ()).throw(AssertionError("git called again")))
    assert provenance()["cloakbench"] == cloakbench.__version__


@pytest.mark.slow
def test_workflow_records_carry_the_plans_hash(tiny_run):
    """Every record the tiny run wrote carries the hash of the plan the Snakefile built."""
    from smk_helpers import TEST_CONFIG

    expected = plan_hash(build_plan(yaml.safe_load(TEST_CONFIG.read_text()), SCHEMA, base_dir=tiny_run).tree)
    files = sorted((tiny_run / "results").glob("records/*/*.json")) + sorted((tiny_run / "results").glob("adaptive/*/*/*.json"))
    assert files
    for rec in read_records(files):
        assert rec.provenance["config_hash"] == expected, rec.experiment
        assert rec.provenance["cloakbench"] == cloakbench.__version__ and rec.provenance["versions"]["torch"]
