"""Shared base of the extractors that the pipeline trains itself (rule ``train_extractor``).

Why a base class: every in-pipeline generation needs the same three things beyond its
architecture:

* deterministic initialisation from a ``torch.Generator`` (``init_weights``), so that training
  with a seed never depends on the global RNG or on what ran before in the process (for the
  same reason the architectures have no dropout layers: regularisation comes from BN, weight
  decay and augmentation);
* ``from_checkpoint``: load a plain state dict with ``torch.load(weights_only=True)`` (no
  pickled code is ever executed) and turn every failure into a :class:`MissingWeightsError`
  that names the file and the rule that makes it;
* ``augmentation``: the default augmentation of its generation (weak for early models,
  stronger for later ones), used by :mod:`.training` unless ``train.augmentation`` overrides it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import MissingWeightsError
from .base import Extractor


class TrainedExtractor(Extractor):
    """An extractor whose weights come from ``extractors/training.py``."""

    trained_in_pipeline = True
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)
    embedding_dim = 128
    # Default augmentation of this generation: "flip" (weak) or "strong".
    augmentation: ClassVar[str] = "flip"

    def init_weights(self, generator: torch.Generator) -> None:
        """Kaiming init for convolutions/linears, identity BN, drawn only from ``generator``."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu",
                                        generator=generator)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                if module.weight is not None:
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.PReLU):
                nn.init.constant_(module.weight, 0.25)

    @classmethod
    def from_checkpoint(cls, name: str, spec: dict[str, Any], path: str | Path) -> "TrainedExtractor":
        """Build the architecture and load the state dict saved by ``train_extractor``."""
        path = Path(path)
        how = (f"it is produced by the train_extractor rule "
               f"(snakemake results/extractors/{name}.pt)")
        if not path.is_file():
            raise MissingWeightsError(
                f"extractor '{name}' ({cls.type_name}): checkpoint {path} not found; {how}.")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling error, truncated file, not a torch file
            raise MissingWeightsError(
                f"extractor '{name}' ({cls.type_name}): cannot read checkpoint {path} as a "
                f"state dict with torch.load(weights_only=True): {exc}. Delete it; {how}.") from exc
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise MissingWeightsError(
                f"extractor '{name}' ({cls.type_name}): {path} is not a state dict of tensors; {how}.")
        model = cls(name, spec)
        missing, unexpected = _key_diff(model.state_dict(), state)
        wrong_shape = [k for k, v in state.items()
                       if k in model.state_dict() and model.state_dict()[k].shape != v.shape]
        if missing or unexpected or wrong_shape:
            raise MissingWeightsError(
                f"extractor '{name}' ({cls.type_name}): checkpoint {path} does not fit this "
                f"architecture (missing keys {missing[:5]}, unexpected keys {unexpected[:5]}, "
                f"wrong shapes {wrong_shape[:5]}). Was it trained for another extractor type? "
                f"Delete it; {how}.")
        model.load_state_dict(state, strict=True)
        return model.eval()


def _key_diff(expected: dict[str, torch.Tensor], got: dict[str, Any]) -> tuple[list[str], list[str]]:
    return sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
