"""Declared parameters (cloakbench.params): words, checks, modes, deviations, declaration errors."""

import pytest

from cloakbench.cloaks.base import Cloak
from cloakbench.errors import ConfigError
from cloakbench.params import FROM_MODE, REQUIRED, Param, resolve

PARAMS = (
    Param("mode", str, "fast", choices=("fast", "slow"), deviation=False),
    Param("steps", int, FROM_MODE, ge=1),
    Param("rate", float, 0.5, gt=0, le=1),
    Param("flag", bool, True),
    Param("size", int, None, ge=32, nullable=True),
    Param("path", str, REQUIRED, deviation=False),
)
MODES = {"fast": {"steps": 5}, "slow": {"steps": 50}}


@pytest.mark.parametrize("param, words", [
    (PARAMS[1], "an integer >= 1"), (PARAMS[2], "a number in (0, 1]"),
    (PARAMS[3], "true or false"), (PARAMS[4], "null or an integer >= 32"),
    (PARAMS[0], "one of 'fast', 'slow'"), (Param("x", float, 1.0, lt=2), "a number < 2"),
    (Param("x", float, 1.0, ge=0, lt=1), "a number in [0, 1)"),
])
def test_accepted_words(param, words):
    assert param.accepted_text() == words


def test_resolve_fills_modes_converts_and_lists_deviations():
    values, overridden = resolve(PARAMS, MODES, {"path": "p"}, where="w")
    assert values == {"mode": "fast", "steps": 5, "rate": 0.5, "flag": True, "size": None,
                      "path": "p"} and overridden == []
    values, overridden = resolve(PARAMS, MODES, {"path": "p", "mode": "slow", "steps": None,
                                                 "rate": 1, "size": 64}, where="w")
    assert values["steps"] == 50 and values["rate"] == 1.0 and isinstance(values["rate"], float)
    assert overridden == ["rate", "size"]  # mode is a choice, not a deviation
    _, overridden = resolve(PARAMS, MODES, {"path": "p", "steps": 7, "rate": 0.5}, where="w")
    assert overridden == ["steps"]  # equal to the default is no deviation


@pytest.mark.parametrize("given, message", [
    ({"steps": "ten"}, r"w\.steps \(o\): must be an integer >= 1, got 'ten'"),
    ({"steps": True}, r"w\.steps .*got True"),          # a bool is not an integer
    ({"rate": 0}, r"w\.rate .*in \(0, 1\], got 0"),
    ({"flag": 1}, r"w\.flag .*true or false, got 1"),
    ({"size": 8}, r"w\.size .*null or an integer >= 32"),
    ({"mode": None}, r"w\.mode .*one of 'fast', 'slow', got None"),
    ({"colour": 1}, r"w \(o\): unknown key\(s\) 'colour'; known keys: mode, steps, rate"),
])
def test_errors_name_the_key_and_the_accepted_values(given, message):
    with pytest.raises(ConfigError, match=message):
        resolve(PARAMS, MODES, {"path": "p", **given}, where="w", owner="o")


def test_required_and_mapping():
    with pytest.raises(ConfigError, match=r"w\.path: required"):
        resolve(PARAMS, MODES, {}, where="w")
    with pytest.raises(ConfigError, match="a mapping"):
        resolve(PARAMS, MODES, ["steps"], where="w")


def test_declaration_mistakes_fail_when_the_class_is_defined():
    with pytest.raises(TypeError, match="declared twice"):
        class Twice(Cloak):
            params = (Param("a", int, 1), Param("a", int, 2))
    with pytest.raises(TypeError, match="reserved"):
        class Reserved(Cloak):
            params = (Param("seed", int, 1),)
    with pytest.raises(TypeError, match="mode 'slow' sets steps=0"):
        class BadPreset(Cloak):
            params = PARAMS[:2]
            modes = {"fast": {"steps": 5}, "slow": {"steps": 0}}
    with pytest.raises(TypeError, match="FROM_MODE"):
        class NoPreset(Cloak):
            params = PARAMS[:3]
            modes = {"fast": {}, "slow": {}}
