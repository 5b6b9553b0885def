"""The paper comparison: each headline cell of FaceCure beside this run's matching cell.

The reference values are the protection rates printed in FaceCure's README (Radiya-Dixit,
Hong, Carlini, Tramèr, "Data Poisoning Won't Save You From Facial Recognition", ICLR 2022;
github.com/ftramer/FaceCure, README.md, sections "Baseline evaluation with NN and linear
classifiers", "Defense evaluation with NN and linear classifiers", "Baseline evaluation with
end-to-end training" and "Defense evaluation with end-to-end training"). They are reference
values typed once in :data:`PAPER_CELLS`, never results: every number of this run's column
comes from a record.

FaceCure's protocol for every cell: FaceScrub, one attacking user (Adam_Sandler in the README's
commands) whose training pictures are all replaced by cloaked ones, classifiers on the
extractor's raw features (``eval.py``): in cloakbench terms ``scrape.protocol: per_user``,
``scrape.protected_fraction: 1``, ``evaluate.features: raw``. The Fawkes attack is Fawkes v1.0
(``protection.py -m high``); LowKey is the authors' attack at 112 px.

Matching a record to a cell, in this order (the section says which one matched):

1. ``model``: the record's extractor type (``extractor_info.type``) is the paper's model type;
2. ``name``: the extractor's name matches the cell's name pattern (for models cloakbench loads
   through a generic type, e.g. the Fawkes Keras extractors converted to ONNX);
3. ``analogue``: the extractor stands to the cloak in the cell's relation
   (:mod:`.relation`), e.g. the demo's in-pipeline CNNs in a cloak's ensemble stand for the
   Fawkes extractors.

and in every case the same cloak type (``cloak_spec.type``) and classifier. A cell without a
matching record says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from ..records import Record
from .relation import relation
from .tables import markdown_table, prot


@dataclass(frozen=True)
class PaperCell:
    """One headline number of the paper and how to find this run's counterpart."""
    key: str
    experiment: str           # the paper's wording
    cloak_types: tuple[str, ...]
    classifier: str           # cloakbench's classifier name (NN = knn1, end-to-end = finetune)
    protection: float         # the paper's protection rate (reference value)
    model_types: tuple[str, ...] = ()   # cloakbench extractor types of the paper's model
    name_pattern: str | None = None     # regex on the extractor name (case-insensitive)
    relations: tuple[str, ...] = ()     # analogue: the extractor's relation to the cloak


_FAWKES = ("fawkes_v10",)
_LOWKEY = ("lowkey",)
_V03_EXTRACTOR = r"fawkes.*(v0?3|low)|low_extract"
_V10_EXTRACTOR = r"fawkes.*v1"

# Protection rates as printed in FaceCure's README (see the module docstring for the source).
PAPER_CELLS: tuple[PaperCell, ...] = (
    PaperCell("baseline_nn_fawkes", "Baseline NN, Fawkes v0.3 extractor, Fawkes attack", _FAWKES, "knn1", 0.97,
              name_pattern=_V03_EXTRACTOR, relations=("targeted",)),
    PaperCell("baseline_nn_lowkey", "Baseline NN, Fawkes v0.3 extractor, LowKey attack", _LOWKEY, "knn1", 0.94,
              name_pattern=_V03_EXTRACTOR, relations=("targeted",)),
    PaperCell("oblivious_fawkes10_fawkes", "Oblivious NN, Fawkes v1.0 extractor, Fawkes attack", _FAWKES, "knn1",
              1.00, name_pattern=_V10_EXTRACTOR, relations=("targeted",)),
    PaperCell("oblivious_magface_fawkes", "Oblivious NN, MagFace, Fawkes attack", _FAWKES, "knn1", 0.00,
              model_types=("magface",), relations=("oblivious-future",)),
    PaperCell("oblivious_magface_lowkey", "Oblivious NN, MagFace, LowKey attack", _LOWKEY, "knn1", 1.00,
              model_types=("magface",), relations=("oblivious-future",)),
    PaperCell("oblivious_clip_lowkey", "Oblivious NN, CLIP, LowKey attack", _LOWKEY, "knn1", 0.24,
              model_types=("clip_vit",), relations=("oblivious-future",)),
    PaperCell("adaptive_nn_fawkes", "Adaptive NN (robust extractor), Fawkes attack", _FAWKES, "knn1", 0.03,
              relations=("adaptive",)),
    PaperCell("adaptive_nn_lowkey", "Adaptive NN (robust extractor), LowKey attack", _LOWKEY, "knn1", 0.03,
              relations=("adaptive",)),
    PaperCell("baseline_e2e_fawkes", "Baseline end-to-end, Fawkes v0.3 extractor, Fawkes attack", _FAWKES,
              "finetune", 0.88, name_pattern=_V03_EXTRACTOR, relations=("targeted",)),
    PaperCell("baseline_e2e_lowkey", "Baseline end-to-end, Fawkes v0.3 extractor, LowKey attack", _LOWKEY,
              "finetune", 0.97, name_pattern=_V03_EXTRACTOR, relations=("targeted",)),
    PaperCell("adaptive_e2e_fawkes", "Adaptive end-to-end, Fawkes attack", _FAWKES, "finetune_adaptive", 0.03,
              name_pattern=_V03_EXTRACTOR, relations=("targeted",)),
    PaperCell("adaptive_e2e_lowkey", "Adaptive end-to-end, LowKey attack", _LOWKEY, "finetune_adaptive", 0.03,
              name_pattern=_V03_EXTRACTOR, relations=("targeted",)),
)

PAPER_PROTOCOL = "per_user (one attacking user), raw features"


def _relation(r: Record) -> str:
    s = r.settings
    return relation(r.labels["extractor"], s.get("extractor_info"), s.get("cloak_spec")).value


def matches(cell: PaperCell, records: Sequence[Record]) -> tuple[str, list[Record]]:
    """(how they matched: ``model`` / ``name`` / ``analogue`` / ``none``, the matching records)."""
    pool = [r for r in records if r.kind == "evaluation" and r.labels.get("classifier") == cell.classifier
            and (r.settings.get("cloak_spec") or {}).get("type") in cell.cloak_types]
    by_model = [r for r in pool if (r.settings.get("extractor_info") or {}).get("type") in cell.model_types]
    if by_model:
        return "model", by_model
    if cell.name_pattern:
        by_name = [r for r in pool if re.search(cell.name_pattern, r.labels["extractor"], re.IGNORECASE)]
        if by_name:
            return "name", by_name
    analogue = [r for r in pool if _relation(r) in cell.relations]
    return ("analogue", analogue) if analogue else ("none", [])


def _protocol(r: Record) -> str:
    s = r.settings
    frac = (s.get("scrape") or {}).get("protected_fraction")
    return (f"{s.get('protocol', '?')}, {s.get('features', '?')} features"
            + (f", {frac:g} cloaked" if isinstance(frac, (int, float)) else ""))


def paper_section(records: Sequence[Record]) -> str:
    """Markdown: the paper's headline cells beside this run's matching cells."""
    rows = []
    for cell in PAPER_CELLS:
        how, found = matches(cell, records)
        if not found:
            rows.append([cell.experiment, f"{cell.protection:.2f}", "no matching experiment in this run", "-", "-"])
            continue
        found = sorted(found, key=lambda r: (r.labels["cloak"], r.labels["extractor"]))
        ours = "; ".join(f"{r.labels['cloak']}/{r.labels['extractor']}: {prot(r.metrics)}" for r in found)
        what = {"model": "same model", "name": "same model (by name)",
                "analogue": f"analogue ({', '.join(sorted({_relation(r) for r in found}))})"}[how]
        protocols = "; ".join(sorted({_protocol(r) for r in found}))
        rows.append([cell.experiment, f"{cell.protection:.2f}", ours, what, protocols])
    return "\n".join([
        "## Comparison with the paper (FaceCure)",
        "",
        "Protection rates printed in FaceCure's README (Radiya-Dixit et al., ICLR 2022; FaceScrub, "
        f"{PAPER_PROTOCOL}, Fawkes v1.0 `-m high`, LowKey at 112 px) beside this run's cell for the "
        "same cloak type and classifier. *Same model*: the record's extractor is the paper's model; "
        "*analogue*: an extractor in the same relation to the cloak stands in for it (e.g. the "
        "cloak's own ensemble for the Fawkes extractors), so the numbers are comparable in kind, "
        "not in value. The last column is this run's protocol (record settings).",
        "",
        markdown_table(["Paper experiment", "Paper", "This run (protection [95 % CI])", "Match", "This run's protocol"],
                       rows),
        "",
    ])
