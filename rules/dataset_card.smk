# dataset_card: how recognisable the dataset's identities are for the real recognisers
# (SFace, dlib), measured by the pipeline from the clean embeddings, plus a contact sheet.
CARD_EXTRACTORS = [n for n, s in config["extractors"].items() if s["type"] in ("sface", "dlib_resnet")]


rule dataset_card:
    input:
        manifest=MANIFEST,
        embeddings=expand("results/embeddings/{extractor}/clean.parquet", extractor=CARD_EXTRACTORS),
    output:
        card="results/dataset/card.json",
        sheet="results/figures/contact_sheet.png",
    params:
        extractors=CARD_EXTRACTORS,
        types={n: config["extractors"][n]["type"] for n in CARD_EXTRACTORS},
        root=config["dataset"]["root"],
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        "logs/dataset_card.log",
    script:
        "../scripts/dataset_card.py"
