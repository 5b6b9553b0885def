"""Compare two runs of the same config (two Snakemake working directories), for refactors.

    python benchmarks/compare_runs.py RUN_A RUN_B

Every file under ``results/`` and ``data/``: PNG/JPEG and other files byte for byte, state
dicts (``.pt``) tensor by tensor, JSON and parquet by value, ignoring timing fields
(``seconds``...). Exits 1 and lists the differences otherwise. Expected differences: the
report's seconds columns and the records' provenance (commit, config hash). Checkpoints
written before ``cloakbench.io.write_state_dict`` (2026-11-30) also differ in ``sha256``:
``torch.save`` then named its archive after the random temporary file.
"""
import json, sys, hashlib
from pathlib import Path
import numpy as np, pandas as pd, torch

A, B = Path(sys.argv[1]), Path(sys.argv[2])
IGNORE_KEYS = {"seconds", "train_seconds", "time", "duration", "elapsed", "timestamp", "created",
               "started", "finished", "host", "machine", "wall_seconds", "seconds_per_picture"}
problems, counts = [], {}

def bump(k): counts[k] = counts.get(k, 0) + 1

def cmp_json(a, b, path):
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            problems.append(f"{path}: keys differ {sorted(set(a) ^ set(b))}")
        for k in set(a) & set(b):
            if k in IGNORE_KEYS: continue
            cmp_json(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b): problems.append(f"{path}: lengths differ"); return
        for i, (x, y) in enumerate(zip(a, b)): cmp_json(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        pass
    elif a != b:
        problems.append(f"{path}: {a!r} != {b!r}"[:300])

for root in ("results", "data"):
    fa = {p.relative_to(A) for p in (A / root).rglob("*") if p.is_file()}
    fb = {p.relative_to(B) for p in (B / root).rglob("*") if p.is_file()}
    for p in sorted(fa ^ fb): problems.append(f"only in one run: {p}")
    for rel in sorted(fa & fb):
        pa, pb = A / rel, B / rel
        suf = pa.suffix
        if suf == ".json":
            cmp_json(json.loads(pa.read_text()), json.loads(pb.read_text()), str(rel)); bump("json")
        elif suf == ".parquet":
            da, db = pd.read_parquet(pa), pd.read_parquet(pb)
            cols = [c for c in da.columns if c not in IGNORE_KEYS]
            if list(da.columns) != list(db.columns):
                problems.append(f"{rel}: columns differ")
            else:
                for c in cols:
                    x, y = da[c].tolist(), db[c].tolist()
                    if json.dumps(x, default=lambda v: np.asarray(v).tolist()) != json.dumps(y, default=lambda v: np.asarray(v).tolist()):
                        problems.append(f"{rel}: column {c} differs")
            bump("parquet")
        elif suf == ".pt":
            sa, sb = torch.load(pa, weights_only=True), torch.load(pb, weights_only=True)
            if set(sa) != set(sb) or any(not torch.equal(sa[k], sb[k]) for k in sa):
                problems.append(f"{rel}: state dicts differ")
            bump("pt")
        elif suf in (".png", ".jpg"):
            if pa.read_bytes() != pb.read_bytes():
                problems.append(f"{rel}: bytes differ")
            bump(suf)
        elif suf in (".md",):
            if pa.read_text() != pb.read_text(): problems.append(f"{rel}: text differs")
            bump(suf)
        else:
            bump("other:" + suf)
            if pa.read_bytes() != pb.read_bytes(): problems.append(f"{rel}: bytes differ ({suf})")
print("compared:", counts)
if problems:
    print("DIFFERENCES (%d):" % len(problems)); print("\n".join(problems[:80])); sys.exit(1)
print("identical")
