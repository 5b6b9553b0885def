"""Snakemake script: evaluate every classifier for one (cloak, extractor)."""
from cloakbench.evaluate import run_evaluate
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    wc, p = snakemake.wildcards, snakemake.params
    run_evaluate(scrape=snakemake.input.scrape, embeddings=list(snakemake.input.embeddings), imagesets=p.imagesets,
                 out=snakemake.output[0], cloak=wc.cloak, extractor=wc.extractor, extractor_info=p.extractor_info,
                 cloak_spec=p.cloak_spec, evaluate_cfg=p.evaluate, scrape_cfg=p.scrape, dataset_cfg=p.dataset,
                 seed=p.seed)
