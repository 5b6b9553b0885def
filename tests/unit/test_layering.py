"""The package's layering (import-linter, contracts in .importlinter) and its privacy rule: no
module imports another module's ``_private`` name (``from X import _name`` or ``X._name``)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from repo_paths import ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(src: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the package found under ``src`` (the checkout's by default)."""
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} is missing: install the test extra (pip install -e '.[test]', "
                    "which brings import-linter)")
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--config", str(ROOT / ".importlinter")],
                          cwd=src, env=env, capture_output=True, text=True, timeout=300)


def test_import_contracts_hold():
    run = lint_imports(ROOT / "src")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


@pytest.mark.parametrize("edit, message", [
    # a low layer importing a higher one
    (("io.py", "from cloakbench import records\n"), "cloakbench.io is not allowed to import cloakbench.records"),
    # a registry importing a plugin (and the cycle that makes)
    (("extractors/registry.py", "from cloakbench.extractors import sface\n"),
     "cloakbench.extractors.registry is not allowed to import cloakbench.extractors.sface"),
    # a new top-level module nobody gave a layer
    (("unplaced.py", "X = 1\n"), "unplaced"),
])
def test_import_contracts_catch_a_violation(tmp_path, edit, message):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "cloakbench", src / "cloakbench",
                    ignore=shutil.ignore_patterns("__pycache__"))
    rel, line = edit
    with open(src / "cloakbench" / rel, "a") as fh:
        fh.write(line)
    run = lint_imports(src)
    assert run.returncode != 0
    assert message in " ".join(run.stdout.split()), run.stdout


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__")) and name != "_"


def private_imports(root: Path) -> list[str]:
    """Every ``from X import _name`` and ``X._name`` (X a module) in the .py files under ``root``,
    X another module than the file's own; a private *module* of a package (``from . import
    _train``) is the package's own and allowed."""
    def module_of(path: Path) -> str:
        parts = list(path.relative_to(root).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    def is_module(name: str) -> bool:
        p = root.joinpath(*name.split("."))
        return p.with_suffix(".py").exists() or (p / "__init__.py").exists()

    found = []
    for path in sorted(root.rglob("*.py")):
        here = module_of(path)
        tree = ast.parse(path.read_text(), str(path))
        modules: dict[str, str] = {}  # local name -> the module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    modules[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: None if path.name == "__init__.py" else -1]
                    base = base[: len(base) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for a in node.names:
                    full = f"{source}.{a.name}"
                    if is_module(full) or not node.level and not is_module(source):
                        modules[a.asname or a.name] = full  # a module, or a name of an outside package
                    if _private(a.name) and source != here and not is_module(full):
                        found.append(f"{path.relative_to(root)}:{node.lineno}: from {source} import {a.name}")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                    and node.value.id in modules):
                found.append(f"{path.relative_to(root)}:{node.lineno}: {modules[node.value.id]}.{node.attr}")
    return found


def test_private_import_scan_finds_both_forms(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "_inner.py").write_text("def helper():\n    pass\n")
    (pkg / "a.py").write_text("def _h():\n    pass\n\n\n_T = 1\n\n\ndef _own():\n    return _T\n")
    (pkg / "b.py").write_text("import os\nimport pkg.a as aa\nfrom pkg import a\nfrom . import _inner\n"
                              "from .a import _h\n\nX = a._T + aa._T\nos._exit\n_inner.helper()\n")
    assert sorted(private_imports(tmp_path)) == [
        "pkg/b.py:5: from pkg.a import _h", "pkg/b.py:7: pkg.a._T", "pkg/b.py:7: pkg.a._T",
        "pkg/b.py:8: os._exit"]


def test_no_module_imports_a_private_name_of_another():
    assert private_imports(ROOT / "src") == []
    assert private_imports(ROOT / "scripts") == []
