"""Checked against the originals, by running them (README "Checked against the originals").

The official Fawkes code from the package registry runs in a side environment (sidevenv.py,
tf_side.py) on small seeded Keras models and real aligned faces; cloakbench's cloaks run here on
torch twins holding the very same weights (twin.py), from the same start. Then:

- Fawkes v1.0 (``fawkes==1.0.4``) vs ``fawkes_v10``, every mode preset (low: one model; mid and
  high: two), from the official generator's own start noise (``start=``): perturbation
  correlation >= 0.95, DSSIM and feature shift within 5 % of the original's, the same L-inf,
  and the first steps' DSSIM and feature term equal to the original's printed values.
- Fawkes v0.3 (``fawkes==0.0.8``, the registry's last v0.3-era release, TensorFlow 1 code under
  ``tf.compat.v1``) vs ``fawkes_v03``, targeted at the same target features, from the same
  (constant) start, v0.3's presets, without the learning-rate decay (see tf_side.py).
- DSSIM: cloakbench's ``metrics.dssim`` against ``tf.image.ssim`` as Fawkes calls it, on real
  pictures, on cloaked ones, and on the figures the pipeline's perturb stage records.

Not collected by ``make test`` (the file name does not match ``test_*.py``); run it with
``make test-reference`` (or ``pytest tests/reference/check_reference.py``). The first run builds
the side environment (a few minutes, cached outside the clone, see sidevenv.py).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import sidevenv
from face_photos import different_people
from twin import twins_from

from cloakbench.cloaks.fawkes_v03 import MODES as V03_MODES
from cloakbench.cloaks.fawkes_v03 import FawkesV03
from cloakbench.cloaks.fawkes_v10 import MODES as V10_MODES
from cloakbench.cloaks.fawkes_v10 import FawkesV10
from cloakbench.cloaks.metrics import dssim, feature_shift, linf

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/conftest.py)


def assert_twin_matches(got: np.ndarray, keras: np.ndarray) -> None:
    """A torch twin's features equal its Keras model's (relative 1e-4)."""
    assert np.abs(got - keras).max() <= 1e-4 * max(1.0, np.abs(keras).max())

HERE = Path(__file__).resolve().parent

# One case per mode preset; the faces are real photos from installed packages (face_photos.py).
V10_CASES = [
    {"name": "low", "mode": "low", "faces": ["t1_face0", "t1_face3"], "model_seeds": [101],
     "np_seed": 1},
    {"name": "mid", "mode": "mid", "faces": ["astronaut"], "model_seeds": [201, 202],
     "np_seed": 2},
    {"name": "high", "mode": "high", "faces": ["tom_hanks"], "model_seeds": [1, 2],
     "np_seed": 10},
]
# Not every start stays this close, and not because of cloakbench: the returned picture is the
# best step inside the DSSIM band, and a DSSIM that lands within rounding of the band's edge
# sends the adaptive weight one way or the other. Measured by hand (README "Checked against the
# originals"): with models 301/302 and start seed 3, the original against ITSELF from a start
# changed by one part in a million returned DSSIM 0.0186 vs 0.0171 (correlation 0.989), and
# fawkes_v10 0.0171 (correlation 0.965 / 0.979 with the two).
# v0.3's presets: Fawkes.mode2param of the GitHub tag v0.3 (version 0.3.1, never on PyPI; the
# registry's 0.0.8 has other presets), mode -> (DSSIM threshold, steps, learning rate), and its
# penalty (the --sd default). Both sides run with these.
V03_PRESETS = {"min": (0.002, 20, 40.0), "low": (0.003, 50, 35.0), "mid": (0.005, 200, 20.0),
               "high": (0.008, 500, 10.0), "ultra": (0.01, 1000, 8.0)}
V03_PENALTY = 1e6
V03_CASES = [
    {"name": "low", "mode": "low", "faces": ["astronaut"], "targets": ["t1_face2"],
     "model_seeds": [401]},
    {"name": "mid", "mode": "mid", "faces": ["t1_face1"], "targets": ["tom_hanks"],
     "model_seeds": [501, 502]},
]

MIN_CORRELATION = 0.95  # of the two perturbations (cloaked - clean), picture by picture
REL_TOL = 0.05          # DSSIM, feature shift (and for v0.3 the target distance, L-inf)
LINF_TOL = 1e-5         # v1.0: both clip at 15/255 (the original against its float32 round trip)
DSSIM_TOL = 1e-4        # metrics.dssim vs tf.image.ssim
TRAJECTORY_STEPS = 5    # v1.0: steps whose DSSIM and feature term must equal the original's
TRAJECTORY_DSSIM_TOL = 1e-4  # the original prints them with 4 decimals
TRAJECTORY_FEATURE_TOL = (2e-4, 0.01)  # absolute + relative

FIGURES: list[dict] = []  # printed as a table at the end (README "Checked against the originals")


# ----------------------------------------------------------------------------- helpers
def to_batch(pictures) -> torch.Tensor:
    """NxHxWx3 (0..255, uint8 or float) -> Nx3xHxW float in [0, 1]."""
    arr = np.asarray(pictures, dtype=np.float32)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous() / 255.0


def to_nhwc255(x: torch.Tensor) -> np.ndarray:
    return (x.detach().permute(0, 2, 3, 1).numpy() * 255.0).astype(np.float32)


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.corrcoef(a.flatten().double().numpy(), b.flatten().double().numpy())[0, 1])


def rel_diff(ours: float, original: float) -> float:
    return abs(ours - original) / abs(original)


def run_side(python: Path, command: str, inputs: dict, workdir: Path) -> dict:
    """Run ``tf_side.py <command>`` in the side environment; its .npz result as a dict."""
    inp, out = workdir / f"{command}-in.npz", workdir / f"{command}-out.npz"
    np.savez(inp, **inputs)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    t0 = time.monotonic()
    proc = subprocess.run([str(python), str(HERE / "tf_side.py"), command, str(inp), str(out)],
                          capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise AssertionError(f"tf_side.py {command} failed (exit {proc.returncode}):\n"
                             + "\n".join((proc.stdout + proc.stderr).splitlines()[-40:]))
    with np.load(out) as z:
        result = {k: z[k] for k in z.files}
    result["seconds"] = time.monotonic() - t0
    return result


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def side_python() -> Path:
    return sidevenv.ensure()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reference")


@pytest.fixture(scope="module")
def faces() -> dict[str, np.ndarray]:
    return different_people()


@pytest.fixture(scope="module", autouse=True)
def print_figures(request, workdir):
    """After the module: the figures as a table on the terminal and in <workdir>/figures.json."""
    yield
    if not FIGURES:
        return
    (workdir / "figures.json").write_text(json.dumps(FIGURES, indent=1))
    lines = ["", "Checked against the originals (original | cloakbench):"]
    lines += ["  " + "  ".join(f"{k}={v}" for k, v in row.items()) for row in FIGURES]
    lines.append(f"  (also in {workdir / 'figures.json'})")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n".join(lines), flush=True)


@pytest.fixture(scope="module")
def v10(side_python, workdir, faces) -> dict:
    """The official Fawkes 1.0 and fawkes_v10 on every case; per case the pictures and figures."""
    inputs = {"cases": np.array(json.dumps(V10_CASES))}
    for case in V10_CASES:
        inputs[f"{case['name']}/faces"] = np.stack([faces[k] for k in case["faces"]])
    res = run_side(side_python, "fawkes10", inputs, workdir)
    meta = json.loads(str(res["meta"]))
    runs = {"meta": meta, "seconds": res["seconds"]}
    t0 = time.monotonic()
    for case in V10_CASES:
        name = case["name"]
        info = meta["cases"][name]
        clean = to_batch(inputs[f"{name}/faces"])
        twins = twins_from(res, name, info["n_models"], "raw01")
        start = torch.from_numpy(res[f"{name}/start"]).permute(0, 3, 1, 2).contiguous()
        ours, histories = [], []
        for i in range(len(clean)):  # one picture at a time, as the original's batch size 1
            cloak = FawkesV10(twins, mode=case["mode"], steps=info["steps"], seed=0)
            ours.append(cloak(clean[i:i + 1], start=start[i:i + 1]))
            histories.append(cloak.history.as_dict())
        runs[name] = {
            "info": info, "clean": clean, "twins": twins, "start": start,
            "ours": torch.cat(ours), "histories": histories,
            "original": to_batch(res[f"{name}/cloaked"]),
            "original_dssim_tf": res[f"{name}/dssim_tf"],
            "original_shift_tf": res[f"{name}/shift"],
            "trajectory": res[f"{name}/trajectory"],
            "clean_features": [res[f"{name}/clean_features{j}"] for j in range(len(twins))],
        }
    runs["seconds_ours"] = time.monotonic() - t0
    FIGURES.append({"timing": "fawkes 1.0.4 (TensorFlow, incl. start-up)",
                    "seconds": f"{runs['seconds']:.0f}",
                    "fawkes_v10": f"{runs['seconds_ours']:.0f}"})
    return runs


@pytest.fixture(scope="module")
def v03(side_python, workdir, faces) -> dict:
    """Fawkes 0.0.8 and fawkes_v03 (v0.3 presets, no decay) on every case."""
    cases = []
    for case in V03_CASES:
        rho, steps, lr = V03_PRESETS[case["mode"]]
        cases.append({**case, "rho": rho, "steps": steps, "lr": lr, "penalty": V03_PENALTY})
    inputs = {"cases": np.array(json.dumps(cases))}
    for case in cases:
        inputs[f"{case['name']}/faces"] = np.stack([faces[k] for k in case["faces"]])
        inputs[f"{case['name']}/targets"] = np.stack([faces[k] for k in case["targets"]])
    res = run_side(side_python, "fawkes03", inputs, workdir)
    runs = {"meta": json.loads(str(res["meta"])), "seconds": res["seconds"]}
    t0 = time.monotonic()
    for case in cases:
        name = case["name"]
        clean = to_batch(inputs[f"{name}/faces"])
        target = to_batch(inputs[f"{name}/targets"])
        twins = twins_from(res, name, len(case["model_seeds"]), "imagenet")
        ours = []
        for i in range(len(clean)):
            # The original's target point is the target picture's features: with overshoot 1 and
            # source_center "image", fawkes_v03's f(x) + overshoot * (centroid - f(x)) is that.
            cloak = FawkesV03(twins, mode=case["mode"], overshoot=1.0, source_center="image",
                              resolution=None, lr_decay=1.0, seed=0)
            with torch.no_grad():
                cloak.prepare({
                    "user": "me",
                    "user_features": {t.name: t(clean[i:i + 1]) for t in twins},
                    "candidate_features": {"target": {t.name: t(target[i:i + 1])
                                                      for t in twins}}})
            assert cloak.target_identity == "target"
            ours.append(cloak(clean[i:i + 1]))
        runs[name] = {"case": case, "clean": clean, "target": target, "twins": twins,
                      "ours": torch.cat(ours), "original": to_batch(res[f"{name}/cloaked"]),
                      "features": {k: res[k] for k in res if k.startswith(f"{name}/")
                                   and "features" in k}}
    runs["seconds_ours"] = time.monotonic() - t0
    FIGURES.append({"timing": "fawkes 0.0.8 (TensorFlow, incl. start-up)",
                    "seconds": f"{runs['seconds']:.0f}",
                    "fawkes_v03": f"{runs['seconds_ours']:.0f}"})
    return runs


# ----------------------------------------------------------------------------- Fawkes v1.0
def test_v10_presets_are_the_originals(v10):
    meta = v10["meta"]
    assert meta["fawkes"] == "1.0.4" and meta["tensorflow"].startswith("2.")
    assert meta["sd"] == FawkesV10.validate_params({}, where="ref")["penalty"]  # penalty 1e6
    for case in V10_CASES:
        info = meta["cases"][case["name"]]
        assert info["optimizer"].endswith("legacy.adadelta.Adadelta"), info
        assert info["steps"] == info["preset_steps"]  # no cap: the full presets ran
        ours = V10_MODES[case["mode"]]
        assert (ours["rho"], ours["steps"], ours["lr"], ours["n_models"]) == (
            info["rho"], info["preset_steps"], info["lr"], info["n_models"]), case["mode"]
        assert len(case["model_seeds"]) == info["n_models"]


def test_v10_twins_compute_the_keras_features(v10):
    for case in V10_CASES:
        run = v10[case["name"]]
        with torch.no_grad():
            for twin, keras in zip(run["twins"], run["clean_features"]):
                got = twin(run["clean"]).numpy()
                assert_twin_matches(got, keras)


@pytest.mark.parametrize("name", [c["name"] for c in V10_CASES])
def test_v10_same_cloak_as_the_original(v10, name):
    run = v10[name]
    clean, ours, original, twins = run["clean"], run["ours"], run["original"], run["twins"]
    d_ours, d_orig = dssim(ours, clean), dssim(original, clean)
    l_ours, l_orig = linf(ours, clean), linf(original, clean)
    s_ours = torch.stack(list(feature_shift(clean, ours, twins).values()), dim=1)
    s_orig = torch.stack(list(feature_shift(clean, original, twins).values()), dim=1)
    # Our feature shift of the original's pictures is the one its Keras models measure.
    assert np.allclose(s_orig.numpy(), run["original_shift_tf"], atol=1e-4)
    for i in range(len(clean)):
        corr = correlation(ours[i] - clean[i], original[i] - clean[i])
        FIGURES.append({
            "cloak": "fawkes_v10", "mode": name, "models": len(twins), "face": i,
            "corr": f"{corr:.4f}", "dssim": f"{d_orig[i]:.5f}|{d_ours[i]:.5f}",
            "shift": f"{s_orig[i].mean():.4f}|{s_ours[i].mean():.4f}",
            "linf*255": f"{255 * l_orig[i]:.3f}|{255 * l_ours[i]:.3f}"})
        assert corr >= MIN_CORRELATION, (name, i, corr)
        assert rel_diff(float(d_ours[i]), float(d_orig[i])) <= REL_TOL, (d_ours, d_orig)
        for j in range(len(twins)):
            assert rel_diff(float(s_ours[i, j]), float(s_orig[i, j])) <= REL_TOL, (s_ours, s_orig)
        assert abs(float(l_ours[i]) - float(l_orig[i])) <= LINF_TOL, (l_ours, l_orig)
        assert float(l_ours[i]) <= 15 / 255 + 1e-6
    assert torch.all(l_orig <= 15 / 255 + LINF_TOL)


@pytest.mark.parametrize("name", [c["name"] for c in V10_CASES])
def test_v10_first_steps_follow_the_original(v10, name):
    """Step by step, before rounding differences grow: same DSSIM, same feature term."""
    run = v10[name]
    for i, hist in enumerate(run["histories"]):
        orig = run["trajectory"][i, :TRAJECTORY_STEPS]
        ours_d = np.array(hist["dssim"][:TRAJECTORY_STEPS])
        ours_f = np.array(hist["feature"][:TRAJECTORY_STEPS])
        assert np.all(np.abs(ours_d - orig[:, 0]) <= TRAJECTORY_DSSIM_TOL), (ours_d, orig[:, 0])
        tol = TRAJECTORY_FEATURE_TOL[0] + TRAJECTORY_FEATURE_TOL[1] * np.abs(orig[:, 1])
        assert np.all(np.abs(ours_f - orig[:, 1]) <= tol), (ours_f, orig[:, 1])


# ----------------------------------------------------------------------------- Fawkes v0.3
def _target_distance(twins, pictures, target) -> torch.Tensor:
    """v0.3's feature term: sum over models of ||f(x') - t|| / ||t||, t = f(target picture)."""
    with torch.no_grad():
        total = 0.0
        for twin in twins:
            t = twin(target)
            total = total + (twin(pictures) - t).norm(dim=1) / t.norm(dim=1)
    return total


def test_v03_presets_are_v03s():
    assert {m: (p["rho"], p["steps"], p["lr"]) for m, p in V03_MODES.items()} == V03_PRESETS
    assert FawkesV03.validate_params({}, where="ref")["penalty"] == V03_PENALTY


def test_v03_original_runs_and_twins_match(v03):
    assert v03["meta"]["fawkes"] == "0.0.8"
    for case in V03_CASES:
        run = v03[case["name"]]
        with torch.no_grad():
            for j, twin in enumerate(run["twins"]):
                for key, pics in (("clean", run["clean"]), ("target", run["target"])):
                    keras = run["features"][f"{case['name']}/{key}_features{j}"]
                    got = twin(pics).numpy()
                    assert_twin_matches(got, keras)


@pytest.mark.parametrize("name", [c["name"] for c in V03_CASES])
def test_v03_same_cloak_as_the_original(v03, name):
    run = v03[name]
    clean, ours, original, twins = run["clean"], run["ours"], run["original"], run["twins"]
    d_ours, d_orig = dssim(ours, clean), dssim(original, clean)
    l_ours, l_orig = linf(ours, clean), linf(original, clean)
    t_ours = _target_distance(twins, ours, run["target"])
    t_orig = _target_distance(twins, original, run["target"])
    t_clean = _target_distance(twins, clean, run["target"])
    for i in range(len(clean)):
        corr = correlation(ours[i] - clean[i], original[i] - clean[i])
        FIGURES.append({
            "cloak": "fawkes_v03", "mode": name, "models": len(twins), "face": i,
            "corr": f"{corr:.4f}", "dssim": f"{d_orig[i]:.5f}|{d_ours[i]:.5f}",
            "to_target": f"{t_orig[i]:.4f}|{t_ours[i]:.4f} (clean {t_clean[i]:.4f})",
            "linf*255": f"{255 * l_orig[i]:.2f}|{255 * l_ours[i]:.2f}"})
        assert corr >= MIN_CORRELATION, (name, i, corr)
        assert rel_diff(float(d_ours[i]), float(d_orig[i])) <= REL_TOL, (d_ours, d_orig)
        assert rel_diff(float(t_ours[i]), float(t_orig[i])) <= REL_TOL, (t_ours, t_orig)
        assert float(t_orig[i]) < float(t_clean[i])  # the original did move toward the target
        assert rel_diff(float(l_ours[i]), float(l_orig[i])) <= REL_TOL, (l_ours, l_orig)


# ----------------------------------------------------------------------------- DSSIM
def _jpeg(picture: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def _pipeline_figures(workdir: Path, faces: dict, v10: dict) -> tuple[pd.DataFrame, Path, Path]:
    """The perturb stage (cloakbench.perturb.perturb_shard) on four real faces."""
    from cloakbench.io import write_png
    from cloakbench.perturb import perturb_shard

    dataset, out = workdir / "dataset", workdir / "perturbed"
    rows = []
    for k, key in enumerate(["t1_face0", "t1_face4", "tom_hanks", "astronaut"]):
        write_png(faces[key], dataset / "alice" / f"{k}.png")
        rows.append({"image_id": f"alice/{k}", "identity": "alice", "path": f"alice/{k}.png",
                     "split": "train"})
    manifest = pd.DataFrame(rows)
    roles = pd.DataFrame([{"identity": "alice", "role": "protected"}])
    twin = v10["high"]["twins"][0]
    figures = perturb_shard(
        manifest, roles, dataset, subset="protected", shard=0, shards=1, cloak_name="ref",
        cloak_spec={"type": "fawkes_v10", "ensemble": [twin.name],
                    "params": {"mode": "low", "steps": 12}},
        load_extractor=lambda name: twin, out_dir=out, seed=0, batch_size=4)
    return figures, dataset, out


@pytest.fixture(scope="module")
def dssim_pairs(side_python, workdir, faces, v10, v03) -> dict:
    """Picture pairs, our DSSIM of each and tf.image.ssim's (one side-environment call)."""
    from cloakbench.io import read_rgb

    names = sorted(faces)
    real = np.stack([faces[k] for k in names])
    groups: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "real: different people": (real, np.roll(real, 1, axis=0)),
        "real: JPEG quality 30": (real, np.stack([_jpeg(p, 30) for p in real])),
        "real: JPEG quality 90": (real, np.stack([_jpeg(p, 90) for p in real])),
    }
    for label, runs in (("fawkes_v10", v10), ("fawkes_v03", v03)):
        for case in (V10_CASES if label == "fawkes_v10" else V03_CASES):
            run = runs[case["name"]]
            clean = to_nhwc255(run["clean"])
            groups[f"{label} {case['name']}: original"] = (clean, to_nhwc255(run["original"]))
            groups[f"{label} {case['name']}: cloakbench"] = (clean, to_nhwc255(run["ours"]))
    figures, dataset, out = _pipeline_figures(workdir, faces, v10)
    clean_png = np.stack([read_rgb(dataset / f"{i}.png") for i in figures["image_id"]])
    stored_png = np.stack([read_rgb(out / p) for p in figures["path"]])
    groups["perturb stage: PNGs, recomputed"] = (clean_png, stored_png)

    a = np.concatenate([g[0] for g in groups.values()]).astype(np.float32)
    b = np.concatenate([g[1] for g in groups.values()]).astype(np.float32)
    tf_d = run_side(side_python, "dssim", {"a": a, "b": b}, workdir)["dssim"]
    ours = dssim(to_batch(b), to_batch(a)).double().numpy()
    result, at = {}, 0
    for label, (ga, _) in groups.items():
        result[label] = (ours[at:at + len(ga)], tf_d[at:at + len(ga)])
        at += len(ga)
    result["perturb stage: figures.parquet dssim column"] = (
        figures["dssim"].to_numpy(), result["perturb stage: PNGs, recomputed"][1])
    return result


def test_dssim_is_tf_image_ssim(dssim_pairs):
    worst = {}
    for label, (ours, tf_d) in dssim_pairs.items():
        assert ours.shape == tf_d.shape and len(ours) > 0, label
        worst[label] = float(np.abs(ours - tf_d).max())
        FIGURES.append({"dssim vs tf.image.ssim": label, "pairs": len(ours),
                        "range": f"{tf_d.min():.5f}..{tf_d.max():.5f}",
                        "max_abs_diff": f"{worst[label]:.1e}"})
    assert max(worst.values()) <= DSSIM_TOL, worst
    # The groups span the range that matters: from invisible changes to different people.
    assert min(v[1].min() for v in dssim_pairs.values()) < 0.005
    assert max(v[1].max() for v in dssim_pairs.values()) > 0.2

