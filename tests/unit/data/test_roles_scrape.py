import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cloakbench.data.roles import pictures_for_subset, select_users, shard_of
from cloakbench.data.scrape import scrape
from cloakbench.errors import ConfigError


def make_manifest(n_ids=6, n_pics=5):
    rows = []
    for i in range(n_ids):
        for k in range(n_pics):
            rows.append((f"id{i}/{k}", f"id{i}", f"images/id{i}/{k}.png", "train" if k < 3 else "test"))
    return pd.DataFrame(rows, columns=["image_id", "identity", "path", "split"])


def test_select_users_seeded_and_explicit():
    m = make_manifest()
    r1 = select_users(m, n_protected=2, public_fraction=0.5, seed=3)
    assert r1.equals(select_users(m, n_protected=2, public_fraction=0.5, seed=3))
    assert (r1.role == "protected").sum() == 2 and (r1.role == "public").sum() == 2
    r2 = select_users(m, protected=["id5"], public_fraction=0.0)
    assert r2.set_index("identity").role["id5"] == "protected" and (r2.role == "public").sum() == 0
    with pytest.raises(ConfigError, match="users.protected.*ghost"):
        select_users(m, protected=["ghost"])
    with pytest.raises(ConfigError, match="n_protected"):
        select_users(m, n_protected=6)


def test_shards_partition_the_subset():
    m = make_manifest()
    roles = select_users(m, n_protected=3, seed=0)
    pics = pictures_for_subset(m, roles, "protected")
    assert len(pics) == 9 and (pics.split == "train").all()
    parts = [shard_of(pics, k, 4) for k in range(4)]
    assert pd.concat(parts).equals(pics)


def test_scrape_replaces_protected_training_pictures(tmp_path):
    m = make_manifest(4, 5)
    roles = select_users(m, n_protected=1, public_fraction=0.5, seed=0)
    for p in m["path"]:
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(tmp_path / p)
    prot = pictures_for_subset(m, roles, "protected")
    cloaked = []
    for iid in prot["image_id"]:
        p = tmp_path / "cloaked" / f"{iid}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(p)
        cloaked.append((iid, str(p)))
    cloaked = pd.DataFrame(cloaked, columns=["image_id", "path"])
    out = scrape(m, roles, tmp_path, cloaked, tmp_path / "s.parquet", tmp_path / "simg", cloak="c",
                 protected_fraction=1.0)
    tr_prot = out[(out.role == "protected") & (out.split == "train")]
    assert tr_prot["cloaked"].all() and (tr_prot["imageset"] == "scraped-c").all()
    assert not out.loc[out.split == "test", "cloaked"].any()
    assert (out.loc[out.role != "protected", "imageset"] == "clean").all()
    assert np.asarray(Image.open(tr_prot["path"].iloc[0]))[0, 0, 0] == 200
    half = scrape(m, roles, tmp_path, cloaked, tmp_path / "s2.parquet", tmp_path / "simg2", cloak="c",
                  protected_fraction=0.34)
    assert half["cloaked"].sum() == 1
    base = scrape(m, roles, tmp_path, None, tmp_path / "s3.parquet", tmp_path / "simg3", cloak="none",
                  jpeg_quality=50)
    assert not base["cloaked"].any()
    assert (base.loc[base.split == "train", "imageset"] == "scraped-none").all()
    with pytest.raises(FileNotFoundError, match="did perturb finish"):
        scrape(m, roles, tmp_path, cloaked.iloc[:1], tmp_path / "s4.parquet", tmp_path / "i4", cloak="c")
    # each row names its uncloaked version (per_user protocol): the dataset picture, in `clean`
    assert (out["clean_imageset"] == "clean").all()
    assert (out.loc[~out.cloaked, "clean_path"] == out.loc[~out.cloaked, "path"]).all()
    assert tr_prot["clean_path"].map(lambda q: q.startswith(str(tmp_path / "images"))).all()
    assert np.asarray(Image.open(tr_prot["clean_path"].iloc[0]))[0, 0, 0] == 100
    # with a platform transform: the re-encoded uncloaked picture, the same as the baseline's
    jp = scrape(m, roles, tmp_path, cloaked, tmp_path / "s5.parquet", tmp_path / "simg5", cloak="c",
                jpeg_quality=50)
    jp_prot = jp[(jp.role == "protected") & (jp.split == "train")]
    # (an uncloaked row's scraped version is already its uncloaked one)
    assert (jp_prot["clean_imageset"] == "scraped-none").all()
    rest = jp[jp.split == "train"].drop(index=jp_prot.index)
    assert (rest["clean_imageset"] == "scraped-c").all() and (rest["clean_path"] == rest["path"]).all()
    assert (jp.loc[jp.split == "test", "clean_imageset"] == "clean").all()
    for iid, q in zip(jp_prot["image_id"], jp_prot["clean_path"]):
        assert q == str(tmp_path / "simg5" / "uncloaked" / f"{iid}.png")
        same = base.set_index("image_id").loc[iid, "path"]
        assert np.array_equal(np.asarray(Image.open(q)), np.asarray(Image.open(same)))


# ---------------------------------------------------------------------------
# never train on a protected user
# ---------------------------------------------------------------------------
def test_trainer_pictures_never_include_a_protected_users_picture():
    from cloakbench.data.roles import check_not_protected, protected_identities, trainer_pictures
    from cloakbench.errors import DataError

    m = make_manifest()
    roles = select_users(m, n_protected=2, public_fraction=0.5, seed=1)
    prot = protected_identities(roles)
    assert len(prot) == 2
    train = trainer_pictures(m, roles)
    assert not set(train["identity"]) & set(prot) and (train["split"] == "train").all()
    assert len(train) == 4 * 3 and train.index.is_monotonic_increasing  # every other identity, manifest order
    public = trainer_pictures(m, roles, allowed=("public",))
    assert set(public["identity"]) == set(roles.loc[roles["role"] == "public", "identity"])
    with pytest.raises(ValueError, match="protected"):
        trainer_pictures(m, roles, allowed=("public", "protected"))
    # an identity listed twice (protected and other) is still refused
    doubled = pd.concat([roles, pd.DataFrame({"identity": [prot[0]], "role": ["other"]})])
    with pytest.raises(DataError, match=prot[0]):
        trainer_pictures(m, doubled)
    with pytest.raises(DataError, match="protected users"):
        check_not_protected(["id9", prot[1]], roles, what="test")


def test_train_extractor_rule_passes_no_protected_picture(tmp_path, monkeypatch):
    from cloakbench.data.roles import protected_identities
    from cloakbench.extractors import training

    m = make_manifest()
    roles = select_users(m, n_protected=2, seed=0)
    m.to_parquet(tmp_path / "manifest.parquet")
    roles.to_parquet(tmp_path / "roles.parquet")
    seen = {}

    def fake_train(name, spec, paths, labels, out, **kw):
        seen.update(paths=paths, labels=labels, forbidden=kw["forbidden_identities"])
        return {}

    monkeypatch.setattr(training, "train_extractor", fake_train)
    training.run_train_extractor(name="cnn", spec={"type": "small_cnn"}, manifest=tmp_path / "manifest.parquet",
                                 roles=tmp_path / "roles.parquet", images=tmp_path / "images",
                                 checkpoint=tmp_path / "cnn.pt", seed=0, device="cpu")
    prot = protected_identities(roles)
    assert seen["labels"] and not set(seen["labels"]) & set(prot)
    assert not any(p.parent.name in prot for p in seen["paths"]) and seen["forbidden"] == prot
    assert all(str(p).startswith(str(tmp_path / "images")) for p in seen["paths"])


def test_train_extractor_refuses_protected_identities(tmp_path):
    from cloakbench.errors import DataError
    from cloakbench.extractors.training import train_extractor

    with pytest.raises(DataError, match="protected users \\['id0'\\]"):
        train_extractor("cnn", {"type": "small_cnn"}, [tmp_path / "a.png", tmp_path / "b.png"], ["id0", "id1"],
                        tmp_path / "cnn.pt", seed=0, forbidden_identities=["id0"])


def test_select_users_and_scrape_rules_from_files(tmp_path):
    from cloakbench.data.roles import run_select_users
    from cloakbench.data.scrape import run_scrape
    from cloakbench.io import write_png

    m = make_manifest(n_ids=4, n_pics=4)
    for p in m["path"]:
        write_png(np.full((8, 8, 3), 100, np.uint8), tmp_path / "ds" / p)
    m.to_parquet(tmp_path / "manifest.parquet")
    roles = run_select_users(manifest=tmp_path / "manifest.parquet", out=tmp_path / "roles.parquet",
                             users={"protected": [], "n_protected": 1, "public_fraction": 0.5}, seed=0)
    assert pd.read_parquet(tmp_path / "roles.parquet").equals(roles)
    out = run_scrape(manifest=tmp_path / "manifest.parquet", roles=tmp_path / "roles.parquet",
                     images=tmp_path / "ds" / "images", shards=[], table=tmp_path / "s.parquet",
                     images_out=tmp_path / "simg", cloak="none",
                     scrape_cfg={"protected_fraction": 1.0, "jpeg_quality": None, "resize": None,
                                 "protocol": "per_user"}, seed=0)
    assert (tmp_path / "simg").is_dir() and not out["cloaked"].any() and (out["imageset"] == "clean").all()
    assert out["path"].map(lambda p: p.startswith(str(tmp_path / "ds" / "images"))).all()


def test_target_pool_is_disjoint_from_every_class(tmp_path):
    """users.target_pool (Fawkes v0.3's external targets): reserved identities that are in no
    scraped training or test set (so no classifier's class) and in no trainer's pictures."""
    from cloakbench.data.roles import target_pool_identities, trainer_pictures

    m = make_manifest(8, 5)
    base = select_users(m, n_protected=2, public_fraction=0.5, seed=4)
    assert base.equals(select_users(m, n_protected=2, public_fraction=0.5, target_pool=0, seed=4))
    roles = select_users(m, n_protected=2, public_fraction=0.5, target_pool=2, seed=4)
    pool = target_pool_identities(roles)
    assert len(pool) == 2 and roles.equals(select_users(m, n_protected=2, public_fraction=0.5,
                                                        target_pool=2, seed=4))
    assert (roles.set_index("identity").loc[pool, "role"] == "target_pool").all()
    assert set(pool).isdisjoint(roles.loc[roles.role == "protected", "identity"])
    # protected users are drawn as without a pool; the pool comes out of the non-protected ones
    assert (roles.role == "protected").equals(base.role == "protected")

    for p in m["path"]:
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(tmp_path / p)
    out = scrape(m, roles, tmp_path, None, tmp_path / "s.parquet", tmp_path / "simg", cloak="none")
    classes = set(out["identity"])
    assert classes.isdisjoint(pool)
    assert classes == set(m.identity) - set(pool)  # nobody else dropped
    assert set(trainer_pictures(m, roles)["identity"]).isdisjoint(pool)
    with pytest.raises(ValueError, match="allowed roles"):
        trainer_pictures(m, roles, allowed=("target_pool",))

    explicit = select_users(m, protected=["id0"], target_pool=["id1", "id2"], seed=0)
    assert target_pool_identities(explicit) == ["id1", "id2"]
    with pytest.raises(ConfigError, match="target_pool.*protected"):
        select_users(m, protected=["id0"], target_pool=["id0"])
    with pytest.raises(ConfigError, match="target_pool.*ghost"):
        select_users(m, protected=["id0"], target_pool=["ghost"])
    with pytest.raises(ConfigError, match="target_pool=7 leaves no identity"):
        select_users(m, n_protected=1, target_pool=7)


def test_fawkes_v03_needs_a_target_pool_in_the_config(repo_root):
    import copy

    import yaml

    from cloakbench.config import validate_config

    cfg = yaml.safe_load((repo_root / "config" / "config.yaml").read_text())
    assert cfg["users"]["target_pool"] and cfg["cloaks"]["fawkes_v03"]["type"] == "fawkes_v03"
    validate_config(copy.deepcopy(cfg), repo_root / "config" / "schema.yaml", base_dir=repo_root)
    bad = copy.deepcopy(cfg)
    del bad["users"]["target_pool"]
    with pytest.raises(ConfigError, match=r"cloaks\.fawkes_v03\.params\.candidate_role.*users\.target_pool"):
        validate_config(bad, repo_root / "config" / "schema.yaml", base_dir=repo_root)
    bad["cloaks"]["fawkes_v03"].setdefault("params", {})["candidate_role"] = "public"
    validate_config(bad, repo_root / "config" / "schema.yaml", base_dir=repo_root)
