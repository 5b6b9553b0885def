"""Cloaks (adversarial perturbations applied by users before posting photos)."""

from .base import Cloak
from .registry import CLOAK_TYPES, build_cloak, cloak_class, register_cloak

__all__ = ["Cloak", "CLOAK_TYPES", "build_cloak", "cloak_class", "register_cloak"]
