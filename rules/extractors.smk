# train_extractor: extractors trained in the pipeline on non-protected identities only.
rule train_extractor:
    input:
        manifest=MANIFEST,
        roles=ROLES,
        images=f"{DATASET_DIR}/images",
    output:
        checkpoint="results/extractors/{extractor}.pt",
        meta="results/extractors/{extractor}.json",
    params:
        spec=lambda wc: PLAN.plain("extractors", wc.extractor),
        seed=PLAN["seed"],
        device=PLAN["device"],
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=GPU,
    log:
        "logs/train_extractor/{extractor}.log",
    script:
        "../scripts/train_extractor.py"
