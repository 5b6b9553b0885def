"""evaluate: train a recogniser on the scraped set, measure protection and clean accuracy.

Classifiers on frozen features (as the study; :mod:`cloakbench.classifiers`), on the features
``evaluate.features`` names (``raw``, the default, as FaceCure's ``eval.py``, or ``l2``):
- ``knn1``: 1-nearest neighbour, Euclidean distance;
- ``linear``: linear probe, standardised features + multinomial logistic regression.

Protection rate of a protected user = 1 - accuracy on that user's clean test pictures.
The record reports the mean over protected users with a 95 % percentile bootstrap interval
(resampling users). ``scrape.protocol``:

- ``per_user`` (default, FaceCure's): for each protected user u, a classifier is fitted on the
  training set in which only u's pictures are cloaked (every other protected user's pictures
  are their uncloaked versions, ``clean_imageset`` of the scrape table: the same embeddings,
  computed once); u's protection is measured on u's own model. ``clean_accuracy`` is the mean,
  over the per-user models, of each model's accuracy on the non-protected identities' test
  pictures (``clean_accuracy_per_model`` lists them).
- ``joint``: one classifier on the set with every protected user cloaked; ``clean_accuracy``
  is its accuracy on the non-protected identities' test pictures.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .classifiers import CLASSIFIERS, l2n
from .io import stack_embeddings as stack
from .records import Record, write_records

log = logging.getLogger(__name__)


@dataclass
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    test_role: np.ndarray
    test_ids: np.ndarray
    train_role: np.ndarray | None = None
    #: each training row's uncloaked version (per_user protocol), or None when not assembled
    x_train_uncloaked: np.ndarray | None = None


def _lookup(embeddings: dict[str, pd.DataFrame], imageset: str, image_ids: pd.Series) -> np.ndarray:
    if imageset not in embeddings:
        raise KeyError(f"no embeddings for image set '{imageset}'")
    emb = embeddings[imageset].set_index("image_id")
    missing = set(image_ids) - set(emb.index)
    if missing:
        raise KeyError(f"image set '{imageset}' lacks embeddings of {sorted(missing)[:3]}")
    return stack(emb.loc[image_ids].reset_index())


def _gather(table: pd.DataFrame, column: str, embeddings: dict[str, pd.DataFrame]) -> np.ndarray:
    """Embeddings of ``table``'s rows (in order), each from the image set named in ``column``."""
    parts = []
    for imageset, rows in table.groupby(column, sort=True):
        parts.append((np.flatnonzero(table.index.isin(rows.index)), _lookup(embeddings, imageset, rows["image_id"])))
    order = np.concatenate([p[0] for p in parts])
    return np.concatenate([p[1] for p in parts])[np.argsort(order)]


def assemble(scrape: pd.DataFrame, embeddings: dict[str, pd.DataFrame], *, uncloaked: bool = False) -> Split:
    """Join the scrape table with the embeddings of each image set it references.

    ``uncloaked``: also gather each training row's uncloaked version (``clean_imageset``), for
    the ``per_user`` protocol; no picture is embedded again, the sets are looked up.
    """
    table = scrape.loc[sorted(scrape.index)]
    x_all = _gather(table, "imageset", embeddings)
    tr = (table["split"] == "train").to_numpy()
    x_unc = None
    if uncloaked:
        if "clean_imageset" not in table.columns:
            raise KeyError("the scrape table has no 'clean_imageset' column (made before scrape.protocol "
                           "existed): rerun the scrape rule, or set scrape.protocol: joint")
        x_unc = _gather(table[tr], "clean_imageset", embeddings)
    return Split(x_all[tr], table["identity"].to_numpy()[tr], x_all[~tr],
                 table["identity"].to_numpy()[~tr], table["role"].to_numpy()[~tr],
                 table["image_id"].to_numpy()[~tr], table["role"].to_numpy()[tr], x_unc)


def user_training_set(split: Split, user: str) -> np.ndarray:
    """Training features of ``user``'s per-user set: only ``user``'s rows keep their scraped
    (cloaked) version; every other protected user's rows are their uncloaked versions."""
    if split.x_train_uncloaked is None or split.train_role is None:
        raise ValueError("user_training_set needs a Split assembled with uncloaked=True")
    others = (split.train_role == "protected") & (split.y_train != user)
    return np.where(others[:, None], split.x_train_uncloaked, split.x_train)


def bootstrap_ci(values: np.ndarray, n: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    if len(values) == 0:
        return (float("nan"), float("nan"))
    if n == 0 or len(values) == 1:
        return (float(values.mean()), float(values.mean()))
    rng = np.random.default_rng([seed, 3])
    means = values[rng.integers(0, len(values), size=(n, len(values)))].mean(1)
    alpha = (1 - level) / 2
    return (float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha)))


def protection_metrics(y_true: np.ndarray, y_pred: np.ndarray, role: np.ndarray, *,
                       bootstrap: int, seed: int) -> dict[str, Any]:
    """Metrics of one classifier for every protected user (the ``joint`` protocol)."""
    prot = role == "protected"
    users = sorted(set(y_true[prot]))
    return per_user_protection_metrics(y_true, {u: y_pred for u in users}, role, bootstrap=bootstrap,
                                       seed=seed, clean_pred=y_pred)


def per_user_protection_metrics(y_true: np.ndarray, preds: dict[str, np.ndarray], role: np.ndarray, *,
                                bootstrap: int, seed: int,
                                clean_pred: np.ndarray | None = None) -> dict[str, Any]:
    """Metrics from one prediction per protected user (``preds[u]``: predictions of u's model
    on every test picture): u's protection from ``preds[u]`` on u's test pictures; clean
    accuracy on the non-protected identities' test pictures, from ``clean_pred`` (one model)
    or else the mean over the per-user models."""
    prot = role == "protected"
    clean = ~prot
    per_user, correct_prot = {}, []
    for u in sorted(preds):
        mine = prot & (y_true == u)
        ok = preds[u][mine] == y_true[mine]
        per_user[u] = float(1 - ok.mean())
        correct_prot.append(ok)
    values = np.array(list(per_user.values()))
    lo, hi = bootstrap_ci(values, bootstrap, seed)
    out: dict[str, Any] = {
        "protection": float(values.mean()) if len(values) else float("nan"),
        "protection_ci95": [lo, hi],
        "protection_per_user": per_user,
        "protected_accuracy": float(np.concatenate(correct_prot).mean()) if correct_prot else float("nan"),
    }
    if clean_pred is not None:
        out["clean_accuracy"] = float((clean_pred[clean] == y_true[clean]).mean()) if clean.any() else float("nan")
    else:
        per_model = {u: float((p[clean] == y_true[clean]).mean()) if clean.any() else float("nan")
                     for u, p in sorted(preds.items())}
        out["clean_accuracy"] = float(np.mean(list(per_model.values()))) if per_model else float("nan")
        out["clean_accuracy_per_model"] = per_model
    out.update({"n_protected_users": int(len(values)), "n_test_protected": int(prot.sum()),
                "n_test_clean": int(clean.sum())})
    return out


def feature_shift_from_embeddings(scrape: pd.DataFrame, embeddings: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per cloaked training picture: L2 distance between the L2-normalised embeddings of its
    clean and its scraped (cloaked) version, i.e. how far the cloak moved it for this
    extractor. Computed from embeddings the pipeline has anyway (no extra forward pass)."""
    rows = scrape[scrape["cloaked"]]
    if rows.empty:
        return pd.DataFrame(columns=["image_id", "identity", "shift"])
    clean = embeddings["clean"].set_index("image_id")
    parts = []
    for imageset, group in rows.groupby("imageset"):
        other = embeddings[imageset].set_index("image_id")
        a = l2n(stack(clean.loc[group["image_id"]].reset_index()))
        b = l2n(stack(other.loc[group["image_id"]].reset_index()))
        parts.append(pd.DataFrame({"image_id": group["image_id"].to_numpy(),
                                   "identity": group["identity"].to_numpy(),
                                   "shift": np.linalg.norm(a - b, axis=1)}))
    return pd.concat(parts, ignore_index=True)


def evaluation_settings(*, cloak: str, extractor: str, extractor_info: dict[str, Any],
                        cloak_spec: dict[str, Any] | None, seed: int, scrape_cfg: dict[str, Any],
                        evaluate_cfg: dict[str, Any], dataset_cfg: dict[str, Any],
                        scrape: pd.DataFrame) -> dict[str, Any]:
    """The ``settings`` of an evaluation record (also the end-to-end and time-travel ones);
    ``protocol`` and ``features`` are repeated at the top level (they change every number).
    ``extractor_info``: ``cloakbench.extractors.registry.describe_extractor(extractor, spec)``
    (the ``evaluate`` rule gets it from the plan: this module imports no model code)."""
    return {
        "cloak": cloak, "extractor": extractor, "seed": seed, "cloak_spec": cloak_spec,
        "protocol": scrape_cfg["protocol"], "features": evaluate_cfg["features"],
        "extractor_info": dict(extractor_info), "scrape": scrape_cfg, "evaluate": evaluate_cfg,
        "dataset": {"root": dataset_cfg["root"], "n_pictures": int(len(scrape)),
                    "n_identities": int(scrape["identity"].nunique())},
        "protected_users": sorted(scrape.loc[scrape["role"] == "protected", "identity"].unique().tolist()),
    }


def classify(scrape: pd.DataFrame, split: Split, classifier: str, *, protocol: str, features: str, bootstrap: int,
             seed: int) -> dict[str, Any]:
    """Fit ``classifier`` under ``protocol`` and return the protection metrics."""
    fit_predict = CLASSIFIERS[classifier]
    train = scrape[scrape["split"] == "train"]
    if protocol == "joint":
        pred = fit_predict(split.x_train, split.y_train, split.x_test, seed, features=features)
        metrics = protection_metrics(split.y_test, pred, split.test_role, bootstrap=bootstrap, seed=seed)
        metrics["n_models"] = 1
        return metrics
    if protocol != "per_user":
        raise ValueError(f"scrape.protocol must be 'per_user' or 'joint', got {protocol!r}")
    users = sorted(set(split.y_test[split.test_role == "protected"]))
    preds: dict[str, np.ndarray] = {}
    if not train["cloaked"].any() and users:
        # nothing cloaked (the baseline): every per-user set is the same set, fit once
        pred = fit_predict(split.x_train, split.y_train, split.x_test, seed, features=features)
        preds = {u: pred for u in users}
    else:
        for u in users:
            preds[u] = fit_predict(user_training_set(split, u), split.y_train, split.x_test, seed,
                                   features=features)
    metrics = per_user_protection_metrics(split.y_test, preds, split.test_role, bootstrap=bootstrap, seed=seed)
    metrics["n_models"] = len(users) if train["cloaked"].any() else 1
    metrics["n_train_cloaked_per_user"] = {u: int(train.loc[train["identity"] == u, "cloaked"].sum())
                                           for u in users}
    return metrics


def evaluate(scrape: pd.DataFrame, embeddings: dict[str, pd.DataFrame], *, classifiers: list[str],
             bootstrap: int, seed: int, settings: dict[str, Any], kind: str = "evaluation") -> list[Record]:
    """One record per classifier: settings + metrics (``kind``: evaluation or timetravel).
    The protocol and the features are ``settings["protocol"]`` / ``settings["features"]``."""
    protocol, features = settings["protocol"], settings["features"]
    split = assemble(scrape, embeddings, uncloaked=protocol == "per_user")
    shift = feature_shift_from_embeddings(scrape, embeddings)
    records = []
    for name in classifiers:
        metrics = classify(scrape, split, name, protocol=protocol, features=features, bootstrap=bootstrap,
                           seed=seed)
        metrics["n_train"] = int(len(split.y_train))
        metrics["n_train_cloaked"] = int(scrape.loc[scrape["split"] == "train", "cloaked"].sum())
        # how far the cloak moved the user's features for this extractor (0..2, L2 of unit vectors)
        metrics["feature_shift_mean"] = float(shift["shift"].mean()) if len(shift) else None
        rec = Record.make(kind, {"cloak": settings["cloak"], "extractor": settings["extractor"],
                                 "classifier": name}, settings=settings, metrics=metrics)
        log.info("%s (%s, %s features): protection %.3f [%.3f, %.3f], clean accuracy %.3f", rec.experiment,
                 protocol, features, metrics["protection"], *metrics["protection_ci95"], metrics["clean_accuracy"])
        records.append(rec)
    return records


def read_embedding_sets(imagesets: Sequence[str], paths: Sequence[str | Path]) -> dict[str, pd.DataFrame]:
    """{image set: embeddings table} from the files ``paths`` (in the order of ``imagesets``)."""
    if len(imagesets) != len(paths):
        raise ValueError(f"{len(imagesets)} image sets {list(imagesets)} but {len(paths)} embedding files")
    return {s: pd.read_parquet(f) for s, f in zip(imagesets, paths)}


def run_evaluate(*, scrape: str | Path, embeddings: Sequence[str | Path], imagesets: Sequence[str],
                 out: str | Path, cloak: str, extractor: str, extractor_info: dict[str, Any],
                 cloak_spec: dict[str, Any] | None, evaluate_cfg: dict[str, Any], scrape_cfg: dict[str, Any],
                 dataset_cfg: dict[str, Any], seed: int) -> list[Record]:
    """Rule ``evaluate``: every configured classifier for one (cloak, extractor) -> ``out``."""
    table = pd.read_parquet(scrape)
    settings = evaluation_settings(cloak=cloak, extractor=extractor, extractor_info=extractor_info,
                                   cloak_spec=cloak_spec, seed=seed, scrape_cfg=scrape_cfg,
                                   evaluate_cfg=evaluate_cfg, dataset_cfg=dataset_cfg, scrape=table)
    records = evaluate(table, read_embedding_sets(imagesets, embeddings), classifiers=evaluate_cfg["classifiers"],
                       bootstrap=evaluate_cfg["bootstrap"], seed=seed, settings=settings)
    write_records(records, out)
    return records
