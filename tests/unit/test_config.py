import copy

import pytest
import yaml

from cloakbench.config import validate_config
from cloakbench.errors import ConfigError


@pytest.fixture
def demo_config(repo_root):
    return yaml.safe_load((repo_root / "config" / "config.yaml").read_text())


@pytest.fixture
def schema(repo_root):
    return repo_root / "config" / "schema.yaml"


def test_demo_config_is_valid_and_defaults_filled(demo_config, schema, repo_root):
    cfg = validate_config(demo_config, schema, base_dir=repo_root)
    assert cfg["perturb"]["shards"] >= 1
    assert cfg["cloaks"]["pgd"]["ensemble"] == ["sface"]
    minimal = {"dataset": {"root": "."}, "extractors": {"sface": {"type": "sface"}}}
    cfg = validate_config(minimal, schema, base_dir=repo_root)
    assert cfg["dataset"]["train_fraction"] == 0.7
    assert cfg["evaluate"]["classifiers"] == ["knn1", "linear"]
    assert cfg["scrape"]["protected_fraction"] == 1.0


def test_schema_violation_names_the_key(demo_config, schema, repo_root):
    bad = copy.deepcopy(demo_config)
    bad["dataset"]["train_fraction"] = 1.5
    with pytest.raises(ConfigError, match="dataset.train_fraction"):
        validate_config(bad, schema, base_dir=repo_root)
    bad = copy.deepcopy(demo_config)
    bad["perturb"]["shardz"] = 3
    with pytest.raises(ConfigError, match="perturb"):
        validate_config(bad, schema, base_dir=repo_root)


def test_unknown_extractor_and_cloak_names(demo_config, schema, repo_root):
    bad = copy.deepcopy(demo_config)
    bad["extractors"]["x"] = {"type": "no_such_model"}
    with pytest.raises(ConfigError, match="extractors.x.type: unknown extractor type 'no_such_model'"):
        validate_config(bad, schema, base_dir=repo_root)
    bad = copy.deepcopy(demo_config)
    bad["cloaks"]["pgd"]["type"] = "nope"
    with pytest.raises(ConfigError, match="cloaks.pgd.type: unknown cloak type 'nope'"):
        validate_config(bad, schema, base_dir=repo_root)
    bad = copy.deepcopy(demo_config)
    bad["cloaks"]["pgd"]["ensemble"] = ["ghost"]
    with pytest.raises(ConfigError, match="cloaks.pgd.ensemble: unknown extractor 'ghost'"):
        validate_config(bad, schema, base_dir=repo_root)


def test_missing_dataset_folder(demo_config, schema, repo_root, tmp_path):
    bad = copy.deepcopy(demo_config)
    bad["demo"]["enabled"] = False
    bad["dataset"]["root"] = str(tmp_path / "absent")
    with pytest.raises(ConfigError, match="dataset.root.*absent"):
        validate_config(bad, schema, base_dir=repo_root)


def test_bad_release_date(demo_config, schema, repo_root):
    bad = copy.deepcopy(demo_config)
    bad["extractors"]["sface"]["release_date"] = "last year"
    with pytest.raises(ConfigError, match="extractors.sface.release_date"):
        validate_config(bad, schema, base_dir=repo_root)


def test_unknown_key_of_an_extractor_entry_names_it_and_the_accepted_keys(demo_config, schema, repo_root):
    bad = copy.deepcopy(demo_config)
    bad["extractors"]["sface"]["wieghts"] = "sface.onnx"  # a typo would otherwise be ignored
    with pytest.raises(ConfigError, match=r"extractors\.sface: unknown key\(s\) wieghts .*accepted: "
                                          r"type, release_date, weights, sha256, train, params"):
        validate_config(bad, schema, base_dir=repo_root)
    ok = copy.deepcopy(demo_config)
    ok["extractors"]["dlib"]["num_jitters"] = 1  # a key the type declares (spec_keys)
    validate_config(ok, schema, base_dir=repo_root)
