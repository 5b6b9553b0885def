"""Provenance of every record: which code, which configuration, which libraries.

:func:`provenance` returns ``{cloakbench, git_commit, git_dirty, config_hash, versions}``:

* ``cloakbench``: the package version; ``git_commit`` / ``git_dirty``: the commit of the
  checkout the package is imported from and whether tracked files differ from it (both None
  outside a git checkout, e.g. an installed wheel: never an error);
* ``config_hash``: the sha256 of the validated plan (:func:`plan_hash`), which the Snakefile
  puts in ``$CLOAKBENCH_CONFIG_HASH`` for the jobs it starts (None outside a workflow run);
* ``versions``: the installed versions of the libraries the numbers depend on
  (:data:`LIBRARIES`; None for one that is not installed).

The code and library parts are computed once per process.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

#: the environment variable that carries the plan's hash from the Snakefile to the jobs
CONFIG_HASH_ENV = "CLOAKBENCH_CONFIG_HASH"
#: the libraries whose versions every record carries (distribution names)
LIBRARIES = ("torch", "insightface", "onnxruntime", "snakemake")


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), *args],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def code_provenance() -> dict[str, Any]:
    """Package version, git commit and state, library versions (computed once per process)."""
    from . import __version__

    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"cloakbench": __version__, "git_commit": commit,
            "git_dirty": None if status is None else bool(status),
            "versions": {name: _version(name) for name in LIBRARIES}}


def plan_hash(tree: Any) -> str:
    """sha256 of a configuration (a plan's tree or a plain mapping), canonical JSON."""
    # A plan's tree is read-only mappings (MappingProxyType) and tuples: json writes tuples as
    # lists; mappings go through ``default`` (plain dicts), anything else as its str().
    text = json.dumps(tree, sort_keys=True, separators=(",", ":"),
                      default=lambda o: dict(o) if isinstance(o, Mapping) else str(o))
    return hashlib.sha256(text.encode()).hexdigest()


def provenance() -> dict[str, Any]:
    """What a record carries: code, configuration hash and library versions (JSON-safe)."""
    code = code_provenance()
    return {"cloakbench": code["cloakbench"], "git_commit": code["git_commit"], "git_dirty": code["git_dirty"],
            "config_hash": os.environ.get(CONFIG_HASH_ENV) or None, "versions": dict(code["versions"])}
