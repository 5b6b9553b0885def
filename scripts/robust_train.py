"""Snakemake script: robust training of one `robust` extractor on public clean + self-cloaked pictures."""
from cloakbench.adaptive.robust import run_robust_train
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    p, wc, i, o = snakemake.params, snakemake.wildcards, snakemake.input, snakemake.output
    run_robust_train(name=wc.extractor, spec=p.spec, base=p.base, base_spec=p.base_spec,
                     base_checkpoint=i.get("base_checkpoint"), cloaks=p.cloaks, train=p.train, manifest=i.manifest,
                     roles=i.roles, images=i.images, shards=list(i.shards), checkpoint=o.checkpoint, meta=o.meta,
                     reads=o.reads, seed=p.seed, device=p.device)
