"""README "Adding an extractor" / "Adding a cloak", followed to the letter: the two example
files and the config entries are taken from the README itself, written to a folder on the
path, named under ``plugins:``, validated, built and run (the workflow's dry run that plans
jobs for them: tests/workflow/test_plugins_workflow.py)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from cloaks_testlib import smooth_images
from cloakbench.cloaks import CLOAKS, build_cloak
from cloakbench.config import validate_config
from cloakbench.errors import ConfigError
from cloakbench.extractors import EXTRACTORS, build_extractor
from cloakbench.registry import PLUGINS_ENV
from readme_plugins import README, config_with_plugins
from repo_paths import ROOT

SCHEMA = ROOT / "config" / "schema.yaml"
BAD_EPS_MESSAGE = ("cloaks.toy.params.eps (cloak type 'toy_cloak'): must be a number in\n"
                   "(0, 1], got 'big'")


def test_readme_plugins_validate_build_and_run(plugin_dir):
    assert "toy_cloak" not in CLOAKS and "toy_extractor" not in EXTRACTORS
    cfg = validate_config(config_with_plugins(), SCHEMA, check_paths=False)
    # validating the config imported the plugin modules, and recorded them for the jobs
    assert "toy_cloak" in CLOAKS and "toy_extractor" in EXTRACTORS
    assert os.environ[PLUGINS_ENV].split(",") == ["toy_extractor", "toy_cloak"]

    extractor = build_extractor("toy", cfg["extractors"]["toy"])
    assert EXTRACTORS["toy_extractor"].describe("toy", cfg["extractors"]["toy"]).family \
        == "toy random projection"
    spec = cfg["cloaks"]["toy"]
    cloak = build_cloak("toy", spec, [extractor], seed=cfg["seed"])
    x = smooth_images(3, seed=1)
    out = cloak(x)
    assert out.shape == x.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    assert float((out - x).abs().max()) <= 0.02 + 1e-6  # the eps budget
    assert torch.equal(out, build_cloak("toy", spec, [extractor], seed=cfg["seed"])(x))
    with torch.no_grad():
        before = torch.nn.functional.cosine_similarity(extractor(x), extractor(x))
        after = torch.nn.functional.cosine_similarity(extractor(out), extractor(x))
    assert torch.all(after < before), "the toy cloak moves the toy model's features"
    hp = cloak.hyperparameters()
    assert hp["eps"] == 0.02 and hp["noise"] == 0.01 and hp["overridden"] == ["eps", "noise"]
    assert json.loads(json.dumps(CLOAKS["toy_cloak"].describe()))["params"][0]["name"] == "eps"

    # the README's error for a wrong value, before any job (no weights, no extractor built)
    bad = config_with_plugins()
    bad["cloaks"]["toy"]["params"]["eps"] = "big"
    with pytest.raises(ConfigError) as err:
        validate_config(bad, SCHEMA, check_paths=False)
    assert " ".join(BAD_EPS_MESSAGE.split()) in str(err.value)
    assert BAD_EPS_MESSAGE in README
    bad["cloaks"]["toy"]["params"] = {"epsilon": 0.1}
    with pytest.raises(ConfigError, match=r"cloaks\.toy\.params .*unknown key.*known keys: eps, noise"):
        validate_config(bad, SCHEMA, check_paths=False)


def test_plugin_module_that_cannot_be_imported_is_a_config_error(monkeypatch):
    monkeypatch.setenv(PLUGINS_ENV, "")  # restored afterwards, whatever validation sets
    cfg = config_with_plugins()
    cfg["plugins"] = ["no_such_plugin_module"]
    with pytest.raises(ConfigError, match=r"plugins\[0\]: cannot import plugin module "
                                          r"'no_such_plugin_module'.*PYTHONPATH"):
        validate_config(cfg, SCHEMA, check_paths=False)


def test_registry_refuses_a_second_class_under_a_taken_name():
    from cloakbench.cloaks.base import Cloak

    class Impostor(Cloak):
        type_name = "pgd"

        def perturb(self, x):
            return x

    with pytest.raises(ValueError, match="cloak type 'pgd' registered twice"):
        CLOAKS.register(Impostor)
    with pytest.raises(ConfigError, match=r"cloaks\.c\.type: unknown cloak type 'pgdd'. "
                                          r"Known types: external, fawkes_v03"):
        CLOAKS.get("pgdd", name="c")
