"""Declared parameters: one declaration per hyperparameter drives validation, defaults,
mode presets, the record and the description.

A plugin class lists its parameters once::

    params = (
        Param("mode", str, "high", choices=("low", "high"), deviation=False,
              doc="preset of rho and steps"),
        Param("rho", float, FROM_MODE, gt=0, lt=1, doc="DSSIM budget"),
        Param("steps", int, FROM_MODE, ge=1, doc="optimisation steps"),
        Param("penalty", float, 1e6, ge=0, doc="weight of the squared budget excess"),
    )
    modes = {"low": {"rho": 0.003, "steps": 50}, "high": {"rho": 0.008, "steps": 500}}

and :func:`resolve` turns the config's ``params`` mapping into checked values: unknown keys
are rejected (listing the known ones), each value must have the declared type and range
(``"ten"`` for an integer is ``must be an integer >= 1, got 'ten'``, naming the config key),
``FROM_MODE`` parameters left out or ``null`` take the mode's preset, and the names whose
value differs from the declared reference (the preset or the default, which each plugin
declares as the original's value and documents where it is not) are returned as
``overridden``, the record's list of deviations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from .errors import ConfigError


class _Marker:
    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


#: Default of a parameter that must be given.
REQUIRED: Any = _Marker("REQUIRED")
#: Default of a parameter whose value comes from the mode preset (when left out or null).
FROM_MODE: Any = _Marker("FROM_MODE")

_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
               list: "a list"}
_TYPE_NAMES = {int: "integer", float: "number", bool: "boolean", str: "string", list: "list"}


def _fmt(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class Param:
    """One hyperparameter: name, type (int, float, bool, str), default and accepted values.

    ``gt``/``ge``/``lt``/``le``: numeric bounds; ``choices``: the accepted values;
    ``nullable``: ``null`` is accepted (and kept); ``check`` with ``accepted``: a further
    condition and the words that describe what passes it; ``deviation``: a value other
    than the declared default (the original's) is listed in ``overridden`` (False for execution settings and
    file paths, which do not change the algorithm).
    """

    name: str
    type: type
    default: Any = REQUIRED
    doc: str = ""
    choices: tuple | None = None
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    nullable: bool = False
    check: Callable[[Any], bool] | None = None
    accepted: str | None = None
    deviation: bool = True

    def __post_init__(self) -> None:
        if self.type not in _TYPE_WORDS:
            raise TypeError(f"Param {self.name}: type must be one of int, float, bool, str, list")

    # -- words ---------------------------------------------------------------------
    def accepted_text(self) -> str:
        """What passes, in words (used in every error about this parameter)."""
        if self.accepted:
            text = self.accepted
        elif self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            text = _TYPE_WORDS[self.type]
            low = (f"({_fmt(self.gt)}" if self.gt is not None
                   else f"[{_fmt(self.ge)}" if self.ge is not None else None)
            high = (f"{_fmt(self.lt)})" if self.lt is not None
                    else f"{_fmt(self.le)}]" if self.le is not None else None)
            if low and high:
                text += f" in {low}, {high}"
            elif low:
                text += (" > " if low[0] == "(" else " >= ") + low[1:]
            elif high:
                text += (" < " if high[-1] == ")" else " <= ") + high[:-1]
        return f"null or {text}" if self.nullable else text

    # -- checks --------------------------------------------------------------------
    def is_valid(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        t = self.type
        if t is bool:
            ok = isinstance(value, bool)
        elif t is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif t is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif t is list:
            ok = isinstance(value, (list, tuple))
        else:
            ok = isinstance(value, str)
        if not ok:
            return False
        if self.choices is not None and value not in self.choices:
            return False
        if t in (int, float):
            if self.gt is not None and not value > self.gt:
                return False
            if self.ge is not None and not value >= self.ge:
                return False
            if self.lt is not None and not value < self.lt:
                return False
            if self.le is not None and not value <= self.le:
                return False
        return self.check is None or bool(self.check(value))

    def validate(self, value: Any, *, where: str, owner: str = "") -> Any:
        """The checked value (numbers of a ``float`` parameter as float), or a ConfigError."""
        if not self.is_valid(value):
            who = f" ({owner})" if owner else ""
            raise ConfigError(f"{where}.{self.name}{who}: must be {self.accepted_text()}, "
                              f"got {value!r}")
        if value is not None and self.type is float:
            return float(value)
        return value

    # -- description ---------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """JSON-safe description (for ``describe()`` and documentation)."""
        out: dict[str, Any] = {"name": self.name, "type": _TYPE_NAMES[self.type],
                               "accepted": self.accepted_text(), "doc": self.doc}
        if self.default is REQUIRED:
            out["required"] = True
        elif self.default is FROM_MODE:
            out["default"] = "from mode"
        else:
            out["default"] = self.default
        if self.choices is not None:
            out["choices"] = list(self.choices)
        out["deviation"] = self.deviation
        return out


def check_declaration(params: Sequence[Param], modes: Mapping[str, Mapping[str, Any]] | None,
                      owner: str, reserved: Sequence[str] = ()) -> None:
    """Catch mistakes in a class's declaration when the class is defined."""
    names = [p.name for p in params]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise TypeError(f"{owner}: parameters declared twice: {dup}")
    clash = sorted(set(names) & set(reserved))
    if clash:
        raise TypeError(f"{owner}: parameter names {clash} are reserved")
    by_name = {p.name: p for p in params}
    from_mode = [p.name for p in params if p.default is FROM_MODE]
    if from_mode and not modes:
        raise TypeError(f"{owner}: {from_mode} take their default from a mode, but no modes")
    if modes:
        if "mode" not in by_name or by_name["mode"].choices is None:
            raise TypeError(f"{owner}: modes need a 'mode' parameter with choices")
        if set(by_name["mode"].choices) != set(modes):
            raise TypeError(f"{owner}: the 'mode' choices differ from the modes table")
        for mode, preset in modes.items():
            if set(preset) != set(from_mode):
                raise TypeError(f"{owner}: mode '{mode}' sets {sorted(preset)}, but the "
                                f"FROM_MODE parameters are {sorted(from_mode)}")
            for key, value in preset.items():
                if not by_name[key].is_valid(value):
                    raise TypeError(f"{owner}: mode '{mode}' sets {key}={value!r}, which is not "
                                    f"{by_name[key].accepted_text()}")


def resolve(params: Sequence[Param], modes: Mapping[str, Mapping[str, Any]] | None,
            given: Mapping[str, Any] | None, *, where: str, owner: str = ""
            ) -> tuple[dict[str, Any], list[str]]:
    """Checked values of every declared parameter (declaration order) and ``overridden``.

    ``where``: the config key of the mapping (``cloaks.fawkes.params``), used in every
    message; ``owner``: what declares them (``cloak type 'fawkes_v03'``).
    """
    given = {} if given is None else given
    who = f" ({owner})" if owner else ""
    if not isinstance(given, Mapping):
        raise ConfigError(f"{where}{who}: a mapping of parameter names to values, got {given!r}")
    known = [p.name for p in params]
    unknown = [k for k in given if k not in known]
    if unknown:
        raise ConfigError(f"{where}{who}: unknown key(s) {', '.join(map(repr, unknown))}; "
                          f"known keys: {', '.join(known) or 'none'}")
    preset: Mapping[str, Any] = {}
    if modes:
        mode_param = next(p for p in params if p.name == "mode")
        mode = mode_param.validate(given.get("mode", mode_param.default), where=where,
                                   owner=owner)
        preset = modes[mode]
    values: dict[str, Any] = {}
    overridden: list[str] = []
    for p in params:
        raw = given.get(p.name)
        if p.default is FROM_MODE:
            reference = preset[p.name]
            value = reference if raw is None else raw
        elif p.name not in given:
            if p.default is REQUIRED:
                raise ConfigError(f"{where}.{p.name}{who}: required ({p.doc or p.accepted_text()})")
            reference = value = p.default
        else:
            reference, value = p.default, raw
        values[p.name] = p.validate(value, where=where, owner=owner)
        if p.deviation and value != reference:
            overridden.append(p.name)
    return values, overridden
