"""LowKey: perceptual-term configuration (no silent fallback), movement, seeding, LPIPS."""

import warnings

import pytest
import torch

from cloaks_testlib import TinyNet, smooth_images
from cloakbench.cloaks import build_cloak
from cloakbench.cloaks.lowkey import LowKey
from cloakbench.cloaks.metrics import LPIPSAlex
from cloakbench.cloaks.metrics import feature_shift, linf
from cloakbench.errors import ConfigError, MissingWeightsError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def images():
    return smooth_images(3, seed=2)


@pytest.fixture(scope="module")
def alexnet_weights(tmp_path_factory):
    """A torchvision-format AlexNet state dict with random weights (the real one cannot be
    downloaded here); enough to check the loading and the LPIPS arithmetic."""
    g = torch.Generator().manual_seed(0)
    state = {}
    for idx, shape in LPIPSAlex.CONV_SHAPES.items():
        state[f"features.{idx}.weight"] = torch.randn(shape, generator=g) * 0.05
        state[f"features.{idx}.bias"] = torch.zeros(shape[0])
    path = tmp_path_factory.mktemp("alex") / "alexnet-random.pth"
    torch.save(state, path)
    return path


def test_lpips_without_weights_is_a_clear_error(ex):
    with pytest.raises(MissingWeightsError) as err:
        LowKey([ex])  # the original's perceptual term is the default
    msg = str(err.value)
    assert "lpips_weights" in msg and "perceptual: dssim" in msg and "alexnet-owt" in msg
    with pytest.raises(MissingWeightsError, match="not found"):
        build_cloak("lk", {"type": "lowkey", "params": {"lpips_weights": "/nonexistent/alex.pth"}},
                    [ex], seed=0)


def test_wrong_weights_file_is_rejected(ex, tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(MissingWeightsError, match="features.0.weight"):
        LowKey([ex], lpips_weights=str(bad))


@pytest.mark.parametrize("params, message", [
    ({"perceptual": "l2"}, r"params\.perceptual .*must be one of 'lpips', 'dssim', got 'l2'"),
    ({"perceptual": "dssim", "blur_kernel": 4}, r"params\.blur_kernel .*0 \(no blur branch\) or an odd"),
    ({"perceptual": "dssim", "mode": "strong"}, r"params\.mode .*one of 'default'"),
    ({"perceptual": "dssim", "steps": 0}, r"params\.steps"),
    ({"perceptual": "dssim", "step_size": -0.1}, r"params\.step_size .*> 0"),
    ({"perceptual": "dssim", "eps": 0}, r"params\.eps .*null or a number > 0"),
])
def test_invalid_hyperparameters_rejected(ex, params, message):
    with pytest.raises(ConfigError, match=message):
        build_cloak("lk", {"type": "lowkey", "params": params}, [ex], seed=0)


def test_cached_lpips_equals_the_package(alexnet_weights, images):
    import lpips
    ours = LPIPSAlex(alexnet_weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    state = torch.load(alexnet_weights)
    for slice_ in ref.net.children():
        for idx, layer in slice_.named_children():
            if isinstance(layer, torch.nn.Conv2d):
                layer.weight.data.copy_(state[f"features.{idx}.weight"])
                layer.bias.data.copy_(state[f"features.{idx}.bias"])
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    other = (images + 0.05 * noise).clamp(0, 1)
    expected = ref(images, other, normalize=True).flatten()
    got = ours.distance(ours.reference(images), other)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_lpips_mode_runs_and_is_recorded(ex, images, alexnet_weights):
    c = LowKey([ex], steps=3, lpips_weights=str(alexnet_weights))
    out = c(images)
    assert out.shape == images.shape
    hp = c.hyperparameters()
    assert hp["perceptual"] == "lpips" and hp["lpips_weights"] == str(alexnet_weights)
    assert hp["overridden"] == ["steps"] and hp["c_sim"] == 0.05 and hp["step_size"] == 0.0025


def test_features_move_away_and_objective_improves(ex, images):
    c = LowKey([ex], perceptual="dssim", steps=12)
    out = c(images)
    hp = c.hyperparameters()
    assert hp["perceptual"] == "dssim" and hp["overridden"] == ["steps", "perceptual"]
    assert out.min() >= 0 and out.max() <= 1
    assert torch.all(feature_shift(images, out, [ex])["tiny"] > 0.05)
    hist = c.loss_history
    assert len(hist) == c.steps + 1 and hist[-1] > hist[0]
    # Signed steps of 0.0025 from noise of 0.005: the L-inf it produced is bounded by that.
    assert torch.all(linf(out, images) <= 0.005 + 12 * 0.0025 + 1e-6)
    assert c.history["linf"][-1] > 0.0025


def test_eps_projects_and_same_seed_same_output(ex, images):
    a = LowKey([ex], perceptual="dssim", steps=6, eps=0.004, seed=1)(images)
    b = LowKey([ex], perceptual="dssim", steps=6, eps=0.004, seed=1)(images)
    c = LowKey([ex], perceptual="dssim", steps=6, eps=0.004, seed=2)(images)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.all(linf(a, images) <= 0.004 + 1e-6)


def test_blur_and_flip_switches_change_the_passes(ex):
    assert LowKey([ex], perceptual="dssim").entries_per_model == 4
    assert LowKey([ex], perceptual="dssim", blur_kernel=0, flip=False).entries_per_model == 1


def test_per_branch_gradient_equals_the_joint_one(ex, images):
    """The CPU path (one backward per branch) computes the same gradient as one backward."""
    c = LowKey([ex, TinyNet("b", seed=1)], perceptual="dssim")
    x = images
    clean = c._clean_features(x)
    norms = [f.norm(dim=1) for f in clean]
    adv = (x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3)))
    adv = adv.requires_grad_(True)
    objective, feat, perc, grad = c._objective_and_grad(adv, x, clean, norms, None)
    joint = c._feature_term(adv, clean, norms) - c.c_sim * c._perceptual_term(None, x, adv)
    (expected,) = torch.autograd.grad(joint.mean(), adv)
    assert torch.allclose(objective, joint.detach(), atol=1e-7)
    assert torch.allclose(grad, expected, rtol=1e-4, atol=1e-9)
