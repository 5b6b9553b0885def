"""Time travel: a protected user who switched from an older cloak to a newer one.

The user uploaded the first part of their pictures cloaked with an older cloak (e.g. Fawkes
v0.3), then switched to a newer one (e.g. Fawkes v1.0) for the rest. The scraper keeps
everything, so a model that defeats the older cloak still sees the user's old-cloak pictures:
the switch cannot restore protection for pictures already online.

:func:`timetravel_scrape` builds that scraped table from the two single-cloak scrape tables
(``data/scrape.py``'s format): each protected user's training pictures in upload order (sorted
by ``order_by``; the dataset has no dates, so ``image_id``, i.e. file order, stands for it), the
first ``switch_fraction`` taken from the old cloak's table and the rest from the new one's.
Every other row (others' pictures, test pictures) is identical in both tables and is copied.
Rows keep their ``imageset`` (``scraped-<old>`` / ``scraped-<new>``), so the embeddings already
computed for both cloaks are reused and ``evaluate.evaluate`` consumes the table as is, given
the embeddings of ``clean``, ``scraped-<old>`` and ``scraped-<new>``; its records are of kind
``timetravel`` (:func:`run_timetravel`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..data.scrape import SCRAPE_COLUMNS
from ..errors import DataError
from ..evaluate import evaluate, evaluation_settings, read_embedding_sets
from ..records import Record, write_records

log = logging.getLogger(__name__)

KEY_COLUMNS = ["image_id", "identity", "role", "split"]


def timetravel_scrape(old: pd.DataFrame, new: pd.DataFrame, *, old_cloak: str, new_cloak: str,
                     switch_fraction: float = 0.5, order_by: str = "image_id") -> pd.DataFrame:
    """Mix two scrape tables: protected users' first ``switch_fraction`` of training pictures
    (by ``order_by``) from ``old``, the rest from ``new``. Adds a column ``cloak_used``
    (``old_cloak`` / ``new_cloak`` / ``none``)."""
    if not 0 <= switch_fraction <= 1:
        raise ValueError(f"switch_fraction must be in [0, 1], got {switch_fraction}")
    a = old.sort_values("image_id").reset_index(drop=True)
    b = new.sort_values("image_id").reset_index(drop=True)
    if len(a) != len(b) or not a[KEY_COLUMNS].equals(b[KEY_COLUMNS]):
        raise DataError(f"time travel {old_cloak}->{new_cloak}: the two scrape tables do not list the "
                        "same pictures with the same roles and splits")
    out = a[SCRAPE_COLUMNS].copy()
    out["cloak_used"] = np.where(a["cloaked"], old_cloak, "none")
    prot_train = (a["role"] == "protected") & (a["split"] == "train")
    n_old = n_new = 0
    for ident, group in a[prot_train].groupby("identity", sort=True):
        order = group.sort_values(order_by).index
        k = int(round(switch_fraction * len(order)))
        later = order[k:]
        for col in SCRAPE_COLUMNS:
            out.loc[later, col] = b.loc[later, col].to_numpy()
        out.loc[later, "cloak_used"] = np.where(b.loc[later, "cloaked"], new_cloak, "none")
        n_old += int(a.loc[order[:k], "cloaked"].sum())
        n_new += int(b.loc[later, "cloaked"].sum())
    out["cloaked"] = out["cloaked"].astype(bool)
    log.info("time travel %s -> %s: %d protected training pictures with the old cloak, %d with the new",
             old_cloak, new_cloak, n_old, n_new)
    return out


def imagesets_of(table: pd.DataFrame) -> list[str]:
    """The image sets whose embeddings ``evaluate`` needs for ``table``."""
    return sorted(table["imageset"].unique())


def run_timetravel(*, old: str | Path, new: str | Path, embeddings: Sequence[str | Path], imagesets: Sequence[str],
                   out: str | Path, old_cloak: str, new_cloak: str, switch_fraction: float, extractor: str,
                   extractor_info: dict[str, Any], old_spec: dict[str, Any], new_spec: dict[str, Any],
                   evaluate_cfg: dict[str, Any], scrape_cfg: dict[str, Any], dataset_cfg: dict[str, Any],
                   seed: int) -> list[Record]:
    """Rule ``timetravel``: every classifier on the switched scrape table (``old``/``new``: the two
    cloaks' scrape tables) for one extractor -> ``out``."""
    table = timetravel_scrape(pd.read_parquet(old), pd.read_parquet(new), old_cloak=old_cloak,
                              new_cloak=new_cloak, switch_fraction=switch_fraction)
    settings = evaluation_settings(cloak=f"{old_cloak}->{new_cloak}", extractor=extractor,
                                   extractor_info=extractor_info, cloak_spec=None, seed=seed,
                                   scrape_cfg=scrape_cfg, evaluate_cfg=evaluate_cfg, dataset_cfg=dataset_cfg,
                                   scrape=table)
    used = table.loc[table["split"] == "train", "cloak_used"]
    settings.update(old_cloak=old_cloak, new_cloak=new_cloak, old_cloak_spec=old_spec, new_cloak_spec=new_spec,
                    switch_fraction=switch_fraction, n_old=int((used == old_cloak).sum()),
                    n_new=int((used == new_cloak).sum()))
    records = evaluate(table, read_embedding_sets(imagesets, embeddings), classifiers=evaluate_cfg["classifiers"],
                       bootstrap=evaluate_cfg["bootstrap"], seed=seed, settings=settings, kind="timetravel")
    write_records(records, out)
    return records
