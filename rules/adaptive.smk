# The adaptive trainer (src/cloakbench/adaptive/): robust extractors, end-to-end classifier,
# detection of cloaked pictures, time travel, accuracy-preserving combinations.
#
# Robust extractors are ordinary `extractors:` entries of `type: robust` (base, cloaks, train):
# rule robust_train makes their checkpoint results/extractors/<name>.pt (instead of
# train_extractor), and the standard embed -> evaluate rules do the rest, so every classifier
# is reported for them. Everything else is configured under `adaptive:`; the plan (ADAPTIVE,
# ROBUST, DETECTORS and ADAPTIVE_TARGETS in rules/common.smk) holds it checked and resolved.


ruleorder: robust_train > train_extractor


# robust_train: fine-tune a robust extractor on public clean + self-cloaked pictures (never a
# protected user's; the .reads.parquet manifest lists every picture opened).
rule robust_train:
    input:
        unpack(lambda wc: {"base_checkpoint": checkpoint_path(ROBUST[wc.extractor]["base"])}
               if ROBUST[wc.extractor]["base"] in PLAN.trained else {}),
        manifest=MANIFEST,
        roles=ROLES,
        images=f"{DATASET_DIR}/images",
        shards=lambda wc: [d for c in ROBUST[wc.extractor]["cloaks"] for d in shard_dirs(c, "public")],
    output:
        checkpoint="results/extractors/{extractor}.pt",
        meta="results/extractors/{extractor}.json",
        reads="results/extractors/{extractor}.reads.parquet",
    wildcard_constraints:
        extractor=_alternation(list(ROBUST)),
    params:
        spec=lambda wc: PLAN.plain("extractors", wc.extractor),
        base=lambda wc: ROBUST[wc.extractor]["base"],
        base_spec=lambda wc: PLAN.plain("adaptive", "robust", wc.extractor, "base_spec"),
        cloaks=lambda wc: PLAN.plain("adaptive", "robust", wc.extractor, "cloaks"),
        train=lambda wc: PLAN.plain("adaptive", "robust", wc.extractor, "train"),
        seed=PLAN["seed"],
        device=PLAN["device"],
    threads: 2
    resources:
        mem_mb=6000,
        runtime=240,
        gpu=GPU,
    log:
        "logs/adaptive/robust_train/{extractor}.log",
    script:
        "../scripts/robust_train.py"


# finetune_evaluate: the end-to-end classifier (extractor + linear head) on one scraped set.
rule finetune_evaluate:
    input:
        unpack(lambda wc: checkpoints_for([wc.extractor])),
        scrape="results/scrape/{cloak}/scrape.parquet",
        scraped_images="results/scrape/{cloak}/images",
        images=f"{DATASET_DIR}/images",
    output:
        "results/adaptive/finetune/{cloak}/{extractor}.json",
    params:
        extractor_spec=lambda wc: PLAN.plain("extractors", wc.extractor),
        cloak_spec=lambda wc: PLAN.cloak_spec(wc.cloak),
        train=PLAN.plain("adaptive", "finetune", "train"),
        evaluate=PLAN.plain("evaluate"),
        scrape=PLAN.plain("scrape"),
        dataset=PLAN.plain("dataset"),
        seed=PLAN["seed"],
        device=PLAN["device"],
    threads: 2
    resources:
        mem_mb=6000,
        runtime=240,
        gpu=GPU,
    log:
        "logs/adaptive/finetune/{cloak}/{extractor}.log",
    script:
        "../scripts/finetune_evaluate.py"


# finetune_adaptive_evaluate: the adaptive end-to-end classifier (FaceCure's eval_e2e.py --robust):
# the scraped training set plus the public identities' pictures cloaked by the trainer itself.
rule finetune_adaptive_evaluate:
    input:
        unpack(lambda wc: checkpoints_for([wc.extractor])),
        scrape="results/scrape/{cloak}/scrape.parquet",
        scraped_images="results/scrape/{cloak}/images",
        images=f"{DATASET_DIR}/images",
        manifest=MANIFEST,
        roles=ROLES,
        shards=[d for c in ADAPTIVE["finetune"]["adaptive_cloaks"] for d in shard_dirs(c, "public")],
    output:
        "results/adaptive/finetune_adaptive/{cloak}/{extractor}.json",
    params:
        extractor_spec=lambda wc: PLAN.plain("extractors", wc.extractor),
        cloak_spec=lambda wc: PLAN.cloak_spec(wc.cloak),
        train=PLAN.plain("adaptive", "finetune", "train"),
        adaptive_cloaks=PLAN.plain("adaptive", "finetune", "adaptive_cloaks"),
        evaluate=PLAN.plain("evaluate"),
        scrape=PLAN.plain("scrape"),
        dataset=PLAN.plain("dataset"),
        seed=PLAN["seed"],
        device=PLAN["device"],
    threads: 2
    resources:
        mem_mb=6000,
        runtime=240,
        gpu=GPU,
    log:
        "logs/adaptive/finetune_adaptive/{cloak}/{extractor}.log",
    script:
        "../scripts/finetune_adaptive_evaluate.py"


# detect: one detector trained on one cloak's public (clean, cloaked) pairs, tested on every
# test cloak's scraped protected pictures (cross-cloak when they differ).
rule detect:
    input:
        unpack(lambda wc: checkpoints_for([PLAN.detector_extractor(wc.detector)])),
        manifest=MANIFEST,
        roles=ROLES,
        images=f"{DATASET_DIR}/images",
        shards=lambda wc: shard_dirs(wc.train_cloak, "public"),
        scrapes=[f"results/scrape/{c}/scrape.parquet" for c in ADAPTIVE["detection"]["test_cloaks"]],
        scraped_images=[f"results/scrape/{c}/images" for c in ADAPTIVE["detection"]["test_cloaks"]],
    output:
        "results/adaptive/detection/{detector}/{train_cloak}.json",
    wildcard_constraints:
        detector=_alternation(list(DETECTORS)),
        train_cloak=_alternation(list(ADAPTIVE["detection"]["train_cloaks"])),
    params:
        detector=lambda wc: PLAN.plain("adaptive", "detection", "detectors", wc.detector),
        extractor_spec=lambda wc: PLAN.plain("extractors", DETECTORS[wc.detector]["extractor"])
        if DETECTORS[wc.detector].get("extractor") else {},
        test_cloaks=PLAN.plain("adaptive", "detection", "test_cloaks"),
        seed=PLAN["seed"],
        device=PLAN["device"],
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=GPU,
    log:
        "logs/adaptive/detect/{detector}/{train_cloak}.log",
    script:
        "../scripts/detect.py"


def _timetravel_imagesets(wc):
    return list(dict.fromkeys(PLAN.imagesets(wc.old) + PLAN.imagesets(wc.new)))


# timetravel: protected users cloaked the first part of their pictures with the old cloak and
# the rest with the new one; reuses both cloaks' scrape tables and embeddings.
rule timetravel:
    input:
        old="results/scrape/{old}/scrape.parquet",
        new="results/scrape/{new}/scrape.parquet",
        embeddings=lambda wc: [f"results/embeddings/{wc.extractor}/{s}.parquet" for s in _timetravel_imagesets(wc)],
    output:
        "results/adaptive/timetravel/{old}__{new}/{extractor}.json",
    wildcard_constraints:
        old=_alternation(CLOAKS),
        new=_alternation(CLOAKS),
    params:
        imagesets=_timetravel_imagesets,
        switch_fraction=ADAPTIVE["timetravel"]["switch_fraction"],
        extractor_info=lambda wc: PLAN.extractor_info(wc.extractor),
        old_spec=lambda wc: PLAN.cloak_spec(wc.old),
        new_spec=lambda wc: PLAN.cloak_spec(wc.new),
        evaluate=PLAN.plain("evaluate"),
        scrape=PLAN.plain("scrape"),
        dataset=PLAN.plain("dataset"),
        seed=PLAN["seed"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        "logs/adaptive/timetravel/{old}__{new}/{extractor}.log",
    script:
        "../scripts/timetravel.py"


# combine: top-2 and confidence thresholding of an accurate and a robust extractor (1-NN).
rule combine:
    input:
        scrape="results/scrape/{cloak}/scrape.parquet",
        embeddings=lambda wc: [f"results/embeddings/{e}/{s}.parquet"
                               for e in (wc.accurate, wc.robust) for s in PLAN.imagesets(wc.cloak)],
    output:
        "results/adaptive/combine/{cloak}/{accurate}__{robust}.json",
    wildcard_constraints:
        accurate=_alternation(EXTRACTORS),
        robust=_alternation(EXTRACTORS),
    params:
        imagesets=lambda wc: PLAN.imagesets(wc.cloak),
        quantile=ADAPTIVE["combine"]["quantile"],
        sweep=PLAN.plain("adaptive", "combine", "sweep"),
        bootstrap=PLAN["evaluate"]["bootstrap"],
        scrape=PLAN.scrape_table_settings(),  # combine is always joint (its records say so)
        seed=PLAN["seed"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        "logs/adaptive/combine/{cloak}/{accurate}__{robust}.log",
    script:
        "../scripts/combine.py"


# adaptive: every adaptive output (also reached through `all`).
rule adaptive:
    input:
        [f for files in ADAPTIVE_TARGETS.values() for f in files],
        expand("results/records/{cloak}/{extractor}.json", cloak=CLOAKS_AND_BASELINE, extractor=list(ROBUST)),
    localrule: True
