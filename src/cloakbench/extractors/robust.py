"""The extractor type ``robust``: a base extractor with the weights of the adaptive trainer.

The adaptive trainer (:mod:`cloakbench.adaptive.robust`) fine-tunes a differentiable
configured extractor on clean and self-cloaked pictures of the public identities (rule
``robust_train``); this class is the model it produces, loaded from its checkpoint
(``results/extractors/<name>.pt``, a plain state dict of the base architecture, with
``.json`` metadata beside it), so ``embed`` -> ``evaluate`` treat it like any extractor::

    extractors:
      sface_robust:
        type: robust
        base: sface           # a differentiable configured extractor to start from
        cloaks: [pgd]         # the cloaks the trainer has
        train: {epochs: 10}

The model layer knows nothing of the training: the trainer imports this module, never the
reverse.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, MissingWeightsError
from .base import Extractor, ExtractorInfo, date_str
from .registry import EXTRACTORS, register_extractor


@register_extractor
class RobustExtractor(Extractor):
    """A base extractor whose weights come from ``robust_train`` (type ``robust``).

    Preprocessing, input size and embedding width are the base's; ``forward`` is the base's.
    """

    type_name = "robust"
    spec_keys = ("base", "cloaks", "base_spec")  # base_spec: filled in by the plan
    family = "robust fine-tune (adaptive trainer)"
    differentiable = True
    trained_in_pipeline = True

    def __init__(self, name: str, spec: dict[str, Any] | None, base: Extractor):
        super().__init__(name, spec)
        self.base = base
        self.input_size = base.input_size
        self.embedding_dim = base.embedding_dim

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.preprocess(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.embed(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x)

    @staticmethod
    def base_of(name: str, spec: dict[str, Any], checkpoint: str | Path | None = None
                ) -> tuple[str, dict[str, Any]]:
        """(base name, base spec): from ``spec['base_spec']`` or else the checkpoint's metadata."""
        base = spec.get("base")
        base_spec = spec.get("base_spec")
        if base_spec is None and checkpoint is not None:
            meta_path = Path(checkpoint).with_suffix(".json")
            if meta_path.is_file():
                meta = json.loads(meta_path.read_text())
                base, base_spec = meta.get("base", base), meta.get("base_spec")
        if not base or not isinstance(base_spec, dict):
            raise ConfigError(f"extractor '{name}' (robust): cannot tell its base architecture; set "
                              f"extractors.{name}.base (the workflow fills base_spec from it)")
        return base, base_spec

    @classmethod
    def from_checkpoint(cls, name: str, spec: dict[str, Any], path: str | Path) -> "RobustExtractor":
        path = Path(path)
        how = f"it is produced by the robust_train rule (snakemake results/extractors/{name}.pt)"
        if not path.is_file():
            raise MissingWeightsError(f"extractor '{name}' (robust): checkpoint {path} not found; {how}.")
        base_name, base_spec = cls.base_of(name, spec, path)
        base = EXTRACTORS.get(base_spec.get("type", ""), name=base_name)(base_name, base_spec)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise MissingWeightsError(f"extractor '{name}' (robust): cannot read {path} as a state dict "
                                      f"with torch.load(weights_only=True): {exc}. Delete it; {how}.") from exc
        if not isinstance(state, dict):
            raise MissingWeightsError(f"extractor '{name}' (robust): {path} is not a state dict; {how}.")
        try:
            base.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise MissingWeightsError(f"extractor '{name}' (robust): {path} does not fit base "
                                      f"'{base_name}' ({base_spec.get('type')}): {exc}. Delete it; {how}.") from exc
        return cls(name, spec, base).eval()

    @classmethod
    def describe(cls, name: str, spec: dict[str, Any]) -> ExtractorInfo:
        base_spec = spec.get("base_spec") or {}
        try:
            b = EXTRACTORS.get(base_spec.get("type", ""), name=str(spec.get("base")))
        except ConfigError:
            b = None
        return ExtractorInfo(
            name=name, type=cls.type_name,
            family=f"{cls.family} of {b.family if b else spec.get('base')}",
            input_size=b.input_size if b else cls.input_size,
            mean=tuple(b.mean if b else cls.mean), std=tuple(b.std if b else cls.std),
            embedding_dim=b.embedding_dim if b else 0,
            release_date=date_str(spec.get("release_date")), differentiable=True,
            trained_in_pipeline=True,
            extra={"base": spec.get("base"), "base_type": base_spec.get("type"),
                   "cloaks": list(spec.get("cloaks") or [])},
        )
