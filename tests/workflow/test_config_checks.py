"""Every parameter is checked when the Snakefile is read, before any job starts or is submitted:
a wrong cloak parameter, an unknown key, a wrong type, `device: cuda` without a GPU and a
protected user the dataset does not have each stop `snakemake -n` (or select_users, for a name
while the manifest does not exist yet) with one message naming the config key, no traceback."""

from __future__ import annotations

import copy
import logging
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from cloakbench.data.roles import run_select_users
from cloakbench.errors import ConfigError
from cloakbench.plan import build_plan, check_device
from cloakbench.workflow import log_to, resolve_device
from smk_helpers import ENV, SNAKEMAKE, TEST_CONFIG, ROOT, snakemake_cmd

SCHEMA = ROOT / "config" / "schema.yaml"
NO_GPU = not torch.cuda.is_available()


def tiny() -> dict:
    return yaml.safe_load(TEST_CONFIG.read_text())


def _pgd(cfg, **params):
    cfg["cloaks"]["pgd"]["params"].update(params)
    return cfg


# (change to the tiny config, the key the message must name, words it must contain)
CASES = {
    "eps_out_of_range": (lambda c: _pgd(c, eps=-0.1), "cloaks.pgd.params.eps", "in (0, 1]"),
    "unknown_param": (lambda c: _pgd(c, epsilon=0.1), "cloaks.pgd.params", "known keys: eps, steps"),
    "steps_not_int": (lambda c: _pgd(c, steps="ten"), "cloaks.pgd.params.steps", "must be an integer >= 1, got 'ten'"),
    "cloak_entry_key": (lambda c: c["cloaks"]["pgd"].update(parms={}) or c, "cloaks.pgd", "'parms'"),
    "train_epochs": (lambda c: c["extractors"]["cnn_2018"]["train"].update(epochs="ten") or c,
                     "extractors.cnn_2018.train.epochs", "a positive integer"),
    "finetune_train": (lambda c: c["adaptive"]["finetune"]["train"].update(lr=-1) or c,
                       "adaptive.finetune.train.lr", "a positive number"),
    "detector_key": (lambda c: c["adaptive"]["detection"]["detectors"]["stats"].update(C="big") or c,
                     "adaptive.detection.detectors.stats", "C"),
    "cnn_detector_flip": (lambda c: c["adaptive"]["detection"]["detectors"].update(cd={"type": "cnn", "flip": "yes"})
                          or c, "adaptive.detection.detectors.cd.flip", "true or false"),
    "robust_train": (lambda c: c["extractors"].update(rb={"type": "robust", "base": "cnn_2018", "cloaks": ["pgd"],
                                                          "train": {"epoch": 2}}) or c,
                     "extractors.rb.train", "unknown keys ['epoch']"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_build_plan_names_the_key(case):
    change, key, words = CASES[case]
    with pytest.raises(ConfigError) as err:
        build_plan(change(tiny()), SCHEMA, base_dir=ROOT)
    msg = str(err.value)
    assert key in msg and words in msg, msg


@pytest.mark.skipif(not NO_GPU, reason="checks the machine without a GPU")
def test_device_cuda_without_gpu_is_an_error_and_auto_falls_back(caplog):
    cfg = tiny()
    cfg["device"] = "cuda"
    with pytest.raises(ConfigError, match=r"config key 'device': 'cuda'.*accepted values: cpu, cuda"):
        build_plan(cfg, SCHEMA, base_dir=ROOT)
    # where the jobs run elsewhere (a cluster's GPU nodes) the plan leaves it to the jobs
    assert build_plan(cfg, SCHEMA, base_dir=ROOT, device_check=False)["device"] == "cuda"
    cfg["device"] = "auto"
    plan = build_plan(cfg, SCHEMA, base_dir=ROOT)
    assert plan.notes == ("device: auto -> cpu (torch sees no GPU on this machine)",)
    assert check_device("cpu") is None
    with caplog.at_level(logging.INFO):
        assert resolve_device("auto") == "cpu"
    assert "auto -> cpu" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert resolve_device("cpu") == "cpu"
    assert "device: cpu (" in caplog.text  # every GPU rule's log says which device it used
    with pytest.raises(ConfigError, match="'device'"):
        resolve_device("cuda")


def _manifest(path: Path, identities) -> Path:
    pd.DataFrame({"identity": [i for i in identities for _ in range(2)],
                  "image_id": [f"{i}/{k}" for i in identities for k in range(2)]}).to_parquet(path)
    return path


def test_protected_names_checked_against_an_existing_manifest(tmp_path):
    manifest = _manifest(tmp_path / "manifest.parquet", ["alice", "bob", "carol"])
    cfg = tiny()
    cfg["users"]["protected"] = ["alice", "Bobb"]
    with pytest.raises(ConfigError) as err:
        build_plan(cfg, SCHEMA, base_dir=ROOT, manifest=manifest)
    msg = str(err.value)
    assert msg.startswith("users.protected: 'Bobb' not among the 3 usable identities") and "'alice', 'bob'" in msg
    assert "\n" not in msg
    # no manifest yet: left to select_users
    build_plan(cfg, SCHEMA, base_dir=ROOT, manifest=tmp_path / "absent.parquet")
    cfg["users"]["protected"] = ["bob"]
    build_plan(cfg, SCHEMA, base_dir=ROOT, manifest=manifest)


def test_select_users_job_fails_with_one_line_no_traceback(tmp_path):
    """The select_users script's failure as a job: one line in the log, exit status 1."""
    manifest = _manifest(tmp_path / "manifest.parquet", ["alice", "bob", "carol"])
    log = tmp_path / "select_users.log"
    code = (f"from cloakbench.data.roles import run_select_users\n"
            f"from cloakbench.workflow import log_to\n"
            f"with log_to({str(log)!r}, 'select_users'):\n"
            f"    run_select_users(manifest={str(manifest)!r}, out={str(tmp_path / 'roles.parquet')!r},\n"
            f"        users={{'protected': ['zed'], 'n_protected': 1, 'public_fraction': 0.5}}, seed=0)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 1, proc.stderr
    text = log.read_text()
    assert "users.protected: 'zed' not among the 3 usable identities" in text, text
    assert "Traceback" not in text + proc.stderr, text + proc.stderr
    assert not (tmp_path / "roles.parquet").exists()


def _dry_run_fails(tmp_path: Path, cfg: dict) -> str:
    conf = tmp_path / "config.yaml"
    conf.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = subprocess.run(snakemake_cmd(tmp_path, "-n", configfile=conf, cores=1), capture_output=True,
                          text=True, env=ENV, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "Job stats" not in out and "rule " not in out, out[-3000:]  # nothing planned
    assert "Traceback" not in out, out[-3000:]
    return out


DRY_RUN_CASES = {
    "eps": (lambda c: _pgd(c, eps=-0.1), "cloaks.pgd.params.eps"),
    "epsilon": (lambda c: _pgd(c, epsilon=0.1), "cloaks.pgd.params (cloak type 'pgd'): unknown key(s) 'epsilon'"),
    "steps": (lambda c: _pgd(c, steps="ten"), "cloaks.pgd.params.steps"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(DRY_RUN_CASES))
def test_dry_run_stops_on_a_wrong_parameter(tmp_path, case):
    change, key = DRY_RUN_CASES[case]
    out = _dry_run_fails(tmp_path, change(tiny()))
    assert key in out, out[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(not NO_GPU, reason="checks the machine without a GPU")
def test_dry_run_stops_on_cuda_without_gpu(tmp_path):
    cfg = tiny()
    cfg["device"] = "cuda"
    out = _dry_run_fails(tmp_path, cfg)
    assert "config key 'device': 'cuda'" in out, out[-3000:]


@pytest.mark.slow
def test_dry_run_stops_on_unknown_protected_user_once_the_manifest_exists(tmp_path):
    (tmp_path / "results" / "dataset").mkdir(parents=True)
    _manifest(tmp_path / "results" / "dataset" / "manifest.parquet", ["id_00", "id_01", "id_02"])
    cfg = tiny()
    cfg["users"]["protected"] = ["id_00", "nobody"]
    out = _dry_run_fails(tmp_path, cfg)
    assert "users.protected: 'nobody' not among the 3 usable identities" in out, out[-3000:]
