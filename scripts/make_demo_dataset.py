"""Snakemake script: build the offline demo dataset."""
from cloakbench.demo import make_demo_dataset
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule) as log:
    card = make_demo_dataset(snakemake.output[0], n_identities=snakemake.params.identities,
                             n_pictures=snakemake.params.pictures, seed=snakemake.params.seed)
    log.info("demo dataset written to %s", snakemake.output[0])
