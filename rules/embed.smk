# embed: embeddings per (extractor, image set), computed once and reused by every evaluation.
rule embed:
    input:
        unpack(lambda wc: checkpoints_for([wc.extractor])),
        table=lambda wc: MANIFEST if wc.imageset == "clean"
        else f"results/scrape/{wc.imageset.removeprefix('scraped-')}/scrape.parquet",
        images=lambda wc: f"{DATASET_DIR}/images" if wc.imageset == "clean"
        else f"results/scrape/{wc.imageset.removeprefix('scraped-')}/images",
    output:
        "results/embeddings/{extractor}/{imageset}.parquet",
    wildcard_constraints:
        imageset=r"clean|scraped-[A-Za-z0-9_]+",
    params:
        spec=lambda wc: PLAN.plain("extractors", wc.extractor),
        batch_size=PLAN["evaluate"]["batch_size"],
        device=PLAN["device"],
    # One thread: most embed jobs are a few seconds of work after a 2-s start (torch), so on a
    # small machine two of them side by side overlap their start-ups; a GPU does the work anyway.
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=GPU,
    log:
        "logs/embed/{extractor}/{imageset}.log",
    script:
        "../scripts/embed.py"
