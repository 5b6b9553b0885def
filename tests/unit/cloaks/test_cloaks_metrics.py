"""Per-image perturbation metrics and the feature-shift helper (cloaks/metrics.py)."""

import pytest
import torch
import torch.nn.functional as F
from pytorch_msssim import ssim

from cloaks_testlib import TinyNet, smooth_images
from cloakbench.cloaks.metrics import dssim, feature_shift, l2, linf, perturbation_stats

pytestmark = pytest.mark.usefixtures("one_thread")


def test_dssim_is_half_one_minus_ssim_per_image():
    x = smooth_images(3)
    y = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    d = dssim(y, x)
    assert d.shape == (3,)
    expected = (1 - ssim(y, x, data_range=1.0, size_average=False, win_size=11, win_sigma=1.5)) / 2
    assert torch.equal(d, expected)  # the cached window is the library's own, bit for bit
    assert torch.all(d > 0)
    assert torch.allclose(dssim(x, x), torch.zeros(3), atol=1e-6)
    # more noise -> larger DSSIM, picture by picture
    z = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert torch.all(dssim(z, x) > d)


def test_linf_l2_per_image():
    x = torch.zeros(2, 3, 16, 16)
    y = x.clone()
    y[0, 1, 2, 3] = 0.5
    y[1] = 0.1
    assert torch.allclose(linf(y, x), torch.tensor([0.5, 0.1]))
    assert torch.allclose(l2(y, x), torch.tensor([0.5, (768 * 0.01) ** 0.5]))
    stats = perturbation_stats(x, y)
    assert set(stats) == {"dssim", "linf", "l2"} and stats["linf"].shape == (2,)


def test_feature_shift_matches_normalised_features():
    a, b = TinyNet("a", seed=0), TinyNet("b", seed=1)
    x = smooth_images(3)
    y = (x + 0.03).clamp(0, 1)
    shift = feature_shift(x, y, [a, b], batch_size=2)
    assert set(shift) == {"a", "b"}
    for ex in (a, b):
        with torch.no_grad():
            expected = (F.normalize(ex(x), dim=1) - F.normalize(ex(y), dim=1)).norm(dim=1)
        assert torch.allclose(shift[ex.name], expected, atol=1e-5)
        assert torch.all(shift[ex.name] > 0)
    cos = feature_shift(x, y, {"alias": a}, metric="cosine")
    assert torch.allclose(cos["alias"], shift["a"] ** 2 / 2, atol=1e-5)
    assert torch.allclose(feature_shift(x, x, [a])["a"], torch.zeros(3), atol=1e-5)
    with pytest.raises(ValueError, match="metric"):
        feature_shift(x, y, [a], metric="manhattan")
    with pytest.raises(ValueError, match="shape"):
        feature_shift(x, y[:2], [a])


def test_adadelta_update_matches_torch_optimizer():
    """The written-out Adadelta (CUDA-graph friendly) is torch.optim.Adadelta's arithmetic."""
    from cloakbench.cloaks.optim import adadelta_update
    g = torch.Generator().manual_seed(0)
    p_ref = torch.randn(2, 3, 8, 8, generator=g).requires_grad_(True)
    p_ours = p_ref.detach().clone()
    opt = torch.optim.Adadelta([p_ref], lr=10.0, rho=0.95, eps=1e-8, foreach=False)
    sq, acc = torch.zeros_like(p_ours), torch.zeros_like(p_ours)
    lr = torch.tensor(10.0)
    for i in range(5):
        grad = torch.randn(p_ours.shape, generator=g)
        p_ref.grad = grad.clone()
        opt.step()
        adadelta_update(p_ours, grad, sq, acc, lr if i % 2 else 10.0, 0.95, 1e-8)
        assert torch.allclose(p_ours, p_ref.detach(), rtol=0, atol=1e-6)


def test_history_records_at_device_positions():
    from cloakbench.cloaks.optim import History
    h = History(3, ("a",))
    for v in (1.0, 2.0):
        h.add(a=torch.tensor([v, v + 2]))
        h.advance()
    assert h["a"] == [2.0, 3.0] and "a" in h and "b" not in h


def test_to_tensor_accepts_read_only_arrays_without_warning():
    import warnings

    import numpy as np

    from cloakbench.images import to_tensor, to_uint8

    arr = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    arr.setflags(write=False)  # as np.asarray(PIL.Image) returns
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = to_tensor(arr)
    assert t.shape == (1, 3, 2, 2) and np.array_equal(to_uint8(t)[0], arr)
