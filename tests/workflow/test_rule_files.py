"""The rule files' names: each .smk file uses only names of rules/common.smk or its own, and
only common.smk reads Snakemake's config (the others read the PLAN). Read with Snakemake's
parser, no workflow run."""

from __future__ import annotations

import ast
import builtins
import types
from pathlib import Path

from repo_paths import ROOT


def _python_of(smk: Path) -> str:
    """The Python Snakemake makes of a rule file (its own parser, no workflow run)."""
    import snakemake.parser as sp

    class Source:
        def __init__(self, path: Path):
            self.path = path

        def get_path_or_uri(self, secret_free: bool = True) -> str:
            return str(self.path)

    class Cache:
        def open(self, source: Source):
            return open(source.path)

    code, _ = sp.parse(Source(smk), types.SimpleNamespace(sourcecache=Cache()), {})
    return code


def _walk(tree: ast.AST):
    """Every node, except the body of the functions Snakemake generates for a rule's action
    (their decorators hold the rule's input, params, ...)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.FunctionDef) and node.name.startswith("__rule_"):
            todo.extend(node.decorator_list)
        else:
            todo.extend(ast.iter_child_nodes(node))


def _bound_and_used(code: str) -> tuple[set[str], set[str]]:
    bound, used = set(), set()
    for node in _walk(ast.parse(code)):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return bound, used


def test_rule_files_use_only_names_of_common_smk_or_their_own():
    import snakemake.api  # noqa: F401  (imports snakemake.workflow in the order it needs)
    import snakemake.workflow

    # what Snakemake puts in every Snakefile's namespace (expand, directory, unpack, config, ...)
    snakemake_names = set(dir(snakemake.workflow)) | {"workflow", "rules", "checkpoints", "config", "scatter",
                                                     "gather", "storage", "access"}
    common, _ = _bound_and_used(_python_of(ROOT / "rules" / "common.smk"))
    assert {"PLAN", "MANIFEST", "ADAPTIVE_TARGETS", "dataset_root_input"} <= common
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        bound, used = _bound_and_used(_python_of(smk))
        foreign = used - bound - common - snakemake_names - set(dir(builtins))
        assert not foreign, f"{smk.name} uses names defined in another rule file: {sorted(foreign)}"
        if smk.name != "common.smk":
            assert "config" not in used, f"{smk.name} reads Snakemake's config (read the PLAN instead)"
