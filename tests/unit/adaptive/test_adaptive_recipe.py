"""FaceCure's training recipe is the default of every end-to-end training (cloakbench.adaptive._train),
and the adaptive trainer's default cloaks are FaceCure's three.

FaceCure (ftramer/FaceCure, train_robust_features.py and eval_e2e.py; model from Fawkes v0.3's
load_victim_model under standalone Keras <= 2.3.1): fit_generator(steps_per_epoch=500),
--n_epochs 10, --batch-size 32, identities drawn with np.random.choice (uniform, with
replacement) then one picture of the identity's pool, a flip when randint(2) and then with rate
0.5, Dense(n) + softmax (glorot_uniform kernel, zero bias), Keras Adadelta() (lr 1.0, rho 0.95,
epsilon 1e-7), --public-attack-dirs Fawkes v1.0, LowKey, Fawkes v0.3.
"""

from __future__ import annotations

import math

import pytest
import torch

from adaptive_testlib import TinyTrainable
from cloakbench.adaptive import _train, robust
from cloakbench.adaptive.settings import check_adaptive_config
from cloakbench.errors import ConfigError


def test_defaults_are_facecures_numbers():
    s = _train.train_settings(None, "x")
    assert s["epochs"] == 10 and s["batch_size"] == 32 and s["steps_per_epoch"] == 500
    assert s["optimizer"] == "adadelta" and s["lr"] == 1.0 and s["rho"] == 0.95 and s["eps"] == 1e-7
    assert s["weight_decay"] == 0.0
    assert s["flip"] is True and s["flip_prob"] == 0.25 and s["balanced"] is True
    assert s["head"] == "softmax" and s["head_init"] == "glorot_uniform"
    assert _train.deviations(s) == []
    # the optimizer actually built from them is torch's Adadelta with Keras' numbers
    opt = _train.make_optimizer([torch.nn.Parameter(torch.zeros(2))], s)
    assert isinstance(opt, torch.optim.Adadelta)
    g = opt.param_groups[0]
    assert (g["lr"], g["rho"], g["eps"], g["weight_decay"]) == (1.0, 0.95, 1e-7, 0.0)


def test_deviations_and_bad_values_are_named():
    s = _train.train_settings({"epochs": 2, "steps_per_epoch": 8, "flip_prob": 0.5}, "x")
    assert _train.deviations(s) == ["epochs", "flip_prob", "steps_per_epoch"]
    for given, msg in (({"flip_prob": 1.5}, r"key\.flip_prob"), ({"head_init": "he"}, r"key\.head_init"),
                       ({"rho": 1.0}, r"key\.rho"), ({"eps": 0}, r"key\.eps")):
        with pytest.raises(ConfigError, match=msg):
            _train.train_settings(given, "key")


def test_flip_probability_is_a_quarter():
    # measured over many draws, through the value fit() passes (settings["flip_prob"])
    s = _train.train_settings(None, "x")
    g = _train.generator(0, 1)
    x = torch.zeros(20000, 1, 1, 2)
    x[..., 1] = 1.0  # a flipped picture has its 1 on the left
    flipped = _train.flip_batch(x, g, s["flip_prob"])[..., 0, 0, 0]
    rate = float(flipped.mean())
    assert abs(rate - 0.25) < 0.015, rate  # binomial sd 0.003


def test_fit_flips_with_the_settings_probability(monkeypatch, tmp_path):
    seen = []
    real = _train.flip_batch

    def spy(x, g, p=0.5):
        seen.append(p)
        return real(x, g, p)

    monkeypatch.setattr(_train, "flip_batch", spy)
    images = torch.randint(0, 255, (8, 3, 32, 32), dtype=torch.uint8)
    targets = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    s = _train.train_settings({"epochs": 1, "steps_per_epoch": 2, "batch_size": 4}, "x")
    _train.fit(TinyTrainable(), images, targets, 2, s, seed=0)
    assert seen == [0.25, 0.25]
    seen.clear()
    _train.fit(TinyTrainable(), images, targets, 2, {**s, "flip": False}, seed=0)
    assert seen == []


def test_head_is_glorot_uniform_with_zero_bias():
    dim, n = 128, 40
    head = _train.make_head("softmax", dim, n, _train.train_settings(None, "x"), _train.generator(0))
    w, b = head.linear.weight.detach(), head.linear.bias.detach()
    limit = math.sqrt(6.0 / (dim + n))
    assert float(w.abs().max()) <= limit and float(w.abs().max()) > 0.98 * limit
    assert abs(float(w.std()) - limit / math.sqrt(3)) < 0.02 * limit  # U(-l, l) has sd l / sqrt(3)
    assert torch.count_nonzero(b) == 0
    old = _train.make_head("softmax", dim, n, {"head_init": "fan_in_uniform"}, _train.generator(0))
    assert float(old.linear.weight.detach().abs().max()) <= 1 / math.sqrt(dim) < 0.98 * limit


def test_batches_draw_identities_uniformly_then_a_picture_of_the_pool():
    # identity 0 has 1 picture, identity 1 has 9 (say 3 clean + 6 cloaked copies): each is drawn
    # half the time, and identity 1's nine pictures equally often
    targets = torch.tensor([0] + [1] * 9)
    g = _train.generator(0, 2)
    idx = torch.cat([_train.balanced_batch(targets, 2, 32, g) for _ in range(1000)])
    share0 = float((targets[idx] == 0).float().mean())
    assert abs(share0 - 0.5) < 0.02, share0
    counts = torch.bincount(idx[targets[idx] == 1], minlength=10)[1:].float()
    assert float((counts / counts.sum() - 1 / 9).abs().max()) < 0.01


CLOAKS = {"v03": {"type": "fawkes_v03", "ensemble": ["tiny"]}, "pgd": {"type": "pgd", "ensemble": ["tiny"]},
          "lk": {"type": "lowkey", "ensemble": ["tiny"]}, "v10": {"type": "fawkes_v10", "ensemble": ["tiny"]}}
EXTRACTORS = {"tiny": {"type": TinyTrainable.type_name}}


def test_robust_default_cloaks_are_facecures_three():
    ok = robust.check_robust_spec("r", {"type": "robust", "base": "tiny"}, EXTRACTORS, CLOAKS)
    assert ok["cloaks"] == ["v03", "lk", "v10"]  # every configured cloak of the three types, config order
    assert ok["train"] == _train.train_settings(None, "x")
    given = robust.check_robust_spec("r", {"type": "robust", "base": "tiny", "cloaks": ["pgd"]}, EXTRACTORS, CLOAKS)
    assert given["cloaks"] == ["pgd"]
    with pytest.raises(ConfigError, match=r"extractors\.r\.cloaks: not given, and no cloak of FaceCure's types"):
        robust.check_robust_spec("r", {"type": "robust", "base": "tiny"}, EXTRACTORS, {"pgd": CLOAKS["pgd"]})


def _adaptive(finetune, cloaks=CLOAKS):
    cfg = {"extractors": {**EXTRACTORS}, "cloaks": cloaks, "adaptive": {"finetune": finetune}}
    return check_adaptive_config(cfg)


def test_finetune_variants_and_adaptive_cloaks():
    a = _adaptive({"extractors": ["tiny"]})
    assert a["finetune"]["variants"] == ["oblivious"] and a["finetune"]["adaptive_cloaks"] == []
    assert a["finetune"]["train"]["steps_per_epoch"] == 500
    a = _adaptive({"extractors": ["tiny"], "variants": ["oblivious", "adaptive"]})
    assert a["finetune"]["adaptive_cloaks"] == ["v03", "lk", "v10"]
    assert a["public_cloaks"] == ["v03", "lk", "v10"]  # their public subset gets perturbed
    a = _adaptive({"extractors": ["tiny"], "variants": ["adaptive"], "adaptive_cloaks": ["pgd"]})
    assert a["finetune"]["adaptive_cloaks"] == ["pgd"] and a["public_cloaks"] == ["pgd"]
    for ft, msg in (({"extractors": ["tiny"], "variants": ["robust"]}, "adaptive.finetune.variants"),
                    ({"extractors": ["tiny"], "variants": []}, "adaptive.finetune.variants"),
                    ({"extractors": ["tiny"], "variants": ["adaptive"], "adaptive_cloaks": ["nope"]},
                     "adaptive.finetune.adaptive_cloaks: unknown cloak 'nope'")):
        with pytest.raises(ConfigError, match=msg):
            _adaptive(ft)
    with pytest.raises(ConfigError, match="adaptive.finetune.adaptive_cloaks: not given"):
        _adaptive({"extractors": ["tiny"], "variants": ["adaptive"]}, {"pgd": CLOAKS["pgd"]})
