# make_demo_dataset: the offline demo data, in the folder-per-identity layout a real dataset uses.
if config["demo"]["enabled"]:

    rule make_demo_dataset:
        output:
            directory(config["dataset"]["root"]),
        params:
            identities=config["demo"]["identities"],
            pictures=config["demo"]["pictures_per_identity"],
            seed=config["seed"],
        threads: 2
        resources:
            mem_mb=2000,
            runtime=30,
        log:
            "logs/make_demo_dataset.log",
        script:
            "../scripts/make_demo_dataset.py"


def dataset_root_input(wildcards):
    return [config["dataset"]["root"]] if config["demo"]["enabled"] else []
