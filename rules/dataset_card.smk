# dataset_card: how recognisable the dataset's identities are for the real recognisers
# (SFace, dlib), measured by the pipeline from the clean embeddings, plus a contact sheet.
# (The report takes the card as an input when PLAN.card_extractors is not empty.)


rule dataset_card:
    input:
        manifest=MANIFEST,
        embeddings=expand("results/embeddings/{extractor}/clean.parquet", extractor=PLAN.card_extractors),
    output:
        card="results/dataset/card.json",
        sheet=report("results/figures/contact_sheet.png", caption="../report/captions/contact_sheet.rst",
                     category="dataset", labels={"figure": "contact sheet"}),
    params:
        extractors=list(PLAN.card_extractors),
        types={n: PLAN["extractors"][n]["type"] for n in PLAN.card_extractors},
        root=PLAN["dataset"]["root"],
        seed=PLAN["seed"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        "logs/dataset_card.log",
    script:
        "../scripts/dataset_card.py"
