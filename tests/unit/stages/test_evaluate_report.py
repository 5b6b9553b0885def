import numpy as np
import pandas as pd
import pytest

from cloakbench.extractors.registry import describe_extractor
from cloakbench.errors import DataError
from cloakbench.evaluate import assemble, bootstrap_ci, evaluate, protection_metrics, run_evaluate
from cloakbench.records import read_records, write_records
from cloakbench.report.render import write_report


PROTOCOL = {"protocol": "per_user", "features": "raw"}


def synthetic(n_ids=5, n_train=4, n_test=3, poisoned=True, seed=0, n_protected=1):
    """Clustered embeddings; each protected user's cloaked training embeddings sit on the
    non-protected identity's cluster farthest from its own (so 1-NN on raw or L2-normalised
    features always answers another identity for its clean test pictures)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, 16)) * 5
    rows, clean, scraped = [], [], []
    for i in range(n_ids):
        role = "protected" if i < n_protected else "other"
        for k in range(n_train + n_test):
            split = "train" if k < n_train else "test"
            iid = f"id{i}/{k}"
            e = centres[i] + rng.normal(size=16) * 0.3
            clean.append((iid, e.astype(np.float32)))
            cl = poisoned and role == "protected" and split == "train"
            if cl:
                far = n_protected + int(np.argmax(np.linalg.norm(centres[n_protected:] - centres[i], axis=1)))
                scraped.append((iid, (centres[far] + rng.normal(size=16) * 0.3).astype(np.float32)))
            rows.append((iid, f"id{i}", role, split, cl, "scraped-c" if cl else "clean", f"p/{iid}",
                         "clean", f"d/{iid}"))
    scrape = pd.DataFrame(rows, columns=["image_id", "identity", "role", "split", "cloaked", "imageset", "path",
                                         "clean_imageset", "clean_path"])
    emb = {"clean": pd.DataFrame(clean, columns=["image_id", "embedding"]),
           "scraped-c": pd.DataFrame(scraped, columns=["image_id", "embedding"])}
    return scrape, emb


def test_assemble_uses_scraped_embeddings_for_cloaked_rows():
    scrape, emb = synthetic()
    split = assemble(scrape, emb)
    assert len(split.y_train) == 20 and len(split.y_test) == 15
    np.testing.assert_array_equal(split.x_train[0], emb["scraped-c"].embedding.iloc[0])


def test_poisoning_gives_protection_and_clean_gives_none():
    settings = {"cloak": "c", "extractor": "e", **PROTOCOL}
    scrape, emb = synthetic(poisoned=True)
    recs = evaluate(scrape, emb, classifiers=["knn1", "linear"], bootstrap=100, seed=0, settings=settings)
    for r in recs:
        assert r.kind == "evaluation" and r.labels["cloak"] == "c"
        # 1-NN: every clean test picture meets another identity; the linear model extrapolates
        # the user's class towards its real cluster for one test picture in three
        assert r.metrics["protection"] == (1.0 if r.labels["classifier"] == "knn1" else pytest.approx(2 / 3))
        assert r.metrics["clean_accuracy"] > 0.6
    assert [r.experiment for r in recs] == ["c/e/knn1", "c/e/linear"]
    scrape, emb = synthetic(poisoned=False)
    recs = evaluate(scrape, emb, classifiers=["knn1"], bootstrap=100, seed=0, settings=settings)
    assert recs[0].metrics["protection"] == 0.0 and recs[0].metrics["clean_accuracy"] == 1.0


def test_protection_metrics_and_bootstrap():
    y = np.array(["a", "a", "b", "b", "c", "c"])
    pred = np.array(["a", "x", "x", "x", "c", "c"])
    role = np.array(["protected"] * 4 + ["other"] * 2)
    m = protection_metrics(y, pred, role, bootstrap=200, seed=0)
    assert m["protection_per_user"] == {"a": 0.5, "b": 1.0}
    assert m["protection"] == 0.75 and m["clean_accuracy"] == 1.0
    lo, hi = m["protection_ci95"]
    assert 0.5 <= lo <= 0.75 <= hi <= 1.0
    assert bootstrap_ci(np.array([0.3]), 100, 0) == (0.3, 0.3)


def test_report_numbers_come_from_records(tmp_path):
    scrape, emb = synthetic()
    settings = {"cloak": "c", "extractor": "e", "extractor_info": {"release_date": "2020-01-01"},
                "cloak_spec": {"release_date": "2021-01-01"}, **PROTOCOL}
    recs = evaluate(scrape, emb, classifiers=["knn1"], bootstrap=50, seed=0, settings=settings)
    recs[0].metrics["protection"] = 0.4321  # the report must print what the record says
    write_records(recs, tmp_path / "r.json")
    summary = write_report(read_records([tmp_path / "r.json"]), tmp_path / "out", cloak_figures={},
                           example_rows=[])
    text = (tmp_path / "out" / "report.md").read_text()
    assert "0.43 [" in text
    assert "## Comparison with the paper (FaceCure)" in text and "protocol: `per_user`" in text
    assert summary.loc[0, "protection"] == 0.4321
    assert (tmp_path / "out" / "figures" / "protection_heatmap.png").stat().st_size > 1000
    assert pd.read_parquet(tmp_path / "out" / "summary.parquet").shape[0] == 1


def test_transfer_table_skips_records_without_a_shift():
    # An end-to-end `finetune` record carries no feature shift; listed first for the same
    # (cloak, extractor), it must not blank the shift that the knn1 record measured.
    from cloakbench.records import Record
    from cloakbench.report.tables import summarise, transfer_table

    scrape, emb = synthetic()
    settings = {"cloak": "c", "extractor": "e", "extractor_info": {"release_date": "2020-01-01"},
                "cloak_spec": {"release_date": "2021-01-01", "ensemble": ["e"]}, **PROTOCOL}
    recs = evaluate(scrape, emb, classifiers=["knn1"], bootstrap=10, seed=0, settings=settings)
    shift = recs[0].metrics["feature_shift_mean"]
    assert shift and shift > 0
    metrics = {k: v for k, v in recs[0].metrics.items() if k != "feature_shift_mean"}
    ft = Record.make("evaluation", {**recs[0].labels, "classifier": "finetune"}, settings=recs[0].settings,
                     metrics=metrics)
    table = transfer_table(summarise([ft] + recs))
    assert f"{shift:.3f} (T)" in table


def test_run_evaluate_writes_the_records_of_its_files(tmp_path):
    # the rule's entry point: scrape table + one embeddings file per image set -> a record file
    scrape, emb = synthetic()
    scrape.to_parquet(tmp_path / "scrape.parquet")
    for name, table in emb.items():
        table.to_parquet(tmp_path / f"{name}.parquet")
    out = tmp_path / "rec.json"
    spec = {"type": "small_cnn", "release_date": "2018-06-01"}
    recs = run_evaluate(scrape=tmp_path / "scrape.parquet", embeddings=[tmp_path / "clean.parquet",
                        tmp_path / "scraped-c.parquet"], imagesets=["clean", "scraped-c"], out=out, cloak="c",
                        extractor="e", extractor_info=describe_extractor("e", spec), cloak_spec={"type": "pgd", "ensemble": ["e"]},
                        evaluate_cfg={"classifiers": ["knn1"], "bootstrap": 10, "batch_size": 4, "features": "l2"},
                        scrape_cfg={"protected_fraction": 1.0, "protocol": "joint"}, dataset_cfg={"root": "data"},
                        seed=0)
    back = read_records([out], kind="evaluation")
    assert [r.experiment for r in back] == ["c/e/knn1"] and back[0].metrics == recs[0].metrics
    assert back[0].metrics["protection"] == 1.0
    s = back[0].settings
    assert s["protected_users"] == ["id0"] and s["dataset"] == {"root": "data", "n_pictures": 35, "n_identities": 5}
    assert s["extractor_info"]["release_date"] == "2018-06-01" and s["cloak_spec"]["ensemble"] == ["e"]
    # protocol and features are recorded (top level and in the sections they come from)
    assert s["protocol"] == "joint" and s["features"] == "l2" and back[0].metrics["n_models"] == 1
    assert s["scrape"]["protocol"] == "joint" and s["evaluate"]["features"] == "l2"


def test_per_user_set_cloaks_only_that_user_and_reuses_the_embeddings(monkeypatch):
    import cloakbench.evaluate as ev
    from cloakbench.evaluate import user_training_set

    scrape, emb = synthetic(n_ids=6, n_protected=2)
    split = assemble(scrape, emb, uncloaked=True)
    tr = scrape[scrape["split"] == "train"].sort_index()
    clean = emb["clean"].set_index("image_id")
    scraped = emb["scraped-c"].set_index("image_id")
    for user, other in (("id0", "id1"), ("id1", "id0")):
        x = user_training_set(split, user)
        for row, (iid, ident) in enumerate(zip(tr["image_id"], tr["identity"])):
            # the user's own rows: its scraped (cloaked) embedding; every other row: the clean
            # embedding of the same picture, looked up, not computed again
            want = scraped.loc[iid, "embedding"] if ident == user else clean.loc[iid, "embedding"]
            np.testing.assert_array_equal(x[row], want)
        assert (tr["identity"] == other).any()
    # one fit per protected user, each on its own set; protection read on the user's own model
    seen = []
    real = ev.CLASSIFIERS["knn1"]

    def spy(x_train, y_train, x_test, seed, *, features):
        seen.append(x_train.copy())
        return real(x_train, y_train, x_test, seed, features=features)

    monkeypatch.setitem(ev.CLASSIFIERS, "knn1", spy)
    rec = evaluate(scrape, emb, classifiers=["knn1"], bootstrap=10, seed=0,
                   settings={"cloak": "c", "extractor": "e", **PROTOCOL})[0]
    assert len(seen) == 2 and rec.metrics["n_models"] == 2
    np.testing.assert_array_equal(seen[0], user_training_set(split, "id0"))
    np.testing.assert_array_equal(seen[1], user_training_set(split, "id1"))
    m = rec.metrics
    assert m["protection_per_user"] == {"id0": 1.0, "id1": 1.0}
    assert set(m["clean_accuracy_per_model"]) == {"id0", "id1"}
    assert m["clean_accuracy"] == pytest.approx(np.mean(list(m["clean_accuracy_per_model"].values())))
    assert m["n_train_cloaked_per_user"] == {"id0": 4, "id1": 4}
    # joint: one fit on the set with both users cloaked
    seen.clear()
    rec = evaluate(scrape, emb, classifiers=["knn1"], bootstrap=10, seed=0,
                   settings={"cloak": "c", "extractor": "e", "protocol": "joint", "features": "raw"})[0]
    assert len(seen) == 1 and rec.metrics["n_models"] == 1
    np.testing.assert_array_equal(seen[0], split.x_train)


def test_per_user_and_joint_differ_where_the_other_users_cloaks_matter():
    # user id0's pictures are cloaked onto id1's cluster, and id1's onto id0's cluster. Jointly,
    # each user's test pictures meet the other's cloaked training pictures (labelled with the
    # other's name) and are misclassified; per user, the other user's training pictures are
    # clean, so u's test pictures go to the other user's clean cluster: still wrong, but the
    # clean accuracy of the other identities is what each per-user model says.
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 8)) * 5
    rows, clean, scraped = [], [], []
    target = {0: 1, 1: 0}
    for i in range(4):
        for k in range(6):
            split = "train" if k < 4 else "test"
            iid = f"id{i}/{k}"
            clean.append((iid, (centres[i] + rng.normal(size=8) * 0.2).astype(np.float32)))
            cl = i in target and split == "train"
            if cl:
                scraped.append((iid, (centres[target[i]] + rng.normal(size=8) * 0.2).astype(np.float32)))
            rows.append((iid, f"id{i}", "protected" if i in target else "other", split, cl,
                         "scraped-c" if cl else "clean", "", "clean", ""))
    scrape = pd.DataFrame(rows, columns=["image_id", "identity", "role", "split", "cloaked", "imageset", "path",
                                         "clean_imageset", "clean_path"])
    emb = {"clean": pd.DataFrame(clean, columns=["image_id", "embedding"]),
           "scraped-c": pd.DataFrame(scraped, columns=["image_id", "embedding"])}
    joint = evaluate(scrape, emb, classifiers=["knn1"], bootstrap=0, seed=0,
                     settings={"cloak": "c", "extractor": "e", "protocol": "joint", "features": "raw"})[0]
    per_user = evaluate(scrape, emb, classifiers=["knn1"], bootstrap=0, seed=0,
                        settings={"cloak": "c", "extractor": "e", **PROTOCOL})[0]
    # jointly the clusters are swapped: both users 100 % protected
    assert joint.metrics["protection_per_user"] == {"id0": 1.0, "id1": 1.0}
    # per user: u's clean test pictures sit next to both u's cloaked pictures (labelled u) and the
    # other user's clean ones: 1-NN splits them, so protection is below the joint figure
    assert per_user.metrics["n_models"] == 2
    assert per_user.metrics["protection"] < 1.0


def test_scrape_table_without_clean_columns_is_refused_under_per_user():
    scrape, emb = synthetic()
    with pytest.raises(KeyError, match="clean_imageset"):
        evaluate(scrape.drop(columns=["clean_imageset", "clean_path"]), emb, classifiers=["knn1"], bootstrap=0,
                 seed=0, settings={"cloak": "c", "extractor": "e", **PROTOCOL})


def test_run_report_from_files(tmp_path):
    # the rule's entry point: record files, one cloak's shard folder, the manifest, no adaptive files
    from cloakbench.io import write_parquet, write_png
    from cloakbench.report.render import run_report

    scrape, emb = synthetic()
    settings = {"cloak": "c", "extractor": "e", "extractor_info": {"release_date": "2020-01-01"},
                "cloak_spec": {"release_date": "2021-01-01", "ensemble": ["e"]}, "protected_users": ["id0"],
                "dataset": {"root": "d", "n_pictures": 35, "n_identities": 5}, **PROTOCOL}
    write_records(evaluate(scrape, emb, classifiers=["knn1", "linear"], bootstrap=10, seed=0, settings=settings),
                  tmp_path / "rec.json")
    manifest = pd.DataFrame({"image_id": ["id0/0"], "identity": ["id0"], "path": ["images/id0/0.png"]})
    write_parquet(manifest, tmp_path / "dataset" / "manifest.parquet")
    write_png(np.zeros((8, 8, 3), np.uint8), tmp_path / "dataset" / "images" / "id0" / "0.png")
    shard = tmp_path / "shard-0"
    write_png(np.full((8, 8, 3), 9, np.uint8), shard / "images" / "id0" / "0.png")
    write_parquet(pd.DataFrame({"image_id": ["id0/0"], "identity": ["id0"], "path": ["images/id0/0.png"],
                                "dssim": [0.01], "linf": [0.03], "l2": [0.5], "seconds": [1.0]}),
                  shard / "figures.parquet")
    out = tmp_path / "out"
    summary = run_report(records=[tmp_path / "rec.json"], shards=[shard], manifest=tmp_path / "dataset" / "manifest.parquet",
                         card=[], finetune=[], robust_meta=[], detection=[], timetravel=[], combine=[],
                         report=out / "report.md", detection_roc=out / "figures" / "detection_roc.png",
                         combinations=out / "figures" / "combinations.png", cloaks=["c"], n_shards=1, examples=1)
    text = (out / "report.md").read_text()
    assert len(summary) == 2 and set(summary["relation"]) == {"targeted"}
    assert "(T) targeted" in text and "| c | 1 | 0.0100 | 0.0300 | 0.500 | 1.00 |" in text
    for f in ("summary.parquet", "figures/protection_heatmap.png", "figures/examples.png",
              "figures/detection_roc.png", "figures/combinations.png"):
        assert (out / f).stat().st_size > 0, f
    # a record file given to the wrong input is refused, naming the file
    with pytest.raises(DataError, match="rec.json.*evaluation record where detection"):
        run_report(records=[], shards=[], manifest=tmp_path / "dataset" / "manifest.parquet", card=[], finetune=[],
                   robust_meta=[], detection=[tmp_path / "rec.json"], timetravel=[], combine=[],
                   report=out / "report.md", detection_roc=out / "r.png", combinations=out / "c.png", cloaks=[],
                   n_shards=1, examples=0)
