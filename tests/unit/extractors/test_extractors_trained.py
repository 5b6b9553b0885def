"""In-pipeline generations (small_cnn, resnet_face): margin heads, training, checkpoints."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from cloakbench.errors import ConfigError, DataError, MissingWeightsError
from cloakbench.extractors import build_extractor
from cloakbench.extractors.heads import ArcFaceHead, CosFaceHead
from cloakbench.extractors.training import augment, train_extractor

pytestmark = pytest.mark.usefixtures("one_thread")
TYPES = ["small_cnn", "resnet_face"]


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    """4 identities x 6 pictures: a smooth colour pattern per identity + noise and shifts."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(4):
        base = np.asarray(Image.fromarray(rng.integers(0, 256, (6, 6, 3)).astype(np.uint8))
                          .resize((124, 124), Image.BICUBIC)).astype(np.float32)
        for k in range(6):
            dx, dy = rng.integers(0, 12, 2)
            pic = base[dy:dy + 112, dx:dx + 112] + rng.normal(0, 10, (112, 112, 3))
            path = root / f"id{i}" / f"{k}.png"
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(np.clip(pic, 0, 255).astype(np.uint8)).save(path)
            paths.append(path)
            labels.append(f"id{i}")
    return paths, labels


def _spec(type_name: str, **train) -> dict:
    return {"type": type_name, "release_date": "2019-01-01",
            "train": {"epochs": 2, "batch_size": 8, "lr": 0.05, **train}}


@pytest.mark.parametrize("type_name", TYPES)
def test_training_is_deterministic_and_round_trips(type_name, tiny_set, tmp_path):
    paths, labels = tiny_set
    spec = _spec(type_name)
    a, b, c = tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "c.pt"
    torch.manual_seed(123)  # the global RNG must not matter ...
    meta = train_extractor("gen", spec, paths, labels, a, seed=7)
    torch.manual_seed(456)
    train_extractor("gen", spec, paths, labels, b, seed=7)
    train_extractor("gen", spec, paths, labels, c, seed=8)
    sa = torch.load(a, weights_only=True)
    sb = torch.load(b, weights_only=True)
    sc = torch.load(c, weights_only=True)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())

    side = json.loads(a.with_suffix(".json").read_text())
    assert side == json.loads(json.dumps(meta))
    assert (meta["identities"], meta["pictures"], meta["epochs"]) == (4, 24, 2)
    assert 0.0 <= meta["final_train_acc"] <= 1.0 and meta["seconds"] > 0
    assert meta["type"] == type_name and math.isfinite(meta["final_loss"])

    model = build_extractor("gen", spec, checkpoint=a)
    assert not model.training and model.trained_in_pipeline
    x = torch.rand(3, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x)
    assert out.shape == (3, 128) and torch.isfinite(out).all()
    x.requires_grad_(True)
    model(x).sum().backward()
    assert x.grad.abs().sum() > 0  # trained generations are differentiable


def test_training_learns_identities(tiny_set, tmp_path):
    paths, labels = tiny_set
    meta = train_extractor("gen", _spec("small_cnn", epochs=6), paths, labels, tmp_path / "m.pt",
                           seed=0)
    assert meta["train_acc_clean"] >= 0.75, meta["history"]  # chance is 0.25


def test_checkpoint_errors(tiny_set, tmp_path):
    spec = _spec("small_cnn")
    missing = tmp_path / "absent.pt"
    with pytest.raises(MissingWeightsError, match=r"absent\.pt not found.*train_extractor"):
        build_extractor("cnn", spec, checkpoint=missing)
    with pytest.raises(ConfigError, match="pass its checkpoint"):
        build_extractor("cnn", spec)

    # A pickle with code in it is refused by weights_only=True, with the file named.
    evil = tmp_path / "evil.pt"
    torch.save({"model": Image.new("RGB", (2, 2))}, evil)
    with pytest.raises(MissingWeightsError, match=r"evil\.pt.*weights_only=True"):
        build_extractor("cnn", spec, checkpoint=evil)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a torch file")
    with pytest.raises(MissingWeightsError, match="garbage.pt"):
        build_extractor("cnn", spec, checkpoint=garbage)

    # A checkpoint of the other generation does not fit.
    other = tmp_path / "resnet.pt"
    torch.save(build_extractor.__globals__["extractor_class"]("resnet_face")("r").state_dict(), other)
    with pytest.raises(MissingWeightsError, match="does not fit this architecture"):
        build_extractor("cnn", spec, checkpoint=other)


def test_bad_training_settings(tiny_set, tmp_path):
    paths, labels = tiny_set
    with pytest.raises(ConfigError, match=r"extractors\.gen\.train: unknown keys \['epoch'\]"):
        train_extractor("gen", {"type": "small_cnn", "train": {"epoch": 3}}, paths, labels,
                        tmp_path / "x.pt", seed=0)
    with pytest.raises(ConfigError, match=r"extractors\.gen\.train\.augmentation"):
        train_extractor("gen", _spec("small_cnn", augmentation="heavy"), paths, labels,
                        tmp_path / "x.pt", seed=0)
    with pytest.raises(ConfigError, match="not trained in the pipeline"):
        train_extractor("gen", {"type": "dlib_resnet"}, paths, labels, tmp_path / "x.pt", seed=0)
    with pytest.raises(DataError, match="at least 2 identities"):
        train_extractor("gen", _spec("small_cnn"), paths[:6], labels[:6], tmp_path / "x.pt", seed=0)
    assert not (tmp_path / "x.pt").exists()


def test_margin_heads():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(5, 16, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1])
    for cls, m in ((CosFaceHead, 0.35), (ArcFaceHead, 0.5)):
        head = cls(16, 3, scale=10.0, margin=m, generator=torch.Generator().manual_seed(1))
        logits, plain = head(emb, y)
        cos = head.cosine(emb)
        assert torch.allclose(plain, 10 * cos)
        target = logits.gather(1, y[:, None]).squeeze(1)
        assert (target < plain.gather(1, y[:, None]).squeeze(1)).all()  # margin penalises
        others = torch.ones_like(logits, dtype=torch.bool).scatter_(1, y[:, None], False)
        assert torch.allclose(logits[others], plain[others])
    head = CosFaceHead(16, 3, scale=10.0, margin=0.35)
    assert torch.allclose(head(emb, y)[0].gather(1, y[:, None]),
                          10 * (head.cosine(emb).gather(1, y[:, None]) - 0.35))


@pytest.mark.parametrize("kind", ["none", "flip", "strong"])
def test_augment_is_seeded(kind):
    x = torch.rand(4, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    a = augment(x, kind, 64, torch.Generator().manual_seed(3))
    b = augment(x, kind, 64, torch.Generator().manual_seed(3))
    assert a.shape == (4, 3, 64, 64) and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
