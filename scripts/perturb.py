"""Snakemake script: apply one cloak to one shard."""
from cloakbench.perturb import run_perturb
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    p, wc, i = snakemake.params, snakemake.wildcards, snakemake.input
    run_perturb(manifest=i.manifest, roles=i.roles, images=i.images, checkpoints=dict(i.items()),
                subset=wc.subset, shard=int(wc.shard), shards=p.shards, cloak=wc.cloak, cloak_spec=p.cloak_spec,
                extractors=p.extractors, out_dir=snakemake.output[0], seed=p.seed, batch_size=p.batch_size,
                device=p.device)
