"""Accuracy-preserving combinations of an accurate (standard) and a robust model.

The study's answer to "robust models are less accurate on clean pictures": the trainer keeps
both and combines them. Both combinations here use the 1-NN recogniser (Euclidean distance on
L2-normalised embeddings, as ``evaluate``'s ``knn1``), trained on the same scraped set:

* **top-2**: a test picture counts as recognised if *either* model's top-1 is right (an upper
  bound on what a combination can reach; the study reports it as top-2 accuracy). As a single
  prediction: the accurate model's label when it is right, else the robust model's.
* **confidence thresholding**: use the robust model's label when the accurate model's
  nearest-neighbour distance is >= a threshold ``t``, else the accurate model's. ``t = +inf``
  is exactly the accurate model, ``t = 0`` exactly the robust one. ``t`` is chosen on held-out
  public data only: each *public* identity's clean training picture is a query against the rest
  of the training set (leave one out), and ``t`` is the ``quantile`` of those distances, so about
  ``1 - quantile`` of clean pictures of known identities fall back to the robust model (the
  price in clean accuracy is bounded by that share). Why it can work: a protected user's clean
  test picture is far from their cloaked training pictures in the accurate model's space (that
  is what the cloak does), so it tends to fall back to the robust model.

Outputs records shaped like ``evaluate``'s (``protection_metrics`` + a few extra numbers).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..classifiers import l2n, nearest_neighbour, squared_distances
from ..evaluate import Split, assemble, protection_metrics, read_embedding_sets
from ..records import Record, write_records

log = logging.getLogger(__name__)


def nn_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, *,
               exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """1-NN on L2-normalised features (float64): (predicted labels, Euclidean distance to the neighbour).

    ``exclude_self``: ``x_test`` is ``x_train`` (leave-one-out: a point is not its own neighbour).
    """
    return nearest_neighbour(l2n(np.asarray(x_train, np.float64)), y_train,
                             l2n(np.asarray(x_test, np.float64)), exclude_self=exclude_self)


def top2_predictions(y_true: np.ndarray, pred_accurate: np.ndarray, pred_robust: np.ndarray) -> np.ndarray:
    """Labels whose correctness is 'either model right': the accurate label if right, else the robust."""
    return np.where(pred_accurate == y_true, pred_accurate, pred_robust)


def threshold_predictions(pred_accurate: np.ndarray, dist_accurate: np.ndarray, pred_robust: np.ndarray,
                          threshold: float) -> np.ndarray:
    """Robust label where the accurate model's NN distance is >= ``threshold``."""
    return np.where(dist_accurate >= threshold, pred_robust, pred_accurate)


def calibration_distances(x_train: np.ndarray, y_train: np.ndarray, calibrate: np.ndarray) -> np.ndarray:
    """Leave-one-out NN distances (accurate model) of the training pictures flagged ``calibrate``."""
    idx = np.flatnonzero(calibrate)
    if len(idx) == 0:
        raise ValueError("combine: no held-out public picture to choose the threshold on "
                         "(no public identity has uncloaked training pictures: users.public_fraction is 0?)")
    a = l2n(np.asarray(x_train, np.float64))
    d2 = squared_distances(a[idx], a)
    d2[np.arange(len(idx)), idx] = np.inf
    return np.sqrt(np.maximum(d2.min(1), 0.0))


def choose_threshold(distances: np.ndarray, quantile: float) -> float:
    """The ``quantile`` of the held-out distances (``quantile`` >= 1 -> +inf, i.e. never robust)."""
    if quantile >= 1:
        return float("inf")
    if quantile <= 0:
        return 0.0
    return float(np.quantile(distances, quantile))


def combine_records(accurate: Split, robust: Split, *, calibrate: np.ndarray, names: tuple[str, str],
                    cloak: str, quantile: float, sweep: Sequence[float] = (), bootstrap: int, seed: int,
                    settings: dict[str, Any] | None = None) -> list[Record]:
    """Records for the accurate model, the robust model, top-2 and thresholding (chosen + sweep).

    ``accurate`` / ``robust``: the same scrape table assembled with each model's embeddings
    (``evaluate.assemble``); ``calibrate``: boolean over the training rows, True for the
    held-out public pictures (public identities' uncloaked training pictures).
    """
    if not (np.array_equal(accurate.test_ids, robust.test_ids)
            and np.array_equal(accurate.y_train, robust.y_train)):
        raise ValueError("combine: the two models' splits come from different scrape tables")
    y, role = accurate.y_test, accurate.test_role
    pa, da = nn_predict(accurate.x_train, accurate.y_train, accurate.x_test)
    pr, _ = nn_predict(robust.x_train, robust.y_train, robust.x_test)
    held = calibration_distances(accurate.x_train, accurate.y_train, calibrate)
    acc_name, rob_name = names
    base = {"cloak": cloak, "accurate": acc_name, "robust": rob_name, "seed": seed,
            "n_calibration": int(len(held)), **(settings or {})}
    prot = role == "protected"

    def record(method: str, pred: np.ndarray, extra: dict[str, Any], sweep: bool = False) -> Record:
        m = protection_metrics(y, pred, role, bootstrap=bootstrap, seed=seed)
        m.update(extra)
        m["n_train"] = int(len(accurate.y_train))
        return Record.make("combination", {"cloak": cloak, "extractor": f"{acc_name}+{rob_name}",
                                           "classifier": "knn1", "method": method, "sweep": sweep},
                           settings=base, metrics=m)

    def fallback(t: float) -> dict[str, float]:
        fb = da >= t
        return {"threshold": t if np.isfinite(t) else None, "fallback_rate": float(fb.mean()),
                "fallback_rate_protected": float(fb[prot].mean()) if prot.any() else float("nan"),
                "fallback_rate_clean": float(fb[~prot].mean()) if (~prot).any() else float("nan")}

    t = choose_threshold(held, quantile)
    records = [
        record("accurate", pa, {}),
        record("robust", pr, {}),
        record("top2", top2_predictions(y, pa, pr), {}),
        record("threshold", threshold_predictions(pa, da, pr, t), {"quantile": quantile, **fallback(t)}),
    ]
    for q in sorted(set(sweep)):
        tq = choose_threshold(held, q)
        records.append(record(f"threshold_q{q:g}", threshold_predictions(pa, da, pr, tq),
                              {"quantile": q, **fallback(tq)}, sweep=True))
    for r in records[:4]:
        log.info("%s: protection %.3f, clean accuracy %.3f", r.experiment, r.metrics["protection"],
                 r.metrics["clean_accuracy"])
    return records


def held_out_public(scrape: pd.DataFrame) -> np.ndarray:
    """Boolean over the training rows in ``evaluate.assemble``'s order: True for the held-out
    public pictures (the public identities' uncloaked training pictures)."""
    table = scrape.loc[sorted(scrape.index)]
    train = table[table["split"] == "train"]
    return ((train["role"] == "public") & ~train["cloaked"]).to_numpy()


def run_combine(*, scrape: str | Path, embeddings: Sequence[str | Path], imagesets: Sequence[str],
                out: str | Path, cloak: str, accurate: str, robust: str, quantile: float,
                sweep: Sequence[float], bootstrap: int, scrape_cfg: dict[str, Any], seed: int) -> list[Record]:
    """Rule ``combine``: ``embeddings`` lists the accurate model's files for ``imagesets``, then
    the robust model's; the records go to ``out``."""
    table = pd.read_parquet(scrape)
    n = len(imagesets)
    if len(embeddings) != 2 * n:
        raise ValueError(f"combine: {len(embeddings)} embedding files for 2 x {n} image sets")
    acc = assemble(table, read_embedding_sets(imagesets, embeddings[:n]))
    rob = assemble(table, read_embedding_sets(imagesets, embeddings[n:]))
    records = combine_records(acc, rob, calibrate=held_out_public(table), names=(accurate, robust), cloak=cloak,
                              quantile=quantile, sweep=sweep, bootstrap=bootstrap, seed=seed,
                              settings={"scrape": scrape_cfg,
                                        # combine fits one 1-NN per model on the set with every protected
                                        # user cloaked, on L2-normalised features (whatever
                                        # scrape.protocol / evaluate.features say for evaluate)
                                        "protocol": "joint", "features": "l2"})
    write_records(records, out)
    return records
