"""Pictures per second of prepare_dataset (read, detect, align, write PNG), per worker count.

    python benchmarks/bench_prepare.py [--dataset data/demo] [--workers 1 2] [--repeat 1]

Aligns the demo dataset (``--dataset``, default ``data/demo``; when it is absent, the demo is
built first with the make_demo_dataset code path into a temporary folder, ``--identities`` x
``--pictures``, the default config's 40 x 20) with each worker count, into a fresh temporary
output folder each time, and prints pictures/s and pictures/s per core (per worker). The
timing is the whole prepare_dataset call: discovery, the pool's start-up (spawned workers) and
the writes included. The machine's load average (``os.getloadavg``) is printed beside each
figure: other jobs on the machine lower it. "per CPU-s" divides by the CPU time this process
and its workers used instead (``os.times``, workers counted once the pool has ended): the
per-core rate, much less sensitive to other jobs sharing the cores.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path


def demo_root(path: Path, tmp: Path, identities: int, pictures: int) -> Path:
    if path.is_dir():
        return path
    from cloakbench.demo.generate import make_demo_dataset

    root = tmp / "demo"
    print(f"{path} is absent: building the demo ({identities} x {pictures}) into {root} ...", flush=True)
    t = time.perf_counter()
    make_demo_dataset(root, n_identities=identities, n_pictures=pictures, seed=0)
    print(f"  built in {time.perf_counter() - t:.0f} s", flush=True)
    return root


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=Path("data/demo"))
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=1, help="runs per worker count (the best is kept)")
    ap.add_argument("--identities", type=int, default=40)
    ap.add_argument("--pictures", type=int, default=20)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from cloakbench.data.prepare import discover, prepare_dataset

    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
        tmp = Path(tmp)
        root = demo_root(a.dataset, tmp, a.identities, a.pictures)
        n = sum(d.problem is None for d in discover(root))
        print(f"dataset {root}: {n} pictures; {os.cpu_count()} CPUs")
        print(f"{'workers':>7} {'seconds':>8} {'pictures/s':>11} {'per core':>9} {'per CPU-s':>9}  "
              "load average (1, 5, 15 min)")
        for workers in a.workers:
            best = None
            for r in range(a.repeat):
                out = tmp / f"out-{workers}-{r}"
                t, c = time.perf_counter(), cpu_seconds()
                prepare_dataset(root, out, min_pictures=2, workers=workers)
                run = (time.perf_counter() - t, cpu_seconds() - c)
                best = run if best is None or run[0] < best[0] else best
            wall, cpu = best
            load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"{workers:>7} {wall:>8.1f} {n / wall:>11.1f} {n / wall / workers:>9.1f} {n / cpu:>9.1f}  "
                  f"{load}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
