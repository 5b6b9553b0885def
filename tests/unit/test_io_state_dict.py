"""Checkpoints are byte-for-byte reproducible: the same tensors give the same file (and sha256,
which the checkpoint's .json and DVC record), whatever temporary name the atomic write used."""
from __future__ import annotations

import hashlib

import torch

from cloakbench.io import write_state_dict


def test_equal_state_dicts_give_equal_bytes(tmp_path):
    g = torch.Generator().manual_seed(0)
    state = {"w": torch.randn(4, 3, generator=g), "b": torch.zeros(3)}
    write_state_dict(state, tmp_path / "a" / "model.pt")
    write_state_dict({k: v.clone() for k, v in state.items()}, tmp_path / "b" / "model.pt")
    a, b = (tmp_path / "a" / "model.pt").read_bytes(), (tmp_path / "b" / "model.pt").read_bytes()
    assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest()
    back = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    assert set(back) == {"w", "b"} and torch.equal(back["w"], state["w"])
    assert not list((tmp_path / "a").glob(".*tmp*"))  # no temporary file left behind


def test_different_tensors_give_different_bytes(tmp_path):
    write_state_dict({"w": torch.zeros(3)}, tmp_path / "x.pt")
    write_state_dict({"w": torch.ones(3)}, tmp_path / "y.pt")
    assert (tmp_path / "x.pt").read_bytes() != (tmp_path / "y.pt").read_bytes()
