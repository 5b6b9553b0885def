"""The report's tables (markdown), from the evaluation records' summary.

Every cell comes from a record; no number is typed here.
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..records import Record
from .relation import MARK, Relation, legend, relation


def summarise(records: Sequence[Record]) -> pd.DataFrame:
    """One row per evaluation record (``evaluate``'s classifiers and the end-to-end ``finetune``)."""
    rows = []
    for r in records:
        if r.kind != "evaluation":
            raise ValueError(f"summarise: {r.experiment} is a {r.kind} record, not an evaluation")
        m, s, lab = r.metrics, r.settings, r.labels
        info = s.get("extractor_info", {})
        rows.append({
            "experiment": r.experiment, "cloak": lab["cloak"], "extractor": lab["extractor"],
            "classifier": lab["classifier"], "protection": m["protection"],
            "protection_lo": m["protection_ci95"][0], "protection_hi": m["protection_ci95"][1],
            "clean_accuracy": m["clean_accuracy"], "n_protected_users": m["n_protected_users"],
            "feature_shift": m.get("feature_shift_mean"),
            "n_train": m["n_train"], "n_train_cloaked": m["n_train_cloaked"],
            "extractor_release": info.get("release_date"),
            "cloak_release": (s.get("cloak_spec") or {}).get("release_date"),
            "relation": relation(lab["extractor"], info, s.get("cloak_spec")).value,
            "settings_json": json.dumps(s, sort_keys=True),
        })
    return pd.DataFrame(rows).sort_values(["classifier", "cloak", "extractor"]).reset_index(drop=True)


def _mark(rel: str) -> str:
    m = MARK[Relation(rel)]
    return f" ({m})" if m else ""


def extractor_order(summary: pd.DataFrame) -> list[str]:
    """Extractors ordered by release date (undated last), then name."""
    ex = summary.drop_duplicates("extractor")[["extractor", "extractor_release"]]
    ex = ex.assign(_k=ex["extractor_release"].fillna("9999"))
    return ex.sort_values(["_k", "extractor"])["extractor"].tolist()


def cloak_order(summary: pd.DataFrame) -> list[str]:
    c = summary.drop_duplicates("cloak")[["cloak", "cloak_release"]]
    c = c.assign(_k=np.where(c["cloak"] == "none", "0000", c["cloak_release"].fillna("9999")))
    return c.sort_values(["_k", "cloak"])["cloak"].tolist()


def num(x: Any, digits: int = 2) -> str:
    """``x`` with ``digits`` decimals; ``n/a`` for None or NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def prot(m: dict[str, Any]) -> str:
    """A record's protection with its 95 % interval, ``0.80 [0.70, 0.90]``."""
    p = m.get("protection")
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    lo, hi = (m.get("protection_ci95") or [p, p])[:2]
    return f"{p:.2f} [{lo:.2f}, {hi:.2f}]"


def _fmt(p: float, lo: float, hi: float) -> str:
    return "n/a" if np.isnan(p) else f"{p:.2f} [{lo:.2f}, {hi:.2f}]"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def protection_tables(summary: pd.DataFrame) -> str:
    exs, cls = extractor_order(summary), cloak_order(summary)
    parts = [legend()]
    for clf in sorted(summary["classifier"].unique()):
        sub = summary[summary["classifier"] == clf].set_index(["cloak", "extractor"])
        rows = []
        for c in cls:
            row = [c]
            for e in exs:
                if (c, e) in sub.index:
                    r = sub.loc[(c, e)]
                    row.append(_fmt(r.protection, r.protection_lo, r.protection_hi) + _mark(r.relation))
                else:
                    row.append("")
            rows.append(row)
        acc_rows = []
        for c in cls:
            row = [c]
            for e in exs:
                row.append(f"{sub.loc[(c, e)].clean_accuracy:.2f}" if (c, e) in sub.index else "")
            acc_rows.append(row)
        parts.append(f"### Protection rate, classifier `{clf}` (mean over protected users, 95 % bootstrap CI)\n\n"
                     + markdown_table(["cloak \\ extractor"] + exs, rows)
                     + f"\n\n### Clean accuracy on the other identities, classifier `{clf}`\n\n"
                     + markdown_table(["cloak \\ extractor"] + exs, acc_rows))
    return "\n\n".join(parts)


def transfer_table(summary: pd.DataFrame) -> str:
    """Mean feature shift of the cloaked training pictures, cloak x extractor: how far each
    cloak moved the user's features on its own ensemble (T) and on the other extractors."""
    exs, cls = extractor_order(summary), [c for c in cloak_order(summary) if c != "none"]
    # Only records that measured a shift (the end-to-end `finetune` records do not): the first
    # row per pair could otherwise be one without it and blank a measured cell.
    first = (summary[summary["feature_shift"].notna()].drop_duplicates(["cloak", "extractor"])
             .set_index(["cloak", "extractor"]))
    rows = []
    for c in cls:
        row = [c]
        for e in exs:
            if (c, e) in first.index and first.loc[(c, e)].feature_shift is not None \
                    and not pd.isna(first.loc[(c, e)].feature_shift):
                r = first.loc[(c, e)]
                row.append(f"{r.feature_shift:.3f}" + _mark(r.relation))
            else:
                row.append("")
        rows.append(row)
    return markdown_table(["cloak \\ extractor"] + exs, rows)


def timeline_table(summary: pd.DataFrame) -> str:
    """Extractors in release order and, for each cloak, whether the cloak knew them."""
    exs, cls = extractor_order(summary), [c for c in cloak_order(summary) if c != "none"]
    first = summary.drop_duplicates(["cloak", "extractor"]).set_index(["cloak", "extractor"])
    rel = summary.drop_duplicates("extractor").set_index("extractor")["extractor_release"]
    crel = summary.drop_duplicates("cloak").set_index("cloak")["cloak_release"]
    rows = []
    for e in exs:
        rows.append([e, str(rel.get(e) or "?")] + [first.loc[(c, e)].relation if (c, e) in first.index else ""
                                                     for c in cls])
    header = ["extractor", "released"] + [f"{c} ({crel.get(c) or '?'})" for c in cls]
    return markdown_table(header, rows)


def cloak_budget_table(figures: dict[str, pd.DataFrame]) -> str:
    rows = []
    for cloak, f in sorted(figures.items()):
        rows.append([cloak, str(len(f)), f"{f.dssim.mean():.4f}", f"{f.linf.max():.4f}",
                     f"{f.l2.mean():.3f}", f"{f.seconds.mean():.2f}"])
    return markdown_table(["cloak", "pictures", "mean DSSIM", "max L-inf", "mean L2", "s/picture"], rows)


def dataset_card_section(card: dict[str, Any], sheet: str | None) -> str:
    """The dataset card (figures computed by the dataset_card rule) as markdown."""
    q = card["quality"]
    rows = []
    for name, e in q["extractors"].items():
        rate = e.get("merged_pair_rate")
        rows.append([name, f"{e['linear_accuracy']:.3f}", f"{e['knn1_accuracy']:.3f}",
                     f"{e['same_identity_mean']:.3f} / {e['different_identity_mean']:.3f} ({e['metric']})",
                     "n/a" if rate is None else f"{e['merged_pairs']}/{e['identity_pairs']} = {rate:.1%}"])
    text = [f"## Dataset: how recognisable its identities are ({card['n_identities']} identities, "
            f"{card['n_pictures']} pictures)", "",
            "Clean identification (linear probe, 1-NN) on the test pictures by the real recognisers, and "
            "the identity pairs a verifier would merge (mean cross-picture SFace cosine > 0.363, or dlib "
            "distance < 0.6).", "",
            markdown_table(["extractor", "linear probe acc.", "1-NN acc.", "same / different identity score",
                            "identity pairs merged"], rows)]
    if sheet:
        text += ["", f"![contact sheet]({sheet})"]
    return "\n".join(text) + "\n"


