"""Configuration: JSON-schema validation with defaults, then checks the schema cannot express.

Everything here runs when the Snakefile is parsed, so a bad config fails before any job
starts, with a message naming the key (or path) at fault.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import ConfigError
from .registry import import_plugins

_Draft = jsonschema.Draft202012Validator


def _with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_DefaultFilling = _with_defaults(_Draft)


def load_schema(path: str | Path) -> dict[str, Any]:
    with open(path) as fh:
        return yaml.safe_load(fh)


def _normalise_dates(obj: Any) -> Any:
    # YAML parses 2021-12-01 as a date; the schema (and records) use ISO strings.
    if isinstance(obj, dict):
        return {k: _normalise_dates(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_normalise_dates(v) for v in obj]
    if isinstance(obj, (dt.date, dt.datetime)):
        return obj.isoformat()[:10]
    return obj


def validate_config(config: dict[str, Any], schema: dict[str, Any] | str | Path, *,
                    base_dir: str | Path = ".", check_paths: bool = True) -> dict[str, Any]:
    """Return a validated copy of ``config`` with schema defaults filled in.

    Raises :class:`ConfigError` naming the offending key.
    """
    if not isinstance(schema, dict):
        schema = load_schema(schema)
    cfg = _normalise_dates(copy.deepcopy(dict(config)))
    validator = _DefaultFilling(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        key = ".".join(str(p) for p in e.absolute_path) or "<top level>"
        raise ConfigError(f"config key '{key}': {e.message}")
    # Fill defaults of nested additionalProperties (extractor/cloak entries) too.
    validator.validate(cfg)
    import_plugins(cfg.get("plugins") or [], where="plugins")  # registers their types
    check_semantics(cfg, base_dir=Path(base_dir), check_paths=check_paths)
    check_declared_params(cfg)
    return cfg


def _check_date(value: Any, key: str) -> None:
    if value is None:
        return
    try:
        dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"config key '{key}': '{value}' is not a YYYY-MM-DD date") from None


#: the keys of a `cloaks.<name>` entry (the cloak's hyperparameters are under `params`)
CLOAK_ENTRY_KEYS = ("type", "ensemble", "release_date", "params")


def check_semantics(cfg: dict[str, Any], *, base_dir: Path, check_paths: bool = True) -> None:
    from .cloaks.registry import cloak_class
    from .extractors.registry import extractor_class

    for name, spec in cfg["extractors"].items():
        extractor_class(spec["type"], name=name)
        _check_date(spec.get("release_date"), f"extractors.{name}.release_date")
    for name, spec in cfg.get("cloaks", {}).items():
        cls = cloak_class(spec["type"], name=name)
        unknown = sorted(set(spec) - set(CLOAK_ENTRY_KEYS))
        if unknown:
            raise ConfigError(f"cloaks.{name}: unknown key(s) {', '.join(map(repr, unknown))}; a cloak entry "
                              f"takes {', '.join(CLOAK_ENTRY_KEYS)} (its hyperparameters go under params:)")
        _check_date(spec.get("release_date"), f"cloaks.{name}.release_date")
        for member in spec.get("ensemble", []):
            if member not in cfg["extractors"]:
                raise ConfigError(f"cloaks.{name}.ensemble: unknown extractor '{member}' "
                                  f"(configured: {', '.join(cfg['extractors'])})")
            ex_cls = extractor_class(cfg["extractors"][member]["type"], name=member)
            if cls.needs_gradients and not ex_cls.differentiable:
                raise ConfigError(
                    f"cloaks.{name}.ensemble: extractor '{member}' ({ex_cls.type_name}) is not "
                    "differentiable, so a gradient-based cloak cannot use it")
        if cls.needs_gradients and not spec.get("ensemble"):
            raise ConfigError(f"cloaks.{name}.ensemble: a '{spec['type']}' cloak needs at least one extractor")
    if check_paths:
        missing = missing_inputs(cfg, base_dir=base_dir)
        if missing:
            raise ConfigError("missing inputs:\n  " + "\n  ".join(missing))


def check_declared_params(cfg: dict[str, Any]) -> None:
    """Each cloak's ``params`` against its class's declaration (types, ranges, modes, unknown
    keys) and each in-pipeline extractor's ``train`` settings: no weights, before any job."""
    from .cloaks.registry import cloak_class
    from .extractors.base import SPEC_KEYS
    from .extractors.registry import extractor_class
    from .extractors.trained import TrainedExtractor
    from .extractors.training import train_settings
    from .params import resolve

    for name, spec in cfg.get("cloaks", {}).items():
        values = cloak_class(spec["type"], name=name).validate_params(
            spec.get("params") or {}, where=f"cloaks.{name}.params",
            ensemble=list(spec.get("ensemble") or []))
        if values.get("candidate_role") == "target_pool" and not cfg.get("users", {}).get("target_pool"):
            raise ConfigError(
                f"cloaks.{name}.params.candidate_role: 'target_pool' (Fawkes v0.3 draws its target "
                "among identities that are not classes of the tracker's model) needs identities "
                "reserved for it: set users.target_pool (a number, e.g. 10, or a list of names), "
                "or set candidate_role: public (a recorded deviation)")
    for name, spec in cfg["extractors"].items():
        cls = extractor_class(spec["type"], name=name)
        accepted = SPEC_KEYS + tuple(cls.spec_keys)
        unknown = sorted(set(spec) - set(accepted))
        if unknown:
            raise ConfigError(f"extractors.{name}: unknown key(s) {', '.join(unknown)} for extractor type "
                              f"'{cls.type_name}' (accepted: {', '.join(accepted)})")
        if cls.params or spec.get("params") is not None:
            resolve(cls.params, None, spec.get("params"), where=f"extractors.{name}.params",
                    owner=f"extractor type '{cls.type_name}'")
        if issubclass(cls, TrainedExtractor):
            train_settings(name, spec, cls)


def missing_inputs(cfg: dict[str, Any], *, base_dir: str | Path = ".") -> list[str]:
    """Files and folders the config names that are not there, one message per item.

    The dataset folder (unless the demo generates it) and every configured weight file
    (``extractors.*.weights``, ``cloaks.*.params.*_weights``). Each message names the key.
    """
    base_dir = Path(base_dir)

    def absent(value: Any) -> Path | None:
        path = Path(str(value)).expanduser()
        path = path if path.is_absolute() else base_dir / path
        return None if path.exists() else path

    out = []
    if not cfg["demo"]["enabled"] and (p := absent(cfg["dataset"]["root"])):
        out.append(f"config key 'dataset.root': folder {p} does not exist "
                   "(point it at your dataset, `dvc pull` it, or set demo.enabled: true)")
    for name, spec in cfg["extractors"].items():
        if spec.get("weights") and (p := absent(spec["weights"])):
            out.append(f"config key 'extractors.{name}.weights': weight file {p} not found")
    for name, spec in cfg.get("cloaks", {}).items():
        for key, value in (spec.get("params") or {}).items():
            if key.endswith("_weights") and value and (p := absent(value)):
                out.append(f"config key 'cloaks.{name}.params.{key}': weight file {p} not found")
    return out
