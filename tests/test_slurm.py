"""The tiny config through a real single-node SLURM cluster (scripts/slurm_local.sh) with
``snakemake --profile profiles/slurm-local``: every job runs as a SLURM job, the results equal
a local run's, and a failing job is reported as failed instead of hanging.

Needs root and the Debian SLURM packages; scripts/slurm_local.sh installs them when missing.
If the cluster cannot start, these tests FAIL (with the daemons' log tails), they never skip.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from smk_helpers import (ENV, ROOT, assert_same_results, copy_workdir, planned_jobs, run_snakemake,
                         snakemake_cmd)

pytestmark = pytest.mark.slow

SCRIPT = ROOT / "scripts" / "slurm_local.sh"
SLURM_DIR = Path(os.environ.get("CLOAKBENCH_SLURM_DIR", "/tmp/cloakbench-slurm"))
PROFILE = ["--profile", str(ROOT / "profiles" / "slurm-local"), "--workflow-profile", "none"]
SUBMITTED = re.compile(r"Job (\S+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")


@pytest.fixture(scope="session")
def slurm_cluster():
    """Start the local cluster (installing the packages if needed); stop it afterwards unless it
    was already running before the tests."""
    was_running = subprocess.run([str(SCRIPT), "status"], capture_output=True).returncode == 0
    proc = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"the local SLURM cluster did not start (scripts/slurm_local.sh start, rc "
                    f"{proc.returncode}):\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    env = {**ENV, "SLURM_CONF": str(SLURM_DIR / "slurm.conf")}
    yield env
    if not was_running:
        subprocess.run([str(SCRIPT), "stop"], capture_output=True, text=True, timeout=120)


def jobcomp() -> dict[str, dict[str, str]]:
    """SLURM's job completion log (JobCompType=jobcomp/filetxt): job id -> fields."""
    jobs = {}
    for line in (SLURM_DIR / "jobcomp.txt").read_text().splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "JobId" in fields:
            jobs[fields["JobId"]] = fields
    return jobs


def run_through_slurm(work: Path, env: dict, timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    proc = subprocess.run(snakemake_cmd(work, *PROFILE, cores=None), capture_output=True,
                          text=True, env=env, timeout=timeout)
    return proc, time.monotonic() - t0


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    work = tmp_path_factory.mktemp("slurm")
    proc, seconds = run_through_slurm(work, slurm_cluster, timeout=1200)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"SLURM run failed after {seconds:.0f} s:\n{log[-8000:]}"
    print(f"tiny config through SLURM: {seconds:.0f} s")
    return work, log


def test_every_job_ran_as_a_slurm_job(slurm_run, tmp_path):
    work, log = slurm_run
    submitted = SUBMITTED.findall(log)
    assert submitted, log[-4000:]
    ids = [sid for _, sid, _ in submitted]
    assert len(set(ids)) == len(ids)
    run_uuid = re.search(r"SLURM run ID: (\S+)", log).group(1)

    # SLURM itself recorded each of these jobs as completed, under this run's job name and dir.
    done = jobcomp()
    for sid in ids:
        assert sid in done, f"SLURM job {sid} is not in {SLURM_DIR / 'jobcomp.txt'}"
        assert done[sid]["JobState"] == "COMPLETED", done[sid]
        assert done[sid]["Name"] == run_uuid and Path(done[sid]["WorkDir"]) == work, done[sid]

    # Every job of the workflow (bar the target rule `all`) ran inside one of those SLURM jobs:
    # the SLURM job logs list the jobs they ran, and together they are the whole DAG.
    plan = planned_jobs(run_snakemake(tmp_path, "-n", cores=1))
    expected = sorted((r, o) for r, o in plan if r != "all")
    ran = []
    for _, sid, slurm_log in submitted:
        assert Path(slurm_log).name == f"{sid}.log" and Path(slurm_log).is_file(), slurm_log
        text = Path(slurm_log).read_text()
        # each job shows up twice in its log (the sbatch-side and the srun-side Snakemake)
        jobs = sorted(set(planned_jobs_from_log(text)))
        assert jobs, f"no job in SLURM log {slurm_log}"
        ran += jobs
    assert sorted(ran) == expected

    # Small jobs were grouped (profile `groups`): fewer SLURM jobs than workflow jobs, and the
    # dataset chain and the per-extractor embed+evaluate jobs each ran as one SLURM job.
    logs = [Path(p).parent.name for _, _, p in submitted]
    assert len(ids) < len(expected)
    assert any(d.startswith("group_dataset") for d in logs), logs
    assert any(d.startswith("group_assess") for d in logs), logs


def planned_jobs_from_log(text: str) -> list[tuple[str, tuple[str, ...]]]:
    jobs = []
    for m in re.finditer(r"^(?:local)?rule (\w+):\n((?:    .*\n?)*)", text, re.M):
        out = next((line.strip()[len("output:"):] for line in m.group(2).splitlines()
                    if line.strip().startswith("output:")), "")
        jobs.append((m.group(1), tuple(o.strip() for o in out.split(",") if o.strip())))
    return jobs


def test_slurm_results_equal_a_local_run(slurm_run, tiny_run):
    work, _ = slurm_run
    counts = assert_same_results(work, tiny_run)
    assert counts["records"] >= 2 and counts["cloaked_pngs"] > 0


def test_failing_job_is_reported_as_failed_not_hung(slurm_run, slurm_cluster, tmp_path):
    work = copy_workdir(slurm_run[0], tmp_path / "fail")
    record = sorted((work / "results" / "records").glob("*/*.json"))[0]
    record.write_text("{ this is not JSON")  # newer than the report: report reruns, and fails
    proc, seconds = run_through_slurm(work, slurm_cluster, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-4000:]
    submitted = SUBMITTED.findall(log)
    # one SLURM job: the report (alone, or in its group: log folder rule_report/ or group_*_report/)
    assert len(submitted) == 1 and "report" in Path(submitted[0][2]).parent.name, submitted
    sid = submitted[0][1]
    assert jobcomp()[sid]["JobState"] == "FAILED"  # SLURM saw it fail ...
    # ... and Snakemake reported it as failed (its SLURM status line is printed for a single
    # job; a group job's error names the group and its rules) and stopped
    assert re.search(r"Error in (rule report|group \w+)", log), log[-4000:]
    assert "rule report" in log and "At least one job did not complete successfully" in log
    assert seconds < 300, f"took {seconds:.0f} s to notice the failure"
    # nothing of the failed job is left as if it were done
    assert not (work / "results" / "report.md").exists() or \
        (work / "results" / "report.md").stat().st_mtime < record.stat().st_mtime
