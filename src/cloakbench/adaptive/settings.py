"""The ``adaptive:`` config section: semantic checks the JSON schema cannot express.

Called once, by :func:`cloakbench.plan.build_plan` when the workflow is parsed, so a wrong name
fails before any job starts, with a message naming the key. Also checks every extractor entry
of type ``robust`` (see :func:`.robust.expand_robust_specs`); the plan records each one's base
spec.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..extractors.registry import extractor_class
from . import _train
from .detection import NEEDS_EXTRACTOR, detector_settings
from .finetune import VARIANTS
from .robust import expand_robust_specs, facecure_cloaks


def _names(value: Any, known: list[str], key: str, what: str) -> list[str]:
    if value is None:
        return list(known)
    for v in value:
        if v not in known:
            raise ConfigError(f"{key}: unknown {what} '{v}' (configured: {', '.join(known) or 'none'})")
    return list(value)


def _pairs(entries: Any, keys: tuple[str, str], known: list[str], key: str, what: str) -> list[tuple[str, str]]:
    """``key``'s list of two-name entries (``keys``), each name one of ``known`` and the two distinct."""
    pairs = []
    for i, entry in enumerate(entries or []):
        for k in keys:
            if entry.get(k) not in known:
                raise ConfigError(f"{key}[{i}].{k}: unknown {what} {entry.get(k)!r} "
                                  f"(configured: {', '.join(known) or 'none'})")
        first, second = entry[keys[0]], entry[keys[1]]
        if first == second:
            raise ConfigError(f"{key}[{i}]: {keys[0]} and {keys[1]} are the same {what} '{first}'")
        pairs.append((first, second))
    return pairs


def _require_differentiable(config: dict[str, Any], name: str, key: str) -> None:
    """Refuse, naming ``key``, an extractor that cannot be fine-tuned end to end (a black box)."""
    cls = extractor_class(config["extractors"][name]["type"], name=name)
    if not cls.differentiable:
        raise ConfigError(f"{key}: '{name}' ({cls.type_name}) is not differentiable, so it cannot be "
                          "fine-tuned end to end")


def _variants(value: Any) -> list[str]:
    value = ["oblivious"] if value is None else value
    bad = [v for v in value if v not in VARIANTS]
    if bad or not value or len(set(value)) != len(value):
        raise ConfigError(f"adaptive.finetune.variants: distinct names among {list(VARIANTS)}, got {value!r}")
    return list(value)


def check_adaptive_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate ``config['adaptive']`` (defaults already filled by the schema) and the robust
    extractor entries. Returns the resolved plan::

        {robust: {name: {base, base_spec, cloaks, train}},
         finetune: {extractors, cloaks, train, variants, adaptive_cloaks}, detection: {detectors: {name: settings},
         train_cloaks, test_cloaks}, timetravel: {pairs: [(old, new)], switch_fraction,
         extractors}, combine: {pairs: [(accurate, robust)], cloaks, quantile, sweep},
         public_cloaks: cloaks whose `public` subset must be perturbed}
    """
    a = config.get("adaptive") or {}
    extractors = list(config["extractors"])
    cloaks = list(config.get("cloaks") or {})
    robust = expand_robust_specs(config)

    ft = a.get("finetune") or {}
    finetune = {
        "extractors": _names(ft.get("extractors") or [], extractors, "adaptive.finetune.extractors", "extractor"),
        "cloaks": _names(ft.get("cloaks"), ["none"] + cloaks, "adaptive.finetune.cloaks", "cloak"),
        "train": _train.train_settings(ft.get("train"), "adaptive.finetune.train"),
        "variants": _variants(ft.get("variants")),
        "adaptive_cloaks": [],
    }
    if "adaptive" in finetune["variants"] and finetune["extractors"]:
        given = ft.get("adaptive_cloaks")
        finetune["adaptive_cloaks"] = (
            facecure_cloaks(config.get("cloaks") or {}, "adaptive.finetune.adaptive_cloaks") if given is None
            else _names(given, cloaks, "adaptive.finetune.adaptive_cloaks", "cloak"))
        if not finetune["adaptive_cloaks"]:
            raise ConfigError("adaptive.finetune.adaptive_cloaks: the adaptive variant needs at least one cloak")
    for name in finetune["extractors"]:
        _require_differentiable(config, name, "adaptive.finetune.extractors")

    det = a.get("detection") or {}
    detectors = {n: detector_settings(n, dict(s)) for n, s in (det.get("detectors") or {}).items()}
    for n, s in detectors.items():
        if s["type"] in NEEDS_EXTRACTOR and s.get("extractor") and s["extractor"] not in extractors:
            raise ConfigError(f"adaptive.detection.detectors.{n}.extractor: unknown extractor "
                              f"'{s['extractor']}' (configured: {', '.join(extractors)})")
        if s["type"] == "finetune":
            _require_differentiable(config, s["extractor"], f"adaptive.detection.detectors.{n}.extractor")
    detection = {
        "detectors": detectors,
        "train_cloaks": _names(det.get("train_cloaks"), cloaks, "adaptive.detection.train_cloaks", "cloak"),
        "test_cloaks": _names(det.get("test_cloaks"), cloaks, "adaptive.detection.test_cloaks", "cloak"),
    }
    if not detectors:
        detection["train_cloaks"], detection["test_cloaks"] = [], []

    tt = a.get("timetravel") or {}
    pairs = _pairs(tt.get("pairs"), ("old", "new"), cloaks, "adaptive.timetravel.pairs", "cloak")
    timetravel = {"pairs": pairs, "switch_fraction": float(tt.get("switch_fraction", 0.5)),
                  "extractors": _names(tt.get("extractors"), extractors, "adaptive.timetravel.extractors",
                                       "extractor")}

    cb = a.get("combine") or {}
    cpairs = _pairs(cb.get("pairs"), ("accurate", "robust"), extractors, "adaptive.combine.pairs", "extractor")
    combine = {"pairs": cpairs, "cloaks": _names(cb.get("cloaks"), cloaks, "adaptive.combine.cloaks", "cloak"),
               "quantile": float(cb.get("quantile", 0.9)), "sweep": [float(q) for q in cb.get("sweep") or []]}

    public = sorted({c for r in robust.values() for c in r["cloaks"]} | set(detection["train_cloaks"])
                    | set(finetune["adaptive_cloaks"]),
                    key=cloaks.index)
    return {"robust": robust, "finetune": finetune, "detection": detection, "timetravel": timetravel,
            "combine": combine, "public_cloaks": public}

