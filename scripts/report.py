"""Snakemake script: render every record into the report."""
from pathlib import Path

import pandas as pd

from cloakbench.perturb import collect_shards
import json

from cloakbench.report import dataset_card_section, load_records, write_report
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    p = snakemake.params
    shards = list(snakemake.input.shards)
    figures = {c: collect_shards(shards[i * p.shards:(i + 1) * p.shards]) for i, c in enumerate(p.cloaks)}
    manifest = pd.read_parquet(snakemake.input.manifest).set_index("image_id")
    root = Path(snakemake.input.manifest).parent
    # The same pictures (first by image_id among those every cloak covered) under every cloak.
    paths = {c: dict(zip(f["image_id"], f["path"])) for c, f in figures.items()}
    common = sorted(set.intersection(*map(set, paths.values()))) if paths else []
    rows = [(str(root / manifest.loc[i, "path"]), {c: paths[c][i] for c in paths})
            for i in common[:p.examples]]
    sections = []
    if snakemake.input.card:
        card = json.loads(Path(snakemake.input.card[0]).read_text())
        sections.append(dataset_card_section(card, "figures/contact_sheet.png"))
    write_report(load_records(snakemake.input.records), Path(snakemake.output.report).parent,
                 cloak_figures=figures, example_rows=rows, extra_sections=sections)
