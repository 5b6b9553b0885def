#!/usr/bin/env bash
# The GPU check of issue 15 (item 4), prepared as one command for a session that is lent a GPU
# machine (its time there is short: run this once, with a timeout that leaves room to rerun):
#   1. the workflow end to end with `device: <DEVICE>` (a copy of CONFIG with only that line
#      changed) in a fresh temporary working directory, Snakemake on CORES cores;
#   2. benchmarks/job_overhead.py on that run: wall time, each rule's work and start-up;
#   3. the device every job logged (cloakbench.workflow.resolve_device: "device: cuda (<GPU>)");
#   4. benchmarks/bench_cloaks.py at batch 32 on the same device (the cloaks against the bare
#      extractor's forward+backward; goal >= 0.7).
# Everything lands in OUT (at most 6 files). Settings (environment variables):
#   OUT (results/gpu_check), CONFIG (config/config.yaml), DEVICE (cuda), CORES (nproc),
#   PYTHON (.venv/bin/python), SNAKEMAKE (snakemake next to PYTHON), BENCH_ARGS (extra
#   arguments for bench_cloaks.py).
# Try it on any machine: DEVICE=cpu CONFIG=config/test.yaml BENCH_ARGS="--tiny --batches 2" benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu_check}
CONFIG=${CONFIG:-config/config.yaml}
DEVICE=${DEVICE:-cuda}
CORES=${CORES:-$(nproc)}
PYTHON=${PYTHON:-.venv/bin/python}
SNAKEMAKE=${SNAKEMAKE:-$(dirname "$PYTHON")/snakemake}
BENCH_ARGS=${BENCH_ARGS:-}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

mkdir -p "$OUT"
work=$(mktemp -d)
sed "s/^device: .*/device: $DEVICE/" "$CONFIG" > "$work/config.yaml"
if ! grep -q "^device: $DEVICE\$" "$work/config.yaml"; then
    echo "gpu_check: $CONFIG has no top-level 'device:' line to set to $DEVICE" >&2
    exit 2
fi

{
    date -u +"%Y-%m-%d %H:%M:%S UTC"
    echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); config $CONFIG; device $DEVICE; cores $CORES"
    uname -srm
    nproc
    command -v nvidia-smi >/dev/null && nvidia-smi -L || echo "nvidia-smi: not found"
    "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} > "$OUT/env.txt" 2>&1

echo "gpu_check: workflow in $work/run (log: $OUT/snakemake.log)"
status=0
"$SNAKEMAKE" --cores "$CORES" --configfile "$work/config.yaml" -d "$work/run" > "$OUT/snakemake.log" 2>&1 || status=$?
echo "snakemake exit status $status" >> "$OUT/env.txt"

"$PYTHON" benchmarks/job_overhead.py "$work/run" --cores "$CORES" > "$OUT/job_overhead.txt" 2>&1 || true
# one line per job log that names its device
grep -rH "device: " "$work/run/logs" | sed "s|$work/run/||" > "$OUT/devices.txt" || echo "no job logged a device" > "$OUT/devices.txt"
cp "$work/run/results/report.md" "$OUT/report.md" 2>/dev/null || echo "no report (the workflow failed)" >> "$OUT/env.txt"

# shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
"$PYTHON" benchmarks/bench_cloaks.py --device "$DEVICE" --batches 32 $BENCH_ARGS > "$OUT/bench_cloaks.md" 2>&1 || status=$?
cat "$OUT/job_overhead.txt"
exit "$status"
