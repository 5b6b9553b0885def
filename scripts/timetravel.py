"""Snakemake script: time travel (old cloak, then new cloak) for one extractor, every classifier."""
from cloakbench.adaptive.timetravel import run_timetravel
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    p, wc = snakemake.params, snakemake.wildcards
    run_timetravel(old=snakemake.input.old, new=snakemake.input.new, embeddings=list(snakemake.input.embeddings),
                   imagesets=p.imagesets, out=snakemake.output[0], old_cloak=wc.old, new_cloak=wc.new,
                   switch_fraction=p.switch_fraction, extractor=wc.extractor, extractor_info=p.extractor_info,
                   old_spec=p.old_spec, new_spec=p.new_spec, evaluate_cfg=p.evaluate, scrape_cfg=p.scrape,
                   dataset_cfg=p.dataset, seed=p.seed)
