# scrape: the training set a recogniser's trainer would collect (cloak "none" = baseline).
rule scrape:
    input:
        manifest=MANIFEST,
        roles=ROLES,
        images=f"{DATASET_DIR}/images",
        shards=lambda wc: shard_dirs(wc.cloak) if wc.cloak != "none" else [],
    output:
        table="results/scrape/{cloak}/scrape.parquet",
        images=directory("results/scrape/{cloak}/images"),
    params:
        scrape=PLAN.scrape_table_settings(),
        seed=PLAN["seed"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        "logs/scrape/{cloak}.log",
    script:
        "../scripts/scrape.py"
