"""Snakemake script: assemble the scraped training set of one cloak."""
from pathlib import Path

import pandas as pd

from cloakbench.data.scrape import scrape
from cloakbench.perturb import collect_shards
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    s, cloak = snakemake.params.scrape, snakemake.wildcards.cloak
    Path(snakemake.output.images).mkdir(parents=True, exist_ok=True)
    cloaked = collect_shards(list(snakemake.input.shards)) if cloak != "none" else None
    scrape(pd.read_parquet(snakemake.input.manifest), pd.read_parquet(snakemake.input.roles),
           Path(snakemake.input.images).parent, cloaked, snakemake.output.table,
           snakemake.output.images, cloak=cloak, protected_fraction=s["protected_fraction"],
           jpeg_quality=s["jpeg_quality"], resize=s["resize"], seed=snakemake.params.seed)
