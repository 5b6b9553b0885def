"""benchmarks/bench_scale.py: the growth-exponent fit, the FaceScrub extrapolation and the
table, on made-up timings (the stages themselves run only in the opt-in quick run below)."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import sys

import pytest

from repo_paths import ROOT


def _load():
    spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "benchmarks" / "bench_scale.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module     # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bs = _load()


@pytest.mark.parametrize("b", [0.5, 1.0, 2.0, 2.5])
def test_growth_exponent_recovers_a_power_law(b):
    sizes = [800, 1600, 3200]
    assert bs.growth_exponent(sizes, [3.0 * n ** b for n in sizes]) == pytest.approx(b, abs=1e-9)


def test_growth_exponent_is_the_least_squares_slope():
    # log-log points (0, 0), (l, l), (2l, 3l): slope = cov / var = 3 l^2 / 2 l^2
    assert bs.growth_exponent([1, 2, 4], [1, 2, 8]) == pytest.approx(1.5)


@pytest.mark.parametrize("sizes, times, message", [
    ([800], [1.0], "at least two sizes"),
    ([800, 1600], [1.0], "same length"),
    ([800, 800], [1.0, 2.0], "two different sizes"),
    ([800, 1600], [0.0, 1.0], "positive"),
    ([0, 1600], [1.0, 1.0], "positive"),
])
def test_growth_exponent_refuses_what_it_cannot_fit(sizes, times, message):
    with pytest.raises(ValueError, match=message):
        bs.growth_exponent(sizes, times)


def test_extrapolate():
    assert bs.extrapolate(10.0, 1000, 100_000, 1.0) == pytest.approx(1000.0)
    assert bs.extrapolate(10.0, 1000, 100_000, 2.0) == pytest.approx(100_000.0)
    assert bs.extrapolate(10.0, 1000, 100_000, 0.0) == pytest.approx(10.0)
    assert bs.extrapolate(10.0, 1000, 4000, 0.5) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="sizes > 0"):
        bs.extrapolate(10.0, 0, 100_000, 1.0)


def test_scales_grow_identities_pictures_and_protected_users_by_sqrt():
    assert bs.scaled_counts(40, 20, 4, 1) == {"identities": 40, "pictures_per_identity": 20, "protected": 4}
    assert bs.scaled_counts(40, 20, 4, 2) == {"identities": 57, "pictures_per_identity": 28, "protected": 6}
    assert bs.scaled_counts(40, 20, 4, 4) == {"identities": 80, "pictures_per_identity": 40, "protected": 8}
    with pytest.raises(ValueError):
        bs.scaled_counts(40, 20, 4, 0)


def test_facescrub_counts():
    c = bs.facescrub_counts(pictures=100_000, identities=530, protected=50, target_pool=30, train_fraction=0.7)
    per = 100_000 / 530
    assert c["classes"] == 500
    assert c["n_train"] + c["n_test"] == pytest.approx(500 * per)
    assert c["n_train"] == pytest.approx(0.7 * 500 * per)
    assert c["protected_train"] == pytest.approx(0.7 * 50 * per)   # about 6604 pictures to cloak
    assert c["trainer"] == pytest.approx(0.7 * 450 * per)


def _scales(times_of):
    """Three made-up scales whose stage times follow ``times_of(stage, counts)``."""
    out = []
    for k, s in enumerate([1, 2, 4]):
        f = math.sqrt(s)
        ids, pics, prot = round(40 * f), round(20 * f), round(4 * f)
        n = ids * pics
        counts = {"identities": ids, "pictures": n, "protected": prot, "classes": ids - 4,
                  "n_train": round(0.7 * n * (ids - 4) / ids), "n_test": round(0.3 * n * (ids - 4) / ids),
                  "protected_train": round(0.7 * pics) * prot, "trainer": round(0.7 * pics) * (ids - 4 - prot),
                  "cloaked": round(0.7 * pics) * prot}
        out.append({"scale": s, "counts": counts, "generate_seconds": None if k else 20.0,
                    "seconds": {st.name: times_of(st, counts) for st in bs.STAGES}})
    return out


FACESCRUB = bs.facescrub_counts(pictures=100_000, identities=530, protected=50, target_pool=30, train_fraction=0.7)


def test_analyse_extrapolates_each_stage_with_its_natural_size():
    # every stage exactly linear in its natural size: exponent 1 against it, and the FaceScrub
    # time is the rate times FaceScrub's size
    rate = 1e-3
    scales = _scales(lambda st, c: rate * st.size_of(c))
    stages = bs.analyse(scales, FACESCRUB)
    assert list(stages) == [s.name for s in bs.STAGES]
    for name, r in stages.items():
        assert r["exponent_size"] == pytest.approx(1.0, abs=1e-9), name
        assert r["facescrub_seconds"] == pytest.approx(rate * bs.STAGE_BY_NAME[name].size_of(FACESCRUB)), name
    # against the pictures: the 1-NN (n_train x n_test) is quadratic, per_user 1-NN more
    assert stages["embed_clean"]["exponent_pictures"] == pytest.approx(1.0, abs=1e-9)
    assert stages["evaluate_joint_knn1"]["exponent_pictures"] == pytest.approx(2.0, abs=0.1)  # classes = ids - 4
    assert stages["evaluate_per_user_knn1"]["exponent_pictures"] > 2.3
    assert stages["evaluate_joint_knn1"]["over_goal"] and not stages["embed_clean"]["over_goal"]
    # shares: of the largest scale's total, and of FaceScrub's total over the stages in its plan
    assert sum(r["share_largest"] for r in stages.values()) == pytest.approx(1.0)
    in_plan = [r for r in stages.values() if r["in_facescrub"]]
    assert sum(r["share_facescrub"] for r in in_plan) == pytest.approx(1.0)
    assert stages["train_extractor"]["share_facescrub"] is None and not stages["dataset_card"]["in_facescrub"]


def test_a_fixed_cost_is_extrapolated_as_constant_and_marked():
    stages = bs.analyse(_scales(lambda st, c: 0.5), FACESCRUB)
    r = stages["embed_clean"]
    assert r["exponent_size"] == pytest.approx(0.0, abs=1e-9)
    assert r["facescrub_seconds"] == pytest.approx(0.5)
    assert r["fixed_cost_dominated"]
    assert not bs.analyse(_scales(lambda st, c: 2.0), FACESCRUB)["embed_clean"]["fixed_cost_dominated"]


def _result(device="cpu", times_of=lambda st, c: 1e-3 * st.size_of(c)):
    scales = _scales(times_of)
    meta = {"device": device, "threads": 2, "cpu_count": 2, "gpu": "H100" if device == "cuda" else None,
            "started": "t0", "finished": "t1", "commit": "abc", "load_before": "0.1", "load_after": "0.2",
            "steps": 20, "train_epochs": 2, "cloak_full_steps": 150, "facescrub_train_fraction": 0.7}
    return {"meta": meta, "scales": scales, "facescrub": FACESCRUB, "stages": bs.analyse(scales, FACESCRUB)}


def test_markdown_table_names_every_stage_and_the_gpu_rule():
    md = bs.render_markdown(_result())
    for st in bs.STAGES:
        assert f"| {st.name} |" in md
    assert "| **total** |" in md and "| 1x | 40 | 800 | 4 |" in md and "| load average before its stages (this run's own included) |" in md
    assert "GPU: not measured here (no GPU); run bench_scale.py --device cuda on a GPU machine" in md
    assert "inherently superlinear: 1-NN compares every test picture" in md
    assert "extrapolation from 3 points" in md
    json.dumps(_result())    # everything the JSON file holds is JSON-safe
    md_gpu = bs.render_markdown(_result("cuda"))
    assert "not measured here" not in md_gpu and "measured with --device cuda" in md_gpu


def test_markdown_flags_a_stage_over_the_goal_without_an_inherent_reason():
    md = bs.render_markdown(_result(times_of=lambda st, c: c["pictures"] ** (2 if st.name == "embed_clean" else 1)))
    assert "- embed_clean: NOT inherently superlinear" in md


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("CLOAKBENCH_BENCH_QUICK"),
                    reason="runs every stage twice (about a minute on 2 cores): set CLOAKBENCH_BENCH_QUICK=1")
def test_quick_run(tmp_path):
    result = bs.main(["--quick", "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")])
    assert [r["scale"] for r in result["scales"]] == [1.0, 2.0]
    for r in result["scales"]:
        assert set(r["seconds"]) == {s.name for s in bs.STAGES}
        assert r["counts"]["cloaked"] == r["counts"]["protected_train"] > 0
    assert (tmp_path / "out" / "bench_scale.md").read_text().startswith("### bench_scale")
    assert json.loads((tmp_path / "out" / "bench_scale.json").read_text())["meta"]["quick"] is True


def test_probe_times_real_fits_of_evaluates_classifiers():
    small = {"classes": 5, "n_train": 60, "n_test": 25, "protected": 3}
    probe = bs.probe_classifiers(small, dim=16, seed=0, spread=1.0)
    assert (probe["n_train"], probe["n_test"], probe["classes"], probe["protected"]) == (60, 25, 5, 3)
    for c in ("knn1", "linear"):
        assert probe[f"{c}_fit_seconds"] > 0
        assert probe[f"{c}_accuracy"] > 0.6        # separated clusters: the fit really learnt them
    assert 1 <= probe["linear_iterations"] <= probe["linear_max_iter"] == 100
    assert probe["linear_fit_seconds_at_cap"] == pytest.approx(
        probe["linear_fit_seconds"] * 100 / probe["linear_iterations"])


def test_markdown_puts_the_measured_fits_beside_the_extrapolation():
    result = _result()
    result["probe"] = {"dim": 128, "n_train": 66038, "n_test": 28302, "classes": 500, "protected": 50,
                       "knn1_fit_seconds": 10.0, "linear_fit_seconds": 60.0, "linear_accuracy": 0.7,
                       "linear_iterations": 20, "linear_max_iter": 100, "linear_fit_seconds_at_cap": 300.0}
    md = bs.render_markdown(result)
    assert "| knn1 | 10.0 s | 10.0 s | 8.3 min |" in md          # per_user = 50 fits
    assert "| linear | 60.0 s | 60.0 s | 50.0 min |" in md
    assert "evaluate takes 59.5 min" in md                        # (10 + 60) x (1 + 50)
    assert "took 20 of at most 100 iterations" in md and "about 5.0 min, i.e. 4.2 h per_user" in md
