"""Snakemake script: train one detector on one cloak's public pairs; test it on every test cloak."""
from pathlib import Path

import pandas as pd

from cloakbench.adaptive.detection import (detection_record, detection_sets, evaluate_detector,
                                           needs_extractor, train_detector)
from cloakbench.adaptive.robust import robust_training_pairs
from cloakbench.extractors.registry import build_extractor
from cloakbench.io import write_json
from cloakbench.perturb import collect_shards
from cloakbench.workflow import log_to, resolve_device

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads) as log:
    p, wc = snakemake.params, snakemake.wildcards
    device = resolve_device(p.device)
    manifest = pd.read_parquet(snakemake.input.manifest)
    roles = pd.read_parquet(snakemake.input.roles)
    # Training pairs: exactly the robust trainer's data (public identities only).
    pairs = robust_training_pairs(manifest, roles, Path(snakemake.input.images).parent,
                                  {wc.train_cloak: collect_shards(list(snakemake.input.shards))})
    seen = sorted({y for _, y in pairs.clean})
    extractor = None
    name = needs_extractor(p.detector)
    if name:
        extractor = build_extractor(name, p.extractor_spec, checkpoint=dict(snakemake.input.items()).get(name),
                                    device=device)
    det = train_detector(wc.detector, p.detector, [c for c, _ in pairs.clean], [c for c, _ in pairs.cloaked],
                         seed=p.seed, device=device, extractor=extractor)
    records = []
    for cloak, table in zip(p.test_cloaks, snakemake.input.scrapes):
        pos, neg = detection_sets(pd.read_parquet(table), seen)
        metrics = evaluate_detector(det, pos, neg)
        records.append(detection_record(det, train_cloak=wc.train_cloak, test_cloak=cloak, metrics=metrics,
                                        settings={"seed": p.seed, "public_identities": len(seen)}))
        log.info("%s: precision %.3f, recall %.3f, AUC %.3f, TPR@1%%FPR %.3f", records[-1]["experiment"],
                 metrics["precision"], metrics["recall"], metrics["roc_auc"], metrics["tpr_at_1pct_fpr"])
    write_json(records, snakemake.output[0])
