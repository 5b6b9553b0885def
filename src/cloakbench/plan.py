"""The plan: the configuration validated once, resolved and frozen; what the rules read.

``build_plan(config, schema, base_dir=...)`` runs every check when the Snakefile is parsed,
so a bad configuration fails before any job starts, with a message naming the key:

* the JSON schema (defaults filled in) and the semantic checks of :mod:`cloakbench.config`
  (registered types, cloak entry keys, ensembles, release dates, each cloak's ``params``
  against its class's declaration, in-pipeline extractors' ``train`` settings);
* ``device`` against this machine (:func:`check_device`: ``cuda`` without a GPU is an error,
  ``auto`` without one falls back to cpu with a note), unless the jobs run elsewhere;
* ``users.protected`` against the dataset's identities when the manifest already exists
  (:func:`check_protected_users`; otherwise select_users checks them);
* the ``adaptive:`` section and the ``type: robust`` extractors
  (:func:`cloakbench.adaptive.settings.check_adaptive_config`); each robust extractor's spec
  gets its base's spec as ``base_spec``, so the jobs that only see one extractor's spec can
  build the base architecture;
* the derived lists: extractors trained in the pipeline, the extractors of the dataset card,
  the extractor each detector needs, and the inputs the pipeline cannot make (missing files
  are listed, not raised, so a dry run still shows the DAG; ``require_inputs=True`` raises).

The :class:`Plan` is immutable (mappings are read-only, lists are tuples). Its tree is the
validated configuration with the ``adaptive`` section replaced by its resolved form
(``robust``, ``finetune``, ``detection``, ``timetravel``, ``combine``, ``public_cloaks``).
Rules read it (``PLAN["evaluate"]["bootstrap"]``) and pass plain JSON-safe copies to scripts
(``PLAN.plain("evaluate")``); nothing writes to Snakemake's ``config``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from .adaptive.detection import needs_extractor
from .adaptive.settings import check_adaptive_config
from .card import CARD_TYPES
from .config import missing_inputs, validate_config
from .errors import ConfigError
from .extractors.registry import describe_extractor, extractor_class


def freeze(obj: Any) -> Any:
    """A read-only deep copy: mappings become ``MappingProxyType``, lists and tuples tuples."""
    if isinstance(obj, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in obj.items()})
    if isinstance(obj, (list, tuple)):
        return tuple(freeze(v) for v in obj)
    return copy.deepcopy(obj)


def thaw(obj: Any) -> Any:
    """A plain JSON-safe deep copy of a frozen value: dicts and lists (key order kept)."""
    if isinstance(obj, Mapping):
        return {k: thaw(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [thaw(v) for v in obj]
    return copy.deepcopy(obj)


@dataclass(frozen=True)
class Plan:
    tree: Mapping[str, Any]
    missing_inputs: tuple[str, ...]
    trained: tuple[str, ...]            # extractors trained in the pipeline (train_extractor / robust_train)
    card_extractors: tuple[str, ...]    # extractors the dataset card measures
    notes: tuple[str, ...] = ()         # what the checks decided that a user should see (device fallback)

    def __getitem__(self, key: str) -> Any:
        return self.tree[key]

    def plain(self, *path: str) -> Any:
        """The value at ``path`` as a plain JSON-safe copy (for a rule's params)."""
        node: Any = self.tree
        for i, key in enumerate(path):
            try:
                node = node[key]
            except (KeyError, TypeError, IndexError):
                raise KeyError(f"plan has no {'.'.join(map(str, path[:i + 1]))}") from None
        return thaw(node)

    @property
    def extractors(self) -> tuple[str, ...]:
        return tuple(self.tree["extractors"])

    @property
    def cloaks(self) -> tuple[str, ...]:
        return tuple(self.tree["cloaks"])

    @property
    def shards(self) -> tuple[int, ...]:
        return tuple(range(self.tree["perturb"]["shards"]))

    def cloak_spec(self, cloak: str) -> dict[str, Any] | None:
        """A cloak's entry (plain), or None for ``none`` (the uncloaked baseline)."""
        return None if cloak == "none" else self.plain("cloaks", cloak)

    def ensemble(self, cloak: str) -> list[str]:
        return list(self.tree["cloaks"][cloak].get("ensemble", ()))

    def scrape_emits_images(self, cloak: str) -> bool:
        """Does scrape write pictures that differ from the clean set (cloaked or re-encoded)?"""
        s = self.tree["scrape"]
        cloaked = cloak != "none" and s["protected_fraction"] > 0
        return cloaked or bool(s["jpeg_quality"] or s["resize"])

    def imagesets(self, cloak: str) -> list[str]:
        """The image sets whose embeddings an evaluation on ``cloak``'s scraped set needs."""
        sets = ["clean"] + ([f"scraped-{cloak}"] if self.scrape_emits_images(cloak) else [])
        s = self.tree["scrape"]
        if (s["protocol"] == "per_user" and cloak != "none" and (s["jpeg_quality"] or s["resize"])
                and s["protected_fraction"] > 0):
            sets.append("scraped-none")  # the re-encoded uncloaked pictures of the other protected users
        return sets

    def plain_except(self, section: str, *keys: str) -> dict[str, Any]:
        """``plain(section)`` without ``keys``: the settings a rule's outputs depend on, where
        some keys of its section only say how the work is split or used (Snakemake reruns a
        job whose params change)."""
        return {k: v for k, v in self.plain(section).items() if k not in keys}

    def scrape_table_settings(self) -> dict[str, Any]:
        """The ``scrape`` settings a scrape table depends on: all but ``protocol``, which only
        says how ``evaluate`` and the end-to-end classifier use the table (the same under both
        protocols). Switching the protocol thus reruns the evaluations, not the scrapes and the
        embeddings of the scraped sets."""
        return self.plain_except("scrape", "protocol")

    def dataset_align_settings(self) -> dict[str, Any]:
        """The ``dataset`` settings the aligned crops depend on: all but ``shards`` (how the
        alignment is split over jobs changes no crop)."""
        return self.plain_except("dataset", "shards")

    def extractor_info(self, extractor: str) -> dict[str, Any]:
        """What the records say of ``extractor`` (``describe_extractor``), for the rules whose
        jobs read embeddings only (``evaluate``, ``timetravel``): computed here, where the
        extractor classes are loaded anyway, so those jobs never import torch."""
        return describe_extractor(extractor, self.plain("extractors", extractor))

    def detector_extractor(self, detector: str) -> str | None:
        """The extractor detector ``detector`` needs loaded, or None."""
        return self.tree["adaptive"]["detection"]["extractors"][detector]


def check_device(device: str) -> str | None:
    """``device`` against this machine: ``cuda`` with no GPU torch can use is a ConfigError;
    ``auto`` without one falls back to cpu (the returned note says so; None when nothing to say)."""
    import torch

    if device == "cpu":
        return None
    has_gpu = torch.cuda.is_available()
    if device == "cuda" and not has_gpu:
        raise ConfigError("config key 'device': 'cuda' requested but torch sees no GPU on this machine "
                          "(torch.cuda.is_available() is False); accepted values: cpu, cuda (needs a GPU), "
                          "auto (cuda when there is a GPU, else cpu)")
    if device == "auto" and not has_gpu:
        return "device: auto -> cpu (torch sees no GPU on this machine)"
    return None


def check_protected_users(cfg: Mapping[str, Any], manifest: str | Path | None) -> None:
    """``users.protected`` against the dataset's identities, once the manifest exists (else the
    select_users job checks them, first thing)."""
    protected = cfg["users"]["protected"]
    if not protected or manifest is None or not Path(manifest).is_file():
        return
    import pandas as pd

    from .data.roles import check_protected_names
    identities = pd.read_parquet(manifest, columns=["identity"])["identity"].unique()
    check_protected_names(protected, identities,
                          source=f"the dataset ({manifest}; if the dataset changed since, delete it to remake it)")


def build_plan(config: Mapping[str, Any], schema: dict[str, Any] | str | Path, *, base_dir: str | Path = ".",
               require_inputs: bool = False, device_check: bool = True,
               manifest: str | Path | None = None) -> Plan:
    """Validate ``config`` (Snakemake's, left untouched) and resolve it into a :class:`Plan`.

    Raises :class:`ConfigError` naming the key at fault (and, with ``require_inputs``, listing
    the missing inputs). ``device_check``: check ``device`` against this machine (off where the
    jobs run on other machines, e.g. a cluster's GPU nodes; each job checks it again).
    ``manifest``: the dataset's manifest, whose identities ``users.protected`` must name (when
    the file exists).
    """
    cfg = validate_config(config, schema, base_dir=base_dir, check_paths=False)
    notes = [n for n in [check_device(cfg["device"]) if device_check else None] if n]
    check_protected_users(cfg, manifest)
    adaptive = check_adaptive_config(cfg)
    for name, robust in adaptive["robust"].items():
        cfg["extractors"][name]["base_spec"] = copy.deepcopy(robust["base_spec"])
        cfg["extractors"][name]["cloaks"] = list(robust["cloaks"])  # resolved (default: FaceCure's three)
    detection = adaptive["detection"]
    detection["extractors"] = {n: needs_extractor(s) for n, s in detection["detectors"].items()}
    cfg["adaptive"] = adaptive
    missing = missing_inputs(cfg, base_dir=base_dir)
    if require_inputs and missing:
        raise ConfigError("missing inputs:\n  " + "\n  ".join(missing))
    extractors = cfg["extractors"]
    trained = [n for n, s in extractors.items() if extractor_class(s["type"], name=n).trained_in_pipeline]
    card = [n for n, s in extractors.items() if s["type"] in CARD_TYPES]
    return Plan(freeze(cfg), tuple(missing), tuple(trained), tuple(card), tuple(notes))
