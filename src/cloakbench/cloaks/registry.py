"""Name -> class registry of cloak types."""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import ConfigError
from ..extractors.base import Extractor
from .base import Cloak

CLOAK_TYPES: dict[str, type[Cloak]] = {}


def register_cloak(cls: type[Cloak]) -> type[Cloak]:
    if not cls.type_name:
        raise ValueError(f"{cls.__name__} has no type_name")
    CLOAK_TYPES[cls.type_name] = cls
    return cls


def cloak_class(type_name: str, *, name: str = "?") -> type[Cloak]:
    _import_builtin()
    try:
        return CLOAK_TYPES[type_name]
    except KeyError:
        raise ConfigError(f"cloaks.{name}.type: unknown cloak type '{type_name}'. "
                          f"Known types: {', '.join(sorted(CLOAK_TYPES))}") from None


def build_cloak(name: str, spec: dict[str, Any], extractors: Sequence[Extractor], *,
                seed: int, device: str = "cpu") -> Cloak:
    cls = cloak_class(spec.get("type", ""), name=name)
    params = dict(spec.get("params") or {})
    try:
        return cls(extractors, seed=seed, device=device, **params)
    except TypeError as exc:  # unknown keyword -> say which key
        raise ConfigError(f"cloaks.{name}.params: {exc}") from None


def _import_builtin() -> None:
    # Importing the modules registers their classes.
    from . import external, fawkes_v03, fawkes_v10, lowkey, pgd  # noqa: F401
