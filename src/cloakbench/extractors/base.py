"""Common interface of every feature extractor (face recogniser backbone).

An extractor is a ``torch.nn.Module`` whose ``forward`` takes a batch of RGB
pictures as float tensors in [0, 1], shape Bx3xHxW at the dataset's canonical
size (112x112 aligned crops), and returns one embedding per picture (BxD, not
normalised). It owns its own resizing and input normalisation, so attacks and
classifiers never need to know a model's preprocessing.

Adding an extractor = one subclass registered with
:func:`cloakbench.extractors.registry.register_extractor` plus one entry under
``extractors:`` in the config (README "Adding an extractor").
"""

from __future__ import annotations

import datetime as dt
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MissingWeightsError
from ..io import sha256_file


@dataclass(frozen=True)
class ExtractorInfo:
    """Registry metadata of one configured extractor (what the report prints)."""

    name: str
    type: str
    family: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    embedding_dim: int
    release_date: str | None
    differentiable: bool
    trained_in_pipeline: bool
    weights: str | None = None
    sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe copy (tuples as lists)."""
        out = dataclasses.asdict(self)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        return out


#: Keys every `extractors.<name>` entry may have (config/schema.yaml); types add `spec_keys`.
SPEC_KEYS: tuple[str, ...] = ("type", "release_date", "weights", "sha256", "train", "params")


class Extractor(nn.Module):
    """Base class. Subclasses set the class attributes and implement ``embed``."""

    type_name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    input_size: ClassVar[int] = 112
    mean: ClassVar[tuple[float, float, float]] = (0.5, 0.5, 0.5)
    std: ClassVar[tuple[float, float, float]] = (0.5, 0.5, 0.5)
    embedding_dim: ClassVar[int] = 0
    differentiable: ClassVar[bool] = True
    # True for models whose weights are produced by the `train_extractor` rule.
    trained_in_pipeline: ClassVar[bool] = False
    # Keys of a config entry `extractors.<name>` beyond SPEC_KEYS that this type reads (e.g.
    # dlib's `num_jitters`); any other key is a config error before any job (a typo such as
    # `wieghts:` would otherwise be ignored silently).
    spec_keys: ClassVar[tuple[str, ...]] = ()
    # Published verification threshold of a pretrained model on its raw embeddings (None when
    # none is published): "cosine" = same person when cosine similarity >= threshold,
    # "euclidean" = same person when Euclidean distance <= threshold (``cloakbench audit``).
    verify_metric: ClassVar[str | None] = None
    verify_threshold: ClassVar[float | None] = None
    #: Declared parameters of ``extractors.<name>.params`` (:mod:`cloakbench.params`); the
    #: config check resolves them before any job. None by default (then ``params`` is refused).
    params: ClassVar[tuple] = ()

    def __init__(self, name: str, spec: dict[str, Any] | None = None):
        super().__init__()
        self.name = name
        self.spec = dict(spec or {})
        self.register_buffer("_mean", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)

    # -- preprocessing -------------------------------------------------
    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """[0,1] RGB at any size -> the model's input size and normalisation."""
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False, antialias=False)
        return (x - self._mean) / self._std

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.preprocess(x))

    # -- metadata ------------------------------------------------------
    def info(self) -> ExtractorInfo:
        return self.describe(self.name, self.spec)

    @classmethod
    def describe(cls, name: str, spec: dict[str, Any]) -> ExtractorInfo:
        """Metadata from the class and its config entry, without loading any weights."""
        return ExtractorInfo(
            name=name, type=cls.type_name, family=cls.family, input_size=cls.input_size,
            mean=tuple(cls.mean), std=tuple(cls.std), embedding_dim=cls.embedding_dim,
            release_date=date_str(spec.get("release_date")),
            differentiable=cls.differentiable, trained_in_pipeline=cls.trained_in_pipeline,
            weights=spec.get("weights"), sha256=spec.get("sha256"),
        )


def date_str(value: Any) -> str | None:
    """A release date as ``YYYY-MM-DD`` text (YAML reads dates as ``datetime.date``)."""
    if value is None:
        return None
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()[:10]
    return str(value)


def resolve_weights(name: str, spec: dict[str, Any], *, filename: str, published_at: str,
                    key: str = "weights") -> Path:
    """Return the configured weight file, verifying it exists and matches ``sha256``.

    The error names the file, where the original is published and the config key to set,
    so a researcher who has the file knows exactly what to do.
    """
    value = spec.get(key)
    if not value:
        raise MissingWeightsError(
            f"extractor '{name}': no weight file configured. Download {filename} "
            f"(published at {published_at}) and set extractors.{name}.{key} to its path.")
    path = Path(value).expanduser()
    if not path.is_file():
        raise MissingWeightsError(
            f"extractor '{name}': weight file {path} not found (extractors.{name}.{key}). "
            f"Expected {filename}, published at {published_at}.")
    expected = spec.get("sha256")
    if expected:
        actual = sha256_file(path)
        if actual.lower() != str(expected).lower():
            raise MissingWeightsError(
                f"extractor '{name}': {path} has sha256 {actual}, but extractors.{name}.sha256 "
                f"says {expected}. The file is corrupt or a different release of {filename}.")
    return path
