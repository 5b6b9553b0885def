"""config/facescrub.yaml is the paper's table (Radiya-Dixit et al., FaceCure): checked without
Snakemake and without any weight file (the dry run lists those as missing)."""

import yaml

from cloakbench.plan import build_plan


def test_facescrub_config_is_the_papers_table(repo_root):
    text = (repo_root / "config" / "facescrub.yaml").read_text()
    assert "demo:" not in text.replace("demo:\n  enabled: false", "")  # no demo trims
    plan = build_plan(yaml.safe_load(text), repo_root / "config" / "schema.yaml",
                      base_dir=repo_root)
    ex = plan.plain("extractors")
    # Fawkes cloaks against Fawkes' own extractors (ONNX conversions of the Keras models)
    assert plan.ensemble("fawkes_v03") == ["fawkes_v03_high_extract"]
    assert plan.ensemble("fawkes_v10") == ["fawkes_v10_extractor_0", "fawkes_v10_extractor_2"]
    assert all(ex[n]["type"] == "onnx" for n in plan.ensemble("fawkes_v10") + ["fawkes_v03_high_extract"])
    v03 = ex["fawkes_v03_high_extract"]["params"]
    assert v03["input_size"] == 224 and v03["channel_order"] == "BGR" and v03["layout"] == "NHWC"
    # LowKey against its four backbones
    assert sorted(ex[n]["type"] for n in plan.ensemble("lowkey")) == [
        "evolve_ir152", "evolve_ir152", "evolve_resnet152", "evolve_resnet152"]
    # the oblivious recognisers and FaceCure's robust extractor (its three public cloaks)
    types = {spec["type"] for spec in ex.values()}
    assert {"magface", "clip_vit", "arcface_onnx_torch", "facenet", "robust"} <= types
    robust = ex["fawkes_robust"]
    assert robust["base"] == "fawkes_v03_high_extract"
    assert sorted(robust["cloaks"]) == ["fawkes_v03", "fawkes_v10", "lowkey"]
    # v0.3's targets come from a reserved pool; the paper's cloaks only (no demo baseline)
    assert plan.plain("users")["target_pool"] >= 20
    assert set(plan.cloaks) == {"fawkes_v03", "fawkes_v10", "lowkey"}
    adaptive = plan.plain("adaptive")
    assert adaptive["finetune"]["extractors"] == ["fawkes_v03_high_extract"]
    assert adaptive["detection"]["detectors"] and adaptive["timetravel"]["pairs"]
    assert adaptive["combine"]["pairs"]
