"""Snakemake script: accuracy-preserving combinations of an accurate and a robust extractor (1-NN)."""
import pandas as pd

from cloakbench.adaptive.combine import combine_records
from cloakbench.evaluate import assemble
from cloakbench.io import write_json
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    p, wc = snakemake.params, snakemake.wildcards
    scrape = pd.read_parquet(snakemake.input.scrape)
    n = len(p.imagesets)
    emb_a = {s: pd.read_parquet(f) for s, f in zip(p.imagesets, snakemake.input.embeddings[:n])}
    emb_r = {s: pd.read_parquet(f) for s, f in zip(p.imagesets, snakemake.input.embeddings[n:])}
    acc, rob = assemble(scrape, emb_a), assemble(scrape, emb_r)
    # Held-out public data: the public identities' uncloaked training pictures (assemble's row order).
    table = scrape.loc[sorted(scrape.index)]
    train = table[table["split"] == "train"]
    calibrate = ((train["role"] == "public") & ~train["cloaked"]).to_numpy()
    records = combine_records(acc, rob, calibrate=calibrate, names=(wc.accurate, wc.robust), cloak=wc.cloak,
                              quantile=p.quantile, sweep=p.sweep, bootstrap=p.bootstrap, seed=p.seed,
                              settings={"scrape": p.scrape})
    write_json(records, snakemake.output[0])
