"""Snakemake script: accuracy-preserving combinations of an accurate and a robust extractor (1-NN)."""
from cloakbench.adaptive.combine import run_combine
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    p, wc = snakemake.params, snakemake.wildcards
    run_combine(scrape=snakemake.input.scrape, embeddings=list(snakemake.input.embeddings), imagesets=p.imagesets,
                out=snakemake.output[0], cloak=wc.cloak, accurate=wc.accurate, robust=wc.robust,
                quantile=p.quantile, sweep=p.sweep, bootstrap=p.bootstrap, scrape_cfg=p.scrape, seed=p.seed)
