"""Snakemake script: align faces (or merge align_shard's shards), write manifest and rejects."""
from cloakbench.data.prepare import run_prepare_dataset
from cloakbench.workflow import log_to

# The workers of the pool are spawned processes, which import this file again (as
# __mp_main__): the guard keeps them from running the job a second time.
if __name__ == "__main__":
    with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
        p = snakemake.params
        run_prepare_dataset(root=p.root, manifest=snakemake.output.manifest, dataset_cfg=p.dataset, seed=p.seed,
                            workers=snakemake.threads, shard_dirs=snakemake.input.shards)
