"""Snakemake script: train one extractor generation on the non-protected identities."""
from cloakbench.extractors.training import run_train_extractor
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    i = snakemake.input
    run_train_extractor(name=snakemake.wildcards.extractor, spec=snakemake.params.spec, manifest=i.manifest,
                        roles=i.roles, images=i.images, checkpoint=snakemake.output.checkpoint,
                        seed=snakemake.params.seed, device=snakemake.params.device)
