"""benchmarks/device_kit.py: what the GPU check carries (no download here: the package list,
the dependency closure over this environment, the kit's config)."""
from __future__ import annotations

import importlib.util
import sys

import pytest
import yaml

from repo_paths import ROOT


def _load():
    spec = importlib.util.spec_from_file_location("device_kit", ROOT / "benchmarks" / "device_kit.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


dk = _load()


def test_device_packages_reads_the_notes_list(tmp_path):
    notes = tmp_path / "KINDS.md"
    notes.write_text("# kinds\n\nnvidia: their image holds these. Packages: numpy, PyYAML, "
                     "scikit_learn, torch.\n")
    assert dk.device_packages(notes) == {"numpy", "pyyaml", "scikit-learn", "torch"}
    notes.write_text("no list here\n")
    with pytest.raises(SystemExit, match="no line with 'Packages"):
        dk.device_packages(notes)


def test_closure_follows_requirements_and_drops_what_the_device_has():
    # jsonschema needs attrs, referencing, jsonschema-specifications and rpds-py (installed here).
    with_attrs = dk.closure(("jsonschema",), set(), "3.12")
    assert {"jsonschema", "attrs", "referencing", "jsonschema-specifications", "rpds-py"} <= set(with_attrs)
    without = dk.closure(("jsonschema",), {"attrs", "rpds-py"}, "3.12")
    assert "attrs" not in without and "rpds-py" not in without and "referencing" in without
    # skipped on purpose: pulp (greedy scheduler), opencv-python (the device has the headless cv2)
    assert not {"pulp", "opencv-python"} & set(dk.closure(("snakemake", "insightface"), set(), "3.12"))


def test_closure_refuses_a_package_that_is_not_installed():
    with pytest.raises(SystemExit, match="not installed here"):
        dk.closure(("no-such-package-cloakbench",), set(), "3.12")


def test_kit_config_sets_the_device_and_drops_dlib(tmp_path):
    cfg, dropped = dk.kit_config(ROOT / "config" / "config.yaml", "cuda")
    assert cfg["device"] == "cuda"
    assert list(dropped) == ["dlib"] and "dlib" not in cfg["extractors"]
    source = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    assert set(source["extractors"]) - set(cfg["extractors"]) == {"dlib"}
    # an uncarried extractor that something else names (here a cloak's ensemble) cannot be left out
    next(iter(source["cloaks"].values()))["ensemble"].append("dlib")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(source))
    with pytest.raises(SystemExit, match="uses extractor 'dlib' outside"):
        dk.kit_config(bad, "cuda")
