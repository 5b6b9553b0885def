"""Snakemake script: build the offline demo dataset."""
from cloakbench.demo import make_demo_dataset
from cloakbench.workflow import log_to

# The generator renders in a "spawn" process pool, whose workers re-import this file as
# __mp_main__: the guard keeps them from running the rule body again.
if __name__ == "__main__":
    with log_to(snakemake.log[0], snakemake.rule, snakemake.threads) as log:
        card = make_demo_dataset(snakemake.output[0], n_identities=snakemake.params.identities,
                                 n_pictures=snakemake.params.pictures, seed=snakemake.params.seed,
                                 workers=snakemake.threads)
        log.info("demo dataset written to %s", snakemake.output[0])
