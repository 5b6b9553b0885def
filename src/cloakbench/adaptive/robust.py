"""Robust training: the adaptive trainer fine-tunes an extractor on clean + self-cloaked pictures.

The trainer has black-box access to the cloaking tool. It cloaks the pictures of the *public*
identities (people it may photograph and label itself; never a protected user) and fine-tunes a
differentiable extractor end to end, through a classification head over those identities, on
their clean training pictures plus the cloaked copies from every cloak it has, as FaceCure's
``train_robust_features.py`` does: each public identity's pool holds its clean training
pictures and every cloak's copy of them; a batch draws identities uniformly, then a picture of
the pool (recipe: :data:`._train.TRAIN_DEFAULTS`). FaceCure's trainer has Fawkes v1.0, LowKey
and Fawkes v0.3, the default ``cloaks`` here. The cloak's perturbation then no longer
moves the fine-tuned features, so a protected user's cloaked training pictures land where their
clean test pictures do.

In the pipeline a robust extractor is an ordinary extractor entry of type ``robust``::

    extractors:
      sface_robust:
        type: robust
        base: sface           # a differentiable configured extractor to start from
        cloaks: [pgd]         # the cloaks the trainer has (their `public` subset is perturbed);
                              # absent = every configured cloak of FaceCure's three types
        release_date: 2022-03-01
        train: {epochs: 10}   # see cloakbench.adaptive._train.TRAIN_DEFAULTS (FaceCure's recipe)

Its checkpoint comes from the rule ``robust_train`` (``results/extractors/<name>.pt``, a plain
state dict of the base architecture, plus ``.json`` metadata and a ``.reads.parquet`` manifest of
every picture the training opened); :class:`RobustExtractor` loads it, so ``embed`` ->
``evaluate`` treat it like any other extractor and every classifier is reported for it.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from ..data.roles import protected_identities, trainer_pictures
from ..data.scrape import collect_shards
from ..errors import ConfigError, DataError
from ..extractors.base import Extractor
from ..extractors.registry import build_extractor, extractor_class
from ..extractors.robust import RobustExtractor
from ..io import sha256_file, write_json, write_parquet, write_state_dict
from ..images import read_pictures
from ..workflow import resolve_device
from . import _train

log = logging.getLogger(__name__)

#: Keys an extractor entry of type ``robust`` may hold.
ROBUST_KEYS = ("type", "base", "cloaks", "release_date", "train", "base_spec", "weights", "sha256")


# ---------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------
def check_robust_spec(name: str, spec: dict[str, Any], extractors: dict[str, dict[str, Any]],
                      cloaks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Validate a ``type: robust`` entry; return {base, base_spec, cloaks, train} (train filled)."""
    unknown = sorted(set(spec) - set(ROBUST_KEYS))
    if unknown:
        raise ConfigError(f"extractors.{name}: unknown keys {unknown} for a robust extractor; "
                          f"known: {list(ROBUST_KEYS)}")
    base = spec.get("base")
    if not isinstance(base, str) or base not in extractors:
        raise ConfigError(f"extractors.{name}.base: must name a configured extractor "
                          f"(configured: {', '.join(extractors)}), got {base!r}")
    base_spec = extractors[base]
    base_cls = extractor_class(base_spec.get("type", ""), name=base)
    if base_cls is RobustExtractor:
        raise ConfigError(f"extractors.{name}.base: '{base}' is itself a robust extractor; "
                          "start from a standard one")
    if not base_cls.differentiable:
        raise ConfigError(f"extractors.{name}.base: '{base}' ({base_cls.type_name}) is not "
                          "differentiable, so it cannot be fine-tuned end to end")
    names = spec.get("cloaks")
    if names is None:
        names = facecure_cloaks(cloaks, f"extractors.{name}.cloaks")
    if not isinstance(names, list) or not names or not all(isinstance(c, str) for c in names):
        raise ConfigError(f"extractors.{name}.cloaks: a non-empty list of configured cloaks "
                          f"(configured: {', '.join(cloaks) or 'none'}), got {names!r}")
    for c in names:
        if c not in cloaks:
            raise ConfigError(f"extractors.{name}.cloaks: unknown cloak '{c}' "
                              f"(configured: {', '.join(cloaks) or 'none'})")
        if name in (cloaks[c].get("ensemble") or []):
            raise ConfigError(f"cloaks.{c}.ensemble: contains '{name}', which is trained on that "
                              "cloak's own pictures (a cycle)")
    train = _train.train_settings(spec.get("train"), f"extractors.{name}.train")
    return {"base": base, "base_spec": copy.deepcopy(base_spec), "cloaks": list(names), "train": train}


#: The cloak types FaceCure's adaptive trainer has (``--public-attack-dirs``: Fawkes v1.0, LowKey,
#: Fawkes v0.3 cloaked copies of the public identities' pictures).
FACECURE_CLOAK_TYPES = ("fawkes_v10", "lowkey", "fawkes_v03")


def facecure_cloaks(cloaks: dict[str, dict[str, Any]], key: str) -> list[str]:
    """Every configured cloak of FaceCure's three types (config order): the default ``cloaks`` of
    an adaptive trainer; ConfigError naming ``key`` when none is configured."""
    names = [c for c, s in cloaks.items() if (s or {}).get("type") in FACECURE_CLOAK_TYPES]
    if not names:
        raise ConfigError(f"{key}: not given, and no cloak of FaceCure's types {list(FACECURE_CLOAK_TYPES)} "
                          f"is configured (configured: {', '.join(cloaks) or 'none'}); list the cloaks "
                          "the trainer applies to the public identities' pictures")
    return names


def robust_extractor_names(extractors: dict[str, dict[str, Any]]) -> list[str]:
    return [n for n, s in extractors.items() if s.get("type") == RobustExtractor.type_name]


def expand_robust_specs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Check every robust entry; return {robust name: {base, base_spec, cloaks, train}}.

    The plan (:func:`cloakbench.plan.build_plan`) records each ``base_spec`` in the robust
    extractor's spec, so the embed/evaluate jobs (which only see one extractor's spec) can build
    the base architecture and describe it in the records. ``config`` is not modified.
    """
    extractors, cloaks = config["extractors"], config.get("cloaks", {})
    return {name: check_robust_spec(name, extractors[name], extractors, cloaks)
            for name in robust_extractor_names(extractors)}


# ---------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------
@dataclass
class TrainingPairs:
    clean: list[tuple[str, str]]         # (path, identity)
    cloaked: list[tuple[str, str]]
    cloak_of: list[str]                  # cloak name of each cloaked picture


def robust_training_pairs(manifest: pd.DataFrame, roles: pd.DataFrame, dataset_dir: str | Path,
                          cloaked: dict[str, pd.DataFrame]) -> TrainingPairs:
    """What the adaptive trainer may train on: the *public* identities' clean training pictures
    and, for each cloak, the cloaked copies of exactly those pictures.

    ``cloaked``: {cloak: table with image_id, path} (``data.scrape.collect_shards`` of the cloak's
    ``public`` shards). Rows of any other picture (a protected user's, say) are ignored, so a
    wrong input can never leak a protected picture into the training.
    """
    dataset_dir = Path(dataset_dir)
    train = trainer_pictures(manifest, roles, allowed=("public",), what="robust training")
    train = train.sort_values("image_id")
    if train.empty:
        raise DataError("robust training: no public identity has training pictures "
                        "(users.public_fraction is 0, or the dataset is too small)")
    identity_of = dict(zip(train["image_id"], train["identity"]))
    clean = [(str(dataset_dir / p), i) for p, i in zip(train["path"], train["identity"])]
    pairs, cloak_of = [], []
    for cloak, table in cloaked.items():
        rows = table[table["image_id"].isin(identity_of)].sort_values("image_id")
        missing = len(identity_of) - len(rows)
        if missing:
            log.warning("robust training: cloak %s lacks %d of the %d public training pictures",
                        cloak, missing, len(identity_of))
        pairs += [(str(p), identity_of[i]) for i, p in zip(rows["image_id"], rows["path"])]
        cloak_of += [cloak] * len(rows)
    return TrainingPairs(clean, pairs, cloak_of)


@dataclass
class RobustResult:
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any]
    reads: list[str] = field(default_factory=list)


def robust_finetune(model: Extractor, clean: Sequence[tuple[str | Path, str]],
                    cloaked: Sequence[tuple[str | Path, str]], *, epochs: int | None = None,
                    batch_size: int | None = None, lr: float | None = None, seed: int = 0,
                    device: str = "cpu", log_read_paths: list[str] | None = None,
                    settings: dict[str, Any] | None = None,
                    forbidden_identities: Sequence[str] = (),
                    cloak_of: Sequence[str] | None = None) -> RobustResult:
    """Fine-tune ``model`` end to end on (path, identity) pairs of clean and cloaked pictures.

    ``settings``: training hyperparameters (see ``_train.TRAIN_DEFAULTS``); ``epochs``,
    ``batch_size``, ``lr`` override them when given. ``forbidden_identities`` (the protected
    users) are refused before any picture is read. Every path opened is recorded, in order, in
    the result's ``reads`` (and appended to ``log_read_paths`` when given). ``cloak_of``
    optionally names the cloak of each ``cloaked`` picture (counted in the metadata).

    Returns the fine-tuned extractor's state dict (CPU tensors, keys of ``model.state_dict()``)
    and metadata. ``model`` itself is trained in place and left in eval mode.
    """
    t0 = time.time()
    given = dict(settings or {})
    for k, v in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr)):
        if v is not None:
            given[k] = v
    s = _train.train_settings(given, f"robust training of '{getattr(model, 'name', '?')}'")
    if not getattr(model, "differentiable", True):
        raise ConfigError(f"robust training: extractor '{model.name}' is not differentiable")
    pairs = [(str(p), str(y)) for p, y in clean] + [(str(p), str(y)) for p, y in cloaked]
    forbidden = set(map(str, forbidden_identities))
    bad = sorted({y for _, y in pairs} & forbidden)
    if bad:
        raise DataError(f"robust training: pictures of protected users {bad[:5]} were passed; the "
                        "trainer may only use public identities")
    identities = sorted({y for _, y in pairs})
    if len(identities) < 2:
        raise DataError(f"robust training: need at least 2 identities, got {len(identities)}")
    index = {y: i for i, y in enumerate(identities)}
    reads: list[str] = []
    images = read_pictures([p for p, _ in pairs], reads=reads, desc="robust: read pictures")
    if log_read_paths is not None:
        log_read_paths.extend(reads)
    targets = torch.tensor([index[y] for _, y in pairs], dtype=torch.long)
    log.info("robust training of %s: %d clean + %d cloaked pictures of %d identities, %s",
             model.name, len(clean), len(cloaked), len(identities), s)
    head, history = _train.fit(model, images, targets, len(identities), s, seed=seed, device=device,
                               desc=f"robust {model.name}")
    acc = _clean_vs_cloaked_accuracy(model, head, images, targets, len(clean), device)
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    per_cloak = pd.Series(list(cloak_of)).value_counts().to_dict() if cloak_of is not None else {}
    meta = {
        "extractor": model.name, "type": getattr(model, "type_name", ""), "seed": int(seed),
        "settings": s, "deviations": _train.deviations(s), "identities": len(identities), "identity_names": identities,
        "n_clean": len(clean), "n_cloaked": len(cloaked),
        "n_cloaked_per_cloak": {str(k): int(v) for k, v in per_cloak.items()},
        "history": history, "final_loss": history[-1]["loss"],
        "final_train_acc": history[-1]["train_acc"], **acc,
        "n_reads": len(reads), "reads_sha256": _digest(reads),
        "seconds": round(time.time() - t0, 2), "torch": torch.__version__, "device": str(device),
        "machine": platform.machine(),
    }
    log.info("robust training of %s done in %.1f s: train acc %.3f (clean %.3f, cloaked %.3f)",
             model.name, meta["seconds"], meta["final_train_acc"], acc["head_acc_clean"],
             acc["head_acc_cloaked"])
    return RobustResult(state, meta, reads)


@torch.no_grad()
def _clean_vs_cloaked_accuracy(model, head, images, targets, n_clean, device) -> dict[str, float]:
    pred = _train.predict_logits(model, head, images, device=device).argmax(1)
    ok = (pred == targets).float()
    return {"head_acc_clean": float(ok[:n_clean].mean()) if n_clean else float("nan"),
            "head_acc_cloaked": float(ok[n_clean:].mean()) if len(ok) > n_clean else float("nan")}


def _digest(paths: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(paths).encode()).hexdigest()


def save_robust(result: RobustResult, checkpoint: str | Path, *, meta_extra: dict[str, Any] | None = None,
                reads_path: str | Path | None = None, read_roles: Sequence[str] | None = None) -> dict:
    """Write the state dict (atomically), ``<checkpoint>.json`` metadata and the reads manifest."""
    checkpoint = Path(checkpoint)
    write_state_dict(result.state_dict, checkpoint)
    meta = {**result.meta, **(meta_extra or {}), "checkpoint": checkpoint.name,
            "sha256": sha256_file(checkpoint)}
    if reads_path is not None:
        reads = pd.DataFrame({"order": range(len(result.reads)), "path": result.reads})
        if read_roles is not None:
            reads["role"] = list(read_roles)
        write_parquet(reads, reads_path)
        meta["reads_manifest"] = Path(reads_path).name
    write_json(meta, checkpoint.with_suffix(".json"))
    return meta


def run_robust_train(*, name: str, spec: dict[str, Any], base: str, base_spec: dict[str, Any],
                     base_checkpoint: str | Path | None, cloaks: Sequence[str], train: dict[str, Any],
                     manifest: str | Path, roles: str | Path, images: str | Path, shards: Sequence[str | Path],
                     checkpoint: str | Path, meta: str | Path, reads: str | Path, seed: int,
                     device: str) -> dict[str, Any]:
    """Rule ``robust_train``: fine-tune ``base`` into the robust extractor ``name``.

    ``shards``: the ``public`` shard folders of ``cloaks``, cloak by cloak (equally many each);
    ``images``: the dataset's ``images`` folder. Writes ``checkpoint``, its metadata ``meta``
    (``<checkpoint>.json``) and the ``reads`` manifest; raises DataError, after writing them, if
    a protected user's picture was read.
    """
    if Path(meta) != Path(checkpoint).with_suffix(".json"):
        raise ValueError(f"robust_train: metadata must be written beside the checkpoint, got {meta}")
    device = resolve_device(device)
    role_table = pd.read_parquet(roles)
    shards = list(shards)
    n = len(shards) // len(cloaks)
    cloaked = {c: collect_shards(shards[i * n:(i + 1) * n]) for i, c in enumerate(cloaks)}
    pairs = robust_training_pairs(pd.read_parquet(manifest), role_table, Path(images).parent, cloaked)
    protected = protected_identities(role_table)
    model = build_extractor(base, base_spec, checkpoint=base_checkpoint, device=device)
    result = robust_finetune(model, pairs.clean, pairs.cloaked, seed=seed, device=device, settings=train,
                             forbidden_identities=protected, cloak_of=pairs.cloak_of)
    leaked = protected_reads(result.reads, protected)
    role_of = dict(zip(role_table["identity"], role_table["role"]))
    out = save_robust(result, checkpoint, reads_path=reads,
                      read_roles=[role_of.get(identity_of_path(r), "?") for r in result.reads],
                      meta_extra={"name": name, "base": base, "base_spec": base_spec, "cloaks": list(cloaks),
                                  "protected_users": protected, "protected_reads": len(leaked),
                                  "release_date": spec.get("release_date")})
    if leaked:  # cannot happen through robust_training_pairs; the manifest proves it per run
        raise DataError(f"robust training of {name} read {len(leaked)} protected pictures: {leaked[:3]}")
    log.info("%s: %d reads, none of the %d protected users' pictures", name, len(result.reads), len(protected))
    return out


def identity_of_path(path: str | Path) -> str:
    """The identity a stored picture belongs to: every picture the pipeline writes (aligned
    dataset crops, cloaked and scraped copies) lives at ``.../<identity>/<stem>.png``."""
    return Path(path).parent.name


def protected_reads(reads: Sequence[str], protected_identities: Sequence[str]) -> list[str]:
    """Read paths whose folder is a protected user's (dataset or cloaked copy alike)."""
    prot = set(protected_identities)
    return [p for p in reads if identity_of_path(p) in prot]


def assert_no_protected_reads(reads: Sequence[str], protected_paths: Sequence[str | Path]) -> None:
    """Raise DataError if any read path is one of ``protected_paths`` (compared resolved)."""
    forbidden = {str(Path(p).resolve()) for p in protected_paths}
    hits = [p for p in reads if str(Path(p).resolve()) in forbidden]
    if hits:
        raise DataError(f"robust training read {len(hits)} protected pictures, e.g. {hits[:3]}")
