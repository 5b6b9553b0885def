# perturb: one cloak on one shard of a subset of pictures (sharded so a cluster spreads it).
rule perturb:
    input:
        unpack(lambda wc: checkpoints_for(config["cloaks"][wc.cloak].get("ensemble", []))),
        manifest=MANIFEST,
        roles=ROLES,
        images=f"{DATASET_DIR}/images",
    output:
        directory("results/cloaked/{cloak}/{subset}/shard-{shard}"),
    params:
        cloak_spec=lambda wc: config["cloaks"][wc.cloak],
        # only the ensemble's entries: adding an extractor elsewhere must not rerun any cloak
        extractors=lambda wc: {n: config["extractors"][n]
                               for n in config["cloaks"][wc.cloak].get("ensemble", [])},
        shards=config["perturb"]["shards"],
        batch_size=config["perturb"]["batch_size"],
        seed=config["seed"],
        device=config["device"],
    threads: 2
    resources:
        mem_mb=4000,
        runtime=240,
        gpu=lambda wc: 1 if config["device"] != "cpu" else 0,
    log:
        "logs/perturb/{cloak}/{subset}/shard-{shard}.log",
    script:
        "../scripts/perturb.py"
