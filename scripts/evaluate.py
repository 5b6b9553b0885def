"""Snakemake script: evaluate every classifier for one (cloak, extractor)."""
import dataclasses

import pandas as pd

from cloakbench.evaluate import evaluate
from cloakbench.extractors.registry import extractor_class
from cloakbench.io import write_json
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    wc, p = snakemake.wildcards, snakemake.params
    scrape = pd.read_parquet(snakemake.input.scrape)
    embeddings = {s: pd.read_parquet(f) for s, f in zip(p.imagesets, snakemake.input.embeddings)}
    info = extractor_class(p.extractor_spec["type"], name=wc.extractor).describe(wc.extractor, p.extractor_spec)
    settings = {
        "cloak": wc.cloak, "extractor": wc.extractor, "seed": p.seed,
        "cloak_spec": p.cloak_spec, "extractor_info": dataclasses.asdict(info),
        "scrape": p.scrape, "evaluate": p.evaluate,
        "dataset": {"root": p.dataset["root"], "n_pictures": int(len(scrape)),
                    "n_identities": int(scrape["identity"].nunique())},
        "protected_users": sorted(scrape.loc[scrape["role"] == "protected", "identity"].unique().tolist()),
    }
    records = evaluate(scrape, embeddings, classifiers=p.evaluate["classifiers"],
                       bootstrap=p.evaluate["bootstrap"], seed=p.seed, settings=settings)
    write_json(records, snakemake.output[0])
