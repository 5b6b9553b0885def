"""Snakemake script: choose protected users and public identities."""
import pandas as pd

from cloakbench.data.roles import select_users
from cloakbench.io import write_parquet
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    u = snakemake.params.users
    roles = select_users(pd.read_parquet(snakemake.input.manifest), protected=u["protected"],
                         n_protected=u["n_protected"], public_fraction=u["public_fraction"],
                         seed=snakemake.params.seed)
    write_parquet(roles, snakemake.output.roles)
