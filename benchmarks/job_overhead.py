"""How much of a finished Snakemake run was the jobs' own work, and how much was start-up.

    python benchmarks/job_overhead.py RUN_DIR [--wall SECONDS]

Reads every rule log under ``RUN_DIR/logs`` (``cloakbench.workflow.log_to`` ends each with
"rule <name> finished in <s> s": the time inside the rule's function, after the script's
imports) and the newest Snakemake log under ``RUN_DIR/.snakemake/log`` (wall time = from its
"Date:" header to its last job's completion stamp, unless ``--wall`` is given, e.g. from
``/usr/bin/time``). Prints one row per rule (jobs, work, work per job) and the issue-15
figures: wall time, sum of job work, and their ratio.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

FINISHED = re.compile(r"rule (\S+) finished in ([0-9.]+) s")
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
DATE = re.compile(r"^\s*Date: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)$")


def job_work(run: Path) -> dict[str, list[float]]:
    work: dict[str, list[float]] = defaultdict(list)
    for log in sorted((run / "logs").rglob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            m = FINISHED.search(line)
            if m:
                work[m.group(1)].append(float(m.group(2)))
    return work


def read_snakemake_log(run: Path) -> tuple[float | None, list[dict]]:
    """The newest Snakemake log of ``run`` read once: its wall time (from the "Date:" header to
    the last stamp; None without a log, a header or a stamp) and each finished job (rule,
    threads, start and end in seconds from the first stamp; Snakemake stamps to the second)."""
    logs = sorted((run / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        return None, []
    jobs: dict[str, dict] = {}
    started = stamp = t0 = current = None
    for line in logs[-1].read_text().splitlines():
        if (m := DATE.match(line)) and started is None:
            started = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
        elif m := STAMP.match(line):
            stamp = datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y")
            t0 = t0 or stamp
        elif m := re.match(r"^(?:local)?rule (\w+):$", line):
            current = {"rule": m.group(1), "threads": 1, "start": (stamp - t0).total_seconds()}
        elif current is not None and (m := re.match(r"^\s+jobid: (\d+)$", line)):
            jobs[m.group(1)] = current
        elif current is not None and (m := re.match(r"^\s+threads: (\d+)$", line)):
            current["threads"] = int(m.group(1))
        elif (m := re.match(r"^Finished jobid: (\d+)", line)) and m.group(1) in jobs:
            jobs[m.group(1)]["end"] = (stamp - t0).total_seconds()
    wall = (stamp - started).total_seconds() if started is not None and stamp is not None else None
    return wall, [j for j in jobs.values() if "end" in j]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--wall", type=float, help="wall time of the run in seconds")
    ap.add_argument("--cores", type=int, default=2, help="cores the run had (--cores)")
    args = ap.parse_args(argv)
    work = job_work(args.run)
    if not work:
        sys.exit(f"{args.run}/logs: no 'rule ... finished in' line")
    logged_wall, timeline = read_snakemake_log(args.run)
    wall = args.wall if args.wall is not None else logged_wall
    if wall is None:
        sys.exit(f"{args.run}/.snakemake/log: no Snakemake log with a Date: header and a job stamp: "
                 "give --wall SECONDS")
    print(f"{'rule':28s} {'jobs':>5s} {'work s':>8s} {'s/job':>7s}")
    for rule, secs in sorted(work.items(), key=lambda kv: -sum(kv[1])):
        print(f"{rule:28s} {len(secs):5d} {sum(secs):8.1f} {sum(secs) / len(secs):7.2f}")
    total = sum(sum(s) for s in work.values())
    jobs = sum(len(s) for s in work.values())
    print(f"\njobs {jobs}; wall {wall:.0f} s; sum of job work {total:.0f} s; "
          f"wall / work {wall / total:.2f}")
    if timeline:
        # per rule: the jobs' durations as Snakemake saw them (process start to finish, to the
        # second) minus their own work = start-up (interpreter, imports, Snakemake's preamble)
        print(f"\n{'rule':28s} {'jobs':>5s} {'threads':>7s} {'job s':>8s} {'start-up s/job':>15s}")
        by_rule: dict[str, list[dict]] = defaultdict(list)
        for j in timeline:
            by_rule[j["rule"]].append(j)
        for rule, js in sorted(by_rule.items(), key=lambda kv: -len(kv[1])):
            dur = sum(j["end"] - j["start"] for j in js)
            startup = (dur - sum(work.get(rule, []))) / len(js)
            print(f"{rule:28s} {len(js):5d} {max(j['threads'] for j in js):7d} {dur:8.0f} {startup:15.1f}")
        busy = sum((j["end"] - j["start"]) * j["threads"] for j in timeline)
        span = max(j["end"] for j in timeline)
        print(f"thread-seconds held by jobs {busy:.0f} over {span:.0f} s")
        # The ratio above counts a one-thread job's work like a two-thread job's; this one weighs
        # each job's work by its threads: wall / (the work's thread-seconds / cores) = 1 when
        # every core did job work all the time.
        threads = {rule: max(j["threads"] for j in js) for rule, js in by_rule.items()}
        weighted = sum(sum(secs) * threads.get(rule, 1) for rule, secs in work.items())
        print(f"work thread-seconds {weighted:.0f}; wall / (work thread-seconds / {args.cores} cores) "
              f"{wall / (weighted / args.cores):.2f}")


if __name__ == "__main__":
    main()
