"""Snakemake script: assemble the scraped training set of one cloak."""
from cloakbench.data.scrape import run_scrape
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    i = snakemake.input
    run_scrape(manifest=i.manifest, roles=i.roles, images=i.images, shards=list(i.shards),
               table=snakemake.output.table, images_out=snakemake.output.images, cloak=snakemake.wildcards.cloak,
               scrape_cfg=snakemake.params.scrape, seed=snakemake.params.seed)
