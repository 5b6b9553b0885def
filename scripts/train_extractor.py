"""Snakemake script: train one extractor generation on the non-protected identities."""
from pathlib import Path

import pandas as pd

from cloakbench.extractors.training import train_extractor
from cloakbench.workflow import log_to, resolve_device

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads) as log:
    manifest = pd.read_parquet(snakemake.input.manifest)
    roles = pd.read_parquet(snakemake.input.roles)
    allowed = set(roles.loc[roles["role"] != "protected", "identity"])
    train = manifest[(manifest["split"] == "train") & manifest["identity"].isin(allowed)]
    log.info("training %s on %d pictures of %d non-protected identities", snakemake.wildcards.extractor,
             len(train), train["identity"].nunique())
    root = Path(snakemake.input.images).parent
    train_extractor(snakemake.wildcards.extractor, snakemake.params.spec,
                    [root / p for p in train["path"]], list(train["identity"]),
                    Path(snakemake.output.checkpoint), seed=snakemake.params.seed,
                    device=resolve_device(snakemake.params.device))
