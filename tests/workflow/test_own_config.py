"""A config given with --configfile is the whole configuration, from the repository root.

The other workflow tests run in a temporary folder with -d, where config/config.yaml (the
demo config) does not exist; a user runs from the root of a checkout, where it does. These
tests copy the repository (tests/checkout.py) and run `snakemake -n` there as a user types it:
a user's config must not inherit the demo's extractors, cloaks or adaptive section, and the
tiny config must plan exactly the jobs it plans in a temporary folder.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest
import yaml

from checkout import copy_checkout
from smk_helpers import ENV, ROOT, SNAKEMAKE, dry_run, planned_jobs

pytestmark = pytest.mark.slow


def _root_dry_run(checkout: Path, *args: str) -> list[tuple[str, tuple[str, ...]]]:
    proc = subprocess.run([SNAKEMAKE, "-n", "--cores", "1", *args], cwd=checkout, capture_output=True,
                          text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return planned_jobs(proc)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    return copy_checkout(tmp_path_factory.mktemp("own_config") / "checkout")


def _names(path: Path) -> tuple[set[str], set[str]]:
    cfg = yaml.safe_load(path.read_text())
    return set(cfg.get("extractors") or {}), set(cfg.get("cloaks") or {})


def _outputs(jobs) -> list[str]:
    return [o for _, outs in jobs for o in outs]


def test_facescrub_from_root_plans_no_demo_job(checkout):
    jobs = _root_dry_run(checkout, "--configfile", "config/facescrub.yaml")
    fs_ex, fs_cl = _names(ROOT / "config" / "facescrub.yaml")
    demo_ex, demo_cl = _names(ROOT / "config" / "config.yaml")
    demo_only = (demo_ex | demo_cl) - (fs_ex | fs_cl)
    assert {"cnn_2018", "resnet_2020"} <= demo_only  # the demo's, never FaceScrub's
    rules = Counter(r for r, _ in jobs)
    cfg = yaml.safe_load((ROOT / "config" / "facescrub.yaml").read_text())
    # no demo dataset and no in-pipeline generation (facescrub.yaml trains none); its adaptive
    # trainer is the paper's (FaceCure's robust extractor, end-to-end, detection, ...)
    for rule in ("make_demo_dataset", "train_extractor"):
        assert rules[rule] == 0, (rule, rules)
    robust = [n for n, s in cfg["extractors"].items() if s["type"] == "robust"]
    assert rules["robust_train"] == len(robust) >= 1, rules
    parts = {p for o in _outputs(jobs) for p in Path(o).with_suffix("").parts}
    assert not parts & demo_only, sorted(parts & demo_only)
    # and every extractor and cloak of the file is planned: one embed job per extractor and
    # image set, one perturb job per cloak and shard of the protected users' pictures
    assert {Path(o).parent.name for r, outs in jobs if r == "embed" for o in outs} == fs_ex
    assert {Path(o).parts[2] for r, outs in jobs if r == "perturb" for o in outs} == fs_cl
    protected = [o for r, outs in jobs if r == "perturb" for o in outs if Path(o).parts[3] == "protected"]
    assert len(protected) == len(fs_cl) * cfg["perturb"]["shards"]


def test_tiny_config_from_root_plans_what_the_tests_plan(checkout, tmp_path):
    from_root = _root_dry_run(checkout, "--configfile", "config/test.yaml")
    in_tmp = dry_run(tmp_path)  # -s Snakefile -d tmp --configfile config/test.yaml
    assert sorted(from_root) == sorted(in_tmp)
    assert len(from_root) > 10


def test_no_configfile_is_the_demo(checkout):
    """Without --configfile (also with --config overrides only) the demo config is used."""
    jobs = _root_dry_run(checkout, "--config", "seed=1")
    rules = Counter(r for r, _ in jobs)
    assert rules["make_demo_dataset"] == 1 and rules["train_extractor"] >= 1, rules
    demo_ex, demo_cl = _names(ROOT / "config" / "config.yaml")
    assert {Path(o).parent.name for r, outs in jobs if r == "embed" for o in outs} == demo_ex
