"""The side environment of the reference checks: TensorFlow and the official Fawkes releases.

Built once with pip from the package registry, outside the clone and apart from the project's
``.venv`` (which it never touches), in a folder named after the hash of its pins:

    ${CLOAKBENCH_CACHE:-${XDG_CACHE_HOME:-~/.cache}/cloakbench}/reference-venv-<hash>

``requirements.txt`` pins every package; ``fawkes==1.0.4`` is installed with ``--no-deps`` (its
own pins, tensorflow 2.4.1 and keras 2.4.3, have no wheels for current Pythons), and
``fawkes==0.0.8`` (the same import name) with ``--no-deps`` into ``<venv>/fawkes-0.0.8``, which
tf_side.py puts first on ``sys.path`` for the v0.3 check. A build that stops half way leaves no
stamp file and is redone from scratch next time; a lock file keeps two runs from building at once.

Command line: ``python tests/reference/sidevenv.py`` builds (if needed) and prints the Python.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from cloakbench.io import cache_dir  # the cache of the SFace weights and the demo sources

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
PIP = "pip==26.3"
NO_DEPS = ("fawkes==1.0.4",)
TARGETS = {"fawkes-0.0.8": "fawkes==0.0.8"}
SMOKE = ("import os; os.environ['TF_USE_LEGACY_KERAS'] = '1'; import tensorflow, tf_keras, "
         "fawkes; assert fawkes.__version__ == '1.0.4'")
STAMP = ".cloakbench-reference-ready"


def pins_hash() -> str:
    h = hashlib.sha256(REQUIREMENTS.read_bytes())
    h.update(repr((PIP, NO_DEPS, sorted(TARGETS.items()), sys.version_info[:2])).encode())
    return h.hexdigest()[:12]


def venv_dir() -> Path:
    return cache_dir() / f"reference-venv-{pins_hash()}"


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def _run(cmd: list[str], log) -> None:
    log("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-40:])
        raise RuntimeError(f"building the reference environment failed (exit {proc.returncode}) "
                           f"at: {' '.join(cmd)}\n{tail}")


def ensure(log=lambda msg: print(msg, file=sys.stderr, flush=True)) -> Path:
    """The side environment's Python, building the environment first if it is not ready."""
    venv = venv_dir()
    if (venv / STAMP).is_file():
        return python_of(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / STAMP).is_file():  # built by another run while we waited
            return python_of(venv)
        if venv.exists():
            log(f"removing an unfinished build at {venv}")
            shutil.rmtree(venv)
        t0 = time.monotonic()
        log(f"building the reference environment at {venv} (once; a few minutes)")
        _run([sys.executable, "-m", "venv", str(venv)], log)
        py = str(python_of(venv))
        pip = [py, "-m", "pip", "install", "--quiet", "--no-input", "--disable-pip-version-check"]
        _run(pip + [PIP], log)
        _run(pip + ["-r", str(REQUIREMENTS)], log)
        _run(pip + ["--no-deps", *NO_DEPS], log)
        for folder, spec in TARGETS.items():
            _run(pip + ["--no-deps", "--target", str(venv / folder), spec], log)
        _run([py, "-c", SMOKE], log)
        freeze = subprocess.run([py, "-m", "pip", "freeze", "--all"], capture_output=True,
                                text=True, check=True).stdout
        (venv / STAMP).write_text(f"built in {time.monotonic() - t0:.0f} s from "
                                  f"{REQUIREMENTS.name} ({pins_hash()})\n{freeze}")
        log(f"reference environment ready in {time.monotonic() - t0:.0f} s")
    return python_of(venv)


if __name__ == "__main__":
    print(ensure())
