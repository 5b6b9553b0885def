"""Snakemake script: identification accuracy and merge rates of the real recognisers on the dataset."""
from cloakbench.card import run_dataset_card
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    p = snakemake.params
    run_dataset_card(manifest=snakemake.input.manifest, embeddings=list(snakemake.input.embeddings),
                     extractors=p.extractors, types=p.types, root=p.root, card=snakemake.output.card,
                     sheet=snakemake.output.sheet, seed=p.seed)
