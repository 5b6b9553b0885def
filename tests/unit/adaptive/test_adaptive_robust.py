"""Robust training (cloakbench.adaptive.robust): reads only public pictures, deterministic,
and its checkpoint loads back as a registered ``robust`` extractor."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from adaptive_testlib import TinyTrainable, cloak_subset, make_dataset
from cloakbench.adaptive import robust
from cloakbench.errors import ConfigError, DataError
from cloakbench.extractors.registry import build_extractor

FAST = {"epochs": 2, "batch_size": 8, "steps_per_epoch": None, "optimizer": "adam", "lr": 1e-3}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("robust")
    manifest, roles, dataset_dir = make_dataset(root)
    cloaked = {
        c: cloak_subset(manifest, roles, dataset_dir, root / "cloaked" / c / "public", "public", kind)
        for c, kind in (("checker", "checker"), ("stripes", "stripes"))}
    # The protected users' cloaked pictures exist too (the main pipeline made them) ...
    prot = cloak_subset(manifest, roles, dataset_dir, root / "cloaked" / "checker" / "protected",
                        "protected", "checker")
    return manifest, roles, dataset_dir, cloaked, prot


def test_robust_training_never_reads_a_protected_picture(data):
    manifest, roles, dataset_dir, cloaked, prot = data
    # ... and are even handed to the pair builder by mistake: they must be ignored.
    leaky = {"checker": pd.concat([cloaked["checker"], prot]), "stripes": cloaked["stripes"]}
    pairs = robust.robust_training_pairs(manifest, roles, dataset_dir, leaky)
    external_log: list[str] = []
    result = robust.robust_finetune(TinyTrainable(), pairs.clean, pairs.cloaked, settings=FAST, seed=0,
                                    log_read_paths=external_log, cloak_of=pairs.cloak_of)
    protected_ids = set(roles.loc[roles["role"] == "protected", "identity"])
    protected_paths = ([str(dataset_dir / p) for p in manifest.loc[manifest["identity"].isin(protected_ids), "path"]]
                       + prot["path"].tolist())
    reads = {str(Path(p).resolve()) for p in result.reads}
    assert result.reads and result.reads == external_log
    assert not reads & {str(Path(p).resolve()) for p in protected_paths}
    robust.assert_no_protected_reads(result.reads, protected_paths)  # the rule's own check
    # It did read every public clean training picture and both cloaks' copies of them.
    public_train = manifest[(manifest["identity"].isin({"id_2", "id_3"})) & (manifest["split"] == "train")]
    expected = {str((dataset_dir / p).resolve()) for p in public_train["path"]}
    expected |= {str(Path(p).resolve()) for c in cloaked.values() for p in c["path"]}
    assert reads == expected
    assert result.meta["n_cloaked_per_cloak"] == {"checker": 12, "stripes": 12}
    assert result.meta["identities"] == 2 and result.meta["n_reads"] == 36
    # The read-manifest check does fire when a protected picture was read.
    with pytest.raises(DataError, match="protected pictures"):
        robust.assert_no_protected_reads(result.reads + [protected_paths[0]], protected_paths)


def test_protected_identities_are_refused_before_reading(data):
    manifest, roles, dataset_dir, *_ = data
    row = manifest[manifest["identity"] == "id_0"].iloc[0]
    log: list[str] = []
    with pytest.raises(DataError, match="protected users"):
        robust.robust_finetune(TinyTrainable(), [(str(dataset_dir / row["path"]), "id_0"),
                                                 (str(dataset_dir / row["path"]), "id_2")], [],
                               settings=FAST, forbidden_identities=["id_0", "id_1"], log_read_paths=log)
    assert log == []


def test_deterministic_for_a_seed_and_checkpoint_roundtrip(data, tmp_path):
    manifest, roles, dataset_dir, cloaked, _ = data
    pairs = robust.robust_training_pairs(manifest, roles, dataset_dir, {"checker": cloaked["checker"]})
    before = {k: v.clone() for k, v in TinyTrainable().state_dict().items()}
    a = robust.robust_finetune(TinyTrainable(), pairs.clean, pairs.cloaked, settings=FAST, seed=3)
    b = robust.robust_finetune(TinyTrainable(), pairs.clean, pairs.cloaked, settings=FAST, seed=3)
    c = robust.robust_finetune(TinyTrainable(), pairs.clean, pairs.cloaked, settings=FAST, seed=4)
    assert a.state_dict.keys() == before.keys()
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert any(not torch.equal(a.state_dict[k], c.state_dict[k]) for k in a.state_dict)
    assert any(not torch.equal(a.state_dict[k], before[k]) for k in a.state_dict)  # it trained
    assert a.meta["history"] == b.meta["history"]

    # Save, then load through the registry as an extractor of type `robust`.
    ckpt = tmp_path / "tiny_robust.pt"
    spec = {"type": "robust", "base": "tiny", "cloaks": ["checker"],
            "base_spec": {"type": TinyTrainable.type_name}}
    meta = robust.save_robust(a, ckpt, reads_path=tmp_path / "tiny_robust.reads.parquet",
                              meta_extra={"base": "tiny", "base_spec": spec["base_spec"]})
    assert meta["sha256"] and (tmp_path / "tiny_robust.json").is_file()
    assert len(pd.read_parquet(tmp_path / "tiny_robust.reads.parquet")) == len(a.reads)
    model = build_extractor("tiny_robust", spec, checkpoint=ckpt)
    trained = TinyTrainable()
    trained.load_state_dict(a.state_dict)
    x = torch.rand(3, 3, 32, 32)
    assert torch.allclose(model(x), trained.eval()(x))
    # Without base_spec in the config entry, the checkpoint's metadata says what the base was.
    model2 = build_extractor("tiny_robust", {"type": "robust", "base": "tiny"}, checkpoint=ckpt)
    assert torch.allclose(model2(x), model(x))
    info = model.describe("tiny_robust", spec)
    assert info.type == "robust" and info.input_size == 32 and info.extra["base"] == "tiny"


def test_robust_spec_checks():
    ex = {"tiny": {"type": TinyTrainable.type_name}, "dl": {"type": "dlib_resnet"},
          "r": {"type": "robust", "base": "tiny", "cloaks": ["pgd"]}}
    cloaks = {"pgd": {"type": "pgd", "ensemble": ["tiny"]}}
    ok = robust.check_robust_spec("r", ex["r"], ex, cloaks)
    assert ok["base"] == "tiny" and ok["train"]["epochs"] == 10 and ok["train"]["optimizer"] == "adadelta"
    bad = [({"type": "robust", "base": "nope", "cloaks": ["pgd"]}, "base: must name"),
           ({"type": "robust", "base": "dl", "cloaks": ["pgd"]}, "not differentiable"),
           ({"type": "robust", "base": "tiny", "cloaks": ["fawkes"]}, "unknown cloak 'fawkes'"),
           ({"type": "robust", "base": "tiny", "cloaks": []}, "non-empty list"),
           ({"type": "robust", "base": "tiny", "cloaks": ["pgd"], "train": {"epoch": 3}}, "unknown keys"),
           ({"type": "robust", "base": "tiny", "cloaks": ["pgd"], "train": {"optimizer": "lbfgs"}}, "optimizer"),
           ({"type": "robust", "base": "r", "cloaks": ["pgd"]}, "itself a robust")]
    for spec, msg in bad:
        with pytest.raises(ConfigError, match=msg):
            robust.check_robust_spec("r2", spec, {**ex, "r2": spec}, cloaks)
    with pytest.raises(ConfigError, match="a cycle"):
        robust.check_robust_spec("r", ex["r"], ex, {"pgd": {"type": "pgd", "ensemble": ["r"]}})
    cfg = {"extractors": {k: dict(v) for k, v in ex.items() if k != "dl"}, "cloaks": cloaks}
    out = robust.expand_robust_specs(cfg)
    assert list(out) == ["r"] and out["r"]["base_spec"] == {"type": TinyTrainable.type_name}
    assert "base_spec" not in cfg["extractors"]["r"]  # the config is not modified (the plan records it)


def test_run_robust_train_from_files(data, tmp_path):
    # the rule's entry point, with a shard folder that (wrongly) also lists the protected users'
    # cloaked pictures: none is read, and the manifest of reads proves it
    from cloakbench.io import write_parquet

    manifest, roles, dataset_dir, cloaked, prot = data
    write_parquet(roles, tmp_path / "roles.parquet")
    shards = []
    for c in ("checker", "stripes"):
        shard = tmp_path / c / "shard-0"
        rows = pd.concat([cloaked[c], prot]) if c == "checker" else cloaked[c]
        write_parquet(rows.assign(path=[str(Path(q).resolve()) for q in rows["path"]]), shard / "figures.parquet")
        shards.append(shard)
    ckpt = tmp_path / "r.pt"
    meta = robust.run_robust_train(
        name="r", spec={"type": "robust", "base": "tiny", "cloaks": ["checker", "stripes"],
                        "release_date": "2022-03-01"},
        base="tiny", base_spec={"type": TinyTrainable.type_name}, base_checkpoint=None,
        cloaks=["checker", "stripes"], train=FAST, manifest=dataset_dir / "manifest.parquet",
        roles=tmp_path / "roles.parquet", images=dataset_dir / "images", shards=shards, checkpoint=ckpt,
        meta=tmp_path / "r.json", reads=tmp_path / "r.reads.parquet", seed=0, device="cpu")
    reads = pd.read_parquet(tmp_path / "r.reads.parquet")
    assert set(reads["role"]) == {"public"} and len(reads) == 36
    assert meta["protected_reads"] == 0 and meta["protected_users"] == ["id_0", "id_1"]
    assert meta["deviations"] == ["batch_size", "epochs", "lr", "optimizer", "steps_per_epoch"]  # from FaceCure's
    assert meta["n_cloaked_per_cloak"] == {"checker": 12, "stripes": 12} and meta["release_date"] == "2022-03-01"
    assert build_extractor("r", {"type": "robust", "base": "tiny"}, checkpoint=ckpt).embedding_dim == 16
