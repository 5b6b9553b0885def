"""The report: every record -> ``summary.parquet``, ``report.md`` and figures.

:func:`run_report` is rule ``report``'s entry point; :func:`write_report` renders the main
part from the evaluation records, :mod:`.adaptive` the adaptive trainer's sections. The
report's numbers come only from the records (no number is typed anywhere).
"""

from __future__ import annotations

import html
import json
import logging
import re
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
               n_shards: int, examples: int, tables_dir: str | Path | None = None) -> pd.DataFrame:
    """Rule ``report``: every record file -> ``report`` (``report.md``; ``summary.parquet`` and the
    main figures beside it) and the adaptive figures ``detection_roc`` and ``combinations``.

    ``shards``: the ``protected`` shard folders of ``cloaks``, cloak by cloak, ``n_shards`` each;
    ``card``: the dataset card's JSON, if one was made (a list of zero or one file).
    ``tables_dir``: also write every table of the report as its own HTML file there (the
    Snakemake HTML report's tables, see :func:`write_html_tables`).
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
    summary = write_report(evaluation + ft, Path(report).parent, cloak_figures=figures, example_rows=rows,
                           extra_sections=sections)
    if tables_dir is not None:
        write_html_tables(Path(report).read_text(), tables_dir)
    return summary


def _slug(text: str, limit: int = 60) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if len(slug) > limit:  # cut at a word boundary
        slug = slug[:limit].rsplit("-", 1)[0]
    return slug or "section"


#: the Snakemake report's category of each top-level (##) section of report.md, by heading start
CATEGORIES = (("timeline", "protection"), ("protection", "protection"), ("cloak budgets", "cloaks"),
              ("transfer", "cloaks"), ("the adaptive trainer", "adaptive"), ("dataset", "dataset"))


def section_tables(markdown: str) -> list[tuple[str, str, str]]:
    """Every section of the report (a ``##`` or ``###`` heading up to the next) that holds a
    table, as ``(category, name, markdown)``; ``name`` = position + the heading's slug, so the
    files sort in the report's order; images are left out (they are report items of their own)."""
    sections: list[tuple[str, str, list[str]]] = []
    category, heading, lines = "report", "", []
    for line in markdown.splitlines():
        m = re.match(r"^(#{2,3})\s+(.*)$", line)
        if m:
            sections.append((category, heading, lines))
            heading, lines = m.group(2).strip(), [line]
            if len(m.group(1)) == 2:
                low = heading.lower()
                category = next((c for start, c in CATEGORIES if low.startswith(start)), _slug(heading))
        elif not line.startswith("!["):
            lines.append(line)
    sections.append((category, heading, lines))
    out = []
    for category, heading, lines in sections:
        if heading and any(re.match(r"^\|\s*:?-{3,}", ln) for ln in lines):
            out.append((category, f"{len(out) + 1:02d}-{_slug(heading)}", "\n".join(lines)))
    return out


_HTML_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; font-size: 14px; margin: 1em; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }}
th, td {{ border: 1px solid #bbb; padding: 3px 8px; text-align: left; }}
th {{ background: #eee; }}
</style></head>
<body>
{body}
</body></html>
"""


def write_html_tables(markdown: str, tables_dir: str | Path) -> list[Path]:
    """One standalone HTML file per table section of ``markdown`` (the report) in
    ``tables_dir``, named ``<category>__<name>.html`` (see :func:`section_tables`)."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tables_dir = Path(tables_dir)
    tables_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for category, name, text in section_tables(markdown):
        title = text.splitlines()[0].lstrip("#").strip()
        path = tables_dir / f"{category}__{name}.html"
        write_text(_HTML_PAGE.format(title=html.escape(title), body=md.render(text)), path)
        written.append(path)
    log.info("report: %d tables -> %s", len(written), tables_dir)
    return written


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
