"""The tiny config through a real single-node SLURM cluster (scripts/slurm_local.sh), run as
the README says, from the root of a checkout (a copy of the repository) with the profiles
installed by `make profiles` (into a temporary Snakemake config folder):

    snakemake --profile slurm-local --configfile config/test.yaml

Every job runs as a SLURM job with the cluster profile's latency wait (passed to each job),
the results equal a local run's, and a failing job is retried as the profile says, then
reported as failed instead of hanging.

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
import yaml

from checkout import installed_checkout
from smk_helpers import (ROOT, SNAKEMAKE, TEST_CONFIG, assert_same_results, copy_workdir,
                         planned_jobs, run_snakemake)

pytestmark = pytest.mark.slow

SCRIPT = ROOT / "scripts" / "slurm_local.sh"
SLURM_DIR = Path(os.environ.get("CLOAKBENCH_SLURM_DIR", "/tmp/cloakbench-slurm"))
COMMAND = [SNAKEMAKE, "--profile", "slurm-local", "--configfile", "config/test.yaml"]
LOCAL = yaml.safe_load((ROOT / "profiles" / "slurm-local" / "config.yaml").read_text())
SUBMITTED = re.compile(r"Job (\S+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")
# The header of the Snakemake inside a SLURM job: its command line, as the main one built it.
JOB_COMMAND = re.compile(r"^  Command: (.*)$", re.M)


@pytest.fixture(scope="session")
def slurm_cluster():
    """Start the local cluster (installing the packages if needed); stop it afterwards unless it
    was already running before the tests."""
    was_running = subprocess.run([str(SCRIPT), "status"], capture_output=True).returncode == 0
    proc = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"the local SLURM cluster did not start (scripts/slurm_local.sh start, rc "
                    f"{proc.returncode}):\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    yield {"SLURM_CONF": str(SLURM_DIR / "slurm.conf")}
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


@pytest.fixture(scope="module")
def slurm_checkout(slurm_cluster, tmp_path_factory) -> tuple[Path, dict]:
    """A checkout with the profiles installed; the environment to run Snakemake in."""
    checkout, env = installed_checkout(tmp_path_factory.mktemp("slurm"))
    tiny = TEST_CONFIG.read_text()
    (checkout / "config" / "test.yaml").write_text(tiny)
    # Snakemake 9 merges a --configfile into the Snakefile's config/config.yaml; this checkout's
    # config/config.yaml is the tiny config too, so the run is the tiny config's either way.
    (checkout / "config" / "config.yaml").write_text(tiny)
    return checkout, {**env, **slurm_cluster}


def run_through_slurm(work: Path, env: dict, timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    proc = subprocess.run(COMMAND, cwd=work, capture_output=True, text=True, env=env,
                          timeout=timeout)
    return proc, time.monotonic() - t0


@pytest.fixture(scope="module")
def slurm_run(slurm_checkout):
    work, env = slurm_checkout
    proc, seconds = run_through_slurm(work, env, timeout=1200)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"SLURM run failed after {seconds:.0f} s:\n{log[-8000:]}"
    print(f"tiny config through SLURM: {seconds:.0f} s")
    return work, log


def job_settings(slurm_log: Path, option: str) -> list[str]:
    """The values of ``option`` on the command lines of the Snakemake processes in a SLURM
    job's log (the sbatch-side one and the srun-side one), one per command line."""
    commands = JOB_COMMAND.findall(slurm_log.read_text())
    assert commands, f"no Snakemake command line in SLURM log {slurm_log}"
    values = [re.findall(rf"(?:^| ){re.escape(option)} (\S+)", c) for c in commands]
    assert all(len(v) == 1 for v in values), (slurm_log, option, commands)
    return [v[0] for v in values]


def test_every_job_ran_as_a_slurm_job(slurm_run, tmp_path):
    work, log = slurm_run
    # the installed profile by its name, and the workflow profile (which sets none of its keys)
    assert "Using profiles slurm-local and workflow specific profile profiles/default" in log
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

    # Each job ran with the cluster profile's latency wait (not Snakemake's default 5 s, which
    # a run without the profile would use): the Snakemake inside each SLURM job prints the
    # command line the main Snakemake gave it.
    assert LOCAL["latency-wait"] != 5
    for _, sid, slurm_log in submitted:
        assert set(job_settings(Path(slurm_log), "--latency-wait")) == {str(LOCAL["latency-wait"])}, sid
        assert set(job_settings(Path(slurm_log), "--attempt")) == {"1"}, sid

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


def test_failing_job_is_retried_then_reported_as_failed_not_hung(slurm_run, slurm_checkout,
                                                                 tmp_path):
    work = copy_workdir(slurm_run[0], tmp_path / "fail")
    record = sorted((work / "results" / "records").glob("*/*.json"))[0]
    record.write_text("{ this is not JSON")  # newer than the report: report reruns, and fails
    proc, seconds = run_through_slurm(work, slurm_checkout[1], timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-4000:]
    submitted = SUBMITTED.findall(log)
    # the report (alone, or in its group: log folder rule_report/ or group_*_report/), submitted
    # once and then resubmitted as often as the profile's `retries` says
    assert LOCAL["retries"] >= 1
    assert len(submitted) == 1 + LOCAL["retries"], submitted
    assert all("report" in Path(p).parent.name for _, _, p in submitted), submitted
    assert log.count("Trying to restart job") == LOCAL["retries"], log[-4000:]
    for attempt, (_, sid, slurm_log) in enumerate(submitted, start=1):
        assert jobcomp()[sid]["JobState"] == "FAILED"  # SLURM saw each attempt fail ...
        assert set(job_settings(Path(slurm_log), "--attempt")) == {str(attempt)}, sid
    # ... and Snakemake reported it as failed (its SLURM status line is printed for a single
    # job; a group job's error names the group and its rules) and stopped
    assert re.search(r"Error in (rule report|group \w+)", log), log[-4000:]
    assert "rule report" in log and "At least one job did not complete successfully" in log
    assert seconds < 300, f"took {seconds:.0f} s to notice the failure"
    # nothing of the failed job is left as if it were done
    assert not (work / "results" / "report.md").exists() or \
        (work / "results" / "report.md").stat().st_mtime < record.stat().st_mtime
