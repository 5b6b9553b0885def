"""README "Adding an extractor" / "Adding a cloak": its example files and config entries, as
the README writes them (read by tests/unit/test_plugins.py and tests/workflow/test_plugins_workflow.py;
the ``plugin_dir`` fixture in conftest.py puts the files on the path)."""

from __future__ import annotations

import re

import yaml

from repo_paths import ROOT

README = (ROOT / "README.md").read_text()


def readme_blocks(language: str, marker: str) -> dict[str, str]:
    """Fenced ``language`` blocks of the README whose first line is ``# <marker>: <name>``."""
    found = {}
    for body in re.findall(rf"```{language}\n(.*?)```", README, flags=re.S):
        first = body.splitlines()[0]
        if first.startswith(f"# {marker}: "):
            found[first.split(": ", 1)[1].strip()] = body
    return found


def config_with_plugins() -> dict:
    blocks = readme_blocks("yaml", "config")
    entries = yaml.safe_load(blocks["plugins"])
    cfg = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    cfg["plugins"] = entries["plugins"]
    cfg["extractors"].update(entries["extractors"])
    cfg["cloaks"].update(entries["cloaks"])
    return cfg
