# evaluate: one record per (cloak, extractor, classifier), written per (cloak, extractor).
rule evaluate:
    input:
        scrape="results/scrape/{cloak}/scrape.parquet",
        embeddings=lambda wc: {s: f"results/embeddings/{wc.extractor}/{s}.parquet"
                               for s in PLAN.imagesets(wc.cloak)}.values(),
    output:
        "results/records/{cloak}/{extractor}.json",
    params:
        imagesets=lambda wc: PLAN.imagesets(wc.cloak),
        extractor_info=lambda wc: PLAN.extractor_info(wc.extractor),
        cloak_spec=lambda wc: PLAN.cloak_spec(wc.cloak),
        evaluate=PLAN.plain("evaluate"),
        scrape=PLAN.plain("scrape"),
        dataset=PLAN.plain("dataset"),
        seed=PLAN["seed"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        "logs/evaluate/{cloak}/{extractor}.log",
    script:
        "../scripts/evaluate.py"
