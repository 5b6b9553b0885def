"""``make_demo_dataset``: the offline demo dataset, folder per identity, plus its card.

Pipeline: read the base photos out of their packages (checksummed) -> landmarks, canonical
alignment and person mattes -> sample part-swap recipes and keep a candidate only when its
SFace embedding is far from every identity kept so far (screening; dlib is left out so it
stays an independent check) -> render ``n_pictures`` photos per identity with per-picture
nuisances (in worker processes) -> write ``card.json`` / ``card.md``. Everything is written
into a temporary folder beside ``out_root`` that is renamed onto it at the very end, so a
killed run never leaves a half dataset that looks finished.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import resource
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from ..errors import ConfigError, DataError
from ..io import write_json, write_text
from . import compose, faces, render, sources

log = logging.getLogger(__name__)

GENERATOR = "cloakbench.demo part-swap composites"
GENERATOR_VERSION = 1
SCREEN_MODEL = "sface"
SCREEN_THRESHOLD = 0.45        # keep a candidate only if its SFace cosine to every kept one is below
SFACE_SAME_PERSON = 0.363      # SFace's published same-person cosine threshold

Screener = Callable[[np.ndarray], np.ndarray]   # N x 112 x 112 x 3 uint8 RGB -> N x D


def sface_screener(device: str = "cpu") -> Screener:
    """SFace (the pipeline's own extractor) on 112x112 ArcFace-aligned RGB crops."""
    import torch

    from ..extractors import build_extractor
    model = build_extractor(SCREEN_MODEL, {"type": "sface"}, device=device)

    def embed(crops: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().div(255.0)
        with torch.inference_mode():
            return model(x.to(device)).cpu().numpy().astype(np.float64)

    return embed


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)


# --------------------------------------------------------------------------------------
# screening
# --------------------------------------------------------------------------------------


def screen_identities(bases: list[compose.Base], mesh, mean_lm: np.ndarray, n: int,
                      rng: np.random.Generator, screener: Screener, threshold: float,
                      max_candidates: int, batch: int = 16) -> tuple[list, dict]:
    """Sample recipes until ``n`` are kept; a candidate is kept when its SFace cosine to
    every kept identity is below ``threshold`` (relaxed by 0.02 after each
    ``max_candidates`` tries, recorded)."""
    by_key = {b.key: b for b in bases}
    canvases = [b for b in bases if "canvas" in b.spec.roles]
    if not canvases:
        raise DataError("no base face may supply a canvas (hair, head, background)")
    order = {canvases[i].key: r for r, i in enumerate(rng.permutation(len(canvases)))}
    kept: list[tuple[compose.Recipe, compose.Identity]] = []
    kept_emb = np.zeros((0, 0))
    uses = {b.key: 0 for b in canvases}
    tried = 0
    thr = threshold
    relaxed = []
    tries_at_thr = 0
    while len(kept) < n:
        cands = []
        for _ in range(batch):
            # the least used canvas first (ties: a seeded order), so hair and head shapes spread
            c = min(canvases, key=lambda b: (uses[b.key], order[b.key]))
            uses[c.key] += 1            # provisional (spreads a batch over canvases), undone below
            r = compose.sample_recipe(rng, bases, c)
            cands.append((r, compose.compose(r, by_key, mesh, mean_lm)))
        for r, _ in cands:
            uses[r.canvas] -= 1
        crops = np.stack([faces.norm_crop((idt.image * 255 + 0.5).astype(np.uint8), idt.lm)
                          for _, idt in cands])
        emb = _unit(screener(crops))
        for (r, idt), e in zip(cands, emb):
            tried += 1
            tries_at_thr += 1
            if len(kept) < n and (len(kept) == 0 or float(np.max(kept_emb @ e)) < thr):
                kept.append((r, idt))
                kept_emb = e[None] if kept_emb.size == 0 else np.vstack([kept_emb, e])
                uses[r.canvas] += 1
        if len(kept) < n and tries_at_thr >= max_candidates:
            if thr >= 0.6:
                raise DataError(f"demo generator: only {len(kept)} of {n} identities pass SFace "
                                f"screening even at cosine {thr:.2f}; ask for fewer identities")
            relaxed.append({"after_candidates": tried, "from": round(thr, 3), "to": round(thr + 0.02, 3)})
            thr += 0.02
            tries_at_thr = 0
            log.warning("screening relaxed to cosine %.2f after %d candidates", thr, tried)
    sims = kept_emb @ kept_emb.T
    iu = np.triu_indices(len(kept), 1)
    info = {
        "model": SCREEN_MODEL, "input": "112x112 insightface norm_crop of the neutral composite",
        "rule": "keep a candidate if its cosine to every kept identity < threshold",
        "threshold": round(threshold, 4), "final_threshold": round(thr, 4), "relaxed": relaxed,
        "candidates": tried, "kept": len(kept),
        "max_pair_cosine": round(float(sims[iu].max()), 4) if len(iu[0]) else None,
        "mean_pair_cosine": round(float(sims[iu].mean()), 4) if len(iu[0]) else None,
        "canvas_uses": {k: v for k, v in sorted(uses.items())},
    }
    return kept, info


# --------------------------------------------------------------------------------------
# rendering (worker processes)
# --------------------------------------------------------------------------------------

_W: dict = {}


def _init_worker(tris, backgrounds, nuisances) -> None:
    import cv2
    cv2.setNumThreads(1)
    from .imaging import MeshWarper
    _W["mesh"] = MeshWarper(tris, (faces.CANVAS_H, faces.CANVAS_W))
    _W["bgs"] = backgrounds
    _W["nz"] = nuisances


def _render_identity(task) -> list[str]:
    ident, folder, seed, index, n_pictures = task
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for k in range(n_pictures):
        rng = np.random.default_rng([seed, 1, index, k])
        img, q = render.render_picture(ident, _W["mesh"], rng, _W["bgs"], _W["nz"])
        name = f"{k:03d}.jpg"
        Image.fromarray(img, "RGB").save(folder / name, format="JPEG", quality=q)
        names.append(name)
    return names


# --------------------------------------------------------------------------------------
# the entry point
# --------------------------------------------------------------------------------------


def make_demo_dataset(out_root: str | os.PathLike, *, n_identities: int, n_pictures: int,
                      seed: int, sources_dir: str | os.PathLike | None = None,
                      bases: Sequence[str] | None = None,
                      screen_threshold: float = SCREEN_THRESHOLD,
                      max_candidates: int | None = None,
                      nuisances: render.Nuisances | dict | None = None,
                      workers: int | None = None,
                      screener: Screener | None = None,
                      device: str = "cpu") -> dict:
    """Build the demo dataset at ``out_root`` (``<identity>/<k>.jpg`` + ``card.json``/``card.md``).

    ``sources_dir``: folder holding the downloaded package archives (default
    :func:`sources.default_sources_dir`). ``bases``: keys of the base faces to use (default
    all of :data:`sources.BASES`). ``screener``: N x 112 x 112 x 3 uint8 -> N x D embeddings
    (default SFace). ``workers``: rendering processes (default: up to 2, 1 = in-process).
    Returns a summary (counts, timings, screening figures, the card)."""
    t0 = time.perf_counter()
    cpu0 = _cpu_seconds()
    out_root = Path(out_root)
    if n_identities < 2 or n_pictures < 1:
        raise ConfigError(f"demo: need at least 2 identities and 1 picture each "
                          f"(got {n_identities} x {n_pictures})")
    if isinstance(nuisances, dict):
        nz = replace(render.Nuisances(), **{k: tuple(v) if isinstance(v, list) else v
                                            for k, v in nuisances.items()})
    else:
        nz = nuisances or render.Nuisances()
    specs = sources.bases_by_key(bases)
    photos = sources.read_photos([*specs, *sources.BACKGROUNDS], sources_dir)
    base_photos, bg_photos = photos[:len(specs)], photos[len(specs):]
    timings = {"read_sources": time.perf_counter() - t0}

    t = time.perf_counter()
    prepared = compose.prepare_bases(specs, base_photos)
    mean_lm = np.mean([b.lm for b in prepared], axis=0)
    mesh = compose.build_mesh(mean_lm)
    timings["prepare_bases"] = time.perf_counter() - t

    t = time.perf_counter()
    screener = screener or sface_screener(device)
    timings["load_screener"] = time.perf_counter() - t
    t = time.perf_counter()
    rng = np.random.default_rng([seed, 0])
    kept, screening = screen_identities(
        prepared, mesh, mean_lm, n_identities, rng, screener, screen_threshold,
        max_candidates or max(50, 6 * n_identities))
    timings["screen_identities"] = time.perf_counter() - t

    t = time.perf_counter()
    out_root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_root.name}.tmp-", dir=out_root.parent))
    try:
        width = len(str(n_identities - 1))
        names = [f"person_{i:0{max(2, width)}d}" for i in range(n_identities)]
        backgrounds = [p.image.astype(np.float32) / 255.0 for p in bg_photos]
        tasks = [(idt, str(tmp / name), seed, i, n_pictures)
                 for i, (name, (_, idt)) in enumerate(zip(names, kept))]
        n_workers = min(workers or min(2, os.cpu_count() or 1), n_identities)
        if n_workers <= 1:
            _init_worker(mesh.tris, backgrounds, nz)
            files = [_render_identity(task) for task in tasks]
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_init_worker,
                                     initargs=(mesh.tris, backgrounds, nz)) as ex:
                files = list(ex.map(_render_identity, tasks))
        timings["render"] = time.perf_counter() - t

        card = _card(out_root, names, kept, files, prepared, bg_photos, nz, screening, seed,
                     n_identities, n_pictures, specs)
        write_json(card, tmp / "card.json")
        write_text(_card_md(card), tmp / "card.md")
        _replace_dir(tmp, out_root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    timings["total"] = time.perf_counter() - t0
    timings["cpu_total"] = _cpu_seconds() - cpu0   # this process and its finished workers
    timings = {k: round(v, 2) for k, v in timings.items()}
    log.info("demo dataset: %d identities x %d pictures in %s (%.1f s wall, %.1f s CPU)",
             n_identities, n_pictures, out_root, timings["total"], timings["cpu_total"])
    return {"root": str(out_root), "identities": n_identities, "pictures": n_identities * n_pictures,
            "seconds": timings, "screening": screening, "card": card}


def _cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _replace_dir(tmp: Path, dest: Path) -> None:
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        os.replace(dest, old / "d")
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------------------
# dataset card
# --------------------------------------------------------------------------------------


def _card(out_root, names, kept, files, prepared, bg_photos, nz, screening, seed, n_ids,
          n_pics, specs) -> dict:
    used = sorted({k for r, _ in kept for k in r.donors().values()})
    return {
        "name": out_root.name,
        "generator": {"name": GENERATOR, "version": GENERATOR_VERSION,
                      "method": ("part-swap composites of real faces that ship in registry "
                                 "packages: canvas (hair, head, neck, clothes), face skin, eyes "
                                 "with brows, nose and mouth each from a base face, mesh-warped "
                                 "to an edited landmark shape, tone-matched and multi-band "
                                 "blended; candidates screened with SFace"),
                      "canvas": {"width": faces.CANVAS_W, "height": faces.CANVAS_H,
                                 "interocular_px": faces.IOD},
                      "shape_edit_ranges": {k: list(v) for k, v in compose.SHAPE_RANGES.items()},
                      "nuisances": nz.to_json()},
        "seed": seed,
        "counts": {"identities": n_ids, "pictures_per_identity": n_pics,
                   "pictures": n_ids * n_pics},
        "layout": "<identity>/<k>.jpg",
        "screening": screening,
        "base_photos": [{"key": b.key, "description": b.spec.description, **b.source,
                         "roles": sorted(b.spec.roles), "used": b.key in used}
                        for b in prepared],
        "backgrounds": [{"key": p.key, **p.source} for p in bg_photos],
        "identities": [{"name": n, "recipe": r.to_json(), "gray": bool(idt.gray),
                        "new_backgrounds": bool(idt.swap_background), "pictures": f}
                       for n, (r, idt), f in zip(names, kept, files)],
        "notes": ("Synthetic identities: every face is a composite of parts of real photos that "
                  "ship inside the packages listed; no picture shows a real person as is. "
                  "Source photos and generated pictures are never committed."),
    }


def _card_md(card: dict) -> str:
    s = card["screening"]
    g = card["generator"]
    lines = [
        f"# Dataset card: {card['name']}", "",
        f"{g['name']} (version {g['version']}), seed {card['seed']}: "
        f"{card['counts']['identities']} identities x {card['counts']['pictures_per_identity']} "
        f"pictures = {card['counts']['pictures']} JPEG photos, layout `{card['layout']}`.", "",
        g["method"] + ".", "",
        "## Base photos (read at run time from packages, never committed)", "",
        "| key | package | version | file | sha256 | roles | used |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in card["base_photos"]:
        lines.append(f"| {b['key']} | {b['package']} | {b['version']} | `{b['read_from'].split('!')[-1] if b['kind'] == 'archive' else b['file']}`"
                     f"{' (' + b['archive'] + ')' if b.get('archive') else ''} | `{b['sha256'][:12]}` | "
                     f"{', '.join(b['roles'])} | {'yes' if b['used'] else 'no'} |")
    lines += ["", "## Backgrounds", "", "| key | package | version | file |", "|---|---|---|---|"]
    for b in card["backgrounds"]:
        lines.append(f"| {b['key']} | {b['package']} | {b['version']} | `{b['file']}` |")
    lines += ["", "## Screening", "",
              f"{s['model']}: {s['rule']}; threshold {s['threshold']} (final {s['final_threshold']}); "
              f"{s['kept']} kept of {s['candidates']} candidates; largest cosine between kept "
              f"identities {s['max_pair_cosine']}, mean {s['mean_pair_cosine']}.", "",
              "## Generator settings", "", "```", *[f"{k}: {v}" for k, v in g["nuisances"].items()],
              *[f"shape.{k}: {v}" for k, v in g["shape_edit_ranges"].items()], "```", "",
              "## Identities", "", "| identity | canvas | face | eyes | nose | mouth |",
              "|---|---|---|---|---|---|"]
    for i in card["identities"]:
        r = i["recipe"]
        lines.append(f"| {i['name']} | {r['canvas']} | {r['face']} | {r['eyes']} | {r['nose']} | {r['mouth']} |")
    lines += ["", card["notes"], ""]
    return "\n".join(lines)
