"""One record type for every result the pipeline measures.

A :class:`Record` is ``(kind, experiment, labels, settings, metrics)``:

* ``kind``: what was measured (:data:`KINDS`): ``evaluation`` (a recogniser trained on one
  scraped set: ``evaluate``'s classifiers and the end-to-end ``finetune`` classifier),
  ``timetravel`` (the same, on a set where protected users switched cloaks), ``combination``
  (an accurate and a robust extractor combined) and ``detection`` (a detector of cloaked
  pictures);
* ``labels``: the record's coordinates, exactly the keys :data:`KINDS` lists for its kind
  (e.g. cloak, extractor, classifier); the tables of the report are indexed by them;
* ``settings``: every setting the numbers depend on (JSON-safe), for provenance;
* ``metrics``: the numbers;
* ``experiment``: a unique id made from the labels (:func:`experiment_id`);
* ``provenance``: the cloakbench version and git commit, the configuration's hash and the
  versions of torch, insightface, onnxruntime and snakemake of the process that made it
  (:func:`cloakbench.provenance.provenance`); not a setting: equal numbers from two commits
  stay comparable. Records written before it existed read back with an empty one.

:meth:`Record.make` is the one constructor (it derives ``experiment``); ``to_json`` /
``from_json`` convert to and from the JSON object written to disk, ``write_records`` /
``read_records`` handle the files (a list of records per file).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .errors import DataError
from .io import write_json
from .provenance import provenance as current_provenance

#: kind -> its labels, in order
KINDS: dict[str, tuple[str, ...]] = {
    "evaluation": ("cloak", "extractor", "classifier"),
    "timetravel": ("cloak", "extractor", "classifier"),
    "combination": ("cloak", "extractor", "classifier", "method", "sweep"),
    "detection": ("detector", "detector_type", "train_cloak", "test_cloak", "cross_cloak"),
}
FIELDS = ("kind", "experiment", "labels", "settings", "metrics")
#: fields a record file may lack (written before they existed)
OPTIONAL_FIELDS = ("provenance",)


def experiment_id(kind: str, labels: Mapping[str, Any]) -> str:
    """The unique id of a record: ``cloak/extractor/classifier`` (``.../method`` for a
    combination, ``detect/detector/train->test`` for a detection)."""
    if kind == "detection":
        return f"detect/{labels['detector']}/{labels['train_cloak']}->{labels['test_cloak']}"
    last = labels["method"] if kind == "combination" else labels["classifier"]
    return f"{labels['cloak']}/{labels['extractor']}/{last}"


@dataclass(frozen=True)
class Record:
    kind: str
    experiment: str
    labels: dict[str, Any]
    settings: dict[str, Any]
    metrics: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def make(cls, kind: str, labels: Mapping[str, Any], *, settings: Mapping[str, Any],
             metrics: Mapping[str, Any]) -> "Record":
        """The one constructor: checks ``kind`` and its labels, derives ``experiment``, stamps
        the provenance of this process."""
        if kind not in KINDS:
            raise ValueError(f"record kind {kind!r}: one of {list(KINDS)}")
        keys = KINDS[kind]
        if set(labels) != set(keys):
            raise ValueError(f"a {kind} record has labels {list(keys)}, got {sorted(labels)}")
        ordered = {k: labels[k] for k in keys}
        return cls(kind, experiment_id(kind, ordered), ordered, dict(settings), dict(metrics),
                   current_provenance())

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "experiment": self.experiment, "labels": dict(self.labels),
                "settings": self.settings, "metrics": self.metrics, "provenance": self.provenance}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, source: str = "a record") -> "Record":
        if not isinstance(data, Mapping) or not set(FIELDS) <= set(data) <= set(FIELDS + OPTIONAL_FIELDS):
            found = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise DataError(f"{source}: not a cloakbench record (expected the keys {list(FIELDS)}, found "
                            f"{found}); a file written by an older cloakbench is remade by rerunning "
                            "its rule (snakemake --forcerun <rule>)")
        try:
            rec = cls.make(data["kind"], data["labels"], settings=data["settings"], metrics=data["metrics"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{source}: invalid record: {exc}") from None
        if rec.experiment != data["experiment"]:
            raise DataError(f"{source}: experiment {data['experiment']!r} does not match its labels "
                            f"({rec.experiment!r})")
        return replace(rec, provenance=dict(data.get("provenance") or {}))


def write_records(records: Iterable[Record], path: str | Path) -> None:
    """Write records as one JSON list (atomically)."""
    write_json([r.to_json() for r in records], path)


def read_records(paths: Sequence[str | Path], *, kind: str | None = None) -> list[Record]:
    """Every record of the JSON files at ``paths`` (each a list of records), in order.

    ``kind``: refuse any record of another kind (a file given to the wrong report input).
    """
    out = []
    for p in paths:
        data = json.loads(Path(p).read_text())
        for i, item in enumerate(data if isinstance(data, list) else [data]):
            rec = Record.from_json(item, source=f"{p} (record {i})")
            if kind is not None and rec.kind != kind:
                raise DataError(f"{p} (record {i}): a {rec.kind} record where {kind} records were expected")
            out.append(rec)
    return out
