"""Throughput of the reimplemented cloaks next to the bare extractor's forward+backward.

Run from the repository root:

    .venv/bin/python benchmarks/bench_cloaks.py                 # CPU, batches 1 8 32
    .venv/bin/python benchmarks/bench_cloaks.py --device cuda --batches 1 8 32

A cloak's cost is dominated by the extractor passes its algorithm needs (one forward +
backward per model and step for Fawkes; four for LowKey: blur branch x mirror image).
What the cloak code can waste is everything around them: recomputing clean features,
Python loops over pictures, the budget term, the optimiser, host-device synchronisation.
So the table compares, in the same process and at the same batch size,

- ``fwd+bwd img/s``: the bare extractor, forward and backward to the input;
- ``steps x img/s``: the cloak's pictures per second times its steps, i.e. how many
  picture-steps it makes per second, and ``ratio/step`` = that / fwd+bwd;
- ``ratio/pass``: the same per extractor pass (steps x passes per step), the fair figure
  for LowKey whose every step runs the extractor four times by design.

On the CPU the times are the process's CPU time (``--clock process``): on a shared machine
other jobs change the elapsed time of two measurements taken minutes apart far more than
the code does. On CUDA they are elapsed times, after synchronising the device.

The goal is a ratio of at least 0.7 (ratio/step for Fawkes, ratio/pass for LowKey): the
cloak's own overhead is under ~30 % of what the model costs anyway.

The LPIPS AlexNet weights cannot be downloaded here, so ``lowkey (lpips)`` runs with
random AlexNet weights of the right shapes: the time does not depend on the values.
``--tiny`` swaps SFace for the tests' tiny random model (to try the script quickly).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cloakbench.cloaks import build_cloak  # noqa: E402
from cloakbench.cloaks.metrics import LPIPSAlex  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, *, repeats: int,
          min_seconds: float, warmup: Callable[[], object] | None = None,
          clock: Callable[[], float] = time.perf_counter) -> float:
    """Median seconds per call of ``fn``, after one call of ``warmup`` (default ``fn``):
    at least ``repeats`` calls and ``min_seconds`` in total (at most 50 calls)."""
    (warmup or fn)()
    sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        t0 = clock()
        fn()
        sync(device)
        times.append(clock() - t0)
        if len(times) >= 50:
            break
    return statistics.median(times)


def random_alexnet(path: Path) -> Path:
    g = torch.Generator().manual_seed(0)
    state = {}
    for idx, shape in LPIPSAlex.CONV_SHAPES.items():
        state[f"features.{idx}.weight"] = torch.randn(shape, generator=g) * 0.05
        state[f"features.{idx}.bias"] = torch.zeros(shape[0])
    torch.save(state, path)
    return path


def smooth_batch(n: int, seed: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n, 3, 6, 6, generator=g)
    return F.interpolate(small, size=(112, 112), mode="bicubic",
                         align_corners=False).clamp(0, 1).to(device)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--steps", type=int, default=10,
                    help="optimisation steps per cloak call (presets overridden; default 10)")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per measurement")
    ap.add_argument("--min-seconds", type=float, default=1.0,
                    help="keep timing a measurement at least this long")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--clock", choices=["auto", "wall", "process"], default="auto",
                    help="wall: elapsed time; process: this process's CPU time, which other "
                         "jobs on a shared CPU disturb far less (auto: process on CPU, wall on "
                         "CUDA, where the GPU works while the process waits)")
    ap.add_argument("--tiny", action="store_true", help="use the tests' tiny model, not SFace")
    ap.add_argument("--cloaks", nargs="+",
                    default=["fawkes_v03", "fawkes_v10", "lowkey_lpips", "lowkey_dssim"])
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    clock_name = args.clock if args.clock != "auto" else ("wall" if device.type == "cuda"
                                                          else "process")
    clock = time.perf_counter if clock_name == "wall" else time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.tiny:
        sys.path.insert(0, str(ROOT / "tests"))
        from cloaks_testlib import TinyNet
        extractor = TinyNet().to(device)
    else:
        from cloakbench.extractors import build_extractor
        extractor = build_extractor("sface", {"type": "sface"}, device=str(device))
    extractor.eval().requires_grad_(False)
    name = extractor.name

    tmp = Path(tempfile.mkdtemp(prefix="bench_cloaks_"))
    alex = random_alexnet(tmp / "alexnet-random.pth")
    steps = args.steps
    specs = {
        "fawkes_v03": ({"type": "fawkes_v03", "params": {"mode": "high", "steps": steps}}, 1),
        "fawkes_v10": ({"type": "fawkes_v10",
                        "params": {"mode": "high", "steps": steps, "n_models": 1}}, 1),
        "lowkey_lpips": ({"type": "lowkey", "params": {"steps": steps,
                                                       "lpips_weights": str(alex)}}, 4),
        "lowkey_dssim": ({"type": "lowkey", "params": {"steps": steps,
                                                       "perceptual": "dssim"}}, 4),
    }
    unknown = [c for c in args.cloaks if c not in specs]
    if unknown:
        ap.error(f"unknown cloak(s) {unknown}; known: {list(specs)}")

    from cloakbench.cloaks.context import build_target_context
    users = smooth_batch(max(args.batches), 0, device)
    candidates = {f"id{i}": smooth_batch(4, 100 + i, device) for i in range(25)}
    context = build_target_context([extractor], users, candidates, user="bench", device=device)

    rows = []
    for batch in args.batches:
        x = users[:batch]
        xr = x.clone().requires_grad_(True)

        def fwd_bwd() -> None:
            torch.autograd.grad(extractor(xr).norm(dim=1).sum(), xr)

        for cname in args.cloaks:
            spec, passes = specs[cname]
            cloak = build_cloak(cname, spec, [extractor], seed=0, device=str(device))
            # Warm-up (allocator, cuDNN autotuning) with a 2-step twin of the same shapes.
            twin_spec = {**spec, "params": {**spec["params"], "steps": 2}}
            twin = build_cloak(cname, twin_spec, [extractor], seed=0, device=str(device))
            if cloak.needs_reference:
                cloak.prepare(context)
                twin.prepare(context)
            # The bare extractor is timed right before each cloak, so both see the same load.
            base = batch / timed(fwd_bwd, device, repeats=args.repeats,
                                 min_seconds=args.min_seconds, clock=clock)
            per_call = timed(lambda: cloak(x), device, repeats=args.repeats,
                             min_seconds=args.min_seconds, warmup=lambda: twin(x), clock=clock)
            ips = batch / per_call
            rows.append((cname, batch, steps, ips, ips * steps, passes, base,
                         ips * steps / base, ips * steps * passes / base))
            print(f"  {cname:13s} batch {batch:3d}: {ips:8.2f} img/s, ratio/step "
                  f"{rows[-1][7]:.2f}, ratio/pass {rows[-1][8]:.2f}", file=sys.stderr, flush=True)

    dev_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                else f"CPU {platform.processor() or platform.machine()}, "
                     f"{torch.get_num_threads()} threads")
    print(f"\nDevice: {dev_name}; torch {torch.__version__}; extractor: {name} "
          f"({type(extractor).__name__}); {steps} steps per call; {clock_name} clock\n")
    print("| cloak | batch | steps | cloak img/s | steps x img/s | passes/step "
          "| fwd+bwd img/s | ratio/step | ratio/pass |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:.1f} | {r[5]} | {r[6]:.1f} "
              f"| {r[7]:.2f} | {r[8]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
