"""The extractor types (a :class:`~cloakbench.registry.Registry`) and construction from the config.

Imports no model module: ``cloakbench/extractors/__init__`` imports the built-in ones, which
register themselves with :func:`register_extractor`; plugin modules do the same.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError
from ..registry import Registry
from .base import Extractor

EXTRACTORS: Registry[type[Extractor]] = Registry("extractor", "extractors")
register_extractor = EXTRACTORS.register
# extractor_class(type_name, name=<config entry>): the class of ``extractors.<name>.type``
# (ConfigError naming the key if unknown)
extractor_class = EXTRACTORS.get


def describe_extractor(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """What a record says of extractor ``name`` (``Extractor.describe`` as a plain dict), from
    its class and config entry, without building the model."""
    return dataclasses.asdict(extractor_class(spec.get("type", ""), name=name).describe(name, spec))


def build_extractor(name: str, spec: dict[str, Any], *, checkpoint: str | Path | None = None,
                    device: str = "cpu") -> Extractor:
    """Instantiate the configured extractor ``name`` in eval mode.

    ``checkpoint`` is the state-dict file produced by ``train_extractor`` for
    extractors trained in the pipeline (required for those, ignored otherwise).
    """
    cls = extractor_class(spec.get("type", ""), name=name)
    if cls.trained_in_pipeline:
        if checkpoint is None:
            raise ConfigError(f"extractor '{name}' is trained in the pipeline; pass its checkpoint")
        model = cls.from_checkpoint(name, spec, checkpoint)  # type: ignore[attr-defined]
    else:
        model = cls(name, spec)
    return model.to(device).eval()


def extractor_loader(extractors_cfg: dict[str, dict[str, Any]], checkpoints: dict[str, str] | None = None,
                     device: str = "cpu") -> Callable[[str], Extractor]:
    """A cached ``name -> Extractor`` function over the configured extractors."""
    cache: dict[str, Extractor] = {}
    checkpoints = dict(checkpoints or {})

    def load(name: str) -> Extractor:
        if name not in cache:
            if name not in extractors_cfg:
                raise ConfigError(f"unknown extractor '{name}' (configured: {', '.join(extractors_cfg)})")
            cache[name] = build_extractor(name, extractors_cfg[name], checkpoint=checkpoints.get(name),
                                          device=device)
        return cache[name]

    return load
