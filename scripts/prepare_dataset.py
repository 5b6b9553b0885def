"""Snakemake script: align faces, write manifest and rejects."""
from cloakbench.data.prepare import run_prepare_dataset
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    p = snakemake.params
    run_prepare_dataset(root=p.root, manifest=snakemake.output.manifest, dataset_cfg=p.dataset, seed=p.seed)
