"""The cloak types (a :class:`~cloakbench.registry.Registry`) and construction from the config.

Imports no cloak module: ``cloakbench/cloaks/__init__`` imports the built-in ones, which
register themselves with :func:`register_cloak`; plugin modules do the same.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..extractors.base import Extractor
from ..registry import Registry
from .base import Cloak

CLOAKS: Registry[type[Cloak]] = Registry("cloak", "cloaks")
register_cloak = CLOAKS.register
# cloak_class(type_name, name=<config entry>): the class of ``cloaks.<name>.type``
# (ConfigError naming the key if unknown)
cloak_class = CLOAKS.get


def build_cloak(name: str, spec: dict[str, Any], extractors: Sequence[Extractor], *,
                seed: int, device: str = "cpu") -> Cloak:
    """The configured cloak ``name`` over its ensemble (``extractors``, already built)."""
    cls = cloak_class(spec.get("type", ""), name=name)
    params = dict(spec.get("params") or {})
    cls.validate_params(params, where=cls.params_key(name))  # unknown keys (even 'seed') named
    return cls(extractors, seed=seed, device=device, name=name, **params)
