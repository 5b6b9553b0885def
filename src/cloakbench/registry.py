"""Name -> class registries (extractor types, cloak types) and plugin modules.

One generic :class:`Registry` serves both kinds. This module imports no plugin: each
package registers its built-in classes when it is imported (``cloakbench/extractors/__init__``
imports its model modules, ``cloakbench/cloaks/__init__`` its cloak modules), and a plugin
module registers its own classes with the package's decorator::

    from cloakbench.cloaks.base import Cloak
    from cloakbench.cloaks.registry import register_cloak

    @register_cloak
    class MyCloak(Cloak):
        type_name = "my_cloak"
        ...

Plugin modules outside the package are named in the config (``plugins: [my_module]``):
:func:`import_plugins` imports them when the config is validated and records them in the
environment variable ``CLOAKBENCH_PLUGINS``, so the workflow's jobs (child processes)
import them too when they first look up a type they do not know.
"""

from __future__ import annotations

import importlib
import os
from typing import Generic, Iterator, Sequence, TypeVar

from .errors import ConfigError

T = TypeVar("T", bound=type)

#: Environment variable listing the plugin modules (comma-separated) a job imports.
PLUGINS_ENV = "CLOAKBENCH_PLUGINS"


class Registry(Generic[T]):
    """Classes of one kind, by their ``type_name`` (the config's ``type:``).

    ``kind`` is the word used in messages (``extractor``), ``config_key`` the config
    section whose entries name a type (``extractors``).
    """

    def __init__(self, kind: str, config_key: str):
        self.kind = kind
        self.config_key = config_key
        self._classes: dict[str, T] = {}

    def register(self, cls: T) -> T:
        """Class decorator: register ``cls`` under its ``type_name``.

        Registering the same class again is a no-op (a module imported twice); another
        class under a taken name is an error naming both.
        """
        name = getattr(cls, "type_name", "")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{cls.__name__} has no type_name; set it to the name the config's "
                             f"{self.config_key}.<name>.type uses")
        old = self._classes.get(name)
        if old is not None and old is not cls:
            raise ValueError(f"{self.kind} type '{name}' registered twice: by "
                             f"{old.__module__}.{old.__qualname__} and "
                             f"{cls.__module__}.{cls.__qualname__}")
        self._classes[name] = cls
        return cls

    def unregister(self, type_name: str) -> None:
        """Remove a type (tests that register toy classes clean up with it)."""
        self._classes.pop(type_name, None)

    def get(self, type_name: str, *, name: str = "?") -> T:
        """The class registered as ``type_name``; ``name`` is the config entry asking.

        An unknown type is a :class:`ConfigError` naming the config key and the known
        types. Plugin modules recorded in ``CLOAKBENCH_PLUGINS`` are imported first.
        """
        if type_name not in self._classes:
            import_plugins(plugins_from_env(), where=PLUGINS_ENV, record=False)
        try:
            return self._classes[type_name]
        except (KeyError, TypeError):
            raise ConfigError(
                f"{self.config_key}.{name}.type: unknown {self.kind} type {type_name!r}. "
                f"Known types: {', '.join(self.names())}. A type from a plugin module is "
                "known once the module is listed under `plugins:` in the config") from None

    def names(self) -> list[str]:
        return sorted(self._classes)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._classes.items())

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._classes

    def __getitem__(self, type_name: str) -> T:
        return self._classes[type_name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._classes)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"


def plugins_from_env() -> list[str]:
    return [m for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]


def import_plugins(modules: Sequence[str], *, where: str = "plugins", record: bool = True
                   ) -> list[str]:
    """Import plugin modules (their import registers their classes); return their names.

    ``record``: add them to ``CLOAKBENCH_PLUGINS`` so child processes (the workflow's jobs)
    import them too. A module that cannot be imported is a :class:`ConfigError` naming
    the config key and the reason.
    """
    if isinstance(modules, str) or not isinstance(modules, (list, tuple)):
        raise ConfigError(f"{where}: a list of module names, got {modules!r}")
    names = []
    for i, module in enumerate(modules):
        if not isinstance(module, str) or not module.strip():
            raise ConfigError(f"{where}[{i}]: a module name (e.g. my_plugins.cloaks), "
                              f"got {module!r}")
        module = module.strip()
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any failure: name the module and the cause
            raise ConfigError(
                f"{where}[{i}]: cannot import plugin module '{module}' ({type(exc).__name__}: "
                f"{exc}). Put the folder holding it on PYTHONPATH, or install it") from exc
        names.append(module)
    if record and names:
        known = plugins_from_env()
        os.environ[PLUGINS_ENV] = ",".join(known + [m for m in names if m not in known])
    return names
