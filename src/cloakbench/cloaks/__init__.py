"""Cloaks (adversarial perturbations applied by users before posting photos).

Importing the package registers the built-in cloak types (one module each); the registry
and factory live in :mod:`.registry`, the base class and its contract in :mod:`.base`.
"""

from . import external, fawkes_v03, fawkes_v10, lowkey, pgd  # noqa: F401  (register the built-ins)
from .base import Cloak
from .registry import CLOAKS, build_cloak, cloak_class, register_cloak

__all__ = ["Cloak", "CLOAKS", "build_cloak", "cloak_class", "register_cloak"]
