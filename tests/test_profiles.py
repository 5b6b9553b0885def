"""Resources in the rules, cluster details in the profiles: every rule that runs something
declares threads, mem_mb and runtime (and the GPU rules a gpu resource); profiles/slurm and
profiles/slurm-local are valid Snakemake profiles that agree with each other and with
scripts/slurm_local.sh."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from rules_text import ROOT, action_rules, rules
from smk_helpers import TEST_CONFIG, run_snakemake

SLURM = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
LOCAL = yaml.safe_load((ROOT / "profiles" / "slurm-local" / "config.yaml").read_text())
GPU_RULES = {"perturb", "train_extractor", "embed"}  # cloaks, training, embedding (issue 5)


def test_every_rule_declares_threads_mem_runtime():
    problems = []
    for name, block in action_rules().items():
        for what, pattern in [("threads", r"^\s*threads\s*:"), ("mem_mb", r"\bmem_mb\s*="),
                              ("runtime", r"\bruntime\s*=")]:
            if not re.search(pattern, block, re.M):
                problems.append(f"{name}: no {what}")
    assert not problems, "rules must declare their resources (rules/*.smk):\n" + "\n".join(problems)


def test_gpu_rules_declare_a_gpu_resource():
    blocks = rules()
    for name in GPU_RULES:
        assert re.search(r"\bgpu\s*=", blocks[name]), f"rule {name} should declare gpu (cloaks, training, embedding)"


def test_profiles_name_existing_rules_and_share_groups():
    names = set(rules())
    for profile in (SLURM, LOCAL):
        assert profile["executor"] == "slurm"
        for section in ("groups", "set-resources", "set-threads", "group-components"):
            unknown = set(profile.get(section) or {}) - names
            assert not unknown, f"{section} names unknown rules {unknown}"
    assert SLURM["groups"] == LOCAL["groups"], "profiles/slurm-local must group jobs as profiles/slurm"
    assert SLURM.get("resources") == LOCAL.get("resources")
    assert SLURM.get("set-resource-scopes") == LOCAL.get("set-resource-scopes")


def test_slurm_profile_placeholders_and_local_profile_cluster():
    text = (ROOT / "profiles" / "slurm" / "config.yaml").read_text()
    assert SLURM["default-resources"]["slurm_partition"] == "YOUR_CPU_PARTITION"
    assert SLURM["default-resources"]["slurm_account"] == "YOUR_ACCOUNT"
    assert "YOUR_GPU_PARTITION" in text and SLURM["latency-wait"] >= 30 and SLURM["retries"] >= 1
    script = (ROOT / "scripts" / "slurm_local.sh").read_text()
    partition = re.search(r"PARTITION=\$\{CLOAKBENCH_SLURM_PARTITION:-(\w+)\}", script).group(1)
    assert LOCAL["default-resources"]["slurm_partition"] == partition
    assert LOCAL["slurm-status-command"] == "squeue" and LOCAL["slurm-no-account"] is True
    assert "gpu" not in str(LOCAL.get("set-resources", ""))


def test_slurm_local_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / "slurm_local.sh")], check=True)
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / "dvc_pull.sh")], check=True)


@pytest.mark.parametrize("profile", ["slurm", "slurm-local"])
def test_profile_plans_the_tiny_config(profile, tmp_path):
    """Snakemake accepts the profile (plugin settings, groups, resources) and plans the DAG."""
    proc = run_snakemake(tmp_path, "-n", "--profile", str(ROOT / "profiles" / profile),
                         "--workflow-profile", "none", cores=None, configfile=TEST_CONFIG)
    assert "Job stats" in proc.stdout, proc.stdout[-3000:]
