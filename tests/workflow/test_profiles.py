"""Resources in the rules, cluster details in the profiles: every rule that runs something
declares threads, mem_mb and runtime (and the GPU rules a gpu resource); profiles/slurm and
profiles/slurm-local are valid Snakemake profiles that agree with each other and with
scripts/slurm_local.sh; and `snakemake --profile slurm`, typed from the repository root after
`make profiles`, runs with the cluster profile's values: the workflow profile profiles/default
(merged OVER any --profile by Snakemake) sets none of them."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml

from checkout import installed_checkout
from rules_text import ROOT, action_rules, rules
from smk_helpers import SNAKEMAKE, TEST_CONFIG, run_snakemake

SLURM = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
LOCAL = yaml.safe_load((ROOT / "profiles" / "slurm-local" / "config.yaml").read_text())
DEFAULT = yaml.safe_load((ROOT / "profiles" / "default" / "config.yaml").read_text())
CLUSTER = {p.parent.name: yaml.safe_load(p.read_text())
           for p in sorted((ROOT / "profiles").glob("*/config.yaml")) if p.parent.name != "default"}
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
                         cores=None, configfile=TEST_CONFIG)
    assert "Job stats" in proc.stdout, proc.stdout[-3000:]


# --- the workflow profile never overrides a cluster profile --------------------------------

def keys(profile: dict) -> set[str]:
    return {k.replace("_", "-") for k in profile}  # Snakemake reads either spelling


def test_workflow_profile_sets_no_key_a_cluster_profile_sets():
    assert set(CLUSTER) == {"slurm", "slurm-local"}
    for name, profile in CLUSTER.items():
        overlap = keys(DEFAULT) & keys(profile)
        assert not overlap, (f"profiles/default sets {sorted(overlap)}, which profiles/{name} sets "
                             f"too: Snakemake merges the workflow profile over --profile, so "
                             f"profiles/default's values would win on the cluster")
    # what every run (local runs included) still gets from the workflow profile
    assert DEFAULT == {"rerun-incomplete": True, "printshellcmds": True, "show-failed-logs": True}


@pytest.fixture(scope="module")
def user_checkout(tmp_path_factory):
    """A copy of the repository with the profiles installed by `make profiles` into a
    temporary Snakemake config folder."""
    return installed_checkout(tmp_path_factory.mktemp("user"))


# Snakemake's own argument parsing (snakemake.cli.parse_args: what `snakemake` runs first),
# from the checkout's root with the user's config folder: the values the run would use.
EFFECTIVE = """
import json, sys
from snakemake.cli import parse_args
_, args = parse_args(sys.argv[1:])
print(json.dumps({k: v for k, v in vars(args).items()
                  if isinstance(v, (bool, int, float, str, type(None), list))}))
"""


def effective_settings(checkout, env, *argv: str) -> tuple[dict, str]:
    proc = subprocess.run([sys.executable, "-c", EFFECTIVE, *argv], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.mark.parametrize("profile", ["slurm", "slurm-local"])
def test_named_cluster_profile_values_win_from_the_repository_root(profile, user_checkout):
    checkout, env = user_checkout
    args, log = effective_settings(checkout, env, "-n", "--profile", profile)
    # both profiles are in use: the cluster one by name (the installed link), and the workflow one
    assert f"Using profiles {profile} and workflow specific profile profiles/default" in log, log
    scalars = {k: v for k, v in CLUSTER[profile].items() if not isinstance(v, (dict, list))}
    assert {"executor", "cores", "latency-wait", "retries", "jobs"} <= set(scalars)
    for key, value in scalars.items():
        assert args[key.replace("-", "_")] == value, (profile, key, args[key.replace("-", "_")])
    for key, value in DEFAULT.items():  # and the workflow profile's own settings still apply
        assert args[key.replace("-", "_")] == value, key
    # the values differ from what a run without the cluster profile would use
    local, _ = effective_settings(checkout, env, "-n")
    assert local["latency_wait"] == 5 and local["executor"] is None and local["retries"] == 0
    assert (args["latency_wait"], args["retries"]) != (local["latency_wait"], local["retries"])


def test_dry_run_with_profile_slurm_from_the_repository_root(user_checkout):
    """`snakemake -n --profile slurm` exactly as typed: it plans the whole demo configuration
    with the cluster profile's resources (partitions) and names the profiles it uses."""
    checkout, env = user_checkout
    proc = subprocess.run([SNAKEMAKE, "-n", "--profile", "slurm"], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "Using profiles slurm and workflow specific profile profiles/default" in log
    assert "Job stats" in log and f"Working directory: {checkout}" in log
    perturb = re.search(r"^rule perturb:\n((?:    .*\n)+)", log, re.M).group(1)
    assert "slurm_partition=YOUR_GPU_PARTITION" in perturb, perturb
    scrape = re.search(r"^rule scrape:\n((?:    .*\n)+)", log, re.M).group(1)
    assert "slurm_partition=YOUR_CPU_PARTITION, slurm_account=YOUR_ACCOUNT" in scrape, scrape
