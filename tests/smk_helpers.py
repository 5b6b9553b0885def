"""Helpers for tests that drive Snakemake on the tiny config (see tests/conftest.py).

Everything runs Snakemake as a user does (a subprocess with ``-s``/``-d``/``--configfile``)
in a temporary working directory, so the repository itself is never written to.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Iterable

import pandas as pd
import yaml

from repo_paths import ROOT

BIN = Path(sys.executable).parent
SNAKEMAKE = str(BIN / "snakemake")
# The tiny config CI runs end to end (CLOAKBENCH_TEST_CONFIG points the workflow tests at
# another one while debugging, e.g. a pre-aligned folder dataset).
TEST_CONFIG = Path(os.environ.get("CLOAKBENCH_TEST_CONFIG") or ROOT / "config" / "test.yaml")
# Same thread setting for every run, so that runs are comparable number for number.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}


def snakemake_cmd(workdir: Path, *args: str, configfile: Path | None = None,
                  cores: int | None = 2) -> list[str]:
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
           "--configfile", str(configfile or TEST_CONFIG)]
    if cores is not None:
        cmd += ["--cores", str(cores)]
    return cmd + list(args)


def run_snakemake(workdir: Path, *args: str, configfile: Path | None = None, check: bool = True,
                  cores: int | None = 2, timeout: float | None = None,
                  env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(snakemake_cmd(workdir, *args, configfile=configfile, cores=cores),
                          capture_output=True, text=True, env=env or ENV, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed (rc {proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def copy_workdir(src: Path, dst: Path) -> Path:
    """Copy a finished working directory, keeping mtimes and Snakemake's metadata (so the
    copy is exactly as up to date as the original), without locks or old logs."""
    shutil.copytree(src, dst, symlinks=True, copy_function=shutil.copy2,
                    ignore=shutil.ignore_patterns("locks", "slurm_logs", "log"))
    return dst


def write_config(path: Path, base: Path | None = None, *, drop: Iterable[str] = (),
                 **updates) -> Path:
    """A copy of ``base`` (default: the tiny config) with top-level keys replaced/dropped."""
    cfg = yaml.safe_load((base or TEST_CONFIG).read_text())
    for key in drop:
        cfg.pop(key, None)
    cfg.update(updates)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


_JOB_RE = re.compile(r"^(?:local)?rule (\w+):\n((?:    .*\n?)*)", re.M)


def planned_jobs(proc_or_text) -> list[tuple[str, tuple[str, ...]]]:
    """(rule, outputs) of every job a ``snakemake -n`` run planned, checked against its
    "Job stats" table; [] when it said "Nothing to be done"."""
    text = proc_or_text if isinstance(proc_or_text, str) else proc_or_text.stdout + proc_or_text.stderr
    if "Nothing to be done" in text:
        assert "Job stats" not in text, text[-3000:]
        return []
    jobs = []
    for m in _JOB_RE.finditer(text):
        outputs: tuple[str, ...] = ()
        for line in m.group(2).splitlines():
            line = line.strip()
            if line.startswith("output:"):
                outputs = tuple(o.strip() for o in line[len("output:"):].split(","))
        jobs.append((m.group(1), outputs))
    stats = job_stats(text)
    assert Counter(r for r, _ in jobs) == stats, (jobs, stats, text[-3000:])
    return jobs


def job_stats(text: str) -> Counter:
    """The "Job stats" table of a dry run: rule -> planned jobs (total checked)."""
    m = re.search(r"Job stats:\njob\s+count\n-+\s+-+\n((?:.+\n)+?)total\s+(\d+)", text)
    assert m, f"no job stats in:\n{text[-3000:]}"
    stats = Counter({r: int(n) for r, n in (line.split() for line in m.group(1).splitlines())})
    assert sum(stats.values()) == int(m.group(2))
    return stats


def dry_run(workdir: Path, *args: str, configfile: Path | None = None):
    return planned_jobs(run_snakemake(workdir, "-n", *args, configfile=configfile, cores=1))


# --- comparing two runs --------------------------------------------------------------------

_TIMING_COLUMNS = {"seconds"}


def _without_timing(obj):
    if isinstance(obj, dict):
        return {k: _without_timing(v) for k, v in obj.items() if k not in _TIMING_COLUMNS}
    if isinstance(obj, list):
        return [_without_timing(v) for v in obj]
    return obj


def result_files(work: Path, pattern: str) -> dict[str, Path]:
    return {str(p.relative_to(work)): p for p in sorted(work.glob(pattern)) if p.is_file()}


def assert_same_results(a: Path, b: Path, *, cloaked_pngs: bool = True) -> dict[str, int]:
    """Assert two working directories hold the same results: every record and extractor meta
    (timings left out), summary, embeddings and per-picture figures, and (byte for byte)
    every cloaked picture. Returns how many files of each kind were compared."""
    counts = {}
    kinds = {"records": "results/records/**/*.json", "summary": "results/summary.parquet",
             "embeddings": "results/embeddings/**/*.parquet",
             "figures": "results/cloaked/**/figures.parquet",
             "scrape": "results/scrape/*/scrape.parquet"}
    if cloaked_pngs:
        kinds["cloaked_pngs"] = "results/cloaked/**/*.png"
    for kind, pattern in kinds.items():
        fa, fb = result_files(a, pattern), result_files(b, pattern)
        assert fa.keys() == fb.keys(), (kind, sorted(set(fa) ^ set(fb))[:10])
        assert fa, f"no {pattern} in {a}"
        for rel in fa:
            if rel.endswith(".json"):
                ja, jb = (_without_timing(json.loads(p.read_text())) for p in (fa[rel], fb[rel]))
                assert ja == jb, f"{rel} differs"
            elif rel.endswith(".parquet"):
                da, db = (pd.read_parquet(p) for p in (fa[rel], fb[rel]))
                assert list(da.columns) == list(db.columns), \
                    f"{rel}: columns {list(da.columns)} vs {list(db.columns)} (code changed between the runs?)"
                keep = [c for c in da.columns if c not in _TIMING_COLUMNS]
                pd.testing.assert_frame_equal(da[keep], db[keep], check_exact=True, obj=rel)
            else:
                assert fa[rel].read_bytes() == fb[rel].read_bytes(), f"{rel} differs"
        counts[kind] = len(fa)
    return counts
