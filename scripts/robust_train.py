"""Snakemake script: robust training of one `robust` extractor on public clean + self-cloaked pictures."""
from pathlib import Path

import pandas as pd

from cloakbench.adaptive.robust import (identity_of_path, protected_reads, robust_finetune,
                                        robust_training_pairs, save_robust)
from cloakbench.errors import DataError
from cloakbench.extractors.registry import build_extractor
from cloakbench.perturb import collect_shards
from cloakbench.workflow import log_to, resolve_device

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads) as log:
    p, wc = snakemake.params, snakemake.wildcards
    device = resolve_device(p.device)
    manifest = pd.read_parquet(snakemake.input.manifest)
    roles = pd.read_parquet(snakemake.input.roles)
    dataset_dir = Path(snakemake.input.images).parent
    shards = list(snakemake.input.shards)
    n = len(shards) // len(p.cloaks)
    cloaked = {c: collect_shards(shards[i * n:(i + 1) * n]) for i, c in enumerate(p.cloaks)}
    pairs = robust_training_pairs(manifest, roles, dataset_dir, cloaked)
    protected = sorted(roles.loc[roles["role"] == "protected", "identity"])
    base = build_extractor(p.base, p.base_spec, checkpoint=dict(snakemake.input.items()).get("base_checkpoint"),
                           device=device)
    result = robust_finetune(base, pairs.clean, pairs.cloaked, seed=p.seed, device=device,
                             settings=p.train, forbidden_identities=protected, cloak_of=pairs.cloak_of)
    leaked = protected_reads(result.reads, protected)
    role_of = dict(zip(roles["identity"], roles["role"]))
    save_robust(result, snakemake.output.checkpoint, reads_path=snakemake.output.reads,
                read_roles=[role_of.get(identity_of_path(r), "?") for r in result.reads],
                meta_extra={"name": wc.extractor, "base": p.base, "base_spec": p.base_spec,
                            "cloaks": list(p.cloaks), "protected_users": protected,
                            "protected_reads": len(leaked),
                            "release_date": p.spec.get("release_date")})
    if leaked:  # cannot happen through robust_training_pairs; the manifest proves it per run
        raise DataError(f"robust training of {wc.extractor} read {len(leaked)} protected pictures: {leaked[:3]}")
    log.info("%s: %d reads, none of the %d protected users' pictures", wc.extractor, len(result.reads),
             len(protected))
