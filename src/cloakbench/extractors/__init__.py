"""Feature extractors: a registry where a new model is one class plus one config entry."""

from .base import Extractor, ExtractorInfo, resolve_weights
from .registry import EXTRACTOR_TYPES, build_extractor, extractor_class, register_extractor

__all__ = ["Extractor", "ExtractorInfo", "resolve_weights", "EXTRACTOR_TYPES", "build_extractor",
           "extractor_class", "register_extractor"]
