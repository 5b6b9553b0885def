"""How an extractor stands to a cloak: the one vocabulary of the report (and README).

======================  ====  ==========================================================
relation                mark  meaning
======================  ====  ==========================================================
``targeted``            T     in the cloak's ensemble: the cloak was optimised against it
``oblivious-past``      P     released before the cloak, but not in its ensemble
``oblivious-undated``   ?     not in the ensemble, and a release date is missing
``oblivious-future``    F     released after the cloak: its author could not know it
``adaptive``            A     a robust extractor of the adaptive trainer (type ``robust``)
``baseline``                  no cloak (cloak ``none``)
======================  ====  ==========================================================

*Oblivious* trainers wait for new models; the *adaptive* trainer has the cloaking tool and
trains on pictures it cloaked itself. The enum's order is the order of the report's rows.
"""

from __future__ import annotations

import enum
from typing import Any, Mapping

#: extractor type of the adaptive trainer's robust extractors
ROBUST_TYPE = "robust"


class Relation(enum.StrEnum):
    TARGETED = "targeted"
    OBLIVIOUS_PAST = "oblivious-past"
    OBLIVIOUS_UNDATED = "oblivious-undated"
    OBLIVIOUS_FUTURE = "oblivious-future"
    ADAPTIVE = "adaptive"
    BASELINE = "baseline"


MARK: dict[Relation, str] = {
    Relation.TARGETED: "T", Relation.OBLIVIOUS_PAST: "P", Relation.OBLIVIOUS_UNDATED: "?",
    Relation.OBLIVIOUS_FUTURE: "F", Relation.ADAPTIVE: "A", Relation.BASELINE: "",
}
MEANING: dict[Relation, str] = {
    Relation.TARGETED: "in the cloak's ensemble",
    Relation.OBLIVIOUS_PAST: "released before the cloak, not in its ensemble",
    Relation.OBLIVIOUS_UNDATED: "not in the cloak's ensemble, a release date is missing",
    Relation.OBLIVIOUS_FUTURE: "released after the cloak",
    Relation.ADAPTIVE: "robust extractor trained on public pictures cloaked by the adaptive trainer",
    Relation.BASELINE: "no cloak",
}


def relation(extractor: str, extractor_info: Mapping[str, Any] | None,
             cloak_spec: Mapping[str, Any] | None) -> Relation:
    """The relation of ``extractor`` (its record's ``extractor_info``) to a cloak (its config
    entry; None for no cloak)."""
    info = extractor_info or {}
    if not cloak_spec:
        return Relation.BASELINE
    if info.get("type") == ROBUST_TYPE:
        return Relation.ADAPTIVE
    if extractor in (cloak_spec.get("ensemble") or []):
        return Relation.TARGETED
    e, c = info.get("release_date"), cloak_spec.get("release_date")
    if not e or not c:
        return Relation.OBLIVIOUS_UNDATED
    return Relation.OBLIVIOUS_FUTURE if str(e) > str(c) else Relation.OBLIVIOUS_PAST


def describe(rel: Relation, extractor_info: Mapping[str, Any] | None, cloak: str) -> str:
    """``rel`` with its meaning; for ``adaptive``, the base model and the cloaks it was trained on."""
    if rel is Relation.ADAPTIVE:
        extra = (extractor_info or {}).get("extra") or {}
        trained_on = extra.get("cloaks") or []
        how = "trained on this cloak" if cloak in trained_on else f"trained on {', '.join(trained_on) or '?'} only"
        return f"{rel} (robust {extra.get('base')}, {how})"
    return f"{rel} ({MEANING[rel]})"


def legend() -> str:
    """The marks of the report's tables, one sentence."""
    return "Marks: " + "; ".join(f"({MARK[r]}) {r}: {MEANING[r]}" for r in Relation if MARK[r]) + "."
