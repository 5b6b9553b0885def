"""Snakemake script: align one shard of the dataset's pictures (dataset.shards > 1)."""
from cloakbench.data.prepare import run_align_shard
from cloakbench.workflow import log_to

# The workers of the pool are spawned processes, which import this file again (as
# __mp_main__): the guard keeps them from running the job a second time.
if __name__ == "__main__":
    with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
        p = snakemake.params
        run_align_shard(root=p.root, out_dir=snakemake.output[0], dataset_cfg=p.dataset,
                        shard=int(snakemake.wildcards.shard), shards=p.shards, workers=snakemake.threads)
