"""report: every JSON record -> summary.parquet, report.md and figures.

The report's numbers come only from the records (no number is typed anywhere).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .io import atomic_path, read_rgb, write_parquet, write_text

log = logging.getLogger(__name__)


def load_records(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    records = []
    for p in paths:
        data = json.loads(Path(p).read_text())
        records += data if isinstance(data, list) else [data]
    return records


def summarise(records: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for r in records:
        m, s = r["metrics"], r["settings"]
        rows.append({
            "experiment": r["experiment"], "cloak": r["cloak"], "extractor": r["extractor"],
            "classifier": r["classifier"], "protection": m["protection"],
            "protection_lo": m["protection_ci95"][0], "protection_hi": m["protection_ci95"][1],
            "clean_accuracy": m["clean_accuracy"], "n_protected_users": m["n_protected_users"],
            "feature_shift": m.get("feature_shift_mean"),
            "n_train": m["n_train"], "n_train_cloaked": m["n_train_cloaked"],
            "extractor_release": s.get("extractor_info", {}).get("release_date"),
            "cloak_release": (s.get("cloak_spec") or {}).get("release_date"),
            "relation": relation(r["extractor"], s.get("extractor_info", {}).get("release_date"),
                                 s.get("cloak_spec")),
            "settings_json": json.dumps(s, sort_keys=True),
        })
    return pd.DataFrame(rows).sort_values(["classifier", "cloak", "extractor"]).reset_index(drop=True)


def relation(extractor: str, extractor_release: str | None, cloak_spec: dict | None) -> str:
    """How an extractor stands to a cloak on the timeline.

    ``known``: in the cloak's ensemble (its author computed the cloak against it);
    ``future``: released after the cloak (its author could not have known it);
    ``past``: released before the cloak but not in its ensemble; ``undated``: a date is missing;
    ``baseline``: no cloak.
    """
    if not cloak_spec:
        return "baseline"
    if extractor in (cloak_spec.get("ensemble") or []):
        return "known"
    cloak_release = cloak_spec.get("release_date")
    if not extractor_release or not cloak_release:
        return "undated"
    return "future" if str(extractor_release) > str(cloak_release) else "past"


MARK = {"known": "K", "future": "F", "past": "P", "undated": "?", "baseline": ""}


def extractor_order(summary: pd.DataFrame) -> list[str]:
    """Extractors ordered by release date (undated last), then name."""
    ex = summary.drop_duplicates("extractor")[["extractor", "extractor_release"]]
    ex = ex.assign(_k=ex["extractor_release"].fillna("9999"))
    return ex.sort_values(["_k", "extractor"])["extractor"].tolist()


def cloak_order(summary: pd.DataFrame) -> list[str]:
    c = summary.drop_duplicates("cloak")[["cloak", "cloak_release"]]
    c = c.assign(_k=np.where(c["cloak"] == "none", "0000", c["cloak_release"].fillna("9999")))
    return c.sort_values(["_k", "cloak"])["cloak"].tolist()


def _fmt(p: float, lo: float, hi: float) -> str:
    return "n/a" if np.isnan(p) else f"{p:.2f} [{lo:.2f}, {hi:.2f}]"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def protection_tables(summary: pd.DataFrame) -> str:
    exs, cls = extractor_order(summary), cloak_order(summary)
    parts = ["Marks: (K) extractor in the cloak's ensemble, (F) future extractor released after the "
             "cloak, (P) older extractor the cloak did not target, (?) a release date is missing."]
    for clf in sorted(summary["classifier"].unique()):
        sub = summary[summary["classifier"] == clf].set_index(["cloak", "extractor"])
        rows = []
        for c in cls:
            row = [c]
            for e in exs:
                if (c, e) in sub.index:
                    r = sub.loc[(c, e)]
                    mark = MARK[r.relation]
                    row.append(_fmt(r.protection, r.protection_lo, r.protection_hi)
                               + (f" ({mark})" if mark else ""))
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
    cloak moved the user's features on its own ensemble (K) and on the other extractors."""
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
                mark = MARK[r.relation]
                row.append(f"{r.feature_shift:.3f}" + (f" ({mark})" if mark else ""))
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


def heatmap(summary: pd.DataFrame, out_png: str | Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    exs, cls = extractor_order(summary), cloak_order(summary)
    clfs = sorted(summary["classifier"].unique())
    fig, axes = plt.subplots(1, len(clfs), figsize=(1.6 + 1.3 * len(exs) * len(clfs), 1 + 0.6 * len(cls)),
                             squeeze=False)
    for ax, clf in zip(axes[0], clfs):
        sub = summary[summary["classifier"] == clf].set_index(["cloak", "extractor"])
        grid = np.array([[sub.loc[(c, e)].protection if (c, e) in sub.index else np.nan for e in exs]
                         for c in cls], dtype=float)
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(exs)), exs, rotation=45, ha="right")
        ax.set_yticks(range(len(cls)), cls)
        ax.set_title(f"protection ({clf})")
        for i in range(len(cls)):
            for j in range(len(exs)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center",
                            color="w" if grid[i, j] < 0.6 else "k", fontsize=8)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def examples_grid(rows: list[tuple[str, dict[str, str]]], out_png: str | Path, magnify: float = 10.0) -> None:
    """One row per picture: clean, then for each cloak the cloaked picture and |difference| x magnify.

    ``rows`` holds (clean path, {cloak name: cloaked path}).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cloaks = sorted({c for _, d in rows for c in d})
    n, m = max(len(rows), 1), 1 + 2 * len(cloaks)
    fig, axes = plt.subplots(n, m, figsize=(1.9 * m, 2.0 * n), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (clean_p, cloaked) in enumerate(rows):
        a = read_rgb(clean_p)
        axes[i][0].imshow(a)
        axes[i][0].set_title("clean", fontsize=8)
        for j, c in enumerate(cloaks):
            if c not in cloaked:
                continue
            b = read_rgb(cloaked[c])
            diff = np.clip(np.abs(b.astype(float) - a) * magnify, 0, 255).astype(np.uint8)
            axes[i][1 + 2 * j].imshow(b)
            axes[i][1 + 2 * j].set_title(c, fontsize=8)
            axes[i][2 + 2 * j].imshow(diff)
            axes[i][2 + 2 * j].set_title(f"|diff| x{magnify:g}", fontsize=8)
    if not rows:
        axes[0][0].text(0.5, 0.5, "no cloaks configured", ha="center")
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    plt.close(fig)


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


def write_report(records: list[dict[str, Any]], out_dir: str | Path, *,
                 cloak_figures: dict[str, pd.DataFrame], example_rows: list[tuple[str, dict[str, str]]],
                 extra_sections: Sequence[str] = ()) -> pd.DataFrame:
    out_dir = Path(out_dir)
    summary = summarise(records)
    write_parquet(summary, out_dir / "summary.parquet")
    heatmap(summary, out_dir / "figures" / "protection_heatmap.png")
    examples_grid(example_rows, out_dir / "figures" / "examples.png")
    first = records[0]["settings"] if records else {}
    lines = [
        "# cloakbench report",
        "",
        "Protection rate = 1 - accuracy of the trained recogniser on the protected users' *unperturbed* "
        "test pictures; clean accuracy is measured on every other identity's test pictures. "
        "Cloak `none` is the uncloaked baseline. Extractors are ordered by release date.",
        "",
        f"- records: {len(records)}; protected users: {first.get('protected_users')}",
        f"- dataset: {first.get('dataset', {}).get('root')} ({first.get('dataset', {}).get('n_pictures')} "
        f"pictures, {first.get('dataset', {}).get('n_identities')} identities)",
        "",
        "## Timeline: which extractors each cloak knew",
        "",
        timeline_table(summary) if len(summary) else "(no records)",
        "",
        "## Protection",
        "",
        protection_tables(summary) if len(summary) else "(no records)",
        "",
        "![protection heatmap](figures/protection_heatmap.png)",
        "",
        "## Cloak budgets (measured on the stored PNGs)",
        "",
        cloak_budget_table(cloak_figures) if cloak_figures else "(no cloaks)",
        "",
        "![clean vs cloaked examples](figures/examples.png)",
        "",
        "## Transfer: how far each cloak moved the protected users' features",
        "",
        "Mean L2 distance between the L2-normalised embeddings of a clean training picture and its "
        "scraped cloaked version (0 = unchanged, 2 = opposite), per extractor.",
        "",
        transfer_table(summary) if len(summary) else "(no records)",
        "",
    ]
    lines += list(extra_sections)
    write_text("\n".join(lines) + "\n", out_dir / "report.md")
    log.info("report: %d records -> %s", len(records), out_dir / "report.md")
    return summary
