"""Snakemake script: identification accuracy and merge rates of the real recognisers on the dataset."""
import numpy as np
import pandas as pd

from cloakbench.demo.quality import DEFAULT_MERGE_RULES, contact_sheet, dataset_quality
from cloakbench.embed import stack
from cloakbench.io import write_json
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads) as log:
    p = snakemake.params
    manifest = pd.read_parquet(snakemake.input.manifest)
    embeddings = {}
    for name, path in zip(p.extractors, snakemake.input.embeddings):
        emb = pd.read_parquet(path).set_index("image_id").loc[manifest["image_id"]].reset_index()
        embeddings[name] = stack(emb)
    # merge rule by extractor type (sface: cosine > 0.363, dlib: distance < 0.6)
    rules = {n: DEFAULT_MERGE_RULES["sface" if t == "sface" else "dlib"] for n, t in p.types.items()}
    quality = dataset_quality(embeddings, manifest["identity"].to_numpy(), manifest["split"].to_numpy(),
                              merge_rules=rules, seed=p.seed)
    write_json({"dataset": p.root, "n_pictures": int(len(manifest)),
                "n_identities": int(manifest["identity"].nunique()), "quality": quality},
               snakemake.output.card)
    contact_sheet(p.root, snakemake.output.sheet)
    for name, q in quality["extractors"].items():
        log.info("%s: linear probe %.3f, 1-NN %.3f, merged identity pairs %s", name,
                 q["linear_accuracy"], q["knn1_accuracy"], q.get("merged_pair_rate"))
