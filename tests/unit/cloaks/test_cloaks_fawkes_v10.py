"""Fawkes v1.0 (untargeted): presets, validation, budgets, movement, seeding."""

import pytest
import torch

from cloaks_testlib import TinyNet, smooth_images
from cloakbench.cloaks import build_cloak
from cloakbench.cloaks.fawkes_v10 import FawkesV10
from cloakbench.cloaks.metrics import dssim, feature_shift, linf
from cloakbench.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def images():
    return smooth_images(4, seed=0)


def test_presets_and_model_count(ex):
    c = FawkesV10([ex], mode="low")
    assert (c.rho, c.steps, c.lr, c.n_models) == (0.004, 40, 25.0, 1)
    two = FawkesV10([ex, TinyNet("other", seed=1)])  # default mode high: two models
    assert (two.rho, two.steps, two.lr, two.n_models) == (0.017, 150, 15.0, 2)
    with pytest.raises(ConfigError, match=r"uses 2 model\(s\) but the ensemble has 1.*n_models: 1"):
        FawkesV10([ex], mode="high")
    with pytest.raises(ConfigError, match=r"cloaks\.f\.params\.n_models: 1"):  # no model needed
        FawkesV10.validate_params({"mode": "high"}, where="cloaks.f.params", ensemble=["a"])
    assert FawkesV10.validate_params({"mode": "high"}, where="w", ensemble=["a", "b"])["n_models"] == 2
    one = FawkesV10([ex], mode="high", n_models=1)
    assert one.hyperparameters()["overridden"] == ["n_models"]
    assert one.hyperparameters()["max_change"] == pytest.approx(15 / 255)


@pytest.mark.parametrize("params, message", [
    ({"mode": "min"}, r"params\.mode .*must be one of 'low', 'mid', 'high', got 'min'"),
    ({"mode": "low", "rho": 0}, r"params\.rho .*must be a number in \(0, 1\), got 0"),
    ({"mode": "low", "steps": -1}, r"params\.steps .*must be an integer >= 1"),
    ({"mode": "low", "max_change": 0}, r"params\.max_change .*in \(0, 1\]"),
    ({"mode": "low", "penalty": -1}, r"params\.penalty .*>= 0"),
    ({"mode": "low", "save_last_on_failed": 1}, r"params\.save_last_on_failed .*true or false"),
])
def test_invalid_hyperparameters_rejected(ex, params, message):
    with pytest.raises(ConfigError, match=message):
        build_cloak("f10", {"type": "fawkes_v10", "params": params}, [ex], seed=0)


def test_budgets_hold(ex, images):
    c = FawkesV10([ex], mode="low", steps=20, save_last_on_failed=False)
    cloaked = c(images)
    assert cloaked.shape == images.shape
    # L-inf: every pixel change within 15/255 (float rounding aside).
    assert torch.all(linf(cloaked, images) <= 15 / 255 + 1e-6)
    # DSSIM: the returned step is one whose DSSIM was <= 1.1 rho.
    d = dssim(cloaked, images)
    assert torch.all(d <= 1.1 * c.rho + 1e-6), d
    assert torch.all(d > 0.5 * c.rho), d  # and the budget is used
    assert len(c.loss_history) == c.steps


def test_features_move_away_and_objective_improves(ex, images):
    """A gentler rate than the preset's 25, so the tiny random model's trajectory is smooth
    enough to read: the feature term must keep growing after the initial signed step."""
    c = FawkesV10([ex], mode="low", steps=20, lr=5.0, save_last_on_failed=False)
    cloaked = c(images)
    feat = c.history["feature"]
    assert feat[0] < 1e-3  # starts at the clean picture
    assert feat[-1] > 2 * feat[1], feat  # step 1 = right after the signed step
    shift = feature_shift(images, cloaked, [ex])["tiny"]
    assert torch.all(shift > 0.2) and shift.mean() > 0.3, shift


def test_last_step_rescue_keeps_linf_and_its_dssim_limit(ex, images):
    c = FawkesV10([ex], mode="low", steps=10)
    cloaked = c(images)
    assert torch.all(linf(cloaked, images) <= 15 / 255 + 1e-6)
    d = dssim(cloaked, images)
    assert torch.all((d <= 1.1 * c.rho + 1e-6) | (d < 0.015)), d


def test_same_seed_same_output_other_seed_differs(ex, images):
    a = FawkesV10([ex], mode="low", steps=4, seed=5)(images[:2])
    b = FawkesV10([ex], mode="low", steps=4, seed=5)(images[:2])
    c = FawkesV10([ex], mode="low", steps=4, seed=6)(images[:2])
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_start_keyword_replaces_the_seeded_start(ex, images):
    """``start=`` is the initial tanh-space modifier: the same start gives the same cloak
    whatever the seed; the default is still the seeded draw (passing that draw reproduces it)."""
    from cloakbench.cloaks.base import uniform_start

    x = images[:2]
    start = 1e-4 * (2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(7)) - 1)
    a = FawkesV10([ex], mode="low", steps=4, seed=5)(x, start=start)
    b = FawkesV10([ex], mode="low", steps=4, seed=6)(x, start=start)
    assert torch.equal(a, b)
    seeded = FawkesV10([ex], mode="low", steps=4, seed=5)
    default = seeded(x)
    assert not torch.equal(default, a)
    assert torch.equal(seeded(x, start=uniform_start(seeded.generator, x, seeded.init_noise)),
                       default)
    assert torch.equal(start, 1e-4 * (2 * torch.rand(x.shape, generator=torch.Generator()
                                                     .manual_seed(7)) - 1))  # not modified
    with pytest.raises(ValueError, match=r"start has shape"):
        seeded(x, start=start[:1])
    with pytest.raises(ValueError, match="non-finite"):
        seeded(x, start=torch.full_like(x, float("nan")))
