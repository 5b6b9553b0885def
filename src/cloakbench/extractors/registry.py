"""Name -> class registry of extractor types, and construction from the config."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError
from .base import Extractor

EXTRACTOR_TYPES: dict[str, type[Extractor]] = {}


def register_extractor(cls: type[Extractor]) -> type[Extractor]:
    if not cls.type_name:
        raise ValueError(f"{cls.__name__} has no type_name")
    if cls.type_name in EXTRACTOR_TYPES and EXTRACTOR_TYPES[cls.type_name] is not cls:
        raise ValueError(f"extractor type '{cls.type_name}' registered twice")
    EXTRACTOR_TYPES[cls.type_name] = cls
    return cls


def extractor_class(type_name: str, *, name: str = "?") -> type[Extractor]:
    _import_builtin()
    try:
        return EXTRACTOR_TYPES[type_name]
    except KeyError:
        raise ConfigError(
            f"extractors.{name}.type: unknown extractor type '{type_name}'. "
            f"Known types: {', '.join(sorted(EXTRACTOR_TYPES))}") from None


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


def _import_builtin() -> None:
    # Importing the modules registers their classes. Heavy third-party imports (dlib,
    # insightface, onnx2torch) happen inside the classes, so this stays cheap.
    from . import dlib_resnet, resnet, sface, sface_insightface, small_cnn  # noqa: F401
    from ..adaptive import robust  # noqa: F401  (type 'robust': the adaptive trainer's extractor)
    from . import paper  # noqa: F401  (MagFace, ArcFace ONNX, CLIP, FaceNet, evoLVe)


Factory = Callable[[str, dict[str, Any]], Extractor]


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
