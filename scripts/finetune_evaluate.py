"""Snakemake script: end-to-end classifier (extractor + linear head) for one (cloak, extractor)."""
from cloakbench.adaptive.finetune import run_finetune_evaluate
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    p, wc = snakemake.params, snakemake.wildcards
    run_finetune_evaluate(scrape=snakemake.input.scrape, out=snakemake.output[0], cloak=wc.cloak,
                          extractor=wc.extractor, extractor_spec=p.extractor_spec,
                          checkpoint=snakemake.input.get(wc.extractor), cloak_spec=p.cloak_spec, train=p.train,
                          evaluate_cfg=p.evaluate, scrape_cfg=p.scrape, dataset_cfg=p.dataset, seed=p.seed,
                          device=p.device)
