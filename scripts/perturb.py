"""Snakemake script: apply one cloak to one shard."""
from pathlib import Path

import pandas as pd

from cloakbench.extractors.registry import extractor_loader
from cloakbench.perturb import perturb_shard
from cloakbench.workflow import log_to, resolve_device

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    p, wc = snakemake.params, snakemake.wildcards
    device = resolve_device(p.device)
    checkpoints = {k: v for k, v in snakemake.input.items() if k not in ("manifest", "roles", "images")}
    perturb_shard(pd.read_parquet(snakemake.input.manifest), pd.read_parquet(snakemake.input.roles),
                  Path(snakemake.input.images).parent, subset=wc.subset, shard=int(wc.shard),
                  shards=p.shards, cloak_name=wc.cloak, cloak_spec=p.cloak_spec,
                  load_extractor=extractor_loader(p.extractors, checkpoints, device),
                  out_dir=snakemake.output[0], seed=p.seed, batch_size=p.batch_size, device=device)
