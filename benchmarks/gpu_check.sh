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
#   arguments for bench_cloaks.py), KIT (a folder made by benchmarks/device_kit.py).
# With KIT (the borrowed machine: no network, no .venv): its wheels are installed into a
# temporary folder on PYTHONPATH, CONFIG defaults to KIT/config.yaml (device already set),
# the run starts from KIT/run/data (the demo's pictures), Snakemake runs as `PYTHON -m
# snakemake --scheduler greedy` (the ILP scheduler's pulp is not carried). The device call:
#   .venv/bin/python benchmarks/device_kit.py            # here, once: prints the call to make
#   run(command="KIT=.device_kit PYTHON=python3 OUT=$OUT bash benchmarks/gpu_check.sh",
#       carry=[".device_kit"], timeout_s=540)
# Try it on any machine: DEVICE=cpu CONFIG=config/test.yaml BENCH_ARGS="--tiny --batches 2" benchmarks/gpu_check.sh
# (or a CPU kit: device_kit.py --python-version 3.11 --device cpu --config config/test.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu_check}
KIT=${KIT:-}
DEVICE=${DEVICE:-cuda}
CORES=${CORES:-$(nproc)}
PYTHON=${PYTHON:-.venv/bin/python}
BENCH_ARGS=${BENCH_ARGS:-}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT"
work=$(mktemp -d)

if [ -n "$KIT" ]; then
    if [ ! -f "$KIT/config.yaml" ] || ! ls "$KIT"/wheels/*.whl >/dev/null 2>&1; then
        echo "gpu_check: $KIT is not a kit (no config.yaml or wheels/): make it with benchmarks/device_kit.py" >&2
        exit 2
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$work/site" "$KIT"/wheels/*.whl > "$OUT/install.log" 2>&1 \
        || { echo "gpu_check: installing $KIT/wheels failed (see $OUT/install.log)" >&2; exit 2; }
    export PYTHONPATH="$PYTHONPATH:$work/site" PATH="$work/site/bin:$PATH"
    CONFIG=${CONFIG:-$KIT/config.yaml}
    SNAKEMAKE=${SNAKEMAKE:-"$PYTHON -m snakemake --scheduler greedy"}
    mkdir -p "$work/run"
    if [ -d "$KIT/run/data" ]; then cp -a "$KIT/run/data" "$work/run/"; fi
else
    CONFIG=${CONFIG:-config/config.yaml}
    SNAKEMAKE=${SNAKEMAKE:-$(dirname "$PYTHON")/snakemake}
fi
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
    "$PYTHON" -c "import sys, cv2; print('python', sys.version.split()[0], 'opencv', cv2.__version__)"
    command -v nvidia-smi >/dev/null && nvidia-smi -L || echo "nvidia-smi: not found"
    "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} > "$OUT/env.txt" 2>&1

echo "gpu_check: workflow in $work/run (log: $OUT/snakemake.log)"
status=0
# shellcheck disable=SC2086  # SNAKEMAKE may be a command with arguments
$SNAKEMAKE --cores "$CORES" --configfile "$work/config.yaml" -d "$work/run" > "$OUT/snakemake.log" 2>&1 || status=$?
echo "snakemake exit status $status" >> "$OUT/env.txt"

"$PYTHON" benchmarks/job_overhead.py "$work/run" --cores "$CORES" > "$OUT/job_overhead.txt" 2>&1 || true
# one line per job log that names its device
grep -rH "device: " "$work/run/logs" | sed "s|$work/run/||" > "$OUT/devices.txt" || echo "no job logged a device" > "$OUT/devices.txt"
cp "$work/run/results/report.md" "$OUT/report.md" 2>/dev/null || echo "no report (the workflow failed)" >> "$OUT/env.txt"

# shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
"$PYTHON" benchmarks/bench_cloaks.py --device "$DEVICE" --batches 32 $BENCH_ARGS > "$OUT/bench_cloaks.md" 2>&1 || status=$?
cat "$OUT/job_overhead.txt"
exit "$status"
