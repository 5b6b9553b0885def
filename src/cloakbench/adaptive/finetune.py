"""End-to-end classifier: fine-tune extractor + linear head on the scraped training set.

Beside 1-NN and the linear probe on frozen features (:mod:`cloakbench.evaluate`), the study's
third recogniser fine-tunes the whole extractor with a linear softmax head over every identity
of the scraped training set (FaceCure's ``eval_e2e.py``; recipe: :data:`._train.TRAIN_DEFAULTS`).
Its predictions on the test pictures go through :func:`cloakbench.evaluate.protection_metrics`,
so its records have the same shape as the other classifiers' and the report can put them in the
same tables.

Two variants (``adaptive.finetune.variants``), each its own records:

* ``oblivious`` (classifier ``finetune``): the scraped training set as it is (``eval_e2e.py``).
* ``adaptive`` (classifier ``finetune_adaptive``; ``eval_e2e.py --robust``): the trainer adds
  the *public* identities' training pictures cloaked by itself (perturb's ``public`` subset of
  each cloak in ``adaptive.finetune.adaptive_cloaks``, default FaceCure's three) to those
  identities' pools. Never a protected user's picture: the pairs come from
  :func:`.robust.robust_training_pairs` (public identities only), and the manifest of reads is
  checked after training (every read that is not a scraped picture must be a public
  identity's), as robust training's is.

Under ``scrape.protocol: per_user`` (the default) it trains one model per protected user, on
the set where only that user is cloaked (the cost is the number of protected users times one
training); under ``joint`` one model.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from ..data.roles import check_not_protected
from ..data.scrape import collect_shards
from ..errors import DataError
from ..evaluate import evaluation_settings, per_user_protection_metrics, protection_metrics
from ..extractors.base import Extractor
from ..extractors.registry import build_extractor, describe_extractor
from ..images import read_pictures
from ..records import Record, write_records
from ..workflow import resolve_device
from . import _train
from .robust import identity_of_path, robust_training_pairs

log = logging.getLogger(__name__)

CLASSIFIER = "finetune"
#: ``adaptive.finetune.variants`` -> the records' classifier label.
VARIANTS = {"oblivious": CLASSIFIER, "adaptive": "finetune_adaptive"}


@dataclass
class FinetuneResult:
    predictions: np.ndarray      # predicted identity per test picture
    classes: list[str]
    history: list[dict[str, float]]
    settings: dict[str, Any]
    seconds: float


def finetune_classify(model: Extractor, train: Sequence[tuple[str | Path, str]],
                      test_paths: Sequence[str | Path], *, seed: int = 0, device: str = "cpu",
                      settings: dict[str, Any] | None = None,
                      log_read_paths: list[str] | None = None) -> FinetuneResult:
    """Fine-tune ``model`` + a linear head on (path, identity) pairs; predict ``test_paths``.

    ``settings`` override ``_train.TRAIN_DEFAULTS`` (FaceCure's recipe). ``model`` is
    trained in place (pass a fresh copy if it is used elsewhere).
    """
    t0 = time.time()
    s = _train.train_settings(settings, f"end-to-end fine-tuning of '{getattr(model, 'name', '?')}'")
    labels = [str(y) for _, y in train]
    classes = sorted(set(labels))
    index = {c: i for i, c in enumerate(classes)}
    images = read_pictures([p for p, _ in train], reads=log_read_paths, desc="finetune: read train")
    targets = torch.tensor([index[y] for y in labels], dtype=torch.long)
    log.info("end-to-end fine-tuning of %s: %d pictures of %d identities, %s", model.name, len(labels),
             len(classes), s)
    head, history = _train.fit(model, images, targets, len(classes), s, seed=seed, device=device,
                               desc=f"finetune {model.name}")
    test = read_pictures(list(test_paths), reads=log_read_paths, size=images.shape[-1],
                                desc="finetune: read test")
    pred_idx = _train.predict_logits(model, head, test, device=device).argmax(1).numpy()
    predictions = np.array(classes, dtype=object)[pred_idx] if len(pred_idx) else np.array([], dtype=object)
    return FinetuneResult(predictions, classes, history, s, round(time.time() - t0, 2))


def user_training_pairs(train: pd.DataFrame, user: str | None) -> list[tuple[str, str]]:
    """(path, identity) of the training rows of ``user``'s per-user set (only ``user``'s rows keep
    their scraped path; other protected users' rows are their uncloaked pictures, ``clean_path``);
    ``user`` None: the joint set (every row's scraped path)."""
    if user is None:
        return list(zip(train["path"], train["identity"]))
    if "clean_path" not in train.columns:
        raise KeyError("the scrape table has no 'clean_path' column (made before scrape.protocol existed): "
                       "rerun the scrape rule, or set scrape.protocol: joint")
    others = (train["role"] == "protected") & (train["identity"] != user)
    return list(zip(np.where(others, train["clean_path"], train["path"]), train["identity"]))


def finetune_evaluate(scrape: pd.DataFrame, model: Extractor, *, settings: dict[str, Any],
                      train_settings: dict[str, Any] | None = None, bootstrap: int, seed: int,
                      device: str = "cpu", augment: "Augmentation | None" = None) -> list[Record]:
    """One evaluation record for a scrape table, like :func:`evaluate.evaluate`'s: classifier
    ``finetune``, or ``finetune_adaptive`` when ``augment`` (the adaptive trainer's public
    cloaked pictures, :func:`adaptive_augmentation`) is given.

    ``settings`` must hold ``cloak``, ``extractor`` and ``protocol`` (as for ``evaluate``); the
    training hyperparameters are added to it under ``finetune``, their differences from
    FaceCure's under ``finetune_deviations`` and the variant under ``finetune_variant``. Under
    ``per_user`` one model is fine-tuned per protected user (from a fresh copy of ``model``), on
    the set where only that user is cloaked (plus ``augment``'s pairs); under ``joint`` (or when
    nothing is cloaked) one model. ``model`` is not modified.
    """
    protocol = settings["protocol"]
    if protocol not in ("per_user", "joint"):
        raise ValueError(f"scrape.protocol must be 'per_user' or 'joint', got {protocol!r}")
    table = scrape.sort_values("image_id").reset_index(drop=True)
    tr = table[table["split"] == "train"]
    te = table[table["split"] != "train"]
    y_true = te["identity"].to_numpy()
    role = te["role"].to_numpy()
    users = sorted(set(y_true[role == "protected"]))
    per_user = protocol == "per_user" and bool(tr["cloaked"].any()) and bool(users)
    runs: dict[str | None, FinetuneResult] = {}
    reads: list[str] = []  # every picture any of the runs opened (the adaptive variant's read check)
    for user in (users if per_user else [None]):
        log.info("end-to-end classifier, %s", f"per-user set of {user}" if user else "one training set")
        pairs = user_training_pairs(tr, user) + (list(augment.pairs) if augment is not None else [])
        runs[user] = finetune_classify(copy.deepcopy(model), pairs, list(te["path"]), seed=seed,
                                       device=device, settings=train_settings, log_read_paths=reads)
    if per_user:
        metrics = per_user_protection_metrics(y_true, {u: r.predictions.astype(str) for u, r in runs.items()},
                                              role, bootstrap=bootstrap, seed=seed)
        metrics["n_train_cloaked_per_user"] = {u: int(tr.loc[tr["identity"] == u, "cloaked"].sum()) for u in users}
    else:
        metrics = protection_metrics(y_true, runs[None].predictions.astype(str), role,
                                     bootstrap=bootstrap, seed=seed)
    first = next(iter(runs.values()))
    metrics["n_models"] = len(runs)
    metrics["n_train"] = int(len(tr))
    metrics["n_train_cloaked"] = int(tr["cloaked"].sum())
    metrics["train_history"] = first.history if not per_user else {u: r.history for u, r in runs.items()}
    metrics["seconds"] = round(sum(r.seconds for r in runs.values()), 2)
    variant = "oblivious" if augment is None else "adaptive"
    extra: dict[str, Any] = {"finetune_variant": variant}
    if augment is not None:
        scraped = set(map(str, tr["path"])) | set(map(str, te["path"])) | set(map(str, tr.get("clean_path", [])))
        extra_reads = sorted({r for r in reads if r not in scraped})
        augment.check_reads(extra_reads)
        metrics["n_train_augmented"] = len(augment.pairs)
        metrics["n_train_augmented_per_cloak"] = augment.per_cloak()
        metrics["augmented_reads"] = len(extra_reads)
        metrics["augmented_protected_reads"] = 0
        extra["adaptive_cloaks"] = list(augment.cloaks)
    rec = Record.make("evaluation", {"cloak": settings["cloak"], "extractor": settings["extractor"],
                                     "classifier": VARIANTS[variant]},
                      settings={**settings, "finetune": first.settings,
                                "finetune_deviations": _train.deviations(first.settings), **extra},
                      metrics=metrics)
    log.info("%s (%s, %d model(s), %.0f s): protection %.3f [%.3f, %.3f], clean accuracy %.3f", rec.experiment,
             protocol, len(runs), metrics["seconds"], metrics["protection"], *metrics["protection_ci95"],
             metrics["clean_accuracy"])
    return [rec]


@dataclass
class Augmentation:
    """The adaptive trainer's additions to the end-to-end training set: (path, identity) pairs of
    public identities' pictures it cloaked itself, the cloak of each, and the identities' roles."""
    pairs: list[tuple[str, str]]
    cloak_of: list[str]
    cloaks: list[str]
    roles: pd.DataFrame

    def per_cloak(self) -> dict[str, int]:
        return {c: self.cloak_of.count(c) for c in self.cloaks}

    def check_reads(self, reads: Sequence[str]) -> None:
        """Every read beyond the scraped set must be a public identity's picture (DataError otherwise)."""
        role_of = dict(zip(self.roles["identity"], self.roles["role"]))
        bad = [r for r in reads if role_of.get(identity_of_path(r)) != "public"]
        if bad:
            raise DataError(f"adaptive end-to-end training read {len(bad)} pictures that are not a public "
                            f"identity's (a protected user's, or unknown), e.g. {bad[:3]}")


def adaptive_augmentation(manifest: pd.DataFrame, roles: pd.DataFrame, dataset_dir: str | Path,
                          cloaked: dict[str, pd.DataFrame]) -> Augmentation:
    """The public identities' training pictures cloaked by the trainer (``cloaked``: {cloak: table
    of its ``public`` shards, image_id + path}), like robust training's cloaked pairs. A protected
    user's row in ``cloaked`` is ignored; one that slipped through would raise."""
    pairs = robust_training_pairs(manifest, roles, dataset_dir, cloaked)
    check_not_protected({y for _, y in pairs.cloaked}, roles, what="adaptive end-to-end training")
    if not pairs.cloaked:
        raise DataError(f"adaptive end-to-end training: no public picture cloaked by {list(cloaked)} was found")
    return Augmentation([(str(p), str(y)) for p, y in pairs.cloaked], list(pairs.cloak_of), list(cloaked), roles)


def run_finetune_evaluate(*, scrape: str | Path, out: str | Path, cloak: str, extractor: str,
                          extractor_spec: dict[str, Any], checkpoint: str | Path | None,
                          cloak_spec: dict[str, Any] | None, train: dict[str, Any],
                          evaluate_cfg: dict[str, Any], scrape_cfg: dict[str, Any], dataset_cfg: dict[str, Any],
                          seed: int, device: str, adaptive_cloaks: Sequence[str] = (),
                          shards: Sequence[str | Path] = (), manifest: str | Path | None = None,
                          roles: str | Path | None = None, images: str | Path | None = None) -> list[Record]:
    """Rules ``finetune_evaluate`` / ``finetune_adaptive_evaluate``: the end-to-end classifier for
    one (cloak, extractor) -> ``out``. With ``adaptive_cloaks`` (the adaptive variant), ``shards``
    are those cloaks' ``public`` shard folders, cloak by cloak (equally many each), and
    ``manifest``, ``roles``, ``images`` (the dataset's ``images`` folder) are needed."""
    device = resolve_device(device)
    table = pd.read_parquet(scrape)
    augment = None
    if adaptive_cloaks:
        if manifest is None or roles is None or images is None or not shards:
            raise ValueError("adaptive end-to-end: manifest, roles, images and shards are needed")
        shards = list(shards)
        n = len(shards) // len(adaptive_cloaks)
        cloaked = {c: collect_shards(shards[i * n:(i + 1) * n]) for i, c in enumerate(adaptive_cloaks)}
        augment = adaptive_augmentation(pd.read_parquet(manifest), pd.read_parquet(roles), Path(images).parent,
                                        cloaked)
    model = build_extractor(extractor, extractor_spec, checkpoint=checkpoint, device=device)
    settings = evaluation_settings(cloak=cloak, extractor=extractor,
                                   extractor_info=describe_extractor(extractor, extractor_spec),
                                   cloak_spec=cloak_spec, seed=seed, scrape_cfg=scrape_cfg,
                                   evaluate_cfg=evaluate_cfg, dataset_cfg=dataset_cfg, scrape=table)
    records = finetune_evaluate(table, model, settings=settings, train_settings=train,
                                bootstrap=evaluate_cfg["bootstrap"], seed=seed, device=device, augment=augment)
    write_records(records, out)
    return records
