"""``cloakbench check``: is a configuration ready to run, and what would it run?

From the repository root (``--directory``): the configuration is read exactly as the Snakefile
reads it (the ``--configfile`` files, merged in order, are the whole configuration; without
one, ``config/config.yaml``), validated by :func:`cloakbench.plan.build_plan` (every
parameter, ``device`` against this machine, ``users.protected`` against the manifest once it
exists), the data and weights that are not there are listed, and ``snakemake -n`` prints the
jobs it plans per rule.

Exit status: 0 ready to run; 1 invalid configuration (one message naming the key); 2 valid but
data or weights missing; 3 the dry run failed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from .errors import CloakbenchError

DEFAULT_CONFIG = Path("config") / "config.yaml"
SCHEMA = Path("config") / "schema.yaml"
MANIFEST = Path("results") / "dataset" / "manifest.parquet"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--configfile", action="append", default=None, metavar="FILE",
                        help="your config (repeatable, merged in order); without it: config/config.yaml, the demo")
    parser.add_argument("--directory", "-d", default=".", metavar="DIR",
                        help="the repository root (default: the current folder)")
    parser.add_argument("--no-jobs", action="store_true", help="skip the Snakemake dry run (validate only)")
    parser.add_argument("--no-device-check", action="store_true",
                        help="do not check `device` against this machine (the jobs run on other machines, "
                             "e.g. a cluster's GPU nodes)")


def load_config(root: Path, configfiles: list[str] | None) -> tuple[dict[str, Any], list[Path]]:
    """The configuration the Snakefile would read from ``root``: the given files merged in order
    (Snakemake's deep merge), or the demo config when none is given."""
    from snakemake.utils import update_config

    paths = [Path(f) for f in configfiles] if configfiles else [root / DEFAULT_CONFIG]
    cfg: dict[str, Any] = {}
    for p in paths:
        if not p.is_file():
            raise CloakbenchError(f"config file {p} not found")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise CloakbenchError(f"config file {p}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise CloakbenchError(f"config file {p}: expected a mapping of config keys, got {type(data).__name__}")
        update_config(cfg, data)
    return cfg, paths


def planned_jobs(root: Path, configfiles: list[Path] | None) -> tuple[dict[str, int], str]:
    """``snakemake -n --quiet rules`` from ``root``: (rule -> planned jobs, its output)."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--cores", "1"]
    if configfiles:
        cmd += ["--configfile", *map(str, configfiles)]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(text[-4000:])
    if "Nothing to be done" in text:
        return {}, text
    m = re.search(r"Job stats:\njob\s+count\n-+\s+-+\n((?:.+\n)+?)total\s+(\d+)", text)
    if not m:
        raise RuntimeError(f"no job table in Snakemake's dry run:\n{text[-4000:]}")
    return {r: int(n) for r, n in (line.split() for line in m.group(1).splitlines())}, text


def run(args: argparse.Namespace) -> int:
    from .plan import build_plan

    root = Path(args.directory).resolve()
    if not (root / "Snakefile").is_file():
        print(f"cloakbench check: no Snakefile in {root}; run it from the repository root "
              "(or give --directory)", file=sys.stderr)
        return 1
    given = [Path(f).resolve() for f in args.configfile] if args.configfile else None
    try:
        cfg, paths = load_config(root, [str(p) for p in given] if given else None)
        plan = build_plan(cfg, root / SCHEMA, base_dir=root, device_check=not args.no_device_check,
                          manifest=root / MANIFEST)
    except CloakbenchError as exc:
        print(f"invalid configuration ({', '.join(map(str, given or [root / DEFAULT_CONFIG]))}): {exc}",
              file=sys.stderr)
        return 1
    print(f"config: {', '.join(map(str, paths))}" + ("" if given else " (the demo; give --configfile for yours)"))
    print(f"valid: {len(plan.extractors)} extractors ({', '.join(plan.extractors)}), "
          f"{len(plan.cloaks)} cloaks ({', '.join(plan.cloaks) or 'none'}), device {plan['device']}")
    for note in plan.notes:
        print(f"note: {note}")
    if plan.missing_inputs:
        print("missing data or weights (provide them, or `dvc pull`):")
        for item in plan.missing_inputs:
            print(f"  {item}")
    else:
        print("data and weights: all present")
    if not args.no_jobs:
        try:
            jobs, _ = planned_jobs(root, given)
        except RuntimeError as exc:
            print(f"snakemake -n failed:\n{exc}", file=sys.stderr)
            return 3
        if jobs:
            width = max(map(len, jobs))
            print("planned jobs (snakemake -n):")
            for rule, n in jobs.items():
                print(f"  {rule:<{width}}  {n}")
            print(f"  {'total':<{width}}  {sum(jobs.values())}")
        else:
            print("planned jobs: none (nothing to be done)")
    return 2 if plan.missing_inputs else 0
