"""The report's sections on the adaptive trainer, rendered from records only.

Every input is a list of :class:`~cloakbench.records.Record` as the rules write them
(evaluation records of every classifier, time-travel, combination and detection records) or
the robust extractors' metadata; an empty list leaves its section out. No number is typed
here: each cell comes from a record.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from ..records import Record
from .relation import Relation, describe, relation
from .tables import markdown_table, num, prot

CLASSIFIER_ORDER = ["knn1", "linear", "finetune", "finetune_adaptive"]


def _relation(rec: Record, cloak: str, cloak_spec: dict[str, Any] | None) -> tuple[Relation, str]:
    info = rec.settings.get("extractor_info") or {}
    rel = relation(rec.labels["extractor"], info, cloak_spec or {})
    return rel, describe(rel, info, cloak)


def _unique(records: Iterable[Record]) -> list[Record]:
    seen, out = set(), []
    for r in records:
        if r.experiment not in seen:
            seen.add(r.experiment)
            out.append(r)
    return out


def oblivious_vs_adaptive(records: Sequence[Record]) -> str:
    """Per classifier: each cloak x extractor, its relation, protection and clean accuracy,
    beside the same extractor's protection without any cloak."""
    recs = _unique(records)
    base = {(r.labels["extractor"], r.labels["classifier"]): r.metrics for r in recs if r.labels["cloak"] == "none"}
    classifiers = sorted({r.labels["classifier"] for r in recs},
                         key=lambda c: (CLASSIFIER_ORDER.index(c) if c in CLASSIFIER_ORDER else 9, c))
    parts = []
    for clf in classifiers:
        rows = []
        sub = [r for r in recs if r.labels["classifier"] == clf and r.labels["cloak"] != "none"]
        rel = {r.experiment: _relation(r, r.labels["cloak"], r.settings.get("cloak_spec")) for r in sub}
        order = list(Relation)
        for r in sorted(sub, key=lambda r: (r.labels["cloak"], order.index(rel[r.experiment][0]),
                                            r.labels["extractor"])):
            m = r.metrics
            b = base.get((r.labels["extractor"], clf))
            rows.append([r.labels["cloak"], r.labels["extractor"], rel[r.experiment][1], prot(m),
                         num(m.get("clean_accuracy")), num(b["protection"]) if b else "n/a"])
        if rows:
            parts.append(f"#### Classifier `{clf}`\n\n" + markdown_table(
                ["cloak", "extractor", "relation to the cloak", "protection (95 % CI)", "clean accuracy",
                 "protection without cloak"], rows))
    return "\n\n".join(parts)


def end_to_end_table(records: Sequence[Record]) -> str:
    """Per cloak x extractor: the oblivious end-to-end classifier (``finetune``) beside the
    adaptive one (``finetune_adaptive``, trained with the public self-cloaked pictures), and the
    robust extractors' protection on frozen features for the same cloak (1-NN / linear)."""
    recs = _unique(records)
    e2e = {(r.labels["cloak"], r.labels["extractor"], r.labels["classifier"]): r for r in recs
           if r.labels["classifier"] in ("finetune", "finetune_adaptive")}
    robust: dict[str, list[str]] = {}
    for r in sorted(recs, key=lambda r: (r.labels["extractor"], r.labels["classifier"])):
        if ((r.settings.get("extractor_info") or {}).get("type") == "robust"
                and r.labels["classifier"] in ("knn1", "linear")):
            robust.setdefault(r.labels["cloak"], []).append(
                f"{r.labels['extractor']} {r.labels['classifier']} {num(r.metrics.get('protection'))}")
    rows = []
    for cloak, ext in sorted({(c, e) for c, e, _ in e2e}):
        obl, ada = e2e.get((cloak, ext, "finetune")), e2e.get((cloak, ext, "finetune_adaptive"))
        cloaks = ", ".join(ada.settings.get("adaptive_cloaks") or []) if ada else ""
        rows.append([cloak, ext, prot(obl.metrics) if obl else "n/a",
                     num(obl.metrics.get("clean_accuracy")) if obl else "n/a",
                     prot(ada.metrics) if ada else "n/a", num(ada.metrics.get("clean_accuracy")) if ada else "n/a",
                     cloaks, "; ".join(robust.get(cloak, [])) or "n/a"])
    return markdown_table(["cloak", "extractor", "end-to-end, oblivious: protection (95 % CI)", "clean accuracy",
                           "end-to-end, adaptive: protection (95 % CI)", "clean accuracy",
                           "adaptive trainer's cloaks", "robust features (protection)"], rows)


def robust_table(robust_meta: Sequence[dict[str, Any]]) -> str:
    rows = []
    for m in sorted(robust_meta, key=lambda m: m.get("name") or m.get("extractor") or ""):
        s = m.get("settings") or {}
        rows.append([str(m.get("name") or m.get("extractor")), str(m.get("base")), ", ".join(m.get("cloaks") or []),
                     str(m.get("identities")), str(m.get("n_clean")), str(m.get("n_cloaked")),
                     f"{s.get('epochs')} x {s.get('steps_per_epoch') or 'one pass'} steps, {s.get('optimizer')} "
                     f"(lr {s.get('lr')}, batch {s.get('batch_size')})"
                     + (f"; deviations from FaceCure: {', '.join(m['deviations'])}" if m.get("deviations") else ""),
                     num(m.get("head_acc_clean")), num(m.get("head_acc_cloaked")),
                     str(m.get("protected_reads", "n/a")), num(m.get("seconds"), 0)])
    return markdown_table(["robust extractor", "base", "cloaks used", "public identities", "clean pictures",
                           "cloaked pictures", "training", "head acc. clean", "head acc. cloaked",
                           "protected pictures read", "seconds"], rows)


def detection_table(detection: Sequence[Record]) -> str:
    rows = []
    for r in sorted(detection, key=lambda r: (r.labels["detector"], r.labels["train_cloak"],
                                              r.labels["cross_cloak"], r.labels["test_cloak"])):
        m, lab = r.metrics, r.labels
        rows.append([lab["detector"], lab["detector_type"], lab["train_cloak"], lab["test_cloak"],
                     "yes" if lab["cross_cloak"] else "no", num(m["precision"], 3), num(m["recall"], 3),
                     num(m["roc_auc"], 3), num(m["tpr_at_1pct_fpr"], 3),
                     f"{m['n_positive']} / {m['n_negative']}"])
    return markdown_table(["detector", "type", "trained on", "tested on", "cross-cloak", "precision",
                           "recall", "ROC AUC", "TPR @ 1 % FPR", "cloaked / clean test pictures"], rows)


def timetravel_table(records: Sequence[Record], timetravel: Sequence[Record]) -> str:
    """Protection after switching cloaks (time-travel records) beside each cloak alone (``records``)."""
    main = {(r.labels["cloak"], r.labels["extractor"], r.labels["classifier"]): r.metrics for r in _unique(records)}
    rows = []
    for r in sorted(timetravel, key=lambda r: (r.settings["old_cloak"], r.settings["new_cloak"],
                                                r.labels["classifier"], r.labels["extractor"])):
        s, m, lab = r.settings, r.metrics, r.labels
        old = main.get((s["old_cloak"], lab["extractor"], lab["classifier"]))
        new = main.get((s["new_cloak"], lab["extractor"], lab["classifier"]))
        rel = _relation(r, s["old_cloak"], s.get("old_cloak_spec"))[1]
        rows.append([f"{s['old_cloak']} -> {s['new_cloak']}", lab["extractor"], lab["classifier"], rel,
                     prot(old) if old else "n/a", prot(new) if new else "n/a", prot(m),
                     num(m.get("clean_accuracy")), f"{s.get('n_old')} / {s.get('n_new')}"])
    return markdown_table(["switch", "extractor", "classifier", "relation to the old cloak",
                           "protection, old cloak only", "protection, new cloak only",
                           "protection after the switch", "clean accuracy", "pictures old / new"], rows)


def combination_table(combine: Sequence[Record]) -> str:
    rows = []
    order = {"accurate": 0, "robust": 1, "top2": 2, "threshold": 3}
    for r in sorted((r for r in combine if not r.labels["sweep"]),
                    key=lambda r: (r.labels["cloak"], r.labels["extractor"], order.get(r.labels["method"], 9))):
        m, method = r.metrics, r.labels["method"]
        how = {"accurate": "accurate model alone", "robust": "robust model alone",
               "top2": "top-2 (either model right)",
               "threshold": (f"threshold at quantile {m.get('quantile')} of held-out public NN distances"
                             f" (t = {num(m.get('threshold'), 3)})")}.get(method, method)
        rows.append([r.labels["cloak"], r.settings["accurate"], r.settings["robust"], how, prot(m),
                     num(m.get("clean_accuracy")),
                     num(m.get("fallback_rate_protected")) + " / " + num(m.get("fallback_rate_clean"))
                     if method == "threshold" else ""])
    return markdown_table(["cloak", "accurate", "robust", "combination", "protection (95 % CI)",
                           "clean accuracy", "robust fallback: protected / clean"], rows)


def adaptive_sections(records: Sequence[Record], *, finetune: Sequence[Record] = (),
                      robust_meta: Sequence[dict[str, Any]] = (), detection: Sequence[Record] = (),
                      timetravel: Sequence[Record] = (), combine: Sequence[Record] = (),
                      figures: str = "figures") -> list[str]:
    """Markdown sections (a list of strings, ready for ``write_report(extra_sections=...)``)."""
    all_main = _unique(list(records) + list(finetune))
    out = ["## The adaptive trainer", "",
           "Oblivious trainers wait for new models; the adaptive trainer has the cloaking tool, cloaks "
           "the *public* identities' pictures itself, and trains a robust extractor (type `robust`) and "
           "a detector of cloaked pictures. Protected users' pictures are never used for either.", ""]
    if all_main:
        out += ["### Oblivious vs adaptive protection per cloak", "",
                "Relation: *targeted* = the cloak was optimised against this extractor; *oblivious-past / "
                "oblivious-future* = released before / after the cloak (by `release_date`); *adaptive* = a "
                "robust extractor fine-tuned on public pictures cloaked by the listed cloaks. "
                "`finetune` = the end-to-end classifier (extractor + linear head fine-tuned on the "
                "scraped set); `finetune_adaptive` = the same with the public identities' self-cloaked "
                "pictures added.", "", oblivious_vs_adaptive(all_main), ""]
    if any(r.labels["classifier"] in ("finetune", "finetune_adaptive") for r in all_main):
        out += ["### End-to-end training: oblivious vs adaptive", "",
                "FaceCure's `eval_e2e.py`: `finetune` fine-tunes the extractor and a linear head on the "
                "scraped training set; `finetune_adaptive` (`--robust`) adds the public identities' "
                "pictures cloaked by the trainer itself (never a protected user's). Beside them, the "
                "robust extractors (fine-tuned on the same kind of pictures) with frozen features.", "",
                end_to_end_table(all_main), ""]
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


