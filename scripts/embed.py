"""Snakemake script: embed one image set with one extractor."""
from cloakbench.embed import run_embed
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    wc, p = snakemake.wildcards, snakemake.params
    run_embed(name=wc.extractor, spec=p.spec, checkpoint=snakemake.input.get(wc.extractor),  # pipeline-trained only
              table=snakemake.input.table, images=snakemake.input.images, imageset=wc.imageset,
              out=snakemake.output[0], batch_size=p.batch_size, device=p.device)
