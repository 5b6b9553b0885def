"""The report's figures (PNG), from the summary and the records only."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..io import atomic_path, read_rgb
from ..records import Record
from .tables import cloak_order, extractor_order, num


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def heatmap(summary: pd.DataFrame, out_png: str | Path) -> None:
    plt = _plt()
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
    plt = _plt()
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


def detection_roc_png(detection: Sequence[Record], out_png: str | Path) -> None:
    """ROC curves, one panel per detector; same-cloak solid, cross-cloak dashed."""
    plt = _plt()
    detectors = sorted({r.labels["detector"] for r in detection}) or ["(none)"]
    fig, axes = plt.subplots(1, len(detectors), figsize=(4.2 * len(detectors), 4), squeeze=False)
    for ax, det in zip(axes[0], detectors):
        for r in sorted((r for r in detection if r.labels["detector"] == det),
                        key=lambda r: (r.labels["cross_cloak"], r.labels["train_cloak"], r.labels["test_cloak"])):
            roc = r.metrics.get("roc") or {}
            if not roc.get("fpr"):
                continue
            ax.plot(roc["fpr"], roc["tpr"], ls="--" if r.labels["cross_cloak"] else "-",
                    label=f"{r.labels['train_cloak']} -> {r.labels['test_cloak']} "
                          f"(AUC {num(r.metrics['roc_auc'], 3)})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.5)
        ax.axvline(0.01, color="grey", lw=0.5, ls=":")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"detector {det}",
               xlim=(0, 1), ylim=(0, 1.01))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right")
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def combinations_scatter_png(combine: Sequence[Record], out_png: str | Path) -> None:
    """Protection vs clean accuracy: one panel per (cloak, accurate+robust); the threshold sweep as a line."""
    plt = _plt()
    groups = sorted({(r.labels["cloak"], r.labels["extractor"]) for r in combine}) or [("(none)", "")]
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 4), squeeze=False)
    markers = {"accurate": "o", "robust": "s", "top2": "*", "threshold": "D"}
    for ax, (cloak, pair) in zip(axes[0], groups):
        sub = [r for r in combine if r.labels["cloak"] == cloak and r.labels["extractor"] == pair]
        sweep = sorted((r for r in sub if r.labels["sweep"]), key=lambda r: r.metrics["quantile"])
        if sweep:
            ax.plot([r.metrics["clean_accuracy"] for r in sweep], [r.metrics["protection"] for r in sweep],
                    color="grey", lw=1, marker=".", label="threshold sweep")
        for r in sub:
            if r.labels["sweep"]:
                continue
            m = r.metrics
            ax.scatter([m["clean_accuracy"]], [m["protection"]], marker=markers.get(r.labels["method"], "x"), s=60,
                       label=r.labels["method"], zorder=3)
        ax.set(xlabel="clean accuracy", ylabel="protection", title=f"{cloak}: {pair}", xlim=(-0.02, 1.02),
               ylim=(-0.02, 1.02))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
