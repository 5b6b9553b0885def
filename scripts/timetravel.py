"""Snakemake script: time travel (old cloak, then new cloak) for one extractor, every classifier."""
import pandas as pd

from cloakbench.adaptive.settings import record_settings
from cloakbench.adaptive.timetravel import timetravel_table
from cloakbench.evaluate import evaluate
from cloakbench.io import write_json
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    p, wc = snakemake.params, snakemake.wildcards
    table = timetravel_table(pd.read_parquet(snakemake.input.old), pd.read_parquet(snakemake.input.new),
                             old_cloak=wc.old, new_cloak=wc.new, switch_fraction=p.switch_fraction)
    embeddings = {s: pd.read_parquet(f) for s, f in zip(p.imagesets, snakemake.input.embeddings)}
    name = f"{wc.old}->{wc.new}"
    settings = record_settings(cloak=name, extractor=wc.extractor, extractor_spec=p.extractor_spec,
                               cloak_spec=None, seed=p.seed, scrape_cfg=p.scrape, evaluate_cfg=p.evaluate,
                               dataset_cfg=p.dataset, scrape=table)
    cu = table.loc[table["split"] == "train", "cloak_used"]
    settings.update(old_cloak=wc.old, new_cloak=wc.new, old_cloak_spec=p.old_spec, new_cloak_spec=p.new_spec,
                    switch_fraction=p.switch_fraction, n_old=int((cu == wc.old).sum()),
                    n_new=int((cu == wc.new).sum()))
    records = evaluate(table, embeddings, classifiers=p.evaluate["classifiers"],
                       bootstrap=p.evaluate["bootstrap"], seed=p.seed, settings=settings)
    for r in records:
        r["kind"] = "timetravel"
    write_json(records, snakemake.output[0])
