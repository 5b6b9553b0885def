"""The contract every registered cloak and extractor type keeps (README "Adding a cloak" /
"Adding an extractor"), checked for each type the registries hold.

Cloaks run on the tests' tiny random extractor; extractors whose weights cannot be shipped
run on stand-in weight files made here (random weights, the original formats: see
tests/unit/extractors/test_paper_models.py for the loaders themselves). A type added without a stand-in
below is still run with its defaults, and fails here until it keeps the contract.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from cloaks_testlib import TinyNet, smooth_images
from cloakbench.cloaks import CLOAKS, build_cloak
from cloakbench.errors import ConfigError, MissingWeightsError
from cloakbench.extractors import EXTRACTORS, build_extractor
from cloakbench.extractors.paper.common import PaperExtractor
from cloakbench.extractors.trained import TrainedExtractor
from cloakbench.images import to_uint8
from cloakbench.io import write_png
from cloakbench.params import REQUIRED

WRONG_TYPE = {int: "ten", float: "ten", bool: "yes", str: 12}


def json_safe(value: Any) -> bool:
    return json.loads(json.dumps(value)) == value


# ---------------------------------------------------------------------------------------
# cloaks
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pictures() -> torch.Tensor:
    return smooth_images(2, seed=3)


@pytest.fixture(scope="module")
def tool_folder(tmp_path_factory, pictures) -> Path:
    """Outputs of an official tool, named as Fawkes writes them, for the ``external`` cloak."""
    root = tmp_path_factory.mktemp("tool")
    noisy = (pictures + 0.02).clamp(0, 1)
    for k, arr in enumerate(to_uint8(noisy)):
        write_png(arr, root / "p" / f"{k}_cloaked.png")
    return root


def cloak_params(type_name: str, tool_folder: Path) -> dict[str, Any]:
    """Small, valid parameters of each built-in type; other types: few steps if declared."""
    table = {
        "pgd": {"steps": 2},
        "fawkes_v03": {"mode": "min", "steps": 2},
        "fawkes_v10": {"mode": "low", "steps": 2},
        "lowkey": {"perceptual": "dssim", "steps": 2},  # lpips needs AlexNet weights
        "external": {"folder": str(tool_folder)},
    }
    if type_name in table:
        return table[type_name]
    declared = {p.name for p in CLOAKS[type_name].params}
    return {"steps": 2} if "steps" in declared else {}


def make_cloak(type_name: str, tool_folder: Path, pictures: torch.Tensor, seed: int = 0):
    cls = CLOAKS[type_name]
    ensemble = [TinyNet()] if cls.needs_gradients else []
    spec = {"type": type_name, "params": cloak_params(type_name, tool_folder)}
    cloak = build_cloak("c", spec, ensemble, seed=seed)
    if cls.needs_reference:  # the documented context (cloakbench.cloaks.context)
        cloak.prepare({"user": "u", "user_images": pictures,
                       "candidate_images": {f"id{i}": smooth_images(2, seed=20 + i)
                                            for i in range(3)}})
    return cloak


def call(cloak, pictures: torch.Tensor) -> torch.Tensor:
    ids = [f"p/{k}" for k in range(pictures.shape[0])]
    return cloak(pictures, image_ids=ids)


@pytest.mark.parametrize("type_name", CLOAKS.names())
def test_cloak_keeps_shape_range_and_is_deterministic(type_name, tool_folder, pictures):
    cloak = make_cloak(type_name, tool_folder, pictures)
    rng = torch.get_rng_state()
    out = call(cloak, pictures)
    assert torch.equal(rng, torch.get_rng_state()), "a cloak must not draw from the global RNG"
    assert out.shape == pictures.shape and out.dtype == pictures.dtype
    assert out.device == pictures.device
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0 and torch.isfinite(out).all()
    again = call(make_cloak(type_name, tool_folder, pictures), pictures)
    assert torch.equal(out, again), "same seed, same pictures -> same cloak"


@pytest.mark.parametrize("type_name", CLOAKS.names())
def test_cloak_record_and_description_are_json_safe(type_name, tool_folder, pictures):
    cls = CLOAKS[type_name]
    desc = cls.describe()  # from the class alone: no extractor, no weights
    assert json_safe(desc) and desc["type"] == type_name
    assert [p["name"] for p in desc["params"]] == [p.name for p in cls.params]
    assert set(desc["capabilities"]) == {"needs_gradients", "needs_image_ids", "needs_reference",
                                         "accepts_start"}
    cloak = make_cloak(type_name, tool_folder, pictures)
    call(cloak, pictures)
    hp = cloak.hyperparameters()
    assert json_safe(hp) and hp["type"] == type_name
    assert {p.name for p in cls.params} <= set(hp)
    assert all(isinstance(x, float) for x in cloak.loss_history)


@pytest.mark.parametrize("type_name", CLOAKS.names())
def test_cloak_params_reject_wrong_types_and_unknown_keys(type_name, tool_folder):
    cls = CLOAKS[type_name]
    good = cloak_params(type_name, tool_folder)
    resolved = cls.validate_params(good, where="cloaks.c.params")  # no extractor needed
    assert [k for k in resolved] == [p.name for p in cls.params]
    for p in cls.params:
        bad = {**good, p.name: WRONG_TYPE[p.type]}
        with pytest.raises(ConfigError, match=rf"cloaks\.c\.params\.{p.name} .*must be") as err:
            cls.validate_params(bad, where="cloaks.c.params")
        assert repr(WRONG_TYPE[p.type]) in str(err.value)
        if p.default is REQUIRED:
            with pytest.raises(ConfigError, match=rf"params\.{p.name} .*required"):
                cls.validate_params({k: v for k, v in good.items() if k != p.name}, where="cloaks.c.params")
    with pytest.raises(ConfigError, match="unknown key.*'no_such_key'.*known keys: "
                       + ", ".join(p.name for p in cls.params)):
        cls.validate_params({**good, "no_such_key": 1}, where="cloaks.c.params")


def test_start_is_refused_by_cloaks_that_do_not_declare_it(tool_folder, pictures):
    for type_name in CLOAKS.names():
        cloak = make_cloak(type_name, tool_folder, pictures)
        if not cloak.accepts_start:
            with pytest.raises(TypeError, match="takes no start="):
                cloak(pictures, image_ids=["p/0", "p/1"], start=torch.zeros_like(pictures))


# ---------------------------------------------------------------------------------------
# extractors
# ---------------------------------------------------------------------------------------
class TinyArcFace(torch.nn.Module):
    """A 112x112 -> 512 conv net exported like an insightface recogniser."""

    def __init__(self):
        super().__init__()
        layers, cin = [], 3
        for cout in (8, 16, 16, 16):
            layers += [torch.nn.Conv2d(cin, cout, 3, 2, 1), torch.nn.BatchNorm2d(cout),
                       torch.nn.PReLU(cout)]
            cin = cout
        self.body = torch.nn.Sequential(*layers)
        self.fc = torch.nn.Linear(16 * 7 * 7, 512)

    def forward(self, x):
        return self.fc(torch.flatten(self.body(x), 1))


def _state_file(module_factory: Callable[[], torch.nn.Module], path: Path) -> Path:
    torch.manual_seed(0)
    torch.save(module_factory().state_dict(), path)
    return path


def _arcface_file(root: Path) -> Path:
    """Exported once per session (the exporter takes seconds), by the TorchScript exporter
    insightface's packs were made with."""
    path = _ONNX_CACHE.get("path")
    if path is None or not path.is_file():
        torch.manual_seed(0)
        path = root / "w600k_r50.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(TinyArcFace().eval(), (torch.rand(2, 3, 112, 112),), str(path),
                              input_names=["input.1"], output_names=["fc1"], opset_version=11,
                              dynamo=False, external_data=False,
                              dynamic_axes={"input.1": {0: "None"}, "fc1": {0: "None"}})
        _ONNX_CACHE["path"] = path
    return path


_ONNX_CACHE: dict[str, Path] = {}


def _clip_file(root: Path) -> tuple[Path, str]:
    import open_clip
    arch = "cloakbench-contract-tiny-clip"
    cfg = {"embed_dim": 32, "quick_gelu": True,  # one 64-wide head in each tower
           "vision_cfg": {"image_size": 64, "layers": 1, "width": 64, "patch_size": 32},
           "text_cfg": {"context_length": 77, "vocab_size": 100, "width": 64, "heads": 1,
                        "layers": 1}}
    (root / f"{arch}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(root / f"{arch}.json")
    torch.manual_seed(0)
    path = root / "tiny_clip.pt"
    torch.save(open_clip.create_model(arch, pretrained=None).state_dict(), path)
    return path, arch


def extractor_standin(type_name: str, root: Path) -> tuple[dict[str, Any], str | None]:
    """(spec, checkpoint) that builds ``type_name`` offline, with stand-in weights if needed."""
    from cloakbench.extractors.paper.evolve import IRBackbone, ResNetBackbone
    from cloakbench.extractors.paper.facenet import InceptionResnetV1
    from cloakbench.extractors.paper.magface import IResNet

    cls = EXTRACTORS[type_name]
    if issubclass(cls, TrainedExtractor):
        model = cls("m", {"type": type_name})
        model.init_weights(torch.Generator().manual_seed(0))
        path = root / f"{type_name}.pt"
        torch.save(model.state_dict(), path)
        return {"type": type_name}, str(path)
    if type_name == "robust":
        base_spec, base_ckpt = extractor_standin("small_cnn", root)
        return {"type": "robust", "base": "b", "base_spec": base_spec, "cloaks": ["pgd"]}, base_ckpt
    full_size = {"magface": IResNet, "evolve_ir152": IRBackbone, "evolve_resnet152": ResNetBackbone,
                 "facenet": InceptionResnetV1}
    if type_name in full_size:  # the architecture's own (random) init, saved as a state dict
        return {"type": type_name,
                "weights": str(_state_file(full_size[type_name], root / f"{type_name}.pth"))}, None
    if type_name in ("arcface_onnx", "arcface_onnx_torch"):
        return {"type": type_name, "weights": str(_arcface_file(root))}, None
    if type_name == "onnx":  # the generic type, on the same small ONNX recogniser
        return {"type": type_name, "weights": str(_arcface_file(root)),
                "params": {"input_size": 112}}, None
    if type_name == "clip_vit":
        path, arch = _clip_file(root)
        return {"type": type_name, "weights": str(path), "arch": arch}, None
    return {"type": type_name}, None  # shipped weights (sface, dlib, ...) or none needed


@pytest.fixture(scope="module")
def sface_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLOAKBENCH_CACHE", str(tmp_path_factory.mktemp("cbcache")))
        yield


@pytest.mark.parametrize("type_name", EXTRACTORS.names())
def test_extractor_embeds_deterministically(type_name, tmp_path, sface_cache):
    spec, checkpoint = extractor_standin(type_name, tmp_path)
    model = build_extractor("x", spec, checkpoint=checkpoint)
    x = smooth_images(2, seed=5)
    before = x.clone()
    with torch.no_grad():
        a, b = model(x), model(x)
    assert torch.equal(x, before), "an extractor must not modify its input"
    assert a.shape == (2, model.embedding_dim) and a.dtype == torch.float32
    assert torch.isfinite(a).all() and torch.equal(a, b)
    info = model.info().as_dict()
    assert json_safe(info) and info["type"] == type_name


@pytest.mark.parametrize("type_name", EXTRACTORS.names())
def test_extractor_description_needs_no_weights(type_name, tmp_path):
    cls = EXTRACTORS[type_name]
    spec = {"type": type_name, "release_date": "2021-01-01", "weights": str(tmp_path / "none.bin")}
    info = cls.describe("x", spec).as_dict()  # the file does not exist: nothing is loaded
    assert json_safe(info) and info["type"] == type_name and info["name"] == "x"
    assert info["release_date"] == "2021-01-01"
    assert info["differentiable"] == cls.differentiable


@pytest.mark.parametrize("type_name", [n for n, c in EXTRACTORS.items()
                                       if c.trained_in_pipeline and issubclass(c, TrainedExtractor)])
def test_trained_extractor_settings_reject_wrong_types_and_unknown_keys(type_name):
    from cloakbench.extractors.training import train_settings
    cls = EXTRACTORS[type_name]
    assert train_settings("x", {"type": type_name}, cls)["epochs"] >= 1
    with pytest.raises(ConfigError, match=r"extractors\.x\.train\.epochs.*'ten'"):
        train_settings("x", {"type": type_name, "train": {"epochs": "ten"}}, cls)
    with pytest.raises(ConfigError, match=r"extractors\.x\.train: unknown keys \['epoch'\]"):
        train_settings("x", {"type": type_name, "train": {"epoch": 3}}, cls)


@pytest.mark.parametrize("type_name", [n for n, c in EXTRACTORS.items()
                                       if issubclass(c, PaperExtractor)])
def test_missing_weights_name_the_config_key(type_name, tmp_path):
    with pytest.raises(MissingWeightsError, match=r"extractors\.x\.weights"):
        build_extractor("x", {"type": type_name, "weights": str(tmp_path / "absent.bin")})
