"""Report sections of the adaptive trainer, rendered from the JSON records only.

``scripts/report.py`` calls::

    sections = adaptive_sections(records, finetune=..., robust_meta=..., detection=...,
                                 timetravel=..., combine=...)
    detection_roc_png(detection, out_dir / "figures" / "detection_roc.png")
    combinations_scatter_png(combine, out_dir / "figures" / "combinations.png")

and passes ``sections`` to ``report.write_report(..., extra_sections=sections)``. Every input
is a list of records as the adaptive rules write them (``load_records`` of their JSON files);
an empty list leaves its section out. No number is typed here: each cell comes from a record.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..io import atomic_path
from ..report import markdown_table

ROBUST_TYPE = "robust"
CLASSIFIER_ORDER = ["knn1", "linear", "finetune"]


def _num(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def _prot(m: dict[str, Any]) -> str:
    p = m.get("protection")
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    lo, hi = (m.get("protection_ci95") or [p, p])[:2]
    return f"{p:.2f} [{lo:.2f}, {hi:.2f}]"


def _ext_info(rec: dict[str, Any]) -> dict[str, Any]:
    return (rec.get("settings") or {}).get("extractor_info") or {}


def _relation(rec: dict[str, Any]) -> str:
    """How the extractor relates to the cloak: targeted / past / future / adaptive (robust)."""
    s = rec.get("settings") or {}
    info = _ext_info(rec)
    spec = s.get("cloak_spec") or {}
    if info.get("type") == ROBUST_TYPE:
        trained_on = (info.get("extra") or {}).get("cloaks") or []
        base = (info.get("extra") or {}).get("base")
        if rec["cloak"] in trained_on:
            return f"adaptive: robust {base}, trained on this cloak"
        return f"adaptive: robust {base}, trained on {', '.join(trained_on) or '?'} only"
    if rec["extractor"] in (spec.get("ensemble") or []):
        return "targeted (in the cloak's ensemble)"
    e, c = info.get("release_date"), spec.get("release_date")
    if e and c:
        return "oblivious: future model" if str(e) > str(c) else "oblivious: older model"
    return "oblivious (undated)"


def _unique(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    seen, out = set(), []
    for r in records:
        if r["experiment"] not in seen:
            seen.add(r["experiment"])
            out.append(r)
    return out


def _relation_rank(rel: str) -> int:
    for i, key in enumerate(("targeted", "oblivious: older", "oblivious (undated)", "oblivious: future",
                             "adaptive: robust", "adaptive")):
        if rel.startswith(key):
            return i
    return 9


def oblivious_vs_adaptive(records: Sequence[dict[str, Any]]) -> str:
    """Per classifier: each cloak x extractor, its relation, protection and clean accuracy,
    beside the same extractor's protection without any cloak."""
    recs = [r for r in _unique(records) if "classifier" in r and "metrics" in r]
    base = {(r["extractor"], r["classifier"]): r["metrics"] for r in recs if r["cloak"] == "none"}
    classifiers = sorted({r["classifier"] for r in recs},
                         key=lambda c: (CLASSIFIER_ORDER.index(c) if c in CLASSIFIER_ORDER else 9, c))
    parts = []
    for clf in classifiers:
        rows = []
        sub = [r for r in recs if r["classifier"] == clf and r["cloak"] != "none"]
        for r in sorted(sub, key=lambda r: (r["cloak"], _relation_rank(_relation(r)), r["extractor"])):
            m = r["metrics"]
            b = base.get((r["extractor"], clf))
            rows.append([r["cloak"], r["extractor"], _relation(r), _prot(m), _num(m.get("clean_accuracy")),
                         _num(b["protection"]) if b else "n/a"])
        if rows:
            parts.append(f"#### Classifier `{clf}`\n\n" + markdown_table(
                ["cloak", "extractor", "relation to the cloak", "protection (95 % CI)", "clean accuracy",
                 "protection without cloak"], rows))
    return "\n\n".join(parts)


def robust_table(robust_meta: Sequence[dict[str, Any]]) -> str:
    rows = []
    for m in sorted(robust_meta, key=lambda m: m.get("name") or m.get("extractor") or ""):
        s = m.get("settings") or {}
        rows.append([str(m.get("name") or m.get("extractor")), str(m.get("base")), ", ".join(m.get("cloaks") or []),
                     str(m.get("identities")), str(m.get("n_clean")), str(m.get("n_cloaked")),
                     f"{s.get('epochs')} x {s.get('optimizer')} (lr {s.get('lr')}, batch {s.get('batch_size')})",
                     _num(m.get("head_acc_clean")), _num(m.get("head_acc_cloaked")),
                     str(m.get("protected_reads", "n/a")), _num(m.get("seconds"), 0)])
    return markdown_table(["robust extractor", "base", "cloaks used", "public identities", "clean pictures",
                           "cloaked pictures", "training", "head acc. clean", "head acc. cloaked",
                           "protected pictures read", "seconds"], rows)


def detection_table(detection: Sequence[dict[str, Any]]) -> str:
    rows = []
    for r in sorted(detection, key=lambda r: (r["detector"], r["train_cloak"], r["cross_cloak"], r["test_cloak"])):
        m = r["metrics"]
        rows.append([r["detector"], r["detector_type"], r["train_cloak"], r["test_cloak"],
                     "yes" if r["cross_cloak"] else "no", _num(m["precision"], 3), _num(m["recall"], 3),
                     _num(m["roc_auc"], 3), _num(m["tpr_at_1pct_fpr"], 3),
                     f"{m['n_positive']} / {m['n_negative']}"])
    return markdown_table(["detector", "type", "trained on", "tested on", "cross-cloak", "precision",
                           "recall", "ROC AUC", "TPR @ 1 % FPR", "cloaked / clean test pictures"], rows)


def timetravel_table(records: Sequence[dict[str, Any]], timetravel: Sequence[dict[str, Any]]) -> str:
    main = {(r["cloak"], r["extractor"], r["classifier"]): r["metrics"] for r in _unique(records)
            if "classifier" in r}
    rows = []
    for r in sorted(timetravel, key=lambda r: (r["settings"]["old_cloak"], r["settings"]["new_cloak"],
                                                r["classifier"], r["extractor"])):
        s, m = r["settings"], r["metrics"]
        old = main.get((s["old_cloak"], r["extractor"], r["classifier"]))
        new = main.get((s["new_cloak"], r["extractor"], r["classifier"]))
        rel = _relation({**r, "cloak": s["old_cloak"],
                         "settings": {**s, "cloak_spec": s.get("old_cloak_spec")}})
        rows.append([f"{s['old_cloak']} -> {s['new_cloak']}", r["extractor"], r["classifier"], rel,
                     _prot(old) if old else "n/a", _prot(new) if new else "n/a", _prot(m),
                     _num(m.get("clean_accuracy")), f"{s.get('n_old')} / {s.get('n_new')}"])
    return markdown_table(["switch", "extractor", "classifier", "relation to the old cloak",
                           "protection, old cloak only", "protection, new cloak only",
                           "protection after the switch", "clean accuracy", "pictures old / new"], rows)


def combination_table(combine: Sequence[dict[str, Any]]) -> str:
    rows = []
    order = {"accurate": 0, "robust": 1, "top2": 2, "threshold": 3}
    for r in sorted((r for r in combine if not r.get("sweep")),
                    key=lambda r: (r["cloak"], r["extractor"], order.get(r["method"], 9))):
        m = r["metrics"]
        how = {"accurate": "accurate model alone", "robust": "robust model alone",
               "top2": "top-2 (either model right)",
               "threshold": (f"threshold at quantile {m.get('quantile')} of held-out public NN distances"
                             f" (t = {_num(m.get('threshold'), 3)})")}.get(r["method"], r["method"])
        rows.append([r["cloak"], r["settings"]["accurate"], r["settings"]["robust"], how, _prot(m),
                     _num(m.get("clean_accuracy")),
                     _num(m.get("fallback_rate_protected")) + " / " + _num(m.get("fallback_rate_clean"))
                     if r["method"] == "threshold" else ""])
    return markdown_table(["cloak", "accurate", "robust", "combination", "protection (95 % CI)",
                           "clean accuracy", "robust fallback: protected / clean"], rows)


def adaptive_sections(records: Sequence[dict[str, Any]], *, finetune: Sequence[dict[str, Any]] = (),
                      robust_meta: Sequence[dict[str, Any]] = (), detection: Sequence[dict[str, Any]] = (),
                      timetravel: Sequence[dict[str, Any]] = (), combine: Sequence[dict[str, Any]] = (),
                      figures: str = "figures") -> list[str]:
    """Markdown sections (a list of strings, ready for ``write_report(extra_sections=...)``)."""
    all_main = _unique(list(records) + list(finetune))
    out = ["## The adaptive trainer", "",
           "Oblivious trainers wait for new models; the adaptive trainer has the cloaking tool, cloaks "
           "the *public* identities' pictures itself, and trains a robust extractor (type `robust`) and "
           "a detector of cloaked pictures. Protected users' pictures are never used for either.", ""]
    if all_main:
        out += ["### Oblivious vs adaptive protection per cloak", "",
                "Relation: *targeted* = the cloak was optimised against this extractor; *older / future* "
                "= released before / after the cloak (by `release_date`); *adaptive* = a robust "
                "extractor fine-tuned on public pictures cloaked by the listed cloaks. "
                "`finetune` = the end-to-end classifier (extractor + linear head fine-tuned on the "
                "scraped set).", "", oblivious_vs_adaptive(all_main), ""]
    if robust_meta:
        out += ["### Robust training", "", robust_table(robust_meta), ""]
    if detection:
        out += ["### Detection of cloaked pictures", "",
                "Trained on the trainer's own clean vs cloaked public pictures; tested on the protected "
                "users' scraped cloaked pictures (positives) and uncloaked scraped pictures of identities "
                "the detector never saw (negatives). Precision and recall at score 0.5. With fewer than "
                "100 negatives, 1 % FPR means no false positive at all.", "", detection_table(detection), "",
                f"![detection ROC curves]({figures}/detection_roc.png)", ""]
    if timetravel:
        out += ["### Time travel: switching cloaks halfway", "",
                "Each protected user's training pictures in upload order: the first part cloaked with the "
                "old cloak, the rest with the new one; the scraper keeps them all.", "",
                timetravel_table(all_main, timetravel), ""]
    if combine:
        out += ["### Accuracy-preserving combinations (1-NN)", "", combination_table(combine), "",
                f"![protection vs clean accuracy]({figures}/combinations.png)", ""]
    return out


# ---------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------
def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def detection_roc_png(detection: Sequence[dict[str, Any]], out_png: str | Path) -> None:
    """ROC curves, one panel per detector; same-cloak solid, cross-cloak dashed."""
    plt = _plt()
    detectors = sorted({r["detector"] for r in detection}) or ["(none)"]
    fig, axes = plt.subplots(1, len(detectors), figsize=(4.2 * len(detectors), 4), squeeze=False)
    for ax, det in zip(axes[0], detectors):
        for r in sorted((r for r in detection if r["detector"] == det),
                        key=lambda r: (r["cross_cloak"], r["train_cloak"], r["test_cloak"])):
            roc = r["metrics"].get("roc") or {}
            if not roc.get("fpr"):
                continue
            ax.plot(roc["fpr"], roc["tpr"], ls="--" if r["cross_cloak"] else "-",
                    label=f"{r['train_cloak']} -> {r['test_cloak']} (AUC {_num(r['metrics']['roc_auc'], 3)})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.5)
        ax.axvline(0.01, color="grey", lw=0.5, ls=":")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"detector {det}",
               xlim=(0, 1), ylim=(0, 1.01))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right")
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def combinations_scatter_png(combine: Sequence[dict[str, Any]], out_png: str | Path) -> None:
    """Protection vs clean accuracy: one panel per (cloak, accurate+robust); the threshold sweep as a line."""
    plt = _plt()
    groups = sorted({(r["cloak"], r["extractor"]) for r in combine}) or [("(none)", "")]
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 4), squeeze=False)
    markers = {"accurate": "o", "robust": "s", "top2": "*", "threshold": "D"}
    for ax, (cloak, pair) in zip(axes[0], groups):
        sub = [r for r in combine if r["cloak"] == cloak and r["extractor"] == pair]
        sweep = sorted((r for r in sub if r.get("sweep")), key=lambda r: r["metrics"]["quantile"])
        if sweep:
            ax.plot([r["metrics"]["clean_accuracy"] for r in sweep], [r["metrics"]["protection"] for r in sweep],
                    color="grey", lw=1, marker=".", label="threshold sweep")
        for r in sub:
            if r.get("sweep"):
                continue
            m = r["metrics"]
            ax.scatter([m["clean_accuracy"]], [m["protection"]], marker=markers.get(r["method"], "x"), s=60,
                       label=r["method"], zorder=3)
        ax.set(xlabel="clean accuracy", ylabel="protection", title=f"{cloak}: {pair}", xlim=(-0.02, 1.02),
               ylim=(-0.02, 1.02))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def robust_meta_files(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Read the robust extractors' ``.json`` metadata (what ``robust_table`` renders)."""
    import json
    return [json.loads(Path(p).read_text()) for p in paths]
