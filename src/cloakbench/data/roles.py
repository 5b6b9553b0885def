"""select_users: who is protected, and whose pictures an adaptive trainer may cloak itself.

Roles: ``protected`` (the cloak's users), ``public`` (identities an adaptive trainer may
photograph, label and cloak itself), ``other``, and ``target_pool`` (identities reserved as
Fawkes v0.3's external target set: v0.3 drew its target among identities of its own, which
were never classes of the tracker's model; they are dropped from every scraped set and from
every trainer's pictures, so no classifier or trained extractor ever sees them). No model the pipeline trains may ever see a
protected user's picture: every trainer takes its pictures from :func:`trainer_pictures`, and
:func:`check_not_protected` guards what reaches the training loop.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError
from ..io import write_parquet

log = logging.getLogger(__name__)


def select_users(manifest: pd.DataFrame, *, protected: list[str] | None = None, n_protected: int = 4,
                 public_fraction: float = 0.5, target_pool: int | list[str] = 0,
                 seed: int = 0) -> pd.DataFrame:
    """Return a table (identity, role) with role in {protected, public, other, target_pool}.

    ``protected`` (explicit names) wins over ``n_protected`` (drawn with the seed).
    ``target_pool``: a number of identities drawn with the seed among the non-protected ones
    (its own random stream, so 0 leaves the other draws unchanged), or explicit names;
    Fawkes v0.3 draws its targets among them, and no classifier has them as classes.
    ``public``: at most ``public_fraction`` of the remaining identities, drawn with the seed;
    an adaptive trainer may cloak their pictures itself. ``other``: everyone else.
    """
    identities = sorted(manifest["identity"].unique())
    rng = np.random.default_rng([seed, 1])
    if protected:
        unknown = sorted(set(protected) - set(identities))
        if unknown:
            raise ConfigError(f"users.protected: {unknown} not among the dataset's usable identities "
                              f"(first ones: {identities[:5]}); check spelling or the rejects table")
        chosen = sorted(protected)
    else:
        if n_protected >= len(identities):
            raise ConfigError(f"users.n_protected={n_protected} leaves no other identity "
                              f"(the dataset has {len(identities)})")
        chosen = sorted(rng.choice(identities, size=n_protected, replace=False).tolist())
    rest = [i for i in identities if i not in set(chosen)]
    pool = _target_pool(target_pool, rest, chosen, identities, seed)
    rest = [i for i in rest if i not in pool]
    n_public = int(np.floor(public_fraction * len(rest)))
    public = set(rng.choice(rest, size=n_public, replace=False).tolist()) if n_public else set()
    roles = pd.DataFrame({"identity": identities})
    roles["role"] = ["protected" if i in chosen else "target_pool" if i in pool
                     else "public" if i in public else "other" for i in identities]
    log.info("roles: %s", roles["role"].value_counts().to_dict())
    return roles


def _target_pool(target_pool: int | list[str], rest: list[str], protected: list[str],
                 identities: list[str], seed: int) -> set[str]:
    if isinstance(target_pool, bool) or not isinstance(target_pool, (int, list, tuple)):
        raise ConfigError(f"users.target_pool: a number of identities or a list of names, "
                          f"got {target_pool!r}")
    if isinstance(target_pool, int):
        if target_pool < 0:
            raise ConfigError(f"users.target_pool: must be >= 0, got {target_pool}")
        if target_pool and target_pool >= len(rest):
            raise ConfigError(f"users.target_pool={target_pool} leaves no identity for the "
                              f"classifiers ({len(rest)} non-protected identities)")
        if not target_pool:
            return set()
        rng = np.random.default_rng([seed, 3])
        return set(rng.choice(rest, size=target_pool, replace=False).tolist())
    names = [str(n) for n in target_pool]
    unknown = sorted(set(names) - set(identities))
    if unknown:
        raise ConfigError(f"users.target_pool: {unknown} not among the dataset's usable identities "
                          f"(first ones: {identities[:5]}); check spelling or the rejects table")
    clash = sorted(set(names) & set(protected))
    if clash:
        raise ConfigError(f"users.target_pool: {clash} are protected users; the target pool must "
                          "be disjoint from users.protected")
    if len(set(names)) >= len(rest):
        raise ConfigError("users.target_pool leaves no identity for the classifiers")
    return set(names)


ROLES = ("protected", "public", "other", "target_pool")
#: roles whose pictures a trainer may use: the pipeline's own extractors (train_extractor)
TRAINER_ROLES = ("public", "other")


def target_pool_identities(roles: pd.DataFrame) -> list[str]:
    """The identities reserved as Fawkes v0.3's target pool, sorted (never a classifier's class)."""
    return sorted(roles.loc[roles["role"] == "target_pool", "identity"])


def protected_identities(roles: pd.DataFrame) -> list[str]:
    """The protected users, sorted."""
    return sorted(roles.loc[roles["role"] == "protected", "identity"])


def check_not_protected(identities, roles: pd.DataFrame, *, what: str) -> None:
    """Raise DataError if any of ``identities`` is a protected user (``what``: the trainer)."""
    bad = sorted(set(map(str, identities)) & set(protected_identities(roles)))
    if bad:
        raise DataError(f"{what}: pictures of protected users {bad[:5]} were passed; a trainer may never "
                        "use a protected user's picture")


def trainer_pictures(manifest: pd.DataFrame, roles: pd.DataFrame, *,
                     allowed: tuple[str, ...] = TRAINER_ROLES, what: str = "training") -> pd.DataFrame:
    """The training-split pictures of the identities whose role is in ``allowed`` (manifest
    order): what a trainer may use. ``protected`` and ``target_pool`` are never allowed; an
    identity missing from ``roles`` is not allowed either."""
    if not set(allowed) <= set(TRAINER_ROLES):
        raise ValueError(f"{what}: allowed roles {allowed} must be among {TRAINER_ROLES}")
    ids = set(roles.loc[roles["role"].isin(allowed), "identity"])
    sel = manifest[(manifest["split"] == "train") & manifest["identity"].isin(ids)]
    check_not_protected(sel["identity"].unique(), roles, what=what)
    return sel


def pictures_for_subset(manifest: pd.DataFrame, roles: pd.DataFrame, subset: str) -> pd.DataFrame:
    """Pictures a cloak is applied to: ``protected`` users' training pictures, or ``public``
    identities' training pictures (the adaptive trainer's own cloaked copies)."""
    if subset not in ("protected", "public"):
        raise ValueError(f"unknown subset {subset}")
    ids = set(roles.loc[roles["role"] == subset, "identity"])
    sel = manifest[manifest["identity"].isin(ids) & (manifest["split"] == "train")]
    return sel.sort_values("image_id").reset_index(drop=True)


def shard_of(df: pd.DataFrame, shard: int, shards: int) -> pd.DataFrame:
    """Rows of shard ``shard`` (0-based) out of ``shards``: contiguous, stable slices."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} not in [0, {shards})")
    bounds = np.linspace(0, len(df), shards + 1).round().astype(int)
    return df.iloc[bounds[shard]:bounds[shard + 1]]


def run_select_users(*, manifest: str | Path, out: str | Path, users: dict[str, Any], seed: int) -> pd.DataFrame:
    """Rule ``select_users``: the roles table of the manifest's identities -> ``out``."""
    roles = select_users(pd.read_parquet(manifest), protected=users["protected"], n_protected=users["n_protected"],
                         public_fraction=users["public_fraction"],
                         target_pool=users.get("target_pool", 0), seed=seed)
    write_parquet(roles, out)
    return roles
