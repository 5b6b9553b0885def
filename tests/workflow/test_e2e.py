"""End to end: the tiny config through Snakemake, as a user runs it."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from repo_paths import ROOT

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def run_snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "--configfile",
           str(ROOT / "config" / "test.yaml"), "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


# tiny_run: the session fixture in tests/conftest.py (shared with the SLURM, DVC, incremental
# and killed-job tests, so the tiny config runs once per session).


@pytest.mark.slow
def test_whole_dag_runs_and_cloak_protects_against_its_own_extractor(tiny_run):
    work = tiny_run
    for f in ["results/report.md", "results/summary.parquet", "results/figures/protection_heatmap.png",
              "results/figures/examples.png", "results/dataset/rejects.parquet"]:
        assert (work / f).is_file(), f
    records = json.loads((work / "results/records/pgd/sface.json").read_text())
    baseline = json.loads((work / "results/records/none/sface.json").read_text())
    assert [r["labels"]["classifier"] for r in records] == ["knn1", "linear"]
    for rec, base in zip(records, baseline):
        assert rec["kind"] == "evaluation" and rec["labels"]["classifier"] == base["labels"]["classifier"]
        # numbers, not only files: the cloak protects against its own extractor, by a margin
        assert rec["metrics"]["protection"] >= base["metrics"]["protection"] + 0.3, \
            (rec["experiment"], rec["metrics"]["protection"], base["metrics"]["protection"])
        assert rec["settings"]["cloak_spec"]["params"]["steps"] == 8
        # the defaults: one model per protected user (FaceCure's protocol), raw features
        assert rec["settings"]["protocol"] == "per_user" and rec["settings"]["features"] == "raw"
        assert rec["metrics"]["n_models"] == 2 and len(rec["metrics"]["clean_accuracy_per_model"]) == 2
    # every evaluation record (frozen features and end to end) keeps the recogniser accurate
    files = sorted((work / "results/records").glob("*/*.json")) + sorted(
        (work / "results/adaptive/finetune").glob("*/*.json"))
    assert len(files) == 2 * 2 + 1  # {none, pgd} x {sface, cnn_2018}, finetune pgd/cnn_2018
    for f in files:
        for rec in json.loads(f.read_text()):
            assert rec["metrics"]["clean_accuracy"] >= 0.8, (rec["experiment"], rec["metrics"]["clean_accuracy"])
            assert rec["settings"]["protocol"] == "per_user" and rec["settings"]["features"] == "raw"
    summary = pd.read_parquet(work / "results/summary.parquet")
    assert set(summary["cloak"]) == {"none", "pgd"} and set(summary["extractor"]) == {"sface", "cnn_2018"}
    report = (work / "results/report.md").read_text()
    assert "Protection rate" in report and "## Comparison with the paper (FaceCure)" in report
    # logs of every stage exist
    for log in ["prepare_dataset.log", "select_users.log", "report.log"]:
        assert (work / "logs" / log).is_file()
    # nothing left to do afterwards
    proc = run_snakemake(work, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_dry_run_and_rulegraph(tmp_path):
    proc = run_snakemake(tmp_path, "--rulegraph")
    graph = proc.stdout
    labels = {line.split("[")[0].strip(): line.split('label = "')[1].split('"')[0]
              for line in graph.splitlines() if "label = " in line}
    edges = {(labels[a.strip()], labels[b.strip().rstrip(";")])
             for a, b in (line.split("->") for line in graph.splitlines() if "->" in line)}
    chain = ["prepare_dataset", "select_users", "perturb", "scrape", "embed", "evaluate", "report"]
    for a, b in zip(chain, chain[1:]):
        assert (a, b) in edges, (a, b)
    dry = run_snakemake(tmp_path, "-n").stdout
    for rule in chain + ["make_demo_dataset", "train_extractor"]:
        assert rule in dry


def test_bad_config_fails_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "config" / "test.yaml").read_text().replace("type: pgd", "type: pgdd"))
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--configfile", str(bad),
           "--cores", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "cloaks.pgd.type: unknown cloak type 'pgdd'" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()
    missing = tmp_path / "missing.yaml"
    missing.write_text((ROOT / "config" / "test.yaml").read_text()
                       .replace("enabled: true", "enabled: false").replace("data/demo", "no/such/dir"))
    proc = subprocess.run([*cmd[:6], str(missing), "--cores", "1"], capture_output=True, text=True)
    assert proc.returncode != 0 and "dataset.root" in proc.stdout + proc.stderr
    assert "no/such/dir" in proc.stdout + proc.stderr
