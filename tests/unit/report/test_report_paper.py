"""The paper-comparison section: FaceCure's headline cells beside this run's matching records."""

from cloakbench.records import Record
from cloakbench.report.paper import PAPER_CELLS, matches, paper_section


def rec(cloak, cloak_type, extractor, ext_type, classifier, protection, *, ensemble=(), release="2022-01-01"):
    settings = {"cloak_spec": {"type": cloak_type, "ensemble": list(ensemble), "release_date": "2021-04-01"},
                "extractor_info": {"type": ext_type, "release_date": release},
                "protocol": "per_user", "features": "raw", "scrape": {"protected_fraction": 1.0}}
    return Record.make("evaluation", {"cloak": cloak, "extractor": extractor, "classifier": classifier},
                       settings=settings, metrics={"protection": protection, "protection_ci95": [0.0, 1.0]})


def test_paper_values_are_facecure_readme_numbers():
    # typed once, checked against FaceCure's README text (reference values, not results)
    values = {c.key: c.protection for c in PAPER_CELLS}
    assert values == {
        "baseline_nn_fawkes": 0.97, "baseline_nn_lowkey": 0.94, "oblivious_fawkes10_fawkes": 1.00,
        "oblivious_magface_fawkes": 0.00, "oblivious_magface_lowkey": 1.00, "oblivious_clip_lowkey": 0.24,
        "adaptive_nn_fawkes": 0.03, "adaptive_nn_lowkey": 0.03, "baseline_e2e_fawkes": 0.88,
        "baseline_e2e_lowkey": 0.97, "adaptive_e2e_fawkes": 0.03, "adaptive_e2e_lowkey": 0.03}


def test_matching_by_model_name_and_relation():
    records = [
        rec("fawkes_v10", "fawkes_v10", "mag", "magface", "knn1", 0.1),
        rec("fawkes_v10", "fawkes_v10", "mag", "magface", "linear", 0.9),      # other classifier
        rec("pgd", "pgd", "mag", "magface", "knn1", 0.5),                      # other cloak type
        rec("fawkes_v10", "fawkes_v10", "fawkes_v03_onnx", "onnx", "knn1", 0.8),
        rec("lowkey", "lowkey", "cnn_2018", "small_cnn", "knn1", 0.7, ensemble=["cnn_2018"]),
        rec("lowkey", "lowkey", "sface_robust", "robust", "knn1", 0.2),
    ]
    cells = {c.key: c for c in PAPER_CELLS}
    how, found = matches(cells["oblivious_magface_fawkes"], records)
    assert how == "model" and [r.metrics["protection"] for r in found] == [0.1]
    how, found = matches(cells["baseline_nn_fawkes"], records)
    assert how == "name" and [r.labels["extractor"] for r in found] == ["fawkes_v03_onnx"]
    how, found = matches(cells["baseline_nn_lowkey"], records)
    assert how == "analogue" and [r.labels["extractor"] for r in found] == ["cnn_2018"]
    how, found = matches(cells["adaptive_nn_lowkey"], records)
    assert how == "analogue" and [r.labels["extractor"] for r in found] == ["sface_robust"]
    assert matches(cells["oblivious_clip_lowkey"], records) == ("none", [])
    text = paper_section(records)
    line = next(l for l in text.splitlines() if l.startswith("| Oblivious NN, MagFace, Fawkes attack"))
    assert "| 0.00 |" in line and "fawkes_v10/mag: 0.10 [0.00, 1.00]" in line and "same model" in line
    assert "per_user, raw features, 1 cloaked" in line
    clip = next(l for l in text.splitlines() if l.startswith("| Oblivious NN, CLIP, LowKey attack"))
    assert "| 0.24 |" in clip and "no matching experiment in this run" in clip


def test_every_cell_has_a_row_even_without_records():
    lines = [l for l in paper_section([]).splitlines() if "no matching experiment" in l]
    assert len(lines) == len(PAPER_CELLS)
