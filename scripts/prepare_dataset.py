"""Snakemake script: align faces, write manifest and rejects."""
from pathlib import Path

from cloakbench.data.prepare import prepare_dataset
from cloakbench.workflow import log_to

with log_to(snakemake.log[0], snakemake.rule, snakemake.threads):
    d = snakemake.params.dataset
    prepare_dataset(snakemake.params.root, Path(snakemake.output.manifest).parent, layout=d["layout"],
                    pre_aligned=d["pre_aligned"], image_size=d["image_size"],
                    min_face_size=d["min_face_size"], min_pictures=d["min_pictures"],
                    train_fraction=d["train_fraction"], seed=snakemake.params.seed,
                    max_pixels=d["max_pixels"], detect_size=d["detect_size"])
