# evaluate: one record per (cloak, extractor, classifier), written per (cloak, extractor).
rule evaluate:
    input:
        scrape="results/scrape/{cloak}/scrape.parquet",
        embeddings=lambda wc: {s: f"results/embeddings/{wc.extractor}/{s}.parquet"
                               for s in imagesets_for(wc.cloak)}.values(),
    output:
        "results/records/{cloak}/{extractor}.json",
    params:
        imagesets=lambda wc: imagesets_for(wc.cloak),
        extractor_spec=lambda wc: config["extractors"][wc.extractor],
        cloak_spec=lambda wc: config["cloaks"].get(wc.cloak),
        evaluate=config["evaluate"],
        scrape=config["scrape"],
        dataset=config["dataset"],
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        "logs/evaluate/{cloak}/{extractor}.log",
    script:
        "../scripts/evaluate.py"
