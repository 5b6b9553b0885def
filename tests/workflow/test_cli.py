"""The `cloakbench` command (cloakbench.cli, the console script pyproject declares) and its
`check` subcommand: validation, missing data and weights, the planned jobs per rule."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from collections import Counter
from pathlib import Path

import pytest
import yaml

from cloakbench import cli
from checkout import copy_checkout
from smk_helpers import ENV, ROOT, dry_run

PY = [sys.executable, "-m", "cloakbench.cli"]


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), ENV.get("PYTHONPATH", "")])}
    return subprocess.run([*PY, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


def test_console_script_is_declared_and_main_exists():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'cloakbench = "cloakbench.cli:main"' in pyproject
    proc = _run("--help")
    assert proc.returncode == 0 and "check" in proc.stdout, proc.stderr


def test_subcommands_are_imported_lazily_and_one_line_registers_one(monkeypatch, capsys):
    calls = []
    mod = types.ModuleType("fake_sub")
    mod.add_arguments = lambda p: p.add_argument("--n", type=int, default=1)
    mod.run = lambda args: calls.append(args.n) or 7
    monkeypatch.setitem(sys.modules, "fake_sub", mod)
    monkeypatch.setattr(cli, "SUBCOMMANDS", [*cli.SUBCOMMANDS, ("fake", "fake_sub", "a test subcommand")])
    assert cli.main(["fake", "--n", "3"]) == 7 and calls == [3]
    # another subcommand's module is not imported to run or list this one
    monkeypatch.setattr(cli, "SUBCOMMANDS", [*cli.SUBCOMMANDS, ("broken", "no_such_module_xyz", "never imported")])
    assert cli.main(["fake"]) == 7
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "broken" in capsys.readouterr().out


def test_check_invalid_config_names_the_key(tmp_path):
    cfg = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    cfg["cloaks"]["pgd"]["params"]["steps"] = "ten"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = _run("check", "--configfile", str(bad), "--no-jobs")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "cloaks.pgd.params.steps" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = _run("check", "--configfile", str(tmp_path / "absent.yaml"), "--no-jobs")
    assert proc.returncode == 1 and "absent.yaml not found" in proc.stderr, proc.stderr


def test_check_lists_missing_data_and_weights(tmp_path):
    cfg = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    cfg["demo"]["enabled"] = False
    cfg["dataset"]["root"] = str(tmp_path / "no_dataset")
    cfg["extractors"]["sface"]["weights"] = str(tmp_path / "no_weights.onnx")
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump(cfg))
    proc = _run("check", "--configfile", str(mine), "--no-jobs")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "config key 'dataset.root'" in proc.stdout and "config key 'extractors.sface.weights'" in proc.stdout
    proc = _run("check", "--configfile", str(ROOT / "config" / "test.yaml"), "--no-jobs")
    assert proc.returncode == 0 and "data and weights: all present" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.slow
def test_check_prints_the_planned_jobs_per_rule(tmp_path):
    checkout = copy_checkout(tmp_path / "checkout")
    proc = _run("check", "--configfile", "config/test.yaml", cwd=checkout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = proc.stdout.split("planned jobs (snakemake -n):\n")[1]
    printed = {line.split()[0]: int(line.split()[1]) for line in table.splitlines() if line.strip()}
    total = printed.pop("total")
    expected = Counter(r for r, _ in dry_run(tmp_path / "work"))
    assert printed == dict(expected) and total == sum(expected.values())
