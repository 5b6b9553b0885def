"""End-to-end classifier (cloakbench.adaptive.finetune): learns, deterministic, evaluate-shaped records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from adaptive_testlib import TinyTrainable, make_dataset
from cloakbench.adaptive import finetune

FAST = {"epochs": 6, "batch_size": 8, "steps_per_epoch": None, "optimizer": "adam", "lr": 3e-3}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def scrape(tmp_path_factory):
    manifest, roles, dataset_dir = make_dataset(tmp_path_factory.mktemp("ft"))
    df = manifest.merge(roles, on="identity")
    df["cloaked"] = False
    df["imageset"] = "clean"
    df["path"] = [str(dataset_dir / p) for p in df["path"]]
    df["clean_imageset"] = "clean"
    df["clean_path"] = df["path"]
    return df[["image_id", "identity", "role", "split", "cloaked", "imageset", "path", "clean_imageset",
               "clean_path"]]


def test_finetune_learns_and_is_deterministic(scrape):
    tr, te = scrape[scrape["split"] == "train"], scrape[scrape["split"] == "test"]
    train = list(zip(tr["path"], tr["identity"]))
    a = finetune.finetune_classify(TinyTrainable(), train, list(te["path"]), seed=1, settings=FAST)
    b = finetune.finetune_classify(TinyTrainable(), train, list(te["path"]), seed=1, settings=FAST)
    assert np.array_equal(a.predictions, b.predictions) and a.history == b.history
    assert a.settings["balanced"] and a.settings["flip"] and a.classes == sorted(tr["identity"].unique())
    acc = float((a.predictions == te["identity"].to_numpy()).mean())
    assert acc > 2 / 6, acc  # 6 identities: chance is 1/6


def test_finetune_records_match_evaluate_shape(scrape):
    recs = finetune.finetune_evaluate(scrape, TinyTrainable(), settings={"cloak": "none", "extractor": "tiny",
                                                                                "protocol": "per_user"},
                                      train_settings=FAST, bootstrap=10, seed=0)
    assert len(recs) == 1
    r = recs[0]
    assert r.experiment == "none/tiny/finetune" and r.kind == "evaluation" and r.labels["classifier"] == "finetune"
    m = r.metrics
    for key in ("protection", "protection_ci95", "protection_per_user", "clean_accuracy",
                "n_protected_users", "n_train", "n_train_cloaked"):
        assert key in m, key
    assert m["n_protected_users"] == 2 and m["n_train"] == 36 and m["n_train_cloaked"] == 0
    assert r.settings["finetune"]["optimizer"] == "adam"
    # report.summarise accepts it beside evaluate's records
    from cloakbench.report.tables import summarise
    assert summarise(recs).loc[0, "classifier"] == "finetune"


def test_run_finetune_evaluate_from_files(scrape, tmp_path):
    from cloakbench.records import read_records

    scrape.to_parquet(tmp_path / "scrape.parquet")
    out = tmp_path / "ft.json"
    finetune.run_finetune_evaluate(
        scrape=tmp_path / "scrape.parquet", out=out, cloak="none", extractor="tiny",
        extractor_spec={"type": TinyTrainable.type_name}, checkpoint=None, cloak_spec=None, train=FAST,
        evaluate_cfg={"classifiers": ["knn1"], "bootstrap": 5, "batch_size": 8, "features": "raw"},
        scrape_cfg={"protocol": "per_user"},
        dataset_cfg={"root": "d"}, seed=1, device="cpu")
    (rec,) = read_records([out], kind="evaluation")
    direct = finetune.finetune_evaluate(scrape, TinyTrainable(), settings={"cloak": "none", "extractor": "tiny",
                                                                                "protocol": "per_user"},
                                        train_settings=FAST, bootstrap=5, seed=1)[0]
    assert rec.experiment == "none/tiny/finetune" and rec.settings["dataset"]["n_pictures"] == len(scrape)
    for key in ("protection", "clean_accuracy", "protection_per_user"):
        assert rec.metrics[key] == direct.metrics[key], key


def test_adaptive_e2e_reads_public_cloaked_pictures_and_never_a_protected_one(tmp_path, monkeypatch):
    # eval_e2e.py --robust: the training set gains the public identities' self-cloaked pictures.
    # The shard folder (wrongly) also lists the protected users' cloaked copies: none is read.
    from adaptive_testlib import cloak_subset
    from cloakbench.errors import DataError
    from cloakbench.io import write_parquet
    from cloakbench.records import read_records

    manifest, roles, dataset_dir = make_dataset(tmp_path / "d")
    public = cloak_subset(manifest, roles, dataset_dir, tmp_path / "cloaked" / "public", "public", "checker")
    prot = cloak_subset(manifest, roles, dataset_dir, tmp_path / "cloaked" / "protected", "protected", "checker")
    shard = tmp_path / "checker" / "shard-0"
    write_parquet(pd.concat([public, prot]), shard / "figures.parquet")  # absolute paths: kept as they are
    write_parquet(roles, tmp_path / "roles.parquet")
    df = manifest.merge(roles, on="identity")
    df["cloaked"], df["imageset"] = False, "clean"
    df["path"] = [str(dataset_dir / p) for p in df["path"]]
    df.to_parquet(tmp_path / "scrape.parquet")

    reads: list[str] = []
    real = finetune.read_pictures

    def spy(paths, **kw):
        reads.extend(map(str, paths))
        return real(paths, **kw)

    monkeypatch.setattr(finetune, "read_pictures", spy)
    common = dict(scrape=tmp_path / "scrape.parquet", cloak="none", extractor="tiny",
                  extractor_spec={"type": TinyTrainable.type_name}, checkpoint=None, cloak_spec=None, train=FAST,
                  evaluate_cfg={"classifiers": ["knn1"], "bootstrap": 5, "batch_size": 8, "features": "raw"},
                  scrape_cfg={"protocol": "per_user"}, dataset_cfg={"root": "d"}, seed=1, device="cpu")
    finetune.run_finetune_evaluate(out=tmp_path / "adaptive.json", adaptive_cloaks=["checker"], shards=[shard],
                                   manifest=dataset_dir / "manifest.parquet", roles=tmp_path / "roles.parquet",
                                   images=dataset_dir / "images", **common)
    (rec,) = read_records([tmp_path / "adaptive.json"], kind="evaluation")
    extra = set(reads) - set(df["path"])
    assert extra == set(public["path"]) and len(public) == 12  # every public cloaked picture, nothing else
    assert not set(reads) & set(prot["path"])
    assert rec.experiment == "none/tiny/finetune_adaptive" and rec.settings["finetune_variant"] == "adaptive"
    assert rec.settings["adaptive_cloaks"] == ["checker"]
    m = rec.metrics
    assert m["n_train_augmented"] == 12 and m["n_train_augmented_per_cloak"] == {"checker": 12}
    assert m["augmented_reads"] == 12 and m["augmented_protected_reads"] == 0 and m["n_train"] == 36

    # the oblivious variant reads only the scraped set
    reads.clear()
    finetune.run_finetune_evaluate(out=tmp_path / "oblivious.json", **common)
    (obl,) = read_records([tmp_path / "oblivious.json"], kind="evaluation")
    assert set(reads) <= set(df["path"]) and obl.labels["classifier"] == "finetune"
    assert obl.settings["finetune_variant"] == "oblivious" and "n_train_augmented" not in obl.metrics

    # the read-manifest check fires on a protected (or unknown) picture
    aug = finetune.adaptive_augmentation(manifest, roles, dataset_dir, {"checker": pd.concat([public, prot])})
    assert {y for _, y in aug.pairs} == {"id_2", "id_3"}
    aug.check_reads(list(public["path"]))
    with pytest.raises(DataError, match="not a public identity's"):
        aug.check_reads(list(public["path"]) + [prot["path"].iloc[0]])


def test_per_user_trains_one_model_per_protected_user_on_its_own_set(scrape, monkeypatch):
    # only user u's training pictures are cloaked in u's set; the other protected user's are
    # its clean pictures (clean_path); protection is read on u's own model
    table = scrape.copy()
    prot_train = (table["role"] == "protected") & (table["split"] == "train")
    table.loc[prot_train, "cloaked"] = True
    table.loc[prot_train, "imageset"] = "scraped-c"
    table.loc[prot_train, "path"] = ["/cloaked/" + i for i in table.loc[prot_train, "image_id"]]
    users = sorted(table.loc[prot_train, "identity"].unique())
    calls = []

    def fake(model, train, test_paths, **kw):
        calls.append(dict(train))
        test = table[table["split"] != "train"].sort_values("image_id")
        user = users[len(calls) - 1] if len(calls) <= len(users) else None
        # this model gets everyone right except its own protected user
        pred = np.where(test["identity"] == user, "nobody", test["identity"]).astype(object)
        return finetune.FinetuneResult(pred, [], [], {"optimizer": "x"}, 1.0)

    monkeypatch.setattr(finetune, "finetune_classify", fake)
    model = TinyTrainable()
    rec = finetune.finetune_evaluate(table, model, settings={"cloak": "c", "extractor": "tiny", "protocol": "per_user"},
                                     train_settings=FAST, bootstrap=0, seed=0)[0]
    assert len(calls) == len(users) == 2 and rec.metrics["n_models"] == 2
    for user, train in zip(users, calls):
        cloaked = {p for p in train if p.startswith("/cloaked/")}
        assert cloaked and all(p.startswith(f"/cloaked/{user}/") for p in cloaked)
        assert len(cloaked) == int((prot_train & (table["identity"] == user)).sum())
    assert rec.metrics["protection_per_user"] == {u: 1.0 for u in users}
    assert rec.metrics["clean_accuracy"] == 1.0 and rec.metrics["seconds"] == 2.0
    calls.clear()
    rec = finetune.finetune_evaluate(table, model, settings={"cloak": "c", "extractor": "tiny", "protocol": "joint"},
                                     train_settings=FAST, bootstrap=0, seed=0)[0]
    assert len(calls) == 1 and sum(p.startswith("/cloaked/") for p in calls[0]) == int(prot_train.sum())
