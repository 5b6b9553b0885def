"""Bit-identity check for refactors of the cloaks, extractors and embedding code.

Runs every cloak type (and the variants whose code paths differ: ensembles, working
resolution, several starts, L-inf projection, LPIPS with random AlexNet weights, official
tool outputs), the perturb stage on a tiny table, the batched-embedding helpers and the
extractor loaders on small fixed inputs with fixed seeds, and saves every output tensor,
history and chosen target. Run it once before a refactor and once after, then compare::

    python benchmarks/check_refactor_identity.py save /tmp/before
    python benchmarks/check_refactor_identity.py save /tmp/after
    python benchmarks/check_refactor_identity.py compare /tmp/before /tmp/after

``compare`` exits 1 unless every tensor is ``torch.equal`` and every other value ``==``.
CPU only, one thread, about a minute.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

try:  # the package was called ``attacks`` before it held only cloaks
    importlib.import_module("cloakbench.cloaks")
    PKG = "cloakbench.cloaks"
    TESTLIB = "cloaks_testlib"
except ImportError:  # pragma: no cover - before the rename
    PKG = "cloakbench.attacks"
    TESTLIB = "attacks_testlib"


def cloaks_mod(sub: str):
    return importlib.import_module(f"{PKG}.{sub}")


def plain(value: Any) -> Any:
    """Tensors to CPU copies, numpy to tensors, containers recursively."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value)).clone()
    if isinstance(value, pd.DataFrame):
        return {c: plain(value[c].to_numpy()) if pd.api.types.is_numeric_dtype(value[c])
                else [str(v) for v in value[c]] for c in value.columns}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def cloak_cases(tmp: Path) -> dict[str, Callable[[], Any]]:
    testlib = importlib.import_module(TESTLIB)
    TinyNet, smooth_images = testlib.TinyNet, testlib.smooth_images
    build_cloak = importlib.import_module(PKG).build_cloak
    build_target_context = cloaks_mod("context").build_target_context
    LPIPSAlex = cloaks_mod("metrics" if PKG.endswith("cloaks") else "lowkey").LPIPSAlex

    images = smooth_images(4, seed=0)
    user = smooth_images(3, seed=0)
    candidates = {f"id{i}": smooth_images(3, seed=10 + i) for i in range(6)}

    g = torch.Generator().manual_seed(0)
    alex = {}
    for idx, shape in LPIPSAlex.CONV_SHAPES.items():
        alex[f"features.{idx}.weight"] = torch.randn(shape, generator=g) * 0.05
        alex[f"features.{idx}.bias"] = torch.zeros(shape[0])
    alex_path = tmp / "alexnet-random.pth"
    torch.save(alex, alex_path)

    def run(spec: dict[str, Any], ensemble: list, pictures: torch.Tensor = images, *,
            seed: int = 0, context: dict | None = None, **call: Any) -> dict[str, Any]:
        cloak = build_cloak("c", spec, ensemble, seed=seed)
        out: dict[str, Any] = {}
        if context is not None:
            cloak.prepare(context)
            out["target"] = cloak.target_identity
            out["ranking"] = cloak.target_ranking
        out["cloaked"] = cloak(pictures, **call)
        hist = getattr(cloak, "history", None)
        if hist is not None and hasattr(hist, "as_dict"):
            out["history"] = hist.as_dict()
        out["loss_history"] = list(cloak.loss_history) if hasattr(cloak, "loss_history") else None
        return out

    def ctx(ensemble):
        return build_target_context(ensemble, user, candidates, user="me")

    two = lambda: [TinyNet(), TinyNet("other", seed=1)]  # noqa: E731

    # External tool outputs: PNGs named like Fawkes writes them.
    from cloakbench.images import to_uint8
    from cloakbench.io import write_png
    ext_dir = tmp / "external"
    noisy = (images + 0.03 * torch.randn(images.shape, generator=torch.Generator().manual_seed(5)))
    for k, arr in enumerate(to_uint8(noisy.clamp(0, 1))):
        write_png(arr, ext_dir / "p" / f"{k}_cloaked.png")
    ids = [f"p/{k}" for k in range(images.shape[0])]

    return {
        "pgd": lambda: run({"type": "pgd", "params": {"steps": 4}}, [TinyNet()]),
        "pgd_no_random_start": lambda: run(
            {"type": "pgd", "params": {"steps": 3, "random_start": False, "eps": 0.02}},
            two(), seed=3),
        "fawkes_v03": lambda: run({"type": "fawkes_v03", "params": {"mode": "min", "steps": 6}},
                                  [TinyNet()], user, context=ctx([TinyNet()])),
        "fawkes_v03_two_image_res": lambda: run(
            {"type": "fawkes_v03", "params": {"mode": "low", "steps": 5, "resolution": 128,
                                              "source_center": "image", "n_farthest": 3,
                                              "keep_best": False}},
            two(), user, seed=4, context=ctx(two())),
        "fawkes_v10": lambda: run({"type": "fawkes_v10", "params": {"mode": "low", "steps": 6}},
                                  [TinyNet()]),
        "fawkes_v10_two": lambda: run(
            {"type": "fawkes_v10", "params": {"mode": "mid", "steps": 5, "lr": 5,
                                              "save_last_on_failed": False}}, two(), seed=7),
        "lowkey_dssim": lambda: run({"type": "lowkey", "params": {"perceptual": "dssim",
                                                                  "steps": 4}}, [TinyNet()]),
        "lowkey_starts_eps": lambda: run(
            {"type": "lowkey", "params": {"perceptual": "dssim", "steps": 3, "n_starts": 2,
                                          "eps": 0.01, "blur_kernel": 0, "flip": False}},
            two(), seed=2),
        "lowkey_lpips": lambda: run({"type": "lowkey", "params": {"steps": 3,
                                                                  "lpips_weights": str(alex_path)}},
                                    [TinyNet()]),
        "external": lambda: run({"type": "external", "params": {"folder": str(ext_dir)}}, [],
                                image_ids=ids),
    }


def perturb_case(tmp: Path) -> dict[str, Any]:
    """perturb_shard on a 3-identity table with Fawkes v0.3 (prepare from the tables)."""
    testlib = importlib.import_module(TESTLIB)
    from cloakbench.images import to_uint8
    from cloakbench.io import write_png
    from cloakbench.perturb import perturb_shard

    data = tmp / "ds"
    rows = []
    for i, ident in enumerate(["a", "b", "c", "d"]):
        for k, arr in enumerate(to_uint8(testlib.smooth_images(3, seed=20 + i))):
            rel = f"{ident}/{k}.png"
            write_png(arr, data / rel)
            rows.append({"image_id": f"{ident}/{k}", "identity": ident, "path": rel,
                         "split": "train" if k < 2 else "test"})
    manifest = pd.DataFrame(rows)
    roles = pd.DataFrame({"identity": list("abcd"),
                          "role": ["protected", "protected", "public", "public"]})
    out = {}
    for name, spec in {"f3": {"type": "fawkes_v03", "ensemble": ["tiny"],
                              "params": {"mode": "min", "steps": 4, "n_farthest": 2}},
                       "pgd": {"type": "pgd", "ensemble": ["tiny"], "params": {"steps": 2}}}.items():
        out_dir = tmp / f"perturb-{name}"
        figures = perturb_shard(manifest, roles, data, subset="protected", shard=0, shards=1,
                                cloak_name=name, cloak_spec=spec,
                                load_extractor=lambda n: testlib.TinyNet(n), out_dir=out_dir,
                                seed=0, batch_size=2)
        out[name] = {"figures": plain(figures.drop(columns=["seconds"])),
                     "pngs": {p.relative_to(out_dir).as_posix(): p.read_bytes()
                              for p in sorted(out_dir.rglob("*.png"))}}
    return out


def embedding_cases(tmp: Path) -> dict[str, Any]:
    testlib = importlib.import_module(TESTLIB)
    from cloakbench.embed import embed_paths
    from cloakbench.images import to_uint8
    from cloakbench.io import write_png

    images = testlib.smooth_images(5, seed=9)
    paths = []
    for k, arr in enumerate(to_uint8(images)):
        p = tmp / "emb" / f"x/{k}.png"
        write_png(arr, p)
        paths.append(str(p))
    ex = testlib.TinyNet()
    context = cloaks_mod("context")
    metrics = cloaks_mod("metrics")
    out = {
        "embed_paths": embed_paths(ex, paths, batch_size=2),
        "context_embed": context.build_target_context([ex], images, {"z": images[:2]},
                                                      batch_size=2),
        "normalized_features": metrics.normalized_features(ex, images, batch_size=2),
        "feature_shift": metrics.feature_shift(images, images.flip(3), [ex], batch_size=3),
        "perturbation_stats": metrics.perturbation_stats(images, images.flip(2)),
    }
    from cloakbench.adaptive.detection import train_detector
    det = train_detector("feat", {"type": "features", "extractor": "tiny", "inputs": "both"},
                         paths[:3], paths[3:], seed=0, extractor=ex)
    out["detector_scores"] = det.score(paths)
    return out


def extractor_cases(tmp: Path) -> dict[str, Any]:
    """Random-weight in-pipeline extractors and a robust extractor from a checkpoint."""
    from cloakbench.extractors import build_extractor
    testlib = importlib.import_module(TESTLIB)
    images = testlib.smooth_images(3, seed=1)
    out = {}
    for type_name in ("small_cnn", "resnet_face"):
        from cloakbench.extractors import extractor_class
        torch.manual_seed(0)
        model = extractor_class(type_name)("m", {"type": type_name})
        model.init_weights(torch.Generator().manual_seed(0))
        ckpt = tmp / f"{type_name}.pt"
        torch.save(model.state_dict(), ckpt)
        loaded = build_extractor("m", {"type": type_name}, checkpoint=ckpt)
        with torch.no_grad():
            out[type_name] = loaded(images)
        robust_spec = {"type": "robust", "base": "m", "base_spec": {"type": type_name},
                       "cloaks": ["pgd"]}
        robust = build_extractor("r", robust_spec, checkpoint=ckpt)
        with torch.no_grad():
            out[f"robust_{type_name}"] = robust(images)
        out[f"robust_{type_name}_info"] = json.loads(json.dumps(
            robust.info().__dict__, default=str))
    return out


def save(folder: Path) -> None:
    torch.set_num_threads(1)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        results: dict[str, Any] = {}
        for name, fn in cloak_cases(tmp).items():
            torch.manual_seed(12345)  # the cloaks must not draw from it; same state either way
            results[f"cloak/{name}"] = plain(fn())
            print("ran", name, flush=True)
        results["perturb"] = perturb_case(tmp)
        results["embedding"] = plain(embedding_cases(tmp))
        results["extractors"] = plain(extractor_cases(tmp))
    torch.save(results, folder / "identity.pt")
    print(f"saved {len(results)} groups to {folder / 'identity.pt'}")


def diff(a: Any, b: Any, path: str, out: list[str], added: list[str] | None = None) -> None:
    """Differences of ``b`` from ``a`` into ``out``; values only ``b`` has (a key ``a`` lacks,
    ``None`` in ``a``) into ``added``: new outputs are not a change of the old ones."""
    added = out if added is None else added
    if a is None and b is not None:
        added.append(path)
        return
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)):
            out.append(f"{path}: tensors differ")
        return
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) - set(b):
            out.append(f"{path}: keys {sorted(set(a) - set(b))} missing")
        added.extend(f"{path}/{k}" for k in sorted(set(b) - set(a)))
        for k in sorted(set(a) & set(b)):
            diff(a[k], b[k], f"{path}/{k}", out, added)
        return
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            diff(x, y, f"{path}[{i}]", out, added)
        return
    if a != b:
        out.append(f"{path}: {a!r} != {b!r}"[:300])


def compare(before: Path, after: Path) -> int:
    a = torch.load(before / "identity.pt", weights_only=False)
    b = torch.load(after / "identity.pt", weights_only=False)
    problems: list[str] = []
    added: list[str] = []
    diff(a, b, "", problems, added)
    if added:
        print("new outputs (not compared): " + ", ".join(added))
    if problems:
        print("DIFFERENT:\n  " + "\n  ".join(problems))
        return 1
    count = {"tensors": 0, "values": 0}

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        else:
            count["tensors" if isinstance(v, torch.Tensor) else "values"] += 1

    walk(a)
    print(f"identical: {len(a)} groups ({', '.join(sorted(a))}); {count['tensors']} tensors "
          f"torch.equal, {count['values']} other values ==")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("save")
    s.add_argument("folder", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    args = ap.parse_args()
    if args.cmd == "save":
        save(args.folder)
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
