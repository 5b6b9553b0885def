"""The workflow's rules as text blocks (Snakefile + rules/*.smk), for checks that need no
Snakemake run: resources every rule declares, conda envs, profile entries."""

from __future__ import annotations

import re

from repo_paths import ROOT

_RULE = re.compile(r"^(\s*)(?:rule|checkpoint)\s+(\w+)\s*:")
_ACTION = re.compile(r"^\s*(script|shell|run|wrapper|notebook)\s*:", re.M)


def rules() -> dict[str, str]:
    """rule name -> the rule's source block."""
    out = {}
    for f in [ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))]:
        lines = f.read_text().splitlines()
        i = 0
        while i < len(lines):
            m = _RULE.match(lines[i])
            if not m:
                i += 1
                continue
            indent, name = len(m.group(1)), m.group(2)
            block = [lines[i]]
            i += 1
            while i < len(lines) and (not lines[i].strip()
                                      or len(lines[i]) - len(lines[i].lstrip()) > indent):
                block.append(lines[i])
                i += 1
            assert name not in out, f"rule {name} defined twice"
            out[name] = "\n".join(block)
    return out


def action_rules() -> dict[str, str]:
    """Rules that run something (script/shell/run/...), i.e. that become jobs with work to do."""
    return {n: b for n, b in rules().items() if _ACTION.search(b)}
