"""A cloak shard killed midway (SIGKILL to Snakemake and its jobs, as a crashed node or an OOM
kill does): Snakemake knows the shard is unfinished, the rerun recomputes it and what depends
on it, and the results are identical to an uninterrupted run's, with no half-written file left.

perturb writes a shard as a directory output (PNGs + figures.parquet, each through
cloakbench.io's temp-name-and-rename writers), so a killed shard is either absent or marked
incomplete by Snakemake, never taken as done.

Starting point: a copy of the session's tiny run with one shard and everything downstream of
it deleted (a run interrupted after the other shards finished). The shard killed is one that
writes pictures in several batches, so that some of its PNGs are on disk when it dies.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from smk_helpers import (ENV, assert_same_results, copy_workdir, dry_run, run_snakemake,
                         snakemake_cmd)

pytestmark = pytest.mark.slow


def pick_shard(run: Path) -> tuple[str, bool]:
    """A shard of the tiny run whose pictures come in more than one batch (several identities:
    a batch never mixes identities), else the first shard. -> (shard dir, several batches)"""
    shards = sorted(run.glob("results/cloaked/*/*/shard-*"))
    assert shards, "the tiny run has no cloak shard"
    for d in shards:
        if pd.read_parquet(d / "figures.parquet")["identity"].nunique() > 1:
            return str(d.relative_to(run)), True
    return str(shards[0].relative_to(run)), False


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def test_killed_shard_is_rerun_and_results_are_identical(tiny_run, tmp_path):
    shard, several_batches = pick_shard(tiny_run)
    work = copy_workdir(tiny_run, tmp_path / "work")
    # What recomputing this shard involves; delete all of it, as if the run had stopped there.
    todo = dry_run(work, "--forcerun", shard)
    assert ("perturb", (shard,)) in todo
    for _, outputs in todo:
        for out in outputs:
            remove(work / out)
    _, _, cloak, subset, name = shard.split("/")
    log = work / "logs" / "perturb" / cloak / subset / f"{name}.log"
    remove(log)
    assert sorted(dry_run(work)) == sorted(todo)

    out = (tmp_path / "killed-run.out").open("w")
    proc = subprocess.Popen(snakemake_cmd(work), env=ENV, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    pngs: list[Path] = []
    deadline = time.monotonic() + 900
    try:
        while True:
            assert proc.poll() is None, \
                f"snakemake ended before the kill:\n{(tmp_path / 'killed-run.out').read_text()[-4000:]}"
            assert time.monotonic() < deadline, "the perturb job did not get going"
            assert not (work / shard / "figures.parquet").exists(), "the shard finished before the kill"
            if several_batches:
                pngs = sorted((work / shard).rglob("*.png"))
                if pngs:  # the first batch is written, the next one is being computed
                    break
            elif log.is_file() and "shard " in log.read_text():
                break
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and every job it started
        proc.wait()
        out.close()
    assert not (work / shard / "figures.parquet").exists()

    # Snakemake knows the shard is unfinished: its incomplete marker is there; without
    # --rerun-incomplete Snakemake refuses to go on and names it; with it (profiles/default)
    # the plan is the same as before the killed run.
    markers = {base64.b64decode(p.name).decode()
               for p in (work / ".snakemake" / "incomplete").rglob("*") if p.is_file()}
    assert shard in markers, markers
    run_snakemake(work, "--unlock", cores=1)  # the killed run's lock stays behind
    if pngs:  # the shard folder exists, with some pictures: it must not pass for done
        # the same run with a workflow profile that does not rerun incomplete jobs
        (tmp_path / "strict").mkdir()
        (tmp_path / "strict" / "config.yaml").write_text("rerun-incomplete: false\n")
        strict = run_snakemake(work, "-n", "--workflow-profile", str(tmp_path / "strict"),
                               cores=1, check=False)
        text = strict.stdout + strict.stderr
        assert strict.returncode != 0 and "IncompleteFilesException" in text and shard in text, text[-3000:]
    assert sorted(dry_run(work)) == sorted(todo)

    run_snakemake(work)
    assert dry_run(work) == []
    counts = assert_same_results(work, tiny_run)  # records, embeddings, figures, cloaked PNGs
    assert counts["cloaked_pngs"] > 0
    leftovers = [p for p in (work / "results").rglob("*") if ".tmp" in p.name]
    assert not leftovers, leftovers
    print(f"\nkilled {shard} with {len(pngs)} of its PNGs written; rerun identical "
          f"({counts})")
