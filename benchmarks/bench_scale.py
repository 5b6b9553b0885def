"""How each pipeline stage's time grows with the dataset, and what that means for FaceScrub.

Run from the repository root:

    .venv/bin/python benchmarks/bench_scale.py                    # CPU, scales 1 2 4 (minutes; builds the data once)
    .venv/bin/python benchmarks/bench_scale.py --device cuda      # the same, models on the GPU
    .venv/bin/python benchmarks/bench_scale.py --quick            # test-sized (6 x 10 pictures, scales 1 2)

Scale s is the demo (config/config.yaml ``demo:``, 40 identities x 20 pictures, 4 protected
users) with identities x sqrt(s), pictures per identity x sqrt(s) and protected users x sqrt(s)
(rounded): about s x the demo's pictures. Each dataset is built once with the demo generator
(``cloakbench.demo.generate.make_demo_dataset``) into a cache folder; the generator's time is
reported beside the table, not as a stage. Its SFace screening is loosened (``--screen-threshold``,
default 0.99): whether the synthetic identities are distinct does not change any stage's time.

The stages are the library calls the Snakemake scripts make (``scripts/<rule>.py`` ->
``run_<rule>``), in this process, timed with ``time.perf_counter``: prepare_dataset, select_users,
train_extractor (the cloak's ensemble, cnn_2018 + resnet_2020, at ``--train-epochs``: the
demo's fawkes_v10 attacks models the pipeline trains), perturb (the demo's fawkes_v10 on the
protected users' training pictures, one shard, at ``--steps``: a picture's cost is one forward
and backward pass of the ensemble per step, so it is linear in the steps), scrape, embed (the
demo's ``sface`` on the clean set and on the scraped set's cloaked pictures), evaluate (knn1 and
linear, each under the ``joint`` and the ``per_user`` protocol, ``raw`` features) and
dataset_card (``sface`` only). The work files of a scale are deleted after it (``--keep-work``).

For each stage the growth exponent is the slope of log(time) over log(size) (numpy.polyfit),
against the total pictures (the issue's goal: <= 1.15) and against the stage's natural size
(protected pictures for perturb, n_train x n_test for 1-NN, n_protected x that for per_user...).
The FaceScrub column extrapolates time(4x) x (size_FaceScrub / size_4x) ^ exponent with the
natural size: an extrapolation from three points, not a measurement. The GPU is never
extrapolated: its figures come only from a run with ``--device cuda`` on a GPU.

Writes ``bench_scale.md`` (the table and notes), ``bench_scale.json`` (every number) and
``bench_scale.log`` (the stages' logs) into ``--out`` (default results/bench_scale/).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

GOAL_EXPONENT = 1.15
#: a stage under this many seconds at the largest scale is mostly fixed costs (imports, model
#: loading, file opening): its exponent says little about how its work grows
FIXED_COST_SECONDS = 1.0
CLOAK = "fawkes_v10"          # the demo's cloak entry that is timed
EXTRACTOR = "sface"           # the demo's pretrained extractor that is timed (embed, evaluate, card)
#: FaceScrub as published (530 identities, about 100k face pictures); the rest (protected users,
#: target pool, train fraction) is read from config/facescrub.yaml
FACESCRUB_PICTURES = 100_000
FACESCRUB_IDENTITIES = 530


# --------------------------------------------------------------------------------------
# pure arithmetic (unit-tested)
# --------------------------------------------------------------------------------------

def growth_exponent(sizes: Sequence[float], times: Sequence[float]) -> float:
    """Slope of log(time) against log(size) (least squares over >= 2 points)."""
    import numpy as np

    s, t = np.asarray(sizes, dtype=float), np.asarray(times, dtype=float)
    if s.shape != t.shape or s.ndim != 1:
        raise ValueError(f"sizes and times must be two lists of the same length, got {s.shape} and {t.shape}")
    if len(s) < 2:
        raise ValueError(f"a growth exponent needs at least two sizes, got {len(s)}")
    if (s <= 0).any() or (t <= 0).any():
        raise ValueError(f"sizes and times must be positive, got sizes {list(s)} and times {list(t)}")
    if len(set(s.tolist())) < 2:
        raise ValueError(f"a growth exponent needs at least two different sizes, got {list(s)}")
    return float(np.polyfit(np.log(s), np.log(t), 1)[0])


def extrapolate(time_ref: float, size_ref: float, size_target: float, exponent: float) -> float:
    """time_ref x (size_target / size_ref) ^ exponent."""
    if time_ref < 0 or size_ref <= 0 or size_target <= 0:
        raise ValueError(f"need time >= 0 and sizes > 0, got time {time_ref}, sizes {size_ref} -> {size_target}")
    return time_ref * (size_target / size_ref) ** exponent


def scaled_counts(base_identities: int, base_pictures: int, base_protected: int, scale: float) -> dict[str, int]:
    """Scale s: identities, pictures per identity and protected users each x sqrt(s), rounded
    (so about s x the pictures)."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    f = math.sqrt(scale)
    return {"identities": max(2, round(base_identities * f)), "pictures_per_identity": max(1, round(base_pictures * f)),
            "protected": max(1, round(base_protected * f))}


def facescrub_counts(*, pictures: int, identities: int, protected: int, target_pool: int,
                     train_fraction: float) -> dict[str, float]:
    """The counts the size variables need, for a dataset of ``pictures`` spread evenly over
    ``identities`` (FaceScrub: about 190 each); the target pool's identities are never classes,
    and a trainer (``trainer``) sees the training pictures of the classes that are not protected."""
    per_identity = pictures / identities
    classes = identities - target_pool
    return {"pictures": pictures, "identities": identities, "protected": protected,
            "classes": classes, "n_train": train_fraction * per_identity * classes,
            "n_test": (1 - train_fraction) * per_identity * classes,
            "protected_train": train_fraction * per_identity * protected,
            "trainer": train_fraction * per_identity * (classes - protected)}


@dataclass(frozen=True)
class Stage:
    name: str
    size: str                          # the natural size variable, in words
    size_of: Callable[[dict], float]   # counts -> that size
    in_facescrub: str = ""             # why the stage is not in config/facescrub.yaml's plan ("" = it is)
    superlinear: str = ""              # why its time must grow faster than the pictures ("" = it need not)


STAGES = [
    Stage("prepare_dataset", "pictures", lambda c: c["pictures"]),
    Stage("select_users", "pictures", lambda c: c["pictures"]),
    Stage("train_extractor", "trainer pictures", lambda c: c["trainer"],
          in_facescrub="its cloak ensembles are pretrained weights (no train_extractor job)"),
    Stage("perturb", "protected pictures", lambda c: c["protected_train"]),
    Stage("scrape", "pictures", lambda c: c["pictures"]),
    Stage("embed_clean", "pictures", lambda c: c["pictures"]),
    Stage("embed_scraped", "protected pictures", lambda c: c["protected_train"]),
    Stage("evaluate_joint_knn1", "n_train x n_test", lambda c: c["n_train"] * c["n_test"],
          superlinear="1-NN compares every test picture with every training picture"),
    Stage("evaluate_joint_linear", "n_train x classes", lambda c: c["n_train"] * c["classes"],
          superlinear="logistic regression: each iteration costs n_train x classes"),
    Stage("evaluate_per_user_knn1", "n_protected x n_train x n_test",
          lambda c: c["protected"] * c["n_train"] * c["n_test"],
          superlinear="one 1-NN fit per protected user, each n_train x n_test"),
    Stage("evaluate_per_user_linear", "n_protected x n_train x classes",
          lambda c: c["protected"] * c["n_train"] * c["classes"],
          superlinear="one logistic regression per protected user, each n_train x classes"),
    Stage("dataset_card", "pictures^2", lambda c: c["pictures"] ** 2,
          in_facescrub="it has no card extractor (sface, dlib_resnet); at 100k pictures its N x N "
                       "score matrix alone would take 80 GB",
          superlinear="N x N picture-pair score matrix"),
]
STAGE_BY_NAME = {s.name: s for s in STAGES}


def analyse(scales: list[dict], facescrub: dict[str, float]) -> dict[str, dict]:
    """Per stage: exponents (against pictures and the natural size), the FaceScrub
    extrapolation from the largest scale, and the share of the total at the largest scale."""
    largest = max(scales, key=lambda r: r["counts"]["pictures"])
    total_largest = sum(largest["seconds"].values())
    out = {}
    for stage in STAGES:
        if stage.name not in largest["seconds"]:
            continue
        times = [r["seconds"][stage.name] for r in scales]
        pics = [r["counts"]["pictures"] for r in scales]
        sizes = [stage.size_of(r["counts"]) for r in scales]
        e_pics = growth_exponent(pics, times)
        e_size = growth_exponent(sizes, times)
        row = {"seconds": times, "exponent_pictures": e_pics, "size": stage.size, "sizes": sizes,
               "exponent_size": e_size, "share_largest": largest["seconds"][stage.name] / total_largest,
               "over_goal": e_pics > GOAL_EXPONENT, "superlinear": stage.superlinear,
               "in_facescrub": not stage.in_facescrub, "not_in_facescrub": stage.in_facescrub,
               "facescrub_size": stage.size_of(facescrub)}
        row["facescrub_seconds"] = extrapolate(largest["seconds"][stage.name], stage.size_of(largest["counts"]),
                                               row["facescrub_size"], e_size)
        row["fixed_cost_dominated"] = largest["seconds"][stage.name] < FIXED_COST_SECONDS
        out[stage.name] = row
    fs_total = sum(r["facescrub_seconds"] for r in out.values() if r["in_facescrub"])
    for r in out.values():
        r["share_facescrub"] = r["facescrub_seconds"] / fs_total if r["in_facescrub"] and fs_total else None
    return out


def probe_classifiers(facescrub: dict[str, float], *, dim: int, seed: int, spread: float = 3.0) -> dict[str, Any]:
    """One fit of each of evaluate's classifiers (``cloakbench.classifiers.knn1`` / ``linear``,
    raw features) at FaceScrub's n_train x n_test x classes, on synthetic ``dim``-d features
    (Gaussian identity clusters, unit-normal centres, noise of standard deviation ``spread``):
    a measurement of the fit evaluate repeats, not an extrapolation. ``joint`` fits once per
    classifier, ``per_user`` once per protected user. The 1-NN's time does not depend on the
    values; the linear probe's grows with the iterations its logistic regression needs, which
    depend on the features: recorded (``linear_iterations``), with the time per iteration, so
    the time at scikit-learn's cap (100, ``max_iter``'s default that ``linear`` keeps) bounds
    one fit on features that are harder to separate."""
    from unittest import mock

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from cloakbench.classifiers import knn1, linear

    rng = np.random.default_rng([seed, 15])
    classes = int(facescrub["classes"])
    n_train, n_test = int(round(facescrub["n_train"])), int(round(facescrub["n_test"]))
    centres = rng.standard_normal((classes, dim)).astype(np.float32)
    y_train, y_test = rng.integers(0, classes, n_train), rng.integers(0, classes, n_test)
    x_train = centres[y_train] + spread * rng.standard_normal((n_train, dim)).astype(np.float32)
    x_test = centres[y_test] + spread * rng.standard_normal((n_test, dim)).astype(np.float32)
    out: dict[str, Any] = {"n_train": n_train, "n_test": n_test, "classes": classes, "dim": dim,
                           "protected": int(facescrub["protected"]), "spread": spread}
    fitted: list[LogisticRegression] = []
    original_fit = LogisticRegression.fit

    def recording_fit(self, *a, **k):   # the iteration count `linear` does not return
        fitted.append(self)
        return original_fit(self, *a, **k)

    for name, fit in (("knn1", knn1), ("linear", linear)):
        print(f"  probe: one {name} fit at FaceScrub size ({n_train} x {n_test}, {classes} classes)",
              file=sys.stderr, flush=True)
        with mock.patch.object(LogisticRegression, "fit", recording_fit):
            t0 = time.perf_counter()
            pred = fit(x_train, y_train, x_test, seed, features="raw")
            out[f"{name}_fit_seconds"] = time.perf_counter() - t0
        out[f"{name}_accuracy"] = float(np.mean(pred == y_test))   # a sanity figure: the fit really ran
    if len(fitted) != 1:
        raise RuntimeError(f"probe: expected one logistic regression in `linear`, saw {len(fitted)}")
    out["linear_iterations"] = int(np.max(fitted[0].n_iter_))
    out["linear_max_iter"] = int(fitted[0].max_iter)
    out["linear_fit_seconds_at_cap"] = out["linear_fit_seconds"] * out["linear_max_iter"] / out["linear_iterations"]
    return out


def fmt_s(seconds: float) -> str:
    """Seconds in the unit that reads best (s, min, h, d)."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def render_markdown(result: dict) -> str:
    scales, stages, meta = result["scales"], result["stages"], result["meta"]
    fs = result["facescrub"]
    dev = meta["device"]
    where = (f"{meta['threads']} torch threads on {meta['cpu_count']} cores, device {dev}"
             + (f" ({meta['gpu']})" if meta.get("gpu") else ""))
    lines = [f"### bench_scale: per-stage time against dataset size ({where})", "",
             f"Run {meta['started']} -> {meta['finished']} UTC, commit {meta['commit']}; "
             f"load average before {meta['load_before']}, after {meta['load_after']}; "
             f"{CLOAK} at {meta['steps']} steps, ensemble training at {meta['train_epochs']} epochs.", "",
             "| scale | identities | pictures | protected users | protected (cloaked) pictures | "
             "n_train / n_test | generator (not a stage) | load average before its stages (this run's own included) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in scales:
        c = r["counts"]
        gen = f"{r['generate_seconds']:.1f} s" if r["generate_seconds"] is not None else "cached"
        lines.append(f"| {r['scale']:g}x | {c['identities']} | {c['pictures']} | {c['protected']} | "
                     f"{c['protected_train']} | {c['n_train']} / {c['n_test']} | {gen} | {r.get('load_before', '-')} |")
    head = " | ".join(f"{r['scale']:g}x" for r in scales)
    lines += ["", f"| stage | {head} | exponent (pictures) | natural size | exponent (natural) | "
                  f"share at {scales[-1]['scale']:g}x | FaceScrub (extrapolated, this device) | share at FaceScrub |",
              "|---|" + "---|" * len(scales) + "---|---|---|---|---|---|"]
    for name, r in stages.items():
        cells = " | ".join(f"{t:.2f}" for t in r["seconds"])
        flag = ((" **>1.15**" if r["exponent_pictures"] > GOAL_EXPONENT else "")
                + ("*" if r["fixed_cost_dominated"] else ""))
        natural = "(same)" if r["size"] == "pictures" else r["size"]
        e_nat = "" if r["size"] == "pictures" else f"{r['exponent_size']:.2f}"
        fs_cell = (fmt_s(r["facescrub_seconds"]) if r["in_facescrub"]
                   else f"not in its plan ({fmt_s(r['facescrub_seconds'])} if it were)")
        share_fs = f"{100 * r['share_facescrub']:.1f} %" if r["share_facescrub"] is not None else "-"
        lines.append(f"| {name} | {cells} | {r['exponent_pictures']:.2f}{flag} | {natural} | {e_nat} | "
                     f"{100 * r['share_largest']:.1f} % | {fs_cell} | {share_fs} |")
    totals = [sum(r["seconds"].values()) for r in scales]
    fs_total = sum(r["facescrub_seconds"] for r in stages.values() if r["in_facescrub"])
    lines.append("| **total** | " + " | ".join(f"**{t:.2f}**" for t in totals)
                 + f" | {growth_exponent([r['counts']['pictures'] for r in scales], totals):.2f} | | | 100 % | "
                 f"**{fmt_s(fs_total)}** | 100 % |")
    lines += ["", f"Times in seconds (wall, `time.perf_counter`, one run per scale). * under "
                  f"{FIXED_COST_SECONDS:g} s at {scales[-1]['scale']:g}x: mostly fixed costs, the exponent says "
                  f"little about the work. The FaceScrub total counts only the stages in its plan.", ""]
    lines.append(f"FaceScrub ({fs['pictures']:,} pictures, {fs['identities']} identities, {fs['protected']} "
                 f"protected users, {fs['classes']} classes after the {fs['identities'] - fs['classes']}-identity "
                 f"target pool, train fraction {meta['facescrub_train_fraction']}: n_train {fs['n_train']:.0f}, "
                 f"n_test {fs['n_test']:.0f}, {fs['protected_train']:.0f} protected pictures to cloak): each stage "
                 f"= its time at {scales[-1]['scale']:g}x x (natural size ratio) ^ (its exponent against the natural "
                 f"size), an extrapolation from {len(scales)} points, not a measurement. Total of the stages in "
                 f"FaceScrub's plan, for the one cloak and one extractor timed here: {fmt_s(fs_total)}.")
    p = stages.get("perturb")
    if p:
        full = meta["cloak_full_steps"]
        lines.append(f"perturb is {CLOAK} at {meta['steps']} steps on the demo's ensemble (cnn_2018 + resnet_2020); "
                     f"a picture's cost is linear in the steps, so {full} steps (mode high) would take "
                     f"{full / meta['steps']:.1f} x its time ({fmt_s(p['facescrub_seconds'] * full / meta['steps'])} "
                     f"at FaceScrub size). config/facescrub.yaml cloaks with Fawkes' own extractors (other "
                     f"models, not timed here), with three cloaks, and also the public identities' pictures "
                     f"(the adaptive trainer's): those jobs are not in this table.")
    over = [(n, r) for n, r in stages.items() if r["over_goal"]]
    lines.append("")
    if over:
        lines.append(f"Stages above the goal (exponent against pictures > {GOAL_EXPONENT}), and why:")
    else:
        lines.append(f"No stage is above the goal (exponent against pictures <= {GOAL_EXPONENT}).")
    for n, r in over:
        why = (f"inherently superlinear: {r['superlinear']}" if r["superlinear"]
               else "NOT inherently superlinear (its work grows with its natural size): a scaling defect or noise")
        share_fs = (f"{100 * r['share_facescrub']:.1f} % at FaceScrub" if r["share_facescrub"] is not None
                    else "not in FaceScrub's plan")
        lines.append(f"- {n}: {why} (exponent {r['exponent_size']:.2f} against {r['size']}); "
                     f"{100 * r['share_largest']:.1f} % of the total at {scales[-1]['scale']:g}x, {share_fs}.")
    absent = [(n, r) for n, r in stages.items() if not r["in_facescrub"]]
    for n, r in absent:
        lines.append(f"- {n} is not in config/facescrub.yaml's plan: {r['not_in_facescrub']}.")
    probe = result.get("probe")
    if probe:
        lines += ["", f"evaluate's fits measured at FaceScrub size (synthetic {probe['dim']}-d features, "
                      f"n_train {probe['n_train']}, n_test {probe['n_test']}, {probe['classes']} classes; "
                      f"joint = 1 fit, per_user = {probe['protected']} fits, one per protected user; the "
                      f"linear probe's logistic regression took {probe['linear_iterations']} of at most "
                      f"{probe['linear_max_iter']} iterations, accuracy {probe['linear_accuracy']:.2f}; on features "
                      f"that need all {probe['linear_max_iter']}, one fit would take about "
                      f"{fmt_s(probe['linear_fit_seconds_at_cap'])}, i.e. "
                      f"{fmt_s(probe['linear_fit_seconds_at_cap'] * probe['protected'])} "
                      f"per_user):", "",
                  "| classifier | one fit (measured) | joint | per_user | extrapolated joint | extrapolated per_user |",
                  "|---|---|---|---|---|---|"]
        for c in ("knn1", "linear"):
            fit = probe[f"{c}_fit_seconds"]
            ext = [stages.get(f"evaluate_{p}_{c}", {}).get("facescrub_seconds") for p in ("joint", "per_user")]
            ext_cells = " | ".join(fmt_s(e) if e is not None else "-" for e in ext)
            lines.append(f"| {c} | {fmt_s(fit)} | {fmt_s(fit)} | {fmt_s(fit * probe['protected'])} | {ext_cells} |")
        measured = (probe["knn1_fit_seconds"] + probe["linear_fit_seconds"]) * (1 + probe["protected"])
        extrapolated = sum(r["facescrub_seconds"] for n, r in stages.items() if n.startswith("evaluate_"))
        total = fs_total - extrapolated + measured
        lines += ["", f"With the measured fits in place of the four extrapolated evaluate rows "
                      f"({fmt_s(extrapolated)}), evaluate takes {fmt_s(measured)} and FaceScrub's total is "
                      f"{fmt_s(total)} ({100 * measured / total:.0f} % evaluate)."]
    lines.append("")
    if dev == "cpu":
        lines.append("GPU: not measured here (no GPU); run bench_scale.py --device cuda on a GPU machine.")
    else:
        lines.append(f"GPU: the table above is measured with --device {dev}; its FaceScrub column is that "
                     f"device's extrapolation.")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------

def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def build_dataset(root: Path, identities: int, pictures: int, *, seed: int, threshold: float,
                  workers: int) -> float | None:
    """The demo generator's dataset at ``root`` (kept between runs); its seconds, None if cached."""
    if (root / "card.json").is_file():
        return None
    from cloakbench.demo.generate import make_demo_dataset

    print(f"  generating {identities} identities x {pictures} pictures into {root}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    make_demo_dataset(root, n_identities=identities, n_pictures=pictures, seed=seed,
                      screen_threshold=threshold, workers=workers)
    return time.perf_counter() - t0


def bench_config(base: dict, *, dataset_root: Path, counts: dict, args: argparse.Namespace) -> dict:
    """The demo configuration at one scale, with the bench's cuts (steps, epochs)."""
    cfg = copy.deepcopy(base)
    cfg["device"] = args.device
    cfg["demo"].update(enabled=False)
    cfg["dataset"]["root"] = str(dataset_root)
    cfg["users"]["n_protected"] = counts["protected"]
    if args.target_pool is not None:
        cfg["users"]["target_pool"] = args.target_pool
    cfg["cloaks"][CLOAK].setdefault("params", {})["steps"] = args.steps
    for name in cfg["cloaks"][CLOAK]["ensemble"]:
        cfg["extractors"][name].setdefault("train", {})["epochs"] = args.train_epochs
    return cfg


def run_scale(scale: float, counts: dict, base_cfg: dict, args: argparse.Namespace, work: Path) -> dict:
    """Every stage once at one scale: {counts, seconds per stage, generator seconds}."""
    from cloakbench.card import run_dataset_card
    from cloakbench.data.prepare import run_prepare_dataset
    from cloakbench.data.roles import pictures_for_subset, run_select_users, trainer_pictures
    from cloakbench.data.scrape import run_scrape
    from cloakbench.embed import run_embed
    from cloakbench.evaluate import run_evaluate
    from cloakbench.extractors.training import run_train_extractor
    from cloakbench.perturb import run_perturb
    from cloakbench.plan import build_plan

    import pandas as pd

    ids, pics = counts["identities"], counts["pictures_per_identity"]
    dataset_root = args.cache / f"demo-{ids}x{pics}-seed{args.seed}-screen{args.screen_threshold:g}"
    gen = build_dataset(dataset_root, ids, pics, seed=args.seed, threshold=args.screen_threshold,
                        workers=args.threads)
    load = load_average()    # after the generator, before the stages
    cfg = bench_config(base_cfg, dataset_root=dataset_root, counts=counts, args=args)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    plan = build_plan(cfg, ROOT / "config" / "schema.yaml", base_dir=ROOT)
    seed = plan["seed"]
    dset = work / "dataset"
    manifest, roles, images = dset / "manifest.parquet", dset / "roles.parquet", dset / "images"
    ensemble = plan.ensemble(CLOAK)
    checkpoints = {n: str(work / "extractors" / f"{n}.pt") for n in ensemble if n in plan.trained}
    shard = work / "cloaked" / CLOAK / "protected" / "shard-0"
    scrape_dir = work / "scrape" / CLOAK
    emb = {s: work / "embeddings" / EXTRACTOR / f"{s}.parquet" for s in plan.imagesets(CLOAK)}
    seconds: dict[str, float] = {}

    def timed(stage: str, fn: Callable[[], Any]) -> None:
        print(f"  {scale:g}x {stage}", file=sys.stderr, flush=True)
        logging.getLogger("bench_scale").info("scale %gx: stage %s", scale, stage)
        t0 = time.perf_counter()
        fn()
        if args.device == "cuda":
            import torch
            torch.cuda.synchronize()
        seconds[stage] = time.perf_counter() - t0

    # the rule's workers: one process per thread the job gets (rules/dataset.smk)
    timed("prepare_dataset", lambda: run_prepare_dataset(root=str(dataset_root), manifest=manifest,
                                                         dataset_cfg=plan.plain("dataset"), seed=seed,
                                                         workers=args.threads))
    timed("select_users", lambda: run_select_users(manifest=manifest, out=roles, users=plan.plain("users"),
                                                   seed=seed))

    def train():
        for name in checkpoints:
            run_train_extractor(name=name, spec=plan.plain("extractors", name), manifest=manifest, roles=roles,
                                images=images, checkpoint=checkpoints[name], seed=seed, device=args.device)
    timed("train_extractor", train)
    timed("perturb", lambda: run_perturb(
        manifest=manifest, roles=roles, images=images, checkpoints=checkpoints, subset="protected", shard=0,
        shards=1, cloak=CLOAK, cloak_spec=plan.cloak_spec(CLOAK),
        extractors={n: plan.plain("extractors", n) for n in ensemble}, out_dir=shard, seed=seed,
        batch_size=plan["perturb"]["batch_size"], device=args.device))
    timed("scrape", lambda: run_scrape(manifest=manifest, roles=roles, images=images, shards=[shard],
                                       table=scrape_dir / "scrape.parquet", images_out=scrape_dir / "images",
                                       cloak=CLOAK, scrape_cfg=plan.plain("scrape"), seed=seed))
    spec = plan.plain("extractors", EXTRACTOR)
    batch = plan["evaluate"]["batch_size"]
    timed("embed_clean", lambda: run_embed(name=EXTRACTOR, spec=spec, checkpoint=None, table=manifest,
                                           images=images, imageset="clean", out=emb["clean"], batch_size=batch,
                                           device=args.device))
    scraped = f"scraped-{CLOAK}"
    timed("embed_scraped", lambda: run_embed(name=EXTRACTOR, spec=spec, checkpoint=None,
                                             table=scrape_dir / "scrape.parquet", images=scrape_dir / "images",
                                             imageset=scraped, out=emb[scraped], batch_size=batch,
                                             device=args.device))
    for protocol in ("joint", "per_user"):
        for classifier in ("knn1", "linear"):
            evaluate_cfg = {**plan.plain("evaluate"), "classifiers": [classifier], "features": "raw"}
            scrape_cfg = {**plan.plain("scrape"), "protocol": protocol}
            timed(f"evaluate_{protocol}_{classifier}", lambda e=evaluate_cfg, s=scrape_cfg, p=protocol, c=classifier:
                  run_evaluate(scrape=scrape_dir / "scrape.parquet", embeddings=[str(emb[k]) for k in emb],
                               imagesets=list(emb), out=work / "records" / f"{p}_{c}.json", cloak=CLOAK,
                               extractor=EXTRACTOR, extractor_info=plan.extractor_info(EXTRACTOR),
                               cloak_spec=plan.cloak_spec(CLOAK), evaluate_cfg=e, scrape_cfg=s,
                               dataset_cfg=plan.plain("dataset"), seed=seed))
    timed("dataset_card", lambda: run_dataset_card(
        manifest=manifest, embeddings=[str(emb["clean"])], extractors=[EXTRACTOR], types={EXTRACTOR: spec["type"]},
        root=str(dataset_root), card=work / "card.json", sheet=work / "contact_sheet.png", seed=seed))

    man, role_table = pd.read_parquet(manifest), pd.read_parquet(roles)
    table = pd.read_parquet(scrape_dir / "scrape.parquet")
    measured = {
        "identities": int(man["identity"].nunique()), "pictures": int(len(man)),
        "source_pictures": ids * pics, "protected": int((role_table["role"] == "protected").sum()),
        "classes": int(table["identity"].nunique()),
        "n_train": int((table["split"] == "train").sum()), "n_test": int((table["split"] == "test").sum()),
        "protected_train": int(len(pictures_for_subset(man, role_table, "protected"))),
        "cloaked": int(table["cloaked"].sum()),
        "trainer": int(len(trainer_pictures(man, role_table, what="bench_scale"))),
    }
    if not args.keep_work:
        shutil.rmtree(work)
    return {"scale": scale, "counts": measured, "seconds": seconds, "generate_seconds": gen,
            "dataset": str(dataset_root), "load_before": load}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", type=float, nargs="+", default=None,
                    help="dataset scales (default 1 2 4; --quick: 1 2)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench_scale")
    ap.add_argument("--quick", action="store_true",
                    help="test-sized: 6 identities x 10 pictures, 1 protected user, scales 1 2, 2 steps")
    ap.add_argument("--threads", type=int, default=2, help="torch and BLAS threads (default 2, the machine's cores)")
    ap.add_argument("--steps", type=int, default=None, help=f"{CLOAK} steps (default 20; --quick: 2)")
    ap.add_argument("--train-epochs", type=int, default=2, help="epochs of the ensemble's training (default 2)")
    ap.add_argument("--configfile", type=Path, default=ROOT / "config" / "config.yaml",
                    help="the demo configuration the scales start from")
    ap.add_argument("--cache", type=Path, default=None,
                    help="folder of the generated datasets (default $CLOAKBENCH_CACHE/bench_scale)")
    ap.add_argument("--screen-threshold", type=float, default=0.99,
                    help="the demo generator's SFace screening cosine (default 0.99: identities need not be distinct)")
    ap.add_argument("--keep-work", action="store_true", help="keep each scale's work files under --out/work")
    ap.add_argument("--probe", action=argparse.BooleanOptionalAction, default=None,
                    help="also time one knn1 and one linear fit at FaceScrub size on synthetic features "
                         "(default: on, off with --quick; under a minute on 2 cores)")
    args = ap.parse_args(argv)
    args.scales = args.scales or ([1.0, 2.0] if args.quick else [1.0, 2.0, 4.0])
    if len(set(args.scales)) < 2:
        ap.error("--scales needs at least two different scales to fit an exponent")
    args.steps = args.steps or (2 if args.quick else 20)
    from cloakbench.io import cache_dir

    args.cache = args.cache or cache_dir() / "bench_scale"
    args.target_pool = 1 if args.quick else None
    args.probe = (not args.quick) if args.probe is None else args.probe
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from cloakbench.workflow import hold_threads

    hold_threads(args.threads)          # environment for the thread pools not started yet
    # insightface's alignment warns of a scikit-image deprecation on every picture (here and in
    # the generator's worker processes, which read the environment)
    quiet = "ignore::FutureWarning:insightface.utils.face_align"
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), quiet]))
    warnings.filterwarnings("ignore", category=FutureWarning, module="insightface.utils.face_align")
    import torch
    import yaml
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)     # BLAS pools numpy may have started already
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no GPU on this machine")
    base_cfg = yaml.safe_load(args.configfile.read_text())
    args.seed = int(base_cfg.get("seed", 0))
    demo = base_cfg.get("demo") or {}
    for key in ("identities", "pictures_per_identity"):
        if key not in demo:
            sys.exit(f"{args.configfile}: no demo.{key} (the scales start from the demo's size)")
    for kind, name in (("cloaks", CLOAK), ("extractors", EXTRACTOR)):
        if name not in (base_cfg.get(kind) or {}):
            sys.exit(f"{args.configfile}: no {kind}.{name} (the stage this bench times)")
    if args.quick:
        base = (6, 10, 1)
    else:
        base = (demo["identities"], demo["pictures_per_identity"], base_cfg["users"]["n_protected"])
    fs_cfg = yaml.safe_load((ROOT / "config" / "facescrub.yaml").read_text())
    fs_users, fs_data = fs_cfg["users"], fs_cfg["dataset"]
    facescrub = facescrub_counts(pictures=FACESCRUB_PICTURES, identities=FACESCRUB_IDENTITIES,
                                 protected=fs_users["n_protected"], target_pool=fs_users["target_pool"],
                                 train_fraction=fs_data["train_fraction"])

    args.out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(args.out / "bench_scale.log", mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root_log = logging.getLogger()
    root_log.addHandler(handler)
    root_log.setLevel(logging.INFO)
    try:
        return _run(args, base, base_cfg, facescrub, fs_data)
    finally:
        root_log.removeHandler(handler)
        handler.close()


def _run(args: argparse.Namespace, base: tuple, base_cfg: dict, facescrub: dict, fs_data: dict) -> dict:
    import torch

    from cloakbench.cloaks.fawkes_v10 import MODES

    full_steps = MODES[base_cfg["cloaks"][CLOAK].get("params", {}).get("mode", "high")]["steps"]
    meta = {"started": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "commit": git_commit(),
            "load_before": load_average(), "device": args.device, "threads": args.threads,
            "cpu_count": os.cpu_count(), "machine": platform.machine(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
            "steps": args.steps, "cloak_full_steps": full_steps, "train_epochs": args.train_epochs,
            "quick": args.quick, "base": dict(zip(("identities", "pictures_per_identity", "protected"), base)),
            "facescrub_train_fraction": fs_data["train_fraction"]}
    scales = []
    for s in args.scales:
        counts = scaled_counts(*base, s)
        print(f"scale {s:g}x: {counts}", file=sys.stderr, flush=True)
        scales.append(run_scale(s, counts, base_cfg, args, args.out / "work" / f"scale-{s:g}"))
    probe = None
    if args.probe:
        from cloakbench.extractors.registry import extractor_class

        dim = extractor_class(base_cfg["extractors"][EXTRACTOR]["type"], name=EXTRACTOR).embedding_dim
        probe = probe_classifiers(facescrub, dim=dim, seed=args.seed)
    meta.update(finished=time.strftime("%Y-%m-%d %H:%M", time.gmtime()), load_after=load_average())
    scales.sort(key=lambda r: r["counts"]["pictures"])
    result = {"meta": meta, "scales": scales, "facescrub": facescrub, "stages": analyse(scales, facescrub),
              "probe": probe}
    md = render_markdown(result)
    (args.out / "bench_scale.md").write_text(md)
    (args.out / "bench_scale.json").write_text(json.dumps(result, indent=1))
    if not args.keep_work:
        shutil.rmtree(args.out / "work", ignore_errors=True)
    print(md)
    print(f"written: {args.out / 'bench_scale.md'}, {args.out / 'bench_scale.json'}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
