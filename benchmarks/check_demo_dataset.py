"""Acceptance check of the offline demo dataset (issue 6), outside Snakemake.

Generates the demo (or reuses one), aligns every picture the way prepare_dataset does
(landmarks -> 5 points -> insightface norm_crop; here dlib's HOG detector + 68-point
predictor), embeds the 112x112 crops with SFace and with dlib's ResNet (the pipeline's
extractors), splits 70/30 per identity with a seed, and prints ``dataset_quality``:
linear-probe and 1-NN identification accuracy on the test pictures, and the share of
identity pairs each recogniser would merge. Bars: >= 40 x 20, linear accuracy >= 0.90 with
both, merged pairs <= 10 % with both.

    .venv/bin/python benchmarks/check_demo_dataset.py [--out DIR] [--reuse] [--sources DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def align_all(root: Path):
    from cloakbench.demo.faces import dlib_models, norm_crop
    from cloakbench.io import read_rgb
    m = dlib_models()
    crops, ids, names, rejects = [], [], [], []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(d.glob("*.jpg")):
            img = read_rgb(f)
            dets, scores, _ = m["det"].run(img, 1, -0.2)
            if len(dets) == 0:
                rejects.append(f"{d.name}/{f.name}")
                continue
            j = int(np.argmax([r.width() * r.height() for r in dets]))
            lm = np.array([[p.x, p.y] for p in m["sp"](img, dets[j]).parts()], np.float64)
            crops.append(norm_crop(img, lm))
            ids.append(d.name)
            names.append(f"{d.name}/{f.stem}")
    return np.stack(crops), np.array(ids), names, rejects


def embed(name: str, spec: dict, crops: np.ndarray, batch: int = 64) -> np.ndarray:
    from cloakbench.extractors import build_extractor
    model = build_extractor(name, spec)
    out = []
    with torch.inference_mode():
        for i in range(0, len(crops), batch):
            x = torch.from_numpy(crops[i:i + batch]).permute(0, 3, 1, 2).float().div(255.0)
            out.append(model(x).cpu().numpy())
    return np.concatenate(out)


def split_70_30(ids: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 70])
    split = np.empty(len(ids), dtype=object)
    for ident in np.unique(ids):
        idx = np.flatnonzero(ids == ident)
        idx = idx[rng.permutation(len(idx))]
        n_train = int(round(0.7 * len(idx)))
        split[idx[:n_train]] = "train"
        split[idx[n_train:]] = "test"
    return split.astype(str)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="dataset folder (default: a temporary one)")
    ap.add_argument("--reuse", action="store_true", help="do not regenerate an existing dataset")
    ap.add_argument("--identities", type=int, default=40)
    ap.add_argument("--pictures", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sources", default=None, help="folder with the base-photo archives")
    ap.add_argument("--sheet", default=None, help="also write a contact sheet PNG here")
    ap.add_argument("--json", default=None, help="write the figures as JSON here")
    a = ap.parse_args(argv)

    from cloakbench.card import contact_sheet, dataset_quality
    from cloakbench.demo import make_demo_dataset
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="cloakbench-demo-check-")) / "demo"
    gen = None
    if not (a.reuse and (out / "card.json").exists()):
        t = time.perf_counter()
        gen = make_demo_dataset(out, n_identities=a.identities, n_pictures=a.pictures, seed=a.seed,
                                sources_dir=a.sources)
        print(f"generated {gen['pictures']} pictures of {gen['identities']} identities in "
              f"{time.perf_counter() - t:.1f} s wall: {gen['seconds']}")
        print(f"screening: {json.dumps(gen['screening'])}")
    if a.sheet:
        print("contact sheet:", contact_sheet(out, a.sheet))
    t = time.perf_counter()
    crops, ids, names, rejects = align_all(out)
    print(f"aligned {len(crops)} pictures ({len(rejects)} without a detected face: {rejects[:10]}) "
          f"in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    embs = {"sface": embed("sface", {"type": "sface"}, crops),
            "dlib": embed("dlib", {"type": "dlib_resnet"}, crops)}
    print(f"embedded with SFace and dlib in {time.perf_counter() - t:.1f} s")
    split = split_70_30(ids, a.seed)
    q = dataset_quality(embs, ids, split)
    folders = [d for d in out.iterdir() if d.is_dir()]
    n_ids = len(folders)
    per_id = min(len(list(d.glob("*.jpg"))) for d in folders)
    print()
    print(f"| extractor | linear-probe acc | 1-NN acc (Euclid / cosine) | merged identity pairs | "
          f"same-id mean | diff-id mean | genuine / impostor picture pairs accepted |")
    print("|---|---|---|---|---|---|---|")
    for name, r in q["extractors"].items():
        print(f"| {name} | {r['linear_accuracy']:.3f} | {r['knn1_accuracy']:.3f} / "
              f"{r['knn1_cosine_accuracy']:.3f} | {r['merged_pairs']}/{r['identity_pairs']} = "
              f"{r['merged_pair_rate']:.1%} | {r['same_identity_mean']:.3f} | "
              f"{r['different_identity_mean']:.3f} | {r['genuine_pairs_accepted']:.3f} / "
              f"{r['impostor_pairs_accepted']:.4f} |")
    size_ok = n_ids >= 40 and per_id >= 20
    print(f"\nidentities {n_ids}, min pictures per identity {per_id} in the dataset (bar 40 x 20: "
          f"{'ok' if size_ok else 'NOT MET'}); quality bars: {'ok' if q['passes'] else 'NOT MET'}")
    if a.json:
        Path(a.json).write_text(json.dumps({"quality": q, "generation": gen and {
            k: gen[k] for k in ("seconds", "screening", "identities", "pictures")},
            "rejects": rejects}, indent=2, default=str))
    return 0 if (q["passes"] and size_ok) else 1


if __name__ == "__main__":
    sys.exit(main())
