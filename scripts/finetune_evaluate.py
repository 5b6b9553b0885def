"""Snakemake script: end-to-end classifier (extractor + linear head) for one (cloak, extractor)."""
import pandas as pd

from cloakbench.adaptive.finetune import finetune_evaluate
from cloakbench.adaptive.settings import record_settings
from cloakbench.extractors.registry import build_extractor
from cloakbench.io import write_json
from cloakbench.workflow import log_to, resolve_device

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    p, wc = snakemake.params, snakemake.wildcards
    device = resolve_device(p.device)
    scrape = pd.read_parquet(snakemake.input.scrape)
    checkpoint = dict(snakemake.input.items()).get(wc.extractor)
    model = build_extractor(wc.extractor, p.extractor_spec, checkpoint=checkpoint, device=device)
    settings = record_settings(cloak=wc.cloak, extractor=wc.extractor, extractor_spec=p.extractor_spec,
                               cloak_spec=p.cloak_spec, seed=p.seed, scrape_cfg=p.scrape,
                               evaluate_cfg=p.evaluate, dataset_cfg=p.dataset, scrape=scrape)
    records = finetune_evaluate(scrape, model, settings=settings, train_settings=p.train,
                                bootstrap=p.evaluate["bootstrap"], seed=p.seed, device=device)
    write_json(records, snakemake.output[0])
