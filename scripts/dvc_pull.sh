#!/usr/bin/env bash
# Fetch the pipeline's results from the DVC remote and make Snakemake take them as up to date,
# without recomputing anything (README "Share artefacts with DVC").
#
#   scripts/dvc_pull.sh            # = make dvc-pull; extra arguments go to `dvc pull` (e.g. -r myremote)
#
# DVC restores files with fresh, arbitrary mtimes and a clone has no .snakemake/metadata, so a
# plain `snakemake` would rerun everything after `dvc pull`. Once `dvc status` confirms that the
# pulled results are exactly those recorded in dvc.lock for this checkout's code, data and
# config, `snakemake --touch --forceall` marks every output as done, in DAG order, and records
# Snakemake's metadata (later changes to params or code rerun what they concern, as usual).
# Run it with the project's virtual environment active (or with .venv/bin on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

dvc pull "$@"
if ! dvc status --quiet; then
    dvc status >&2 || true
    echo "dvc_pull.sh: the pulled results do not match this checkout (changes above); not marking" \
         "them up to date. Run 'dvc repro' (or snakemake) to bring them up to date." >&2
    exit 1
fi
snakemake --cores 1 --touch --forceall --quiet
# Check: Snakemake must now have nothing to do.
plan=$(snakemake -n --cores 1 2>&1) || { echo "$plan" >&2; exit 1; }
if ! grep -q "Nothing to be done" <<<"$plan"; then
    echo "$plan" >&2
    echo "dvc_pull.sh: Snakemake still plans jobs after --touch (see above)" >&2
    exit 1
fi
echo "dvc_pull.sh: results pulled and up to date for Snakemake (snakemake -n: nothing to be done)"
