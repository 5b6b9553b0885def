"""Snakemake script: train one detector on one cloak's public pairs; test it on every test cloak."""
from cloakbench.adaptive.detection import run_detect
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    p, wc, i = snakemake.params, snakemake.wildcards, snakemake.input
    run_detect(manifest=i.manifest, roles=i.roles, images=i.images, shards=list(i.shards), scrapes=list(i.scrapes),
               out=snakemake.output[0], detector=wc.detector, settings=p.detector, train_cloak=wc.train_cloak,
               test_cloaks=p.test_cloaks, extractor_spec=p.extractor_spec, checkpoints=dict(i.items()),
               seed=p.seed, device=p.device)
