"""README "Adding an extractor" / "Adding a cloak": the workflow's dry run plans jobs for the
README's toy cloak and toy extractor (the same files and entries as tests/unit/test_plugins.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cloakbench.registry import PLUGINS_ENV
from readme_plugins import config_with_plugins
from repo_paths import ROOT


@pytest.mark.slow
def test_workflow_dry_run_plans_the_plugin_jobs(plugin_dir, tmp_path):
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config_with_plugins()))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(plugin_dir), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    env.pop(PLUGINS_ENV, None)
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "-s", str(ROOT / "Snakefile"),
         "-d", str(tmp_path / "work"), "--configfile", str(configfile), "-n", "--cores", "1"],
        capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "results/cloaked/toy/protected/shard-0" in proc.stdout
    assert "results/records/toy/toy.json" in proc.stdout
