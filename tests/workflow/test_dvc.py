"""DVC round trip: results of a run go to a DVC remote (a local directory, as in the README),
a fresh `git clone` + `scripts/dvc_pull.sh` gets them back, and Snakemake then has nothing to
do, without anything being recomputed.

The run is the session's tiny run (tests/conftest.py), copied into a scratch git repository
made from this working tree with config/test.yaml as its config/config.yaml.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from smk_helpers import BIN, ENV, ROOT, TEST_CONFIG

pytestmark = pytest.mark.slow

GIT_ENV = {**ENV, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}


def sh(*cmd: str, cwd: Path, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=GIT_ENV, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed (rc {proc.returncode}) in {cwd}:\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def snapshot(root: Path, *dirs: str) -> dict[str, tuple[str, int]]:
    """path -> (sha256, mtime_ns) of every file under ``dirs``."""
    out = {}
    for d in dirs:
        for p in sorted((root / d).rglob("*")):
            if p.is_file():
                out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest(),
                                                 p.stat().st_mtime_ns)
    return out


def contents(snap: dict[str, tuple[str, int]]) -> dict[str, str]:
    return {k: v[0] for k, v in snap.items()}


def working_tree_files() -> list[str]:
    """Files of this checkout as git would commit them (tracked + new, minus ignored)."""
    proc = sh("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    return [f for f in proc.stdout.split("\0") if f and (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def scratch_repo(tiny_run, tmp_path_factory) -> tuple[Path, str]:
    """A git repo of this working tree whose config/config.yaml is the tiny config, holding
    the tiny run's data, results, logs and Snakemake metadata (mtimes kept: up to date)."""
    repo = tmp_path_factory.mktemp("dvc") / "repo"
    for rel in working_tree_files():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, repo / rel)
    shutil.copy2(TEST_CONFIG, repo / "config" / "config.yaml")
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    root = cfg["dataset"]["root"]
    assert not Path(root).is_absolute(), "the DVC test needs a dataset root inside the repository"
    for d in [root, "results", "logs", ".snakemake/metadata"]:
        shutil.copytree(tiny_run / d, repo / d, copy_function=shutil.copy2)
    if not cfg.get("demo", {}).get("enabled"):
        # Own data (README): no `data` stage, the dataset folder is tracked with `dvc add`.
        dvc_yaml = yaml.safe_load((repo / "dvc.yaml").read_text())
        del dvc_yaml["stages"]["data"]
        (repo / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    sh("git", "init", "-q", cwd=repo)
    if not cfg.get("demo", {}).get("enabled"):
        sh(str(BIN / "dvc"), "add", "-q", root, cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "cloakbench at test time", cwd=repo)
    return repo, root


def test_round_trip_push_clone_pull_nothing_to_do(scratch_repo, tmp_path):
    repo, data_root = scratch_repo
    dvc = str(BIN / "dvc")
    tracked = ("results", "logs", data_root)

    # dvc repro runs the stage commands: Snakemake finds everything up to date, runs no job,
    # and DVC records the results in dvc.lock.
    before = snapshot(repo, *tracked)
    proc = sh(dvc, "repro", cwd=repo)
    log = proc.stdout + proc.stderr
    assert log.count("Nothing to be done") == (2 if "Running stage 'data'" in log else 1), log[-3000:]
    assert "Running stage 'pipeline'" in log
    assert snapshot(repo, *tracked) == before, "dvc repro changed results"
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert {o["path"] for o in lock["stages"]["pipeline"]["outs"]} == {"results", "logs"}
    assert "Data and pipelines are up to date" in sh(dvc, "status", cwd=repo).stdout

    # push to a local directory remote (the README's example), commit dvc.lock
    store = tmp_path / "dvc-store"
    sh(dvc, "remote", "add", "-d", "store", str(store), cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "dvc.lock and remote", cwd=repo)
    sh(dvc, "push", cwd=repo)
    assert any(store.rglob("*")), "nothing was pushed"

    # a fresh clone has no results and no Snakemake metadata
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(repo), str(clone), cwd=tmp_path)
    assert not (clone / "results").exists() and not (clone / ".snakemake").exists()
    sh(dvc, "pull", cwd=clone)
    assert contents(snapshot(clone, *tracked)) == contents(before)
    # (a plain `snakemake` would now rerun jobs: DVC gives pulled files new, arbitrary mtimes)

    # The documented command marks everything up to date without recomputing anything:
    # every result and every job log (a job that ran would have rewritten its log) is unchanged.
    proc = sh(str(clone / "scripts" / "dvc_pull.sh"), cwd=clone)
    assert "nothing to be done" in proc.stdout, proc.stdout + proc.stderr
    assert contents(snapshot(clone, *tracked)) == contents(before), "files changed"
    plan = sh(str(BIN / "snakemake"), "-n", "--cores", "1", cwd=clone)
    assert "Nothing to be done" in plan.stdout + plan.stderr, plan.stdout[-3000:]
    assert "Data and pipelines are up to date" in sh(dvc, "status", cwd=clone).stdout
