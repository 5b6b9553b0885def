# make_demo_dataset: the offline demo data, in the folder-per-identity layout a real dataset uses.
if PLAN["demo"]["enabled"]:

    rule make_demo_dataset:
        output:
            directory(PLAN["dataset"]["root"]),
        params:
            identities=PLAN["demo"]["identities"],
            pictures=PLAN["demo"]["pictures_per_identity"],
            seed=PLAN["seed"],
        threads: 2
        resources:
            mem_mb=2000,
            runtime=30,
        log:
            "logs/make_demo_dataset.log",
        script:
            "../scripts/make_demo_dataset.py"
