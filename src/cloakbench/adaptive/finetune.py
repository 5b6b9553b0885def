"""End-to-end classifier: fine-tune extractor + linear head on the scraped training set.

Beside 1-NN and the linear probe on frozen features (:mod:`cloakbench.evaluate`), the study's
third recogniser fine-tunes the whole extractor with a linear softmax head over every identity
of the scraped training set (FaceCure's ``eval_e2e.py``: cross-entropy, Adadelta, batch 32,
10 epochs, random horizontal flips, identities sampled evenly). Its predictions on the test
pictures go through :func:`cloakbench.evaluate.protection_metrics`, so its records have the
same shape as the other classifiers' (classifier name ``finetune``) and the report can put
them in the same tables. Under ``scrape.protocol: per_user`` (the default) it trains one model
per protected user (the cost is the number of protected users times one training).
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

from ..evaluate import evaluation_settings, per_user_protection_metrics, protection_metrics
from ..extractors.base import Extractor
from ..extractors.registry import build_extractor
from ..images import read_pictures
from ..records import Record, write_records
from ..workflow import resolve_device
from . import _train

log = logging.getLogger(__name__)

CLASSIFIER = "finetune"


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

    ``settings`` override ``_train.TRAIN_DEFAULTS`` (the original's recipe). ``model`` is
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
                      device: str = "cpu") -> list[Record]:
    """One evaluation record (classifier ``finetune``) for a scrape table, like :func:`evaluate.evaluate`'s.

    ``settings`` must hold ``cloak``, ``extractor`` and ``protocol`` (as for ``evaluate``); the
    training hyperparameters are added to it under ``finetune``. Under ``per_user`` one model is
    fine-tuned per protected user (from a fresh copy of ``model``), on the set where only that
    user is cloaked; under ``joint`` (or when nothing is cloaked) one model. ``model`` is not
    modified.
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
    for user in (users if per_user else [None]):
        log.info("end-to-end classifier, %s", f"per-user set of {user}" if user else "one training set")
        runs[user] = finetune_classify(copy.deepcopy(model), user_training_pairs(tr, user), list(te["path"]),
                                       seed=seed, device=device, settings=train_settings)
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
    rec = Record.make("evaluation", {"cloak": settings["cloak"], "extractor": settings["extractor"],
                                     "classifier": CLASSIFIER},
                      settings={**settings, "finetune": first.settings}, metrics=metrics)
    log.info("%s (%s, %d model(s), %.0f s): protection %.3f [%.3f, %.3f], clean accuracy %.3f", rec.experiment,
             protocol, len(runs), metrics["seconds"], metrics["protection"], *metrics["protection_ci95"],
             metrics["clean_accuracy"])
    return [rec]


def run_finetune_evaluate(*, scrape: str | Path, out: str | Path, cloak: str, extractor: str,
                          extractor_spec: dict[str, Any], checkpoint: str | Path | None,
                          cloak_spec: dict[str, Any] | None, train: dict[str, Any],
                          evaluate_cfg: dict[str, Any], scrape_cfg: dict[str, Any], dataset_cfg: dict[str, Any],
                          seed: int, device: str) -> list[Record]:
    """Rule ``finetune_evaluate``: the end-to-end classifier for one (cloak, extractor) -> ``out``."""
    device = resolve_device(device)
    table = pd.read_parquet(scrape)
    model = build_extractor(extractor, extractor_spec, checkpoint=checkpoint, device=device)
    settings = evaluation_settings(cloak=cloak, extractor=extractor, extractor_spec=extractor_spec,
                                   cloak_spec=cloak_spec, seed=seed, scrape_cfg=scrape_cfg,
                                   evaluate_cfg=evaluate_cfg, dataset_cfg=dataset_cfg, scrape=table)
    records = finetune_evaluate(table, model, settings=settings, train_settings=train,
                                bootstrap=evaluate_cfg["bootstrap"], seed=seed, device=device)
    write_records(records, out)
    return records
