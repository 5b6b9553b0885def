"""Snakemake script: adaptive end-to-end classifier (training set + public self-cloaked pictures)."""
from cloakbench.adaptive.finetune import run_finetune_evaluate
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    p, wc, i = snakemake.params, snakemake.wildcards, snakemake.input
    run_finetune_evaluate(scrape=i.scrape, out=snakemake.output[0], cloak=wc.cloak, extractor=wc.extractor,
                          extractor_spec=p.extractor_spec, checkpoint=i.get(wc.extractor), cloak_spec=p.cloak_spec,
                          train=p.train, evaluate_cfg=p.evaluate, scrape_cfg=p.scrape, dataset_cfg=p.dataset,
                          seed=p.seed, device=p.device, adaptive_cloaks=p.adaptive_cloaks, shards=list(i.shards),
                          manifest=i.manifest, roles=i.roles, images=i.images)
