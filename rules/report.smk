# report: every record -> summary.parquet, report.md, figures and one HTML file per table.
# The report() flags put the figures and tables into `snakemake --report report.html` (one
# self-contained file; captions in report/captions/, categories = the report's parts).
report: "../report/workflow.rst"


rule report:
    input:
        records=expand("results/records/{cloak}/{extractor}.json",
                       cloak=CLOAKS_AND_BASELINE, extractor=EXTRACTORS),
        shards=[d for c in CLOAKS for d in shard_dirs(c)],
        manifest=MANIFEST,
        card=["results/dataset/card.json"] if PLAN.card_extractors else [],
        adaptive_finetune=ADAPTIVE_TARGETS["finetune"],
        adaptive_robust_meta=ADAPTIVE_TARGETS["robust_meta"],
        adaptive_detection=ADAPTIVE_TARGETS["detection"],
        adaptive_timetravel=ADAPTIVE_TARGETS["timetravel"],
        adaptive_combine=ADAPTIVE_TARGETS["combine"],
    output:
        report="results/report.md",
        summary="results/summary.parquet",
        heatmap=report("results/figures/protection_heatmap.png", caption="../report/captions/heatmap.rst",
                       category="protection", labels={"figure": "protection heatmap"}),
        examples=report("results/figures/examples.png", caption="../report/captions/examples.rst",
                        category="cloaks", labels={"figure": "clean vs cloaked examples"}),
        detection_roc=report("results/figures/detection_roc.png", caption="../report/captions/detection_roc.rst",
                             category="adaptive", labels={"figure": "detection ROC"}),
        combinations=report("results/figures/combinations.png", caption="../report/captions/combinations.rst",
                            category="adaptive", labels={"figure": "combinations"}),
        tables=report(directory("results/report/tables"), patterns=["{category}__{table}.html"],
                      caption="../report/captions/tables.rst", category="{category}",
                      labels={"table": "{table}"}),
    params:
        cloaks=CLOAKS,
        shards=len(SHARDS),
        examples=PLAN["report"]["examples"],
        seed=PLAN["seed"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        "logs/report.log",
    script:
        "../scripts/report.py"
