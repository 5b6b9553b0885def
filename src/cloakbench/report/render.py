"""The report: every record -> ``summary.parquet``, ``report.md`` and figures.

:func:`run_report` is rule ``report``'s entry point; :func:`write_report` renders the main
part from the evaluation records, :mod:`.adaptive` the adaptive trainer's sections. The
report's numbers come only from the records (no number is typed anywhere).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..data.scrape import collect_shards
from ..io import write_parquet, write_text
from ..records import Record, read_records
from .adaptive import adaptive_sections
from .figures import combinations_scatter_png, detection_roc_png, examples_grid, heatmap
from .paper import paper_section
from .tables import (cloak_budget_table, dataset_card_section, protection_tables, summarise, timeline_table,
                     transfer_table)

log = logging.getLogger(__name__)


def robust_meta_files(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Read the robust extractors' ``.json`` metadata (what ``robust_table`` renders)."""
    return [json.loads(Path(p).read_text()) for p in paths]


def example_rows(manifest: pd.DataFrame, dataset_dir: str | Path, figures: dict[str, pd.DataFrame],
                 n: int) -> list[tuple[str, dict[str, str]]]:
    """The same pictures (the first ``n`` by image_id among those every cloak covered) under every
    cloak: [(clean path, {cloak: cloaked path})]. ``manifest`` is indexed by image_id."""
    paths = {c: dict(zip(f["image_id"], f["path"])) for c, f in figures.items()}
    common = sorted(set.intersection(*map(set, paths.values()))) if paths else []
    return [(str(Path(dataset_dir) / manifest.loc[k, "path"]), {c: paths[c][k] for c in paths}) for k in common[:n]]


def run_report(*, records: Sequence[str | Path], shards: Sequence[str | Path], manifest: str | Path,
               card: Sequence[str | Path], finetune: Sequence[str | Path], robust_meta: Sequence[str | Path],
               detection: Sequence[str | Path], timetravel: Sequence[str | Path], combine: Sequence[str | Path],
               report: str | Path, detection_roc: str | Path, combinations: str | Path, cloaks: Sequence[str],
               n_shards: int, examples: int) -> pd.DataFrame:
    """Rule ``report``: every record file -> ``report`` (``report.md``; ``summary.parquet`` and the
    main figures beside it) and the adaptive figures ``detection_roc`` and ``combinations``.

    ``shards``: the ``protected`` shard folders of ``cloaks``, cloak by cloak, ``n_shards`` each;
    ``card``: the dataset card's JSON, if one was made (a list of zero or one file).
    """
    shards = list(shards)
    figures = {c: collect_shards(shards[k * n_shards:(k + 1) * n_shards]) for k, c in enumerate(cloaks)}
    rows = example_rows(pd.read_parquet(manifest).set_index("image_id"), Path(manifest).parent, figures, examples)
    evaluation = read_records(records, kind="evaluation")
    ft = read_records(finetune, kind="evaluation")
    det, comb = read_records(detection, kind="detection"), read_records(combine, kind="combination")
    sections = adaptive_sections(evaluation, finetune=ft, robust_meta=robust_meta_files(robust_meta),
                                 detection=det, timetravel=read_records(timetravel, kind="timetravel"),
                                 combine=comb)
    detection_roc_png(det, detection_roc)
    combinations_scatter_png(comb, combinations)
    if card:
        sections.append(dataset_card_section(json.loads(Path(card[0]).read_text()), "figures/contact_sheet.png"))
    return write_report(evaluation + ft, Path(report).parent, cloak_figures=figures, example_rows=rows,
                        extra_sections=sections)


def write_report(records: Sequence[Record], out_dir: str | Path, *,
                 cloak_figures: dict[str, pd.DataFrame], example_rows: list[tuple[str, dict[str, str]]],
                 extra_sections: Sequence[str] = ()) -> pd.DataFrame:
    """``summary.parquet``, ``report.md`` and the main figures in ``out_dir`` from the evaluation
    ``records``; ``extra_sections`` (markdown) are appended to the report."""
    out_dir = Path(out_dir)
    summary = summarise(records)
    write_parquet(summary, out_dir / "summary.parquet")
    heatmap(summary, out_dir / "figures" / "protection_heatmap.png")
    examples_grid(example_rows, out_dir / "figures" / "examples.png")
    first = records[0].settings if records else {}
    lines = [
        "# cloakbench report",
        "",
        "Protection rate = 1 - accuracy of the trained recogniser on the protected users' *unperturbed* "
        "test pictures; clean accuracy is measured on the non-protected identities' test pictures. "
        "Cloak `none` is the uncloaked baseline. Extractors are ordered by release date.",
        "",
        f"- protocol: `{first.get('protocol', '?')}` (per_user: one training set and model per protected user, "
        "only that user cloaked, its protection read on its own model, clean accuracy = mean over the "
        "per-user models; joint: every protected user cloaked in one set); features: "
        f"`{first.get('features', '?')}`",
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
        paper_section(records),
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
