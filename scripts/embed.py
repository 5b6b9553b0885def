"""Snakemake script: embed one image set with one extractor."""
from pathlib import Path

import pandas as pd

from cloakbench.embed import embed_table
from cloakbench.extractors.registry import build_extractor
from cloakbench.workflow import log_to, resolve_device

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    wc, p = snakemake.wildcards, snakemake.params
    device = resolve_device(p.device)
    table = pd.read_parquet(snakemake.input.table)
    if wc.imageset == "clean":
        root = Path(snakemake.input.images).parent
        table = table.assign(path=[str(root / q) for q in table["path"]])
    else:
        table = table[table["imageset"] == wc.imageset]
    checkpoint = dict(snakemake.input.items()).get(wc.extractor)  # only for pipeline-trained models
    model = build_extractor(wc.extractor, p.spec, checkpoint=checkpoint, device=device)
    embed_table(model, table, snakemake.output[0], batch_size=p.batch_size, device=device)
