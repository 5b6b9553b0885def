# dataset.shards > 1: align_shard jobs align the pictures (discovery index i with
# i % shards == k into shard k) and prepare_dataset merges them; 1: prepare_dataset aligns itself.
def dataset_shard_dirs(wildcards):
    n = PLAN["dataset"]["shards"]
    return [f"{DATASET_DIR}/aligned/shard-{k}" for k in range(n)] if n > 1 else []


# prepare_dataset: detect + align faces (its threads = worker processes), manifest, rejects,
# 70/30 split; with dataset.shards > 1 it merges align_shard's folders instead of aligning.
rule prepare_dataset:
    input:
        dataset_root_input,
        shards=dataset_shard_dirs,
    output:
        manifest=MANIFEST,
        rejects=f"{DATASET_DIR}/rejects.parquet",
        images=directory(f"{DATASET_DIR}/images"),
    params:
        root=PLAN["dataset"]["root"],
        dataset=PLAN.dataset_align_settings(),
        seed=PLAN["seed"],
    # every core the run gives a job (--cores; on a cluster the profile's `cores`), one worker each
    threads: lambda wildcards: workflow.cores
    resources:
        mem_mb=lambda wildcards, threads: 2000 + 1000 * threads,
        runtime=120,
    log:
        "logs/prepare_dataset.log",
    script:
        "../scripts/prepare_dataset.py"


# align_shard: one shard of the dataset's pictures aligned (dataset.shards > 1), spread over a
# cluster like perturb's shards; PNGs + pictures.parquet (rows and rejects, discovery index).
rule align_shard:
    input:
        dataset_root_input,
    output:
        directory(f"{DATASET_DIR}/aligned/shard-{{shard}}"),
    params:
        root=PLAN["dataset"]["root"],
        dataset=PLAN.dataset_align_settings(),
        shards=PLAN["dataset"]["shards"],
    threads: lambda wildcards: workflow.cores
    resources:
        mem_mb=lambda wildcards, threads: 2000 + 1000 * threads,
        runtime=120,
    log:
        "logs/align_shard/shard-{shard}.log",
    script:
        "../scripts/align_shard.py"


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
