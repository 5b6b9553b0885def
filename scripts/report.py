"""Snakemake script: render every record into the report."""
from pathlib import Path

import pandas as pd

from cloakbench.perturb import collect_shards
from cloakbench.report import load_records, write_report
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule):
    p = snakemake.params
    shards = list(snakemake.input.shards)
    figures = {c: collect_shards(shards[i * p.shards:(i + 1) * p.shards]) for i, c in enumerate(p.cloaks)}
    manifest = pd.read_parquet(snakemake.input.manifest).set_index("image_id")
    root = Path(snakemake.input.manifest).parent
    pairs = []
    for c, f in figures.items():
        for _, row in f.sort_values("image_id").head(p.examples).iterrows():
            pairs.append((c, str(root / manifest.loc[row.image_id, "path"]), row.path))
    write_report(load_records(snakemake.input.records), Path(snakemake.output.report).parent,
                 cloak_figures=figures, example_pairs=pairs)
