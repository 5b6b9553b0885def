"""Recognisers on frozen features: 1-nearest neighbour and the linear probe.

Used by ``evaluate`` (the study's two frozen-feature classifiers), ``adaptive.combine`` (1-NN
with the neighbour's distance, for confidence thresholding) and the dataset card.

* :func:`knn1` / :func:`linear`: ``evaluate``'s classifiers (:data:`CLASSIFIERS`), on the
  features ``evaluate.features`` names (:data:`FEATURES`): ``raw`` (the default, as FaceCure's
  ``eval.py``: the extractor's embeddings as they are, ``KNeighborsClassifier(1)`` with the
  Euclidean distance and ``StandardScaler`` + ``LogisticRegression()`` with scikit-learn's
  defaults, ``max_iter`` 100 included) or ``l2`` (cloakbench's earlier choice: rows scaled to
  unit L2 norm first, and the logistic regression run to ``max_iter`` 2000).
* :func:`nearest_neighbour`: 1-NN in NumPy (float64) that also returns the distance to the
  neighbour and can leave each point out of its own neighbours; no normalisation, the caller
  passes the features it means. (It is not used for ``knn1``: scikit-learn computes the
  distances in another order of operations, and a near tie may then fall the other way, so
  the two are kept apart to leave every published number unchanged.)
"""

from __future__ import annotations

import logging
import warnings
from typing import Callable

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

log = logging.getLogger(__name__)


def l2n(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (rows of zeros stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def linear_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int, *,
                 max_iter: int = 2000) -> np.ndarray:
    """Standardised features + multinomial logistic regression (C = 1): predicted labels."""
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, C=1.0, random_state=seed))
    return clf.fit(x_train, y_train).predict(x_test)


#: evaluate.features: how the embeddings are prepared before a classifier sees them
FEATURES = ("raw", "l2")


def _prepare(x: np.ndarray, features: str) -> np.ndarray:
    if features == "raw":
        return x
    if features == "l2":
        return l2n(x)
    raise ValueError(f"evaluate.features must be one of {list(FEATURES)}, got {features!r}")


def knn1(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int = 0, *,  # noqa: ARG001
         features: str = "raw") -> np.ndarray:
    """``evaluate``'s 1-NN: Euclidean distance on ``features`` (``raw`` or ``l2``; deterministic)."""
    clf = KNeighborsClassifier(n_neighbors=1, metric="euclidean", algorithm="brute")
    return clf.fit(_prepare(x_train, features), y_train).predict(_prepare(x_test, features))


def linear(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int = 0, *,
           features: str = "raw") -> np.ndarray:
    """``evaluate``'s linear probe: ``raw`` = ``StandardScaler`` + ``LogisticRegression`` with
    scikit-learn's defaults (FaceCure's ``eval.py``; ``random_state`` = ``seed``); ``l2`` = on
    L2-normalised features with ``max_iter`` 2000 (cloakbench's earlier setting)."""
    if features == "raw":
        clf = make_pipeline(StandardScaler(), LogisticRegression(random_state=seed))
        with warnings.catch_warnings():
            # sklearn's default max_iter (100) may stop before convergence, as in FaceCure's
            # eval.py (which silences the same warning); the count is in the log, not hidden
            warnings.simplefilter("ignore", ConvergenceWarning)
            fitted = clf.fit(x_train, y_train)
        n_iter = int(np.max(fitted[-1].n_iter_))
        if n_iter >= fitted[-1].max_iter:
            log.info("linear (raw): logistic regression stopped at sklearn's default max_iter=%d "
                     "before converging (as FaceCure's eval.py)", n_iter)
        return fitted.predict(x_test)
    return linear_probe(_prepare(x_train, features), y_train, _prepare(x_test, features), seed)


#: evaluate.classifiers name -> fit_predict(x_train, y_train, x_test, seed, *, features) -> labels
CLASSIFIERS: dict[str, Callable[..., np.ndarray]] = {"knn1": knn1, "linear": linear}


def squared_distances(queries: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """Q x R squared Euclidean distances, ``|q|^2 + |r|^2 - 2 q.r`` (may be slightly negative)."""
    return (queries * queries).sum(1)[:, None] + (refs * refs).sum(1)[None, :] - 2 * queries @ refs.T


def nearest_neighbour(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, *,
                      exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """1-NN: (label of each test point's nearest training point, Euclidean distance to it).

    ``exclude_self``: ``x_test`` is ``x_train`` (leave one out: a point is not its own neighbour).
    """
    d2 = squared_distances(x_test, x_train)
    if exclude_self:
        np.fill_diagonal(d2, np.inf)
    j = np.argmin(d2, axis=1)
    dist = np.sqrt(np.maximum(d2[np.arange(len(x_test)), j], 0.0))
    return np.asarray(y_train)[j], dist
