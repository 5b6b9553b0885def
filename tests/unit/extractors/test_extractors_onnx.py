"""type: onnx (any ONNX recogniser through onnx2torch): input convention, gradients, errors."""

import pytest
import torch
from torch import nn

from cloakbench.errors import ConfigError, MissingWeightsError
from cloakbench.extractors import build_extractor, extractor_class

SIZE = 24
MEAN = [0.4, 0.5, 0.6]
STD = [0.2, 0.25, 0.3]


class NHWCNet(nn.Module):
    """A tiny recogniser taking NHWC input, as a Keras model converted with tf2onnx."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4, 6)

    def forward(self, x):
        return self.head(self.pool(torch.relu(self.conv(x.permute(0, 3, 1, 2)))).flatten(1))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    net = NHWCNet().eval()
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    torch.onnx.export(net, (torch.rand(2, SIZE, SIZE, 3),), str(path), input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                      dynamo=False, opset_version=17)
    return net, path


def spec(path, **params):
    base = {"input_size": SIZE, "mean": MEAN, "std": STD, "channel_order": "BGR",
            "layout": "NHWC"}
    return {"type": "onnx", "release_date": "2020-07-01", "weights": str(path),
            "params": {**base, **params}}


def test_matches_the_torch_model_with_the_declared_convention(exported):
    net, path = exported
    ex = build_extractor("tiny", spec(path))
    x = torch.rand(3, 3, 32, 32)  # any size: resized to input_size
    with torch.no_grad():
        small = torch.nn.functional.interpolate(x, size=(SIZE, SIZE), mode="bilinear",
                                                align_corners=False)
        norm = (small - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
        expected = net(norm.flip(1).permute(0, 2, 3, 1))  # BGR, then NHWC
        got = ex(x)
        wrong_order = net(norm.permute(0, 2, 3, 1))
    assert got.shape == (3, 6) and ex.embedding_dim == 6
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, wrong_order, atol=1e-3)  # the channel flip matters
    info = ex.info()
    assert info.input_size == SIZE and info.mean == tuple(MEAN) and info.embedding_dim == 6
    assert info.extra["channel_order"] == "BGR" and info.extra["layout"] == "NHWC"
    normed = build_extractor("tiny", spec(path, l2_normalize=True))
    with torch.no_grad():
        assert torch.allclose(normed(x).norm(dim=1), torch.ones(3), atol=1e-5)


def test_gradients_reach_the_pixels(exported):
    _, path = exported
    ex = build_extractor("tiny", spec(path))
    assert extractor_class("onnx").differentiable
    x = torch.rand(2, 3, SIZE, SIZE, requires_grad=True)
    ex(x).pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_config_errors_name_the_key(exported, tmp_path):
    _, path = exported
    with pytest.raises(ConfigError, match=r"extractors\.tiny\.params\.mean .*3 numbers"):
        build_extractor("tiny", spec(path, mean=[0.5, 0.5]))
    with pytest.raises(ConfigError, match=r"extractors\.tiny\.params\.layout .*'NCHW', 'NHWC'"):
        build_extractor("tiny", spec(path, layout="CHW"))
    with pytest.raises(ConfigError, match=r"extractors\.tiny\.params.*unknown key.*'size'"):
        build_extractor("tiny", spec(path, size=3))
    with pytest.raises(ConfigError, match=r"6-d embeddings.*embedding_dim says 128"):
        build_extractor("tiny", spec(path, embedding_dim=128))
    with pytest.raises(MissingWeightsError, match=r"extractors\.tiny\.weights"):
        build_extractor("tiny", spec(tmp_path / "absent.onnx"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(MissingWeightsError, match="not a readable ONNX file"):
        build_extractor("tiny", spec(bad))
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Frobnicate", ["x"], ["y"], domain="custom")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    odd = tmp_path / "odd.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                      helper.make_opsetid("custom", 1)]), odd)
    with pytest.raises(ConfigError, match=r"onnx2torch cannot convert .*extractors\.tiny\.weights"):
        build_extractor("tiny", spec(odd))


def test_config_check_resolves_declared_params(repo_root, exported):
    import yaml

    from cloakbench.config import validate_config

    _, path = exported
    cfg = yaml.safe_load((repo_root / "config" / "test.yaml").read_text())
    cfg["extractors"]["tiny"] = spec(path)
    validate_config(cfg, repo_root / "config" / "schema.yaml", base_dir=repo_root)
    cfg["extractors"]["tiny"]["params"]["std"] = [0.5, 0.0, 0.5]
    with pytest.raises(ConfigError, match=r"extractors\.tiny\.params\.std"):
        validate_config(cfg, repo_root / "config" / "schema.yaml", base_dir=repo_root)
    del cfg["extractors"]["tiny"]
    cfg["extractors"]["sface"]["params"] = {"input_size": 112}  # sface declares no params
    with pytest.raises(ConfigError, match=r"extractors\.sface\.params.*known keys: none"):
        validate_config(cfg, repo_root / "config" / "schema.yaml", base_dir=repo_root)


def test_sface_dequantised_onnx_through_the_generic_type():
    """SFace's float ONNX (the sface extractor's own conversion) as ``type: onnx`` with SFace's
    normalisation gives the sface extractor's embeddings."""
    pytest.importorskip("onnx2torch")
    from cloakbench.extractors.sface import SFACE_MEAN, SFACE_STD, SFace

    sface = SFace("sface", {})
    generic = build_extractor("sface_onnx", {
        "type": "onnx", "weights": str(sface.onnx_path),
        "params": {"input_size": 112, "mean": list(SFACE_MEAN), "std": list(SFACE_STD),
                   "embedding_dim": 128}})
    x = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        assert torch.allclose(generic(x), sface(x), atol=1e-4)
