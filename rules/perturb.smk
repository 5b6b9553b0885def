# perturb: one cloak on one shard of a subset of pictures (sharded so a cluster spreads it).
rule perturb:
    input:
        unpack(lambda wc: checkpoints_for(PLAN.ensemble(wc.cloak))),
        manifest=MANIFEST,
        roles=ROLES,
        images=f"{DATASET_DIR}/images",
    output:
        directory("results/cloaked/{cloak}/{subset}/shard-{shard}"),
    params:
        cloak_spec=lambda wc: PLAN.cloak_spec(wc.cloak),
        # only the ensemble's entries: adding an extractor elsewhere must not rerun any cloak
        extractors=lambda wc: {n: PLAN.plain("extractors", n) for n in PLAN.ensemble(wc.cloak)},
        shards=PLAN["perturb"]["shards"],
        batch_size=PLAN["perturb"]["batch_size"],
        seed=PLAN["seed"],
        device=PLAN["device"],
    threads: 2
    resources:
        mem_mb=4000,
        runtime=240,
        gpu=GPU,
    log:
        "logs/perturb/{cloak}/{subset}/shard-{shard}.log",
    script:
        "../scripts/perturb.py"
