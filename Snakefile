# cloakbench: does a face cloak still protect once scraped, against future recognisers?
# Stages: make_demo_dataset -> prepare_dataset -> select_users -> [train_extractor] -> perturb
#         -> scrape -> embed -> evaluate -> report.  See README.md.

from snakemake.utils import min_version

min_version("9.0")


# A config given on the command line (--configfile, also through a profile or a DVC stage) is
# the whole configuration (plus the schema's defaults): the demo config is read only when none
# is given. (A `configfile:` directive would be deep-merged UNDER the user's file, adding the
# demo's extractors, cloaks and adaptive section to every config.) Jobs that Snakemake spawns
# get the same --configfiles, so they read the same configuration.
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/demo.smk"
include: "rules/dataset.smk"
include: "rules/extractors.smk"
include: "rules/perturb.smk"
include: "rules/scrape.smk"
include: "rules/embed.smk"
include: "rules/dataset_card.smk"
include: "rules/evaluate.smk"
include: "rules/adaptive.smk"
include: "rules/report.smk"


rule all:
    input:
        "results/report.md",
        "results/summary.parquet",
        "results/report/tables",  # one HTML file per table, for `snakemake --report`
        rules.adaptive.input,  # the adaptive trainer's records (rules/adaptive.smk)
    default_target: True
