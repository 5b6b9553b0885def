"""Fawkes v0.3 (targeted): presets, validation, target choice, movement, budget, seeding."""

import pytest
import torch
import torch.nn.functional as F

from cloaks_testlib import TinyNet, smooth_images
from cloakbench.cloaks import build_cloak
from cloakbench.cloaks.context import build_target_context
from cloakbench.cloaks.fawkes_v03 import FawkesV03
from cloakbench.cloaks.metrics import dssim
from cloakbench.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)  # not used by the cloaks; keeps stray global draws out of the picture
    ex = TinyNet()
    user = smooth_images(3, seed=0)
    candidates = {f"id{i}": smooth_images(3, seed=10 + i) for i in range(6)}
    ctx = build_target_context([ex], user, candidates, user="me")
    return ex, user, candidates, ctx


def test_presets_and_overrides():
    ex = TinyNet()
    c = FawkesV03([ex])
    assert (c.mode, c.rho, c.steps, c.lr) == ("high", 0.008, 500, 10.0)
    c = FawkesV03([ex], mode="low", steps=7)
    assert (c.rho, c.steps, c.lr) == (0.003, 7, 35.0)
    hp = c.hyperparameters()
    assert hp["overridden"] == ["steps"] and hp["mode"] == "low" and hp["penalty"] == 1e6
    assert hp["n_farthest"] == 20 and hp["overshoot"] == 2.0 and hp["ensemble"] == ["tiny"]
    assert FawkesV03([ex], mode="ultra").rho == 0.01


@pytest.mark.parametrize("params, message", [
    ({"mode": "extreme"}, r"params\.mode .*must be one of 'min', 'low', .*got 'extreme'"),
    ({"rho": -0.1}, r"params\.rho .*must be a number in \(0, 1\), got -0\.1"),
    ({"steps": 0}, r"params\.steps .*must be an integer >= 1, got 0"),
    ({"steps": 2.5}, r"params\.steps .*must be an integer >= 1, got 2\.5"),
    ({"steps": "ten"}, r"params\.steps .*must be an integer >= 1, got 'ten'"),
    ({"lr": 0}, r"params\.lr .*must be a number > 0"),
    ({"source_center": "median"}, r"params\.source_center .*one of 'image', 'user'"),
    ({"resolution": 8}, r"params\.resolution .*null or an integer >= 32"),
    ({"n_farthest": 0}, r"params\.n_farthest"),
    ({"keep_best": "yes"}, r"params\.keep_best .*true or false, got 'yes'"),
    ({"adadelta_rho": 1.0}, r"params\.adadelta_rho .*in \[0, 1\)"),
])
def test_invalid_hyperparameters_rejected(params, message):
    with pytest.raises(ConfigError, match=message) as err:
        build_cloak("f3", {"type": "fawkes_v03", "params": params}, [TinyNet()], seed=0)
    assert "cloaks.f3.params." in str(err.value) and "fawkes_v03" in str(err.value)
    # the same check without any extractor or weights (the config check before any job)
    with pytest.raises(ConfigError, match=message):
        FawkesV03.validate_params(params, where="cloaks.f3.params")


def test_unknown_parameter_names_the_key():
    with pytest.raises(ConfigError, match=r"cloaks\.f3\.params .*unknown key\(s\) 'rhoo'; "
                                          r"known keys: mode, rho, steps, lr, penalty"):
        build_cloak("f3", {"type": "fawkes_v03", "params": {"rhoo": 0.1}}, [TinyNet()], seed=0)
    with pytest.raises(ConfigError, match="unknown key.*'seed'"):  # not a parameter
        build_cloak("f3", {"type": "fawkes_v03", "params": {"seed": 1}}, [TinyNet()], seed=0)


def test_call_before_prepare_is_an_error(setup):
    ex, user, _, _ = setup
    with pytest.raises(RuntimeError, match="prepare"):
        FawkesV03([ex], mode="min")(user)


def test_context_shapes_and_user_excluded(setup):
    ex, user, candidates, _ = setup
    ctx = build_target_context([ex], list(user), {**candidates, "me": user}, user="me")
    assert ctx["user_features"]["tiny"].shape == (3, 128)
    assert "me" not in ctx["candidate_features"]
    assert ctx["candidate_features"]["id0"]["tiny"].shape == (3, 128)
    with pytest.raises(ValueError, match="no candidate"):
        FawkesV03([ex]).prepare({"user_features": ctx["user_features"], "candidate_features": {}})


def test_target_is_among_the_farthest_and_seeded(setup):
    ex, user, candidates, ctx = setup
    # Independent computation of the ranking: min distance to the user's pictures.
    with torch.no_grad():
        u = F.normalize(ex(user), dim=1)
        dist = {i: torch.cdist(u, F.normalize(ex(p), dim=1).mean(0, keepdim=True)).min().item()
                for i, p in candidates.items()}
    ranking = sorted(dist, key=lambda i: -dist[i])
    one = FawkesV03([ex], mode="min", n_farthest=1)
    one.prepare(ctx)
    assert one.target_identity == ranking[0]
    picks = set()
    for seed in range(8):
        c = FawkesV03([ex], mode="min", n_farthest=3, seed=seed)
        c.prepare(ctx)
        assert c.target_identity in ranking[:3]
        assert [r[0] for r in c.target_ranking] == ranking[:3]
        again = FawkesV03([ex], mode="min", n_farthest=3, seed=seed)
        again.prepare(ctx)
        assert again.target_identity == c.target_identity
        picks.add(c.target_identity)
    assert len(picks) > 1  # the draw is random across seeds, not always the farthest


def test_moves_features_toward_target_and_loss_improves(setup):
    ex, user, candidates, ctx = setup
    c = FawkesV03([ex], mode="min", seed=0)
    c.prepare(ctx)
    cloaked = c(user)
    assert cloaked.shape == user.shape and cloaked.min() >= 0 and cloaked.max() <= 1
    with torch.no_grad():
        target = F.normalize(F.normalize(ex(candidates[c.target_identity]), dim=1).mean(0), dim=0)
        before = (F.normalize(ex(user), dim=1) - target).norm(dim=1)
        after = (F.normalize(ex(cloaked), dim=1) - target).norm(dim=1)
    assert torch.all(after < before), (before, after)
    hist = c.loss_history
    assert len(hist) == c.steps + 1
    assert min(hist[1:]) < hist[0] and hist[-1] < hist[0]


def test_dssim_budget_holds_at_the_end_of_the_optimisation(setup):
    """The penalty keeps the last step near rho (v0.3 only promises it softly).

    With ``keep_best`` (the original's default) the returned step is the one with the
    smallest feature loss, which v0.3 did not check against rho; so the budget is
    checked on the last step (``keep_best: false``), with a 25 % tolerance, at the size
    where the budget is enforced (the crop's own size here: ``resolution: null``).
    """
    ex, user, _, ctx = setup
    c = FawkesV03([ex], mode="low", steps=30, keep_best=False, resolution=None)
    c.prepare(ctx)
    cloaked = c(user)
    d = dssim(cloaked, user)
    assert torch.all(d <= 1.25 * c.rho), d
    assert torch.all(d > 0.2 * c.rho), d  # the budget is used, not left idle


def test_same_seed_same_output_and_images_context(setup):
    ex, user, candidates, ctx = setup
    outs = []
    for _ in range(2):
        c = FawkesV03([ex], mode="min", steps=5, seed=3)
        c.prepare({"user": "me", "user_images": user, "candidate_images": candidates})
        outs.append(c(user))
    assert torch.equal(outs[0], outs[1])


def test_upsampled_working_resolution(setup):
    ex, user, _, ctx = setup
    c = FawkesV03([ex], mode="min", steps=3, resolution=160)
    c.prepare(ctx)
    out = c(user[:1])
    assert out.shape == (1, 3, 112, 112) and out.min() >= 0 and out.max() <= 1
    assert c.hyperparameters()["resolution"] == 160


def test_prepare_from_the_perturb_stage_tables(setup, tmp_path):
    """The context perturb.py passes (identity, user_paths, manifest, roles, dataset_dir)."""
    import pandas as pd

    from cloakbench.images import to_uint8
    from cloakbench.io import write_png

    ex, user, candidates, _ = setup
    rows = []
    for ident, pics in [("me", user), *candidates.items()]:
        for k, arr in enumerate(to_uint8(pics)):
            rel = f"{ident}/{k}.png"
            write_png(arr, tmp_path / rel)
            rows.append({"image_id": f"{ident}/{k}", "identity": ident, "path": rel,
                         "split": "train" if k < 2 else "test"})
    manifest = pd.DataFrame(rows)
    roles = pd.DataFrame({"identity": ["me", *candidates],
                          "role": ["protected"] + ["public"] * 4 + ["other"] * 2})
    ctx = {"identity": "me", "seed": 0, "manifest": manifest, "roles": roles,
           "dataset_dir": tmp_path, "user_paths": [str(tmp_path / f"me/{k}.png") for k in range(3)]}
    c = FawkesV03([ex], mode="min", n_farthest=1, candidate_pictures=1, candidate_role="public")
    c.prepare(ctx)
    assert c.user == "me" and c.target_identity in {"id0", "id1", "id2", "id3"}
    assert {r[0] for r in c.target_ranking} <= {"id0", "id1", "id2", "id3"}
    assert len(c._candidate_cache) == 1  # candidates embedded once, reused for the next user
    assert "candidate_role" in c.hyperparameters()["overridden"]  # public: a deviation
    with pytest.raises(Exception, match="public_fraction"):
        FawkesV03([ex], candidate_role="public").prepare({**ctx, "roles": roles.assign(role="other")})
    # The default (v0.3): the target pool, which is not among the public identities.
    pool = roles.assign(role=["protected", "public", "public", "target_pool", "target_pool",
                              "other", "other"])
    v03 = FawkesV03([ex], mode="min", n_farthest=2, candidate_pictures=2)
    v03.prepare({**ctx, "roles": pool})
    assert v03.target_identity in {"id2", "id3"}
    assert {r[0] for r in v03.target_ranking} == {"id2", "id3"}
    with pytest.raises(Exception, match="users.target_pool"):
        FawkesV03([ex]).prepare(ctx)  # no identity of role target_pool


def test_v03_defaults_are_the_release():
    """Target pool, per-picture target picture, f(x) itself as the centre, 224 px, overshoot 2."""
    hp = FawkesV03.validate_params({}, where="cloaks.f")
    assert hp["candidate_role"] == "target_pool" and hp["target_point"] == "picture"
    assert hp["source_center"] == "image" and hp["resolution"] == 224
    assert hp["overshoot"] == 2.0 and hp["n_farthest"] == 20 and hp["candidate_pictures"] == 10
    # today's centroid target and 112 px stay as options, recorded as deviations
    c = build_cloak("f", {"type": "fawkes_v03", "params": {
        "target_point": "centroid", "source_center": "user", "resolution": None}}, [TinyNet()],
        seed=0)
    assert set(c.hyperparameters()["overridden"]) == {"target_point", "source_center",
                                                      "resolution"}


def test_target_point_is_per_picture(setup):
    """t = f(x) + 2 (f(t_img) - f(x)) with one seeded random target picture per cloaked
    picture: the draw differs across pictures, not across batches, and the first step's
    feature term is exactly the distance to that point."""
    ex, user, _, _ = setup
    many = smooth_images(8, seed=40)
    target = smooth_images(6, seed=50)  # the target identity's six pictures
    with torch.no_grad():
        ctx = {"user": "me", "user_features": {ex.name: ex(many)},
               "candidate_features": {"tgt": {ex.name: ex(target)}}}
    c = FawkesV03([ex], mode="min", steps=1, resolution=None, seed=5)
    c.prepare(ctx)
    c(many)
    idx = list(c.target_pictures)
    assert len(idx) == 8 and len(set(idx)) > 1  # not one shared target picture
    c(many[3:5])  # the same pictures in another batch draw the same target pictures
    assert c.target_pictures == idx[3:5]
    with torch.no_grad():
        fx, ft = ex(many), ex(target)[idx]
        t = fx + 2.0 * (ft - fx)
        expected = ((fx - t).norm(dim=1) / t.norm(dim=1)).mean()  # step 0: x' = x (up to 1e-6)
        centroid_t = fx + 2.0 * (ex(target).mean(0) - fx)
        centroid = ((fx - centroid_t).norm(dim=1) / centroid_t.norm(dim=1)).mean()
    c(many)
    first = c.history["feature"][0]
    assert abs(first - float(expected)) < 1e-3 * float(expected)
    assert abs(first - float(centroid)) > 1e-2 * float(centroid)  # not the centroid's point
    other = FawkesV03([ex], mode="min", steps=1, resolution=None, seed=6)
    other.prepare(ctx)
    other(many)
    assert other.target_pictures != idx  # seeded by the cloak's seed
