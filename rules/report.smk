# report: every record -> summary.parquet, report.md and figures.
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
        heatmap="results/figures/protection_heatmap.png",
        examples="results/figures/examples.png",
        detection_roc="results/figures/detection_roc.png",
        combinations="results/figures/combinations.png",
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
