"""Loaders of the paper's pretrained models, tested on weight files made here in the original
formats (random weights, the original keys and shapes, quirks included), so that a user who
supplies the real file gets the real model.

The full-size architectures are checked against fingerprints (number of tensors, number of
elements, hash of the sorted key/shape list) taken from the original implementations
(MagFace ``models/iresnet.py``, face.evoLVe ``backbone/model_irse.py`` and
``backbone/model_resnet.py``, facenet-pytorch 2.6.0 ``InceptionResnetV1``); the same
random weights also gave bit-identical outputs in the original and in our modules.
"""

from __future__ import annotations

import hashlib
import json
import warnings

import pytest
import torch

from cloakbench.errors import ConfigError, MissingWeightsError
from cloakbench.extractors.registry import build_extractor, extractor_class
from cloakbench.io import sha256_file

from cloakbench.extractors.paper.evolve import IRBackbone, ResNetBackbone  # noqa: E402
from cloakbench.extractors.paper.facenet import InceptionResnetV1  # noqa: E402
from cloakbench.extractors.paper.magface import IResNet  # noqa: E402

PAPER_TYPES = {
    # type: (file named in the messages, differentiable, input size)
    "magface": ("magface_epoch_00025.pth", True, 112),
    "arcface_onnx": ("w600k_r50.onnx", False, 112),
    "arcface_onnx_torch": ("w600k_r50.onnx", True, 112),
    "clip_vit": ("ViT-B-32.pt", True, 224),
    "facenet": ("20180402-114759-vggface2.pt", True, 160),
    "evolve_ir152": ("Backbone_IR_152_Arcface_Epoch_112.pth", True, 112),
    "evolve_resnet152": ("Backbone_ResNet_152_Arcface_Epoch_65.pth", True, 112),
}

# (tensors, elements, sha256[:16] of sorted (key, shape)) of the ORIGINAL implementations.
ORIGINAL_FINGERPRINTS = {
    "magface_iresnet100": (925, 65_225_946, "5a3675233f7c53cd"),
    "evolve_ir152": (687, 70_788_650, "2e3622c880a5b2b1"),
    "evolve_resnet152": (942, 75_083_357, "dd0dacbb71f4beed"),
    "facenet_inception_resnet_v1": (714, 23_512_336, "2c9c14578327e5f3"),
}


# -- helpers ---------------------------------------------------------------------------------
def fingerprint(state: dict[str, torch.Tensor]) -> tuple[int, int, str]:
    items = sorted((k, tuple(v.shape)) for k, v in state.items())
    total = sum(torch.Size(s).numel() for _, s in items)
    return len(items), total, hashlib.sha256(repr(items).encode()).hexdigest()[:16]


def random_state(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """``module``'s state dict with every float tensor random and distinct.

    Conv/linear weights keep their (random) default init; BatchNorm/PReLU/LayerNorm vectors,
    which start as constants, get random values in a range that keeps 150 layers finite.
    """
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in module.state_dict().items():
        if not value.dtype.is_floating_point:
            out[key] = torch.randint(0, 1000, value.shape, generator=g).to(value.dtype)
        elif value.ndim >= 2:
            out[key] = value.clone()
        elif key.endswith("running_var"):
            out[key] = 1.0 + torch.rand(value.shape, generator=g)
        elif key.endswith("bias") or key.endswith("running_mean"):
            out[key] = 0.01 * torch.randn(value.shape, generator=g)
        else:  # BN / LayerNorm scale, PReLU slope, embeddings
            out[key] = 0.5 + 0.5 * torch.rand(value.shape, generator=g)
    return out


def assert_loaded(module: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    """Every parameter and buffer of ``module`` equals the tensor saved under its key."""
    state = module.state_dict()
    assert set(state) == set(saved)
    for key, value in state.items():
        assert torch.equal(value, saved[key].to(value.dtype)), key


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-4) -> None:
    """Equal up to ``rel`` of the largest |expected| (random-weight nets have tiny outputs)."""
    scale = expected.abs().max().item()
    assert scale > 0
    err = (actual - expected).abs().max().item()
    assert err <= rel * scale, f"max |diff| {err:.3g} > {rel} x {scale:.3g}"


def spec(type_name: str, path=None, **extra) -> dict:
    out = {"type": type_name, "release_date": "2021-01-01", **extra}
    if path is not None:
        out["weights"] = str(path)
    return out


@pytest.fixture(scope="module")
def x112() -> torch.Tensor:
    return torch.rand(1, 3, 112, 112, generator=torch.Generator().manual_seed(0))


# -- registry and metadata -------------------------------------------------------------------
@pytest.mark.parametrize("type_name", sorted(PAPER_TYPES))
def test_registered_with_metadata(type_name):
    cls = extractor_class(type_name)
    filename, differentiable, size = PAPER_TYPES[type_name]
    assert cls.type_name == type_name
    assert cls.differentiable is differentiable
    assert cls.input_size == size and cls.embedding_dim == 512
    assert cls.family and len(cls.mean) == 3 and len(cls.std) == 3
    assert filename in cls.weights_filename and cls.published_at and cls.release


@pytest.mark.parametrize("type_name", sorted(PAPER_TYPES))
def test_missing_weights_message(type_name, tmp_path):
    filename = PAPER_TYPES[type_name][0]
    with pytest.raises(MissingWeightsError) as err:
        build_extractor("paper_model", spec(type_name))
    msg = str(err.value)
    assert filename in msg and "published at" in msg and "extractors.paper_model.weights" in msg
    with pytest.raises(MissingWeightsError) as err:
        build_extractor("paper_model", spec(type_name, tmp_path / "absent.bin"))
    msg = str(err.value)
    assert "absent.bin" in msg and filename in msg and "extractors.paper_model.weights" in msg


@pytest.mark.parametrize("type_name", ["magface", "facenet", "evolve_ir152", "arcface_onnx"])
def test_garbage_file_message(type_name, tmp_path):
    path = tmp_path / ("weights.onnx" if type_name.startswith("arcface") else "weights.pth")
    path.write_bytes(b"this is an HTML error page, not a checkpoint\n" * 10)
    with pytest.raises(MissingWeightsError) as err:
        build_extractor("m", spec(type_name, path))
    msg = str(err.value)
    assert str(path) in msg and PAPER_TYPES[type_name][0] in msg
    assert "published at" in msg and "extractors.m.weights" in msg


def test_wrong_sha256_message(tmp_path):
    path = tmp_path / "magface_epoch_00025.pth"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(MissingWeightsError) as err:
        build_extractor("mag", spec("magface", path, sha256="0" * 64))
    msg = str(err.value)
    assert "sha256" in msg and sha256_file(path) in msg and "magface_epoch_00025.pth" in msg


# -- full-size architectures vs the originals ------------------------------------------------
@pytest.mark.parametrize("name,factory", [
    ("magface_iresnet100", IResNet),
    ("evolve_ir152", IRBackbone),
    ("evolve_resnet152", ResNetBackbone),
    ("facenet_inception_resnet_v1", InceptionResnetV1),
])
def test_full_size_key_layout_matches_original(name, factory):
    with torch.device("meta"):
        module = factory()
    assert fingerprint(module.state_dict()) == ORIGINAL_FINGERPRINTS[name]


# -- MagFace ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def magface_file(tmp_path_factory):
    """``magface_epoch_00025.pth`` as the authors saved it (random weights)."""
    backbone = random_state(IResNet(), seed=1)
    state = {f"features.module.{k}": v for k, v in backbone.items()}
    state["fc.weight"] = torch.randn(512, 10)  # MagLinear head (512 x classes), not used
    checkpoint = {"epoch": 25, "arch": "iresnet100", "state_dict": state,
                  "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]}}
    path = tmp_path_factory.mktemp("magface") / "magface_epoch_00025.pth"
    torch.save(checkpoint, path)
    return path, backbone


def test_magface_loads_original_checkpoint(magface_file, x112):
    path, saved = magface_file
    model = build_extractor("magface", spec("magface", path, sha256=sha256_file(path)))
    assert_loaded(model.backbone, saved)
    info = model.info()
    assert info.embedding_dim == 512 and info.extra["prefix"] == "features.module."
    assert info.extra["skipped_outside_prefix"] == 1 and info.extra["checkpoint_epoch"] == 25
    x = x112.clone().requires_grad_(True)
    out = model(x)
    assert out.shape == (1, 512) and torch.isfinite(out).all()
    # RGB in [0, 1] by default (FaceCure's eval_oblivious.py feeds PIL's RGB; mean 0, std 1)
    assert torch.equal(model.preprocess(x112), x112) and info.extra["channel_order"] == "RGB"
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # params.channel_order: BGR, MagFace's own order (cv2.imread + ToTensor), recorded as a deviation
    bgr = build_extractor("magface", {**spec("magface", path, sha256=sha256_file(path)),
                                      "params": {"channel_order": "BGR"}})
    assert torch.equal(bgr.preprocess(x112), x112[:, [2, 1, 0]])
    assert bgr.info().extra["channel_order"] == "BGR" and bgr.info().extra["params_overridden"] == ["channel_order"]
    from cloakbench.extractors.paper.magface import MagFace
    described = MagFace.describe("mag", {"type": "magface", "params": {"channel_order": "BGR"}})
    assert described.extra["channel_order"] == "BGR"  # in every record's extractor_info, no weights needed
    with pytest.raises(ConfigError, match=r"extractors\.mag\.params.*channel_order"):
        MagFace.describe("mag", {"type": "magface", "params": {"channel_order": "GBR"}})


def test_magface_rejects_other_architecture(tmp_path):
    path = tmp_path / "magface_epoch_00025.pth"
    torch.save({"state_dict": {"features.module.conv1.weight": torch.zeros(64, 3, 3, 3),
                               "features.module.bn1.weight": torch.zeros(64)}}, path)
    with pytest.raises(MissingWeightsError) as err:
        build_extractor("mag", spec("magface", path))
    msg = str(err.value)
    assert "missing keys" in msg and "magface_epoch_00025.pth" in msg and "extractors.mag" in msg


# -- face.evoLVe (LowKey) --------------------------------------------------------------------
@pytest.fixture(scope="module")
def evolve_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("evolve")
    ir = random_state(IRBackbone(), seed=2)
    resnet = random_state(ResNetBackbone(), seed=3)
    ir_path = root / "Backbone_IR_152_Arcface_Epoch_112.pth"
    torch.save(ir, ir_path)  # LowKey: a plain state dict, loaded strictly
    resnet_path = root / "Backbone_ResNet_152_Cosface_Epoch_68.pth"
    torch.save({f"module.{k}": v for k, v in resnet.items()}, resnet_path)  # DataParallel
    return {"evolve_ir152": (ir_path, ir), "evolve_resnet152": (resnet_path, resnet)}


@pytest.mark.parametrize("type_name", ["evolve_ir152", "evolve_resnet152"])
def test_evolve_loads_original_checkpoint(type_name, evolve_files, x112):
    path, saved = evolve_files[type_name]
    model = build_extractor(type_name, spec(type_name, path))
    assert_loaded(model.backbone, saved)
    with torch.no_grad():
        out = model(x112)
        assert out.shape == (1, 512) and torch.isfinite(out).all()
    # face.evoLVe / LowKey normalisation: RGB, (x - 0.5) / 0.5.
    assert torch.allclose(model.preprocess(x112), x112 * 2 - 1, atol=1e-6)


def test_evolve_refuses_the_other_backbone(evolve_files):
    path, _ = evolve_files["evolve_ir152"]
    with pytest.raises(MissingWeightsError) as err:
        build_extractor("rn", spec("evolve_resnet152", path))
    msg = str(err.value)
    assert "Backbone_ResNet_152_Arcface_Epoch_65.pth" in msg and "missing keys" in msg
    assert str(path) in msg and "extractors.rn.weights" in msg


# -- FaceNet ---------------------------------------------------------------------------------
def test_facenet_loads_facenet_pytorch_file(tmp_path):
    saved = random_state(InceptionResnetV1(), seed=4)
    state = dict(saved)
    state["logits.weight"] = torch.randn(8631, 512)  # VGGFace2 classifier, not used
    state["logits.bias"] = torch.randn(8631)
    path = tmp_path / "20180402-114759-vggface2.pt"
    torch.save(state, path)
    model = build_extractor("facenet", spec("facenet", path))
    assert_loaded(model.backbone, saved)
    assert model.info().extra["classes_in_file"] == 8631
    x = torch.rand(1, 3, 112, 112, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, 512) and torch.isfinite(out).all()
        x160 = torch.nn.functional.interpolate(x, size=(160, 160), mode="bilinear",
                                               align_corners=False)
    # facenet-pytorch's fixed_image_standardization: (255 x - 127.5) / 128.
    assert torch.allclose(model.preprocess(x), (x160 * 255 - 127.5) / 128, atol=1e-5)


# -- ArcFace ONNX (insightface packs) --------------------------------------------------------
class TinyArcFace(torch.nn.Module):
    """Same signature as the packs' recognisers: Nx3x112x112 -> 512 (iResNet-like ops)."""

    def __init__(self):
        super().__init__()
        layers, cin = [], 3
        for cout in (8, 16, 16, 16):
            layers += [torch.nn.Conv2d(cin, cout, 3, 2, 1, bias=False),
                       torch.nn.BatchNorm2d(cout), torch.nn.PReLU(cout)]
            cin = cout
        self.body = torch.nn.Sequential(*layers)
        self.fc = torch.nn.Linear(16 * 7 * 7, 512)
        self.features = torch.nn.BatchNorm1d(512)

    def forward(self, x):
        return self.features(self.fc(torch.flatten(self.body(x), 1)))


def _tiny_arcface() -> TinyArcFace:
    torch.manual_seed(6)
    net = TinyArcFace()
    net.load_state_dict(random_state(net, seed=6))
    return net.eval()


def _export(net, path, *, legacy: bool) -> None:
    x = torch.rand(2, 3, 112, 112)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if legacy:  # the TorchScript exporter, as insightface's packs were made (opset 11)
            torch.onnx.export(net, (x,), str(path), input_names=["input.1"],
                              output_names=["fc1"], opset_version=11, dynamo=False,
                              external_data=False,
                              dynamic_axes={"input.1": {0: "None"}, "fc1": {0: "None"}})
        else:
            torch.onnx.export(net, (x,), str(path), input_names=["input.1"],
                              output_names=["fc1"], opset_version=18, external_data=False,
                              dynamic_shapes=({0: torch.export.Dim("batch")},))


@pytest.fixture(scope="module")
def arcface_onnx_file(tmp_path_factory):
    net = _tiny_arcface()
    path = tmp_path_factory.mktemp("arcface") / "w600k_r50.onnx"
    _export(net, path, legacy=False)
    assert not path.with_name(path.name + ".data").exists()  # weights inside the file
    return path, net


def test_arcface_onnx_through_insightface(arcface_onnx_file):
    path, net = arcface_onnx_file
    model = build_extractor("arcface", spec("arcface_onnx", path))
    assert type(model.model).__name__ == "ArcFaceONNX"  # insightface's recogniser class
    assert model.info().extra["input_mean_px"] == 127.5 and model.differentiable is False
    x = torch.rand(3, 3, 112, 112, generator=torch.Generator().manual_seed(7))
    out = model(x)
    assert out.shape == (3, 512)
    with torch.no_grad():
        expected = net((x * 255 - 127.5) / 127.5)
    assert_close(out, expected)


def test_arcface_onnx_torch_path_matches_insightface(arcface_onnx_file):
    path, net = arcface_onnx_file
    black_box = build_extractor("a", spec("arcface_onnx", path))
    torch_model = build_extractor("b", spec("arcface_onnx_torch", path))
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(8))
    xg = x.clone().requires_grad_(True)
    out = torch_model(xg)
    assert out.shape == (2, 512)
    assert_close(out.detach(), black_box(x))
    out.sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0


def test_arcface_onnx_torch_reads_torchscript_export(tmp_path):
    """Exporter quirks of the packs (Identity-forwarded weights, opset 11) convert too."""
    net = _tiny_arcface()
    path = tmp_path / "glintr100.onnx"
    try:
        _export(net, path, legacy=True)
    except Exception as exc:  # pragma: no cover - the TorchScript exporter may be retired
        pytest.skip(f"TorchScript ONNX exporter unavailable: {exc}")
    model = build_extractor("g", spec("arcface_onnx_torch", path, input_mean=127.5,
                                      input_std=127.5))
    x = torch.rand(1, 3, 112, 112, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert_close(model(x), net((x * 255 - 127.5) / 127.5))


def test_arcface_onnx_rejects_non_recogniser(tmp_path):
    class Small(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3))

    path = tmp_path / "det_10g.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Small(), (torch.rand(1, 3, 64, 64),), str(path),
                          input_names=["input.1"], external_data=False)
    for type_name in ("arcface_onnx", "arcface_onnx_torch"):
        with pytest.raises(MissingWeightsError) as err:
            build_extractor("x", spec(type_name, path))
        msg = str(err.value)
        assert "not" in msg and "recogniser" in msg and "w600k_r50.onnx" in msg
    renamed = tmp_path / "w600k_r50.bin"
    renamed.write_bytes(path.read_bytes())
    with pytest.raises(MissingWeightsError, match=r"\.onnx"):
        build_extractor("x", spec("arcface_onnx", renamed))


# -- CLIP ViT-B/32 ---------------------------------------------------------------------------
TINY_CLIP = "cloakbench-test-tiny-clip"


@pytest.fixture(scope="module")
def open_clip_mod(tmp_path_factory):
    import open_clip  # open_clip_torch: a declared dependency (pyproject), never skipped
    cfg = {"embed_dim": 64, "quick_gelu": True,
           "vision_cfg": {"image_size": 64, "layers": 1, "width": 64, "patch_size": 32},
           "text_cfg": {"context_length": 77, "vocab_size": 1000, "width": 64, "heads": 1,
                        "layers": 1}}
    path = tmp_path_factory.mktemp("clipcfg") / f"{TINY_CLIP}.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    return open_clip


def _random_clip(open_clip, arch: str, seed: int):
    torch.manual_seed(seed)
    model = open_clip.create_model(arch, pretrained=None).eval()
    state = random_state(model, seed)
    model.load_state_dict(state)
    return model, state


def test_clip_vit_b32_loads_open_clip_state_dict(open_clip_mod, tmp_path, x112):
    model, state = _random_clip(open_clip_mod, "ViT-B-32-quickgelu", seed=10)
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(state, path)  # the format of open_clip's converted OpenAI weights
    ext = build_extractor("clip", spec("clip_vit", path))
    assert_loaded(ext.visual, {k[len("visual."):]: v for k, v in state.items()
                               if k.startswith("visual.")})
    assert ext.input_size == 224 and ext.embedding_dim == 512
    with torch.no_grad():
        out = ext(x112)
        assert out.shape == (1, 512) and torch.isfinite(out).all()
        x224 = torch.nn.functional.interpolate(x112, size=(224, 224), mode="bicubic",
                                               align_corners=False)
        mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
        std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
        assert torch.allclose(ext.preprocess(x112), (x224 - mean) / std, atol=1e-5)


def test_clip_training_checkpoint_and_torchscript_formats(open_clip_mod, tmp_path):
    model, state = _random_clip(open_clip_mod, TINY_CLIP, seed=11)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model.encode_image((x - torch.tensor([0.48145466, 0.4578275, 0.40821073])
                                       .view(1, 3, 1, 1)) /
                                      torch.tensor([0.26862954, 0.26130258, 0.27577711])
                                      .view(1, 3, 1, 1))
    training = tmp_path / "epoch_32.pt"  # open_clip training: {"state_dict": {"module.…"}}
    torch.save({"epoch": 32, "name": "run", "state_dict": {f"module.{k}": v
                                                            for k, v in state.items()}},
               training)
    scripted = tmp_path / "ViT-B-32.pt"  # OpenAI's release format: a TorchScript archive
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace_module(model, {"encode_image": x}).save(str(scripted))
    converted = tmp_path / "open_clip_model.safetensors"  # Hugging Face conversions
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in state.items()}, str(converted))
    for path, fmt in ((training, "state dict"), (scripted, "TorchScript"),
                      (converted, "state dict")):
        ext = build_extractor("clip", spec("clip_vit", path, arch=TINY_CLIP))
        assert fmt in ext.info().extra["format"]
        assert_loaded(ext.visual, {k[len("visual."):]: v for k, v in state.items()
                                   if k.startswith("visual.")})
        with torch.no_grad():
            assert_close(ext(x), expected)


def test_clip_refuses_other_files_and_unknown_arch(open_clip_mod, magface_file, tmp_path):
    garbage = tmp_path / "ViT-B-32.pt"
    garbage.write_bytes(b"<html>not found</html>\n" * 10)
    for path in (magface_file[0], garbage):
        with pytest.raises(MissingWeightsError) as err:
            build_extractor("clip", spec("clip_vit", path, arch=TINY_CLIP))
        msg = str(err.value)
        assert str(path) in msg and "ViT-B-32.pt" in msg and "published at" in msg
        assert "extractors.clip.weights" in msg
    path = magface_file[0]
    with pytest.raises(ConfigError, match="extractors.clip.arch"):
        build_extractor("clip", spec("clip_vit", path, arch="no-such-model"))
