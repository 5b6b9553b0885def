"""Job start-up: the rules whose jobs only read tables and embeddings must not import torch.

Every Snakemake job is a fresh Python process; importing torch costs about 2 s of it. The demo
runs dozens of ``evaluate`` jobs that each do a fraction of a second of work (issue 15), so the
modules behind those rules' scripts (``scripts/<rule>.py``) keep torch out of their imports.
"""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from repo_paths import ROOT

# rule script -> must its job start without torch?
TORCH_FREE = ["evaluate", "timetravel", "combine", "scrape", "select_users", "report", "prepare_dataset", "align_shard",
              "dataset_card"]


def script_modules(rule: str) -> list[str]:
    text = (ROOT / "scripts" / f"{rule}.py").read_text()
    return re.findall(r"^from (cloakbench[\w.]*) import", text, flags=re.M)


@pytest.mark.parametrize("rule", TORCH_FREE)
def test_light_rules_start_without_torch(rule):
    modules = script_modules(rule)
    assert modules, f"scripts/{rule}.py imports nothing from cloakbench"
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + "from cloakbench.workflow import hold_threads\nhold_threads(1)\n"
            + "heavy = [m for m in ('torch', 'torchvision', 'onnx2torch', 'insightface') if m in sys.modules]\n"
            + "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, f"scripts/{rule}.py's imports load {proc.stderr.strip().splitlines()[-1]}"


def test_the_check_sees_a_torch_import():
    # the same check on a module that does import torch fails (the test can fail)
    code = "import sys, cloakbench.embed\nassert 'torch' in sys.modules\n"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
