"""The original Fawkes code, run in the side environment (TensorFlow, tf-keras, fawkes from PyPI).

Run by check_reference.py with the side environment's Python (see sidevenv.py); never imports
torch or cloakbench. Three commands, each ``python tf_side.py <command> <in.npz> <out.npz>``:

``fawkes10``  the official Fawkes 1.0 generator (``fawkes==1.0.4``, ``fawkes.differentiator.
              FawkesMaskGeneration``) on seeded Keras models, with the arguments of
              ``fawkes.protection.Fawkes.run_protection`` and the mode presets of
              ``Fawkes.mode2param`` (read from the installed package, not copied).
``fawkes03``  the registry's last v0.3-era release (``fawkes==0.0.8``, TensorFlow 1 code) run
              under ``tf.compat.v1`` graph mode, targeted at another face's features.
``dssim``     ``tf.image.ssim`` exactly as both Fawkes releases call it, on given picture pairs.

What this harness changes in the originals, at import time in this process only (the installed
files are never edited):
- Fawkes 1.0 creates ``tf.keras.optimizers.Adadelta`` and re-creates its optimised variable after
  step 1. TensorFlow 2.4 (the version it pinned) had the "OptimizerV2" Adadelta, which gives a new
  variable fresh slots; in TF 2.11+ that class lives on as ``tf.keras.optimizers.legacy.Adadelta``
  and the new default class refuses a variable it was not built with. We point
  ``tf.keras.optimizers.Adadelta`` at the legacy class (same update rule, same defaults).
- Fawkes 0.0.8 is TensorFlow 1 code (placeholders, sessions, ``tf.train.AdadeltaOptimizer``).
  Its module's ``tf`` name is pointed at ``tf.compat.v1`` with eager execution disabled.
- Fawkes 0.0.8 multiplies its learning rate by 0.8 after step ``max_iterations // 2`` while v0.3
  (GitHub tag v0.3, version 0.3.1, never published on PyPI) does it every ``max_iterations // 3``
  steps. No registry release has v0.3's schedule, so for the v0.3 comparison both sides run
  without the decay: the original's rate is passed as a float whose product with 0.8 is itself
  (``_NoDecay``), cloakbench's ``fawkes_v03`` gets ``lr_decay: 1.0``.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import os
import re
import sys
from pathlib import Path

# tf.keras = tf_keras (Keras 2, the Keras Fawkes was written for); quiet, deterministic kernels.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import arch  # noqa: E402

FAWKES_03_DIR = "fawkes-0.0.8"  # next to the side environment's site-packages, see sidevenv.py


def keras_model(tf, seed: int, input_kind: str):
    """The arch.py network as a tf.keras model with arch.random_weights(seed)."""
    layers = tf.keras.layers
    inp = layers.Input((arch.SIZE, arch.SIZE, 3))
    if input_kind == "raw01":  # Fawkes 1.0: RGB in [0, 1]
        x = layers.Rescaling(2.0, offset=-1.0)(inp)
    elif input_kind == "imagenet":  # Fawkes 0.0.8: BGR, 0..255 minus the ImageNet means
        x = layers.Rescaling(1.0 / 127.5)(inp)
    else:
        raise ValueError(input_kind)
    for k, s, cout in arch.CONVS:
        x = layers.Conv2D(cout, k, strides=s, padding="valid", use_bias=False,
                          activation="tanh")(x)
    x = layers.AveragePooling2D(arch.POOL)(x)
    x = layers.Flatten()(x)
    out = layers.Dense(arch.EMBED, use_bias=False)(x)
    model = tf.keras.Model(inp, out)
    model.set_weights(arch.random_weights(seed))
    return model


def _sd_default(fawkes) -> float:
    """The penalty (``--sd``) default of fawkes.protection.main, read from the installed source."""
    src = inspect.getsource(fawkes.protection.main)
    m = re.search(r"'--sd'.*?default=([0-9.e+]+)\)", src, re.S)
    if not m:
        raise RuntimeError("could not find the --sd default in fawkes.protection.main")
    return float(m.group(1))


def _dssim_tf(tf, a, b):
    """(1 - SSIM) / 2 with tf.image.ssim as Fawkes calls it: RGB, 0..255, max_val 255, defaults
    filter_size 11, filter_sigma 1.5, k1 0.01, k2 0.03."""
    s = tf.image.ssim(tf.constant(a, tf.float32), tf.constant(b, tf.float32), max_val=255.0)
    return ((1.0 - np.asarray(s)) / 2.0).astype(np.float64)


_ITER = re.compile(r"ITER (\S+)\s+Total Loss: \S+ (\S+) raw; diff: (\S+)")


def _trajectory(printed: str, n_faces: int, steps: int) -> np.ndarray:
    """Per face and step, (DSSIM, feature term) of the picture before that step's update, from
    the generator's verbose=1 lines (printed with 4 decimals)."""
    blocks = printed.split("processing image ")[1:]
    if len(blocks) != n_faces:
        raise SystemExit(f"expected {n_faces} 'processing image' blocks, got {len(blocks)}")
    out = np.zeros((n_faces, steps, 2))
    for i, block in enumerate(blocks):
        rows = [(float(d), float(f)) for _, d, f in _ITER.findall(block)]
        if len(rows) != steps:
            raise SystemExit(f"face {i}: expected {steps} ITER lines, got {len(rows)}")
        out[i] = rows
    return out


def run_fawkes10(inp: Path, out: Path) -> None:
    import tensorflow as tf
    import tf_keras

    import fawkes
    import fawkes.protection
    from fawkes.differentiator import FawkesMaskGeneration
    from fawkes.utils import Extractor

    assert fawkes.__version__ == "1.0.4", fawkes.__version__
    assert tf.keras.Model is tf_keras.Model, "tf.keras is not tf_keras (TF_USE_LEGACY_KERAS=1)"
    # The one patch (module docstring): TF 2.4's Adadelta, now the legacy class.
    tf.keras.optimizers.Adadelta = tf.keras.optimizers.legacy.Adadelta

    data = np.load(inp)
    cases = json.loads(str(data["cases"]))
    sd = _sd_default(fawkes)
    result: dict[str, np.ndarray] = {}
    meta = {"tensorflow": tf.__version__, "tf_keras": tf_keras.__version__,
            "fawkes": fawkes.__version__, "sd": sd, "cases": {}}
    for case in cases:
        name, mode = case["name"], case["mode"]
        th, max_step, lr, extractor_names = fawkes.protection.Fawkes.mode2param(None, mode)
        steps = min(max_step, case["max_steps"]) if case.get("max_steps") else max_step
        models = [keras_model(tf, s, "raw01") for s in case["model_seeds"]]
        if len(models) != len(extractor_names):
            raise SystemExit(f"case {name}: mode {mode} uses {len(extractor_names)} models, "
                             f"the case gives {len(models)}")
        faces = data[f"{name}/faces"].astype(np.float32)  # N x 112 x 112 x 3, 0..255
        # Arguments of Fawkes.run_protection (fawkes/protection.py), batch size 1 as the CLI.
        protector = FawkesMaskGeneration(
            [Extractor(m) for m in models], batch_size=1, mimic_img=True,
            intensity_range="raw", initial_const=sd, learning_rate=lr, max_iterations=steps,
            l_threshold=th, verbose=1, maximize=True, keep_final=False,
            image_shape=(arch.SIZE, arch.SIZE, 3), loss_method="features", tanh_process=True,
            save_last_on_failed=True)
        # The generator draws its start with np.random.uniform(-1, 1, shape) * 1e-4, one batch
        # after the other: seed the global generator, draw the same numbers here, reseed.
        np.random.seed(case["np_seed"])
        starts = np.concatenate([np.random.uniform(-1, 1, (1, arch.SIZE, arch.SIZE, 3)) * 1e-4
                                 for _ in range(len(faces))]).astype(np.float32)
        np.random.seed(case["np_seed"])
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):  # verbose=1: one "ITER" line per step
            cloaked = protector.compute(faces)
        result[f"{name}/trajectory"] = _trajectory(printed.getvalue(), len(faces), steps)
        feats = {}
        for j, m in enumerate(models):
            clean_f = Extractor(m)(tf.constant(faces)).numpy()
            cloak_f = Extractor(m)(tf.constant(cloaked.astype(np.float32))).numpy()
            feats[j] = (clean_f, cloak_f)
            result[f"{name}/clean_features{j}"] = m(tf.constant(faces / 255.0)).numpy()
            for i, w in enumerate(m.get_weights()):
                result[f"{name}/weights{j}_{i}"] = w
        result[f"{name}/start"] = starts
        result[f"{name}/cloaked"] = cloaked.astype(np.float32)
        result[f"{name}/dssim_tf"] = _dssim_tf(tf, faces, cloaked)
        result[f"{name}/shift"] = np.stack(
            [np.linalg.norm(c - k, axis=1) for c, k in feats.values()], axis=1)
        meta["cases"][name] = {"mode": mode, "rho": th, "steps": steps, "preset_steps": max_step,
                               "lr": lr, "n_models": len(extractor_names), "penalty": sd,
                               "optimizer": f"{tf.keras.optimizers.Adadelta.__module__}."
                                            f"{tf.keras.optimizers.Adadelta.__qualname__}"}
    result["meta"] = np.array(json.dumps(meta))
    np.savez(out, **result)


class _NoDecay(float):
    """A learning rate that stays itself when multiplied (see the module docstring)."""

    def __mul__(self, other):
        return self

    __rmul__ = __mul__


def run_fawkes03(inp: Path, out: Path) -> None:
    site = Path(sys.prefix) / FAWKES_03_DIR
    if not (site / "fawkes" / "differentiator.py").is_file():
        raise SystemExit(f"fawkes 0.0.8 not found in {site}: rebuild the side environment "
                         "(tests/reference/sidevenv.py)")
    sys.path.insert(0, str(site))
    import tensorflow as tf
    import tf_keras

    tf1 = tf.compat.v1
    tf1.disable_eager_execution()
    import fawkes
    import fawkes.differentiator as fd

    assert fawkes.__version__ == "0.0.8", fawkes.__version__
    assert Path(fd.__file__).resolve().is_relative_to(site.resolve()), fd.__file__
    fd.tf = tf1  # TensorFlow 1 API (module docstring)
    from fawkes.utils import preprocess, reverse_preprocess

    data = np.load(inp)
    cases = json.loads(str(data["cases"]))
    result: dict[str, np.ndarray] = {}
    meta = {"tensorflow": tf.__version__, "tf_keras": tf_keras.__version__,
            "fawkes": fawkes.__version__, "cases": {}}
    for case in cases:
        name = case["name"]
        graph = tf1.Graph()
        with graph.as_default():
            sess = tf1.Session(graph=graph)
            tf1.keras.backend.set_session(sess)
            models = [keras_model(tf, s, "imagenet") for s in case["model_seeds"]]
            faces = data[f"{name}/faces"].astype(np.float32)
            targets = data[f"{name}/targets"].astype(np.float32)
            src = preprocess(faces.copy(), "imagenet")
            tgt = preprocess(targets.copy(), "imagenet")
            gen = fd.FawkesMaskGeneration(
                sess, models, batch_size=1, mimic_img=True, intensity_range="imagenet",
                initial_const=case["penalty"], learning_rate=_NoDecay(case["lr"]),
                max_iterations=case["steps"], l_threshold=case["rho"], verbose=0,
                maximize=False, keep_final=False, image_shape=faces.shape[1:])
            # attack() returns ImageNet-preprocessed pictures (as protection.py's
            # reverse_process_cloaked expects): back to RGB on 0..255.
            cloaked = reverse_preprocess(gen.attack(src, tgt), "imagenet")
            for j, m in enumerate(models):
                ph = tf1.placeholder(tf.float32, (None, arch.SIZE, arch.SIZE, 3))
                feat = m(ph)
                result[f"{name}/clean_features{j}"] = sess.run(feat, {ph: src})
                result[f"{name}/target_features{j}"] = sess.run(feat, {ph: tgt})
                result[f"{name}/cloaked_features{j}"] = sess.run(
                    feat, {ph: preprocess(cloaked.astype(np.float32).copy(), "imagenet")})
                for i, w in enumerate(m.get_weights()):
                    result[f"{name}/weights{j}_{i}"] = w
            sess.close()
        result[f"{name}/cloaked"] = cloaked.astype(np.float32)
        assert np.allclose(reverse_preprocess(src.copy(), "imagenet"), faces, atol=1e-3)
        meta["cases"][name] = {k: case[k] for k in ("rho", "steps", "lr", "penalty")}
    result["meta"] = np.array(json.dumps(meta))
    np.savez(out, **result)


def run_dssim(inp: Path, out: Path) -> None:
    import tensorflow as tf

    data = np.load(inp)
    np.savez(out, dssim=_dssim_tf(tf, data["a"].astype(np.float32), data["b"].astype(np.float32)),
             tensorflow=np.array(tf.__version__))


COMMANDS = {"fawkes10": run_fawkes10, "fawkes03": run_fawkes03, "dssim": run_dssim}

if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in COMMANDS:
        raise SystemExit(f"usage: {sys.argv[0]} {{{','.join(COMMANDS)}}} in.npz out.npz")
    COMMANDS[sys.argv[1]](Path(sys.argv[2]), Path(sys.argv[3]))
