"""Snakemake script: render every record into the report."""
from cloakbench.report.render import run_report
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    p, i, o = snakemake.params, snakemake.input, snakemake.output
    run_report(records=list(i.records), shards=list(i.shards), manifest=i.manifest, card=list(i.card),
               finetune=list(i.adaptive_finetune), robust_meta=list(i.adaptive_robust_meta),
               detection=list(i.adaptive_detection), timetravel=list(i.adaptive_timetravel),
               combine=list(i.adaptive_combine), report=o.report, detection_roc=o.detection_roc,
               combinations=o.combinations, cloaks=p.cloaks, n_shards=p.shards, examples=p.examples,
               tables_dir=o.tables)
