"""A cloak shard killed midway (SIGKILL to Snakemake and its jobs, as a crashed node or an
OOM kill does): Snakemake marks the shard incomplete, the rerun recomputes it, and the
results are identical to an uninterrupted run's, with no half-written file left over.

perturb writes a shard as a directory output (PNGs + figures.parquet, each through
cloakbench.io's temp-name-and-rename writers), so a killed shard is either absent or
incomplete, never taken as done.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import time

import pytest
import yaml

from smk_helpers import (ENV, TEST_CONFIG, assert_same_results, copy_workdir, dry_run,
                         run_snakemake, snakemake_cmd)

pytestmark = pytest.mark.slow


def test_killed_shard_is_rerun_and_results_are_identical(tiny_run, tmp_path):
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    cloak = next(iter(cfg["cloaks"]))
    shard = f"results/cloaked/{cloak}/protected/shard-0"
    work = copy_workdir(tiny_run, tmp_path / "work")
    log = work / "logs" / "perturb" / cloak / "protected" / "shard-0.log"
    log.unlink()

    # Recompute shard 0 (and what depends on it); kill everything once the shard's job runs.
    out = (tmp_path / "killed-run.out").open("w")
    proc = subprocess.Popen(snakemake_cmd(work, "--forcerun", shard), env=ENV, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 600
    try:
        while not (log.is_file() and "shard 0/" in log.read_text()):
            assert proc.poll() is None, \
                f"snakemake ended before the shard ran:\n{(tmp_path / 'killed-run.out').read_text()[-4000:]}"
            assert time.monotonic() < deadline, "the perturb job did not start"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and every job it started
        proc.wait()
        out.close()
    assert not (work / shard / "figures.parquet").exists(), "the shard finished before the kill"

    # Snakemake knows the shard is incomplete: the rerun plan recomputes it for that reason
    # (profiles/default sets rerun-incomplete) together with everything downstream.
    markers = {base64.b64decode(p.name).decode()
               for p in (work / ".snakemake" / "incomplete").rglob("*") if p.is_file()}
    assert shard in markers, markers
    run_snakemake(work, "--unlock", cores=1)  # the killed run's lock stays behind
    plan = run_snakemake(work, "-n", cores=1)
    assert f"reason: Incomplete output files: {shard}" in plan.stdout, plan.stdout[-4000:]
    jobs = {r for r, _ in dry_run(work)}
    assert {"perturb", "scrape", "embed", "evaluate", "report"} <= jobs

    run_snakemake(work)
    assert dry_run(work) == []
    counts = assert_same_results(work, tiny_run)  # records, embeddings, figures, cloaked PNGs
    assert counts["cloaked_pngs"] > 0
    leftovers = [p for p in (work / "results").rglob("*") if ".tmp" in p.name]
    assert not leftovers, leftovers
