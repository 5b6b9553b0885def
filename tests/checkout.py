"""A user's checkout for tests that run Snakemake exactly as users type it, from the
repository root: a copy of the repository's files (tracked, plus untracked ones git does not
ignore) in a temporary folder, with the project's Snakemake profiles installed by
`make profiles` into a temporary Snakemake config folder ($XDG_CONFIG_HOME/snakemake)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from smk_helpers import ENV, ROOT


def copy_checkout(dst: Path) -> Path:
    """Copy the repository's files (as `git ls-files` lists them, untracked non-ignored files
    included, so uncommitted work is tested too) to ``dst``: no results, logs, .snakemake."""
    proc = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",
                           "--exclude-standard"], capture_output=True)
    if proc.returncode != 0:
        raise AssertionError(f"these tests copy the repository's files as `git ls-files` lists "
                             f"them; {ROOT} is not a git checkout: {proc.stderr.decode()}")
    for rel in filter(None, proc.stdout.decode().split("\0")):
        src = ROOT / rel
        if not (src.exists() or src.is_symlink()):  # deleted in the working tree
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / rel, follow_symlinks=False)
    return dst


def user_env(config_home: Path) -> dict[str, str]:
    """The tests' environment with its own Snakemake config folder and no $SNAKEMAKE_PROFILE."""
    env = {k: v for k, v in ENV.items() if k != "SNAKEMAKE_PROFILE"}
    return {**env, "XDG_CONFIG_HOME": str(config_home)}


def make_profiles(checkout: Path, env: dict[str, str], *make_args: str) -> subprocess.CompletedProcess:
    """`make profiles` in the checkout, with the Python running the tests as the Makefile's
    virtual environment (its install stamp taken as up to date: nothing is installed) and the
    checkout's own installer (src/cloakbench/profiles.py)."""
    venv = Path(sys.executable).parent.parent
    env = {**env, "PYTHONPATH": os.pathsep.join(
        [str(checkout / "src")] + [p for p in [env.get("PYTHONPATH")] if p])}
    return subprocess.run(["make", "-C", str(checkout), "profiles", f"VENV={venv}",
                           "-o", str(venv / ".cloakbench-installed"), *make_args],
                          capture_output=True, text=True, env=env, timeout=120)


def installed_checkout(root: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the repository under ``root``/checkout with the profiles installed by
    `make profiles` into ``root``/config; returns (checkout, environment to run Snakemake in)."""
    checkout = copy_checkout(root / "checkout")
    env = user_env(root / "config")
    proc = make_profiles(checkout, env)
    assert proc.returncode == 0, f"make profiles failed:\n{proc.stdout}\n{proc.stderr}"
    return checkout, env
