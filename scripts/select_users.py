"""Snakemake script: choose protected users and public identities."""
from cloakbench.data.roles import run_select_users
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    run_select_users(manifest=snakemake.input.manifest, out=snakemake.output.roles, users=snakemake.params.users,
                     seed=snakemake.params.seed)
