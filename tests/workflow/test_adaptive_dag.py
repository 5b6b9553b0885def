"""The adaptive rules in the DAG (dry runs only: seconds, no job is run)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from repo_paths import ROOT

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def config_with_everything(tmp_path: Path, edit=None) -> Path:
    cfg = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    cfg["cloaks"]["pgd_b"] = {"type": "pgd", "ensemble": ["cnn_2018"], "release_date": "2022-02-01",
                              "params": {"steps": 2}}
    cfg["extractors"]["cnn_robust"] = {"type": "robust", "base": "cnn_2018", "cloaks": ["pgd", "pgd_b"],
                                       "release_date": "2022-03-01", "train": {"epochs": 1}}
    cfg["adaptive"] = {
        "finetune": {"extractors": ["cnn_robust"], "cloaks": ["pgd"], "variants": ["oblivious", "adaptive"],
                     "adaptive_cloaks": ["pgd_b"]},
        "detection": {"detectors": {"cnn": {"type": "cnn"}}, "train_cloaks": ["pgd"]},
        "timetravel": {"pairs": [{"old": "pgd", "new": "pgd_b"}], "extractors": ["cnn_robust"]},
        "combine": {"pairs": [{"accurate": "sface", "robust": "cnn_robust"}], "cloaks": ["pgd_b"]},
    }
    if edit:
        edit(cfg)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def dry_run(tmp_path: Path, cfg: Path) -> subprocess.CompletedProcess:
    return subprocess.run([SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path / "work"),
                           "--configfile", str(cfg), "-n", "--cores", "1"], capture_output=True, text=True)


def jobs(stdout: str) -> dict[str, list[str]]:
    """rule name -> the output lines of its planned jobs."""
    out: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=rule \w+:)", stdout):
        m = re.match(r"rule (\w+):", block)
        o = re.search(r"^\s+output: (.*)$", block, re.M)
        if m:
            out.setdefault(m.group(1), []).append(o.group(1) if o else "")
    return out


def test_dag_plans_every_adaptive_rule(tmp_path):
    proc = dry_run(tmp_path, config_with_everything(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    j = jobs(proc.stdout)
    # the robust checkpoint comes from robust_train (never train_extractor), with its reads manifest
    assert j["robust_train"] == ["results/extractors/cnn_robust.pt, results/extractors/cnn_robust.json, "
                                 "results/extractors/cnn_robust.reads.parquet"]
    assert all("cnn_robust" not in o for o in j["train_extractor"])
    # the public subset is perturbed for both cloaks of the robust extractor
    perturbed = " ".join(j["perturb"])
    for c in ("pgd", "pgd_b"):
        assert f"results/cloaked/{c}/public/shard-0" in perturbed
    # the robust extractor goes through the standard embed -> evaluate path
    assert any("results/embeddings/cnn_robust/clean.parquet" in o for o in j["embed"])
    assert {o for o in j["evaluate"] if "cnn_robust" in o} == {
        f"results/records/{c}/cnn_robust.json" for c in ("none", "pgd", "pgd_b")}
    assert j["finetune_evaluate"] == ["results/adaptive/finetune/pgd/cnn_robust.json"]
    assert j["finetune_adaptive_evaluate"] == ["results/adaptive/finetune_adaptive/pgd/cnn_robust.json"]
    assert j["detect"] == ["results/adaptive/detection/cnn/pgd.json"]
    assert j["timetravel"] == ["results/adaptive/timetravel/pgd__pgd_b/cnn_robust.json"]
    assert j["combine"] == ["results/adaptive/combine/pgd_b/sface__cnn_robust.json"]


def test_bad_adaptive_config_fails_before_any_job(tmp_path):
    cfg = config_with_everything(tmp_path, lambda c: c["adaptive"]["timetravel"]["pairs"].append(
        {"old": "pgd", "new": "fawkes_v99"}))
    proc = dry_run(tmp_path, cfg)
    assert proc.returncode != 0
    assert "adaptive.timetravel.pairs[1].new: unknown cloak 'fawkes_v99'" in proc.stdout + proc.stderr
    cfg = config_with_everything(tmp_path, lambda c: c["extractors"]["cnn_robust"].update(base="dlib"))
    proc = dry_run(tmp_path, cfg)
    assert proc.returncode != 0 and "extractors.cnn_robust.base" in proc.stdout + proc.stderr
