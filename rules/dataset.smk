# prepare_dataset: detect + align faces, manifest, rejects, 70/30 split.
rule prepare_dataset:
    input:
        dataset_root_input,
    output:
        manifest=MANIFEST,
        rejects=f"{DATASET_DIR}/rejects.parquet",
        images=directory(f"{DATASET_DIR}/images"),
    params:
        root=PLAN["dataset"]["root"],
        dataset=PLAN.plain("dataset"),
        seed=PLAN["seed"],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    log:
        "logs/prepare_dataset.log",
    script:
        "../scripts/prepare_dataset.py"


# select_users: protected users and the public identities an adaptive trainer may cloak.
rule select_users:
    input:
        manifest=MANIFEST,
    output:
        roles=ROLES,
    params:
        users=PLAN.plain("users"),
        seed=PLAN["seed"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    log:
        "logs/select_users.log",
    script:
        "../scripts/select_users.py"
