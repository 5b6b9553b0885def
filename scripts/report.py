"""Snakemake script: render every record into the report."""
import json
from pathlib import Path

import pandas as pd

from cloakbench.adaptive.report_sections import (adaptive_sections, combinations_scatter_png,
                                                 detection_roc_png, robust_meta_files)
from cloakbench.perturb import collect_shards
from cloakbench.report import dataset_card_section, load_records, write_report
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    p, i, o = snakemake.params, snakemake.input, snakemake.output
    shards = list(i.shards)
    figures = {c: collect_shards(shards[k * p.shards:(k + 1) * p.shards]) for k, c in enumerate(p.cloaks)}
    manifest = pd.read_parquet(i.manifest).set_index("image_id")
    root = Path(i.manifest).parent
    # The same pictures (first by image_id among those every cloak covered) under every cloak.
    paths = {c: dict(zip(f["image_id"], f["path"])) for c, f in figures.items()}
    common = sorted(set.intersection(*map(set, paths.values()))) if paths else []
    rows = [(str(root / manifest.loc[k, "path"]), {c: paths[c][k] for c in paths})
            for k in common[:p.examples]]

    records, finetune = load_records(i.records), load_records(i.adaptive_finetune)
    detection, combine = load_records(i.adaptive_detection), load_records(i.adaptive_combine)
    sections = adaptive_sections(records, finetune=finetune,
                                 robust_meta=robust_meta_files(i.adaptive_robust_meta),
                                 detection=detection, timetravel=load_records(i.adaptive_timetravel),
                                 combine=combine)
    detection_roc_png(detection, o.detection_roc)
    combinations_scatter_png(combine, o.combinations)
    if i.card:
        card = json.loads(Path(i.card[0]).read_text())
        sections.append(dataset_card_section(card, "figures/contact_sheet.png"))
    write_report(records + finetune, Path(o.report).parent, cloak_figures=figures, example_rows=rows,
                 extra_sections=sections)
