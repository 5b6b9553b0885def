"""Common base of every cloak (in the style of torchattacks / ART).

A cloak is built from an ensemble of :class:`~cloakbench.extractors.Extractor` (the models
its author knew), its hyperparameters and a seed. A subclass declares:

- ``type_name``: the config's ``cloaks.<name>.type``;
- ``params``: every hyperparameter once, as :class:`~cloakbench.params.Param` (type, range
  or choices, default, doc), and ``modes``, a table of presets for the ``FROM_MODE`` ones.
  That one declaration validates the config before any job starts
  (:meth:`Cloak.validate_params`), fills the instance's attributes (``self.<param>``), lists
  the deviations from the original's settings (``overridden``), the record
  (:meth:`Cloak.hyperparameters`) and the description (:meth:`Cloak.describe`);
- optional capabilities, as class flags (below);
- :meth:`Cloak.perturb`, the algorithm: clean pictures Bx3xHxW in [0, 1] on the cloak's
  device and dtype -> cloaked pictures.

``cloak(images)`` is the template around ``perturb``: it moves the batch to the cloak's device
and dtype, passes the optional inputs the cloak declared it takes, records how the steps ran,
clamps the result to [0, 1] and moves it back to the input's device and dtype.

Cloaks that need more than the pictures (Fawkes v0.3 picks a target identity from reference
features) declare ``needs_reference`` and receive it through :meth:`Cloak.prepare`, called
once per protected user before ``cloak(images)``.
"""

from __future__ import annotations

import zlib
from typing import Any, Callable, ClassVar, Mapping, Sequence

import torch

from ..errors import ConfigError
from ..extractors.base import Extractor
from ..params import FROM_MODE, REQUIRED, Param, check_declaration, resolve
from .optim import History, StepRunner

#: The execution setting of the cloaks that replay their steps as CUDA graphs.
CUDA_GRAPH = Param("cuda_graph", bool, True, deviation=False,
                   doc="on CUDA, replay each step as a captured CUDA graph (an execution setting: "
                       "the numbers are the same; see cloaks.optim.StepRunner)")

_RESERVED = ("extractors", "seed", "device", "name", "history", "execution", "overridden",
             "resolved_params", "dtype", "type_name")


def picture_keys(x: torch.Tensor) -> list[int]:
    """A stable 32-bit key per picture, from its 8-bit pixel values.

    Random starts are drawn per picture from ``seed + key``, so a picture gets the same
    cloak whatever batch or shard it lands in (same seed -> same output).
    """
    arr = x.detach().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    return [zlib.crc32(arr[i].tobytes()) for i in range(arr.shape[0])]


def uniform_start(generator_for: Callable[[int], torch.Generator], x: torch.Tensor,
                  half_width: float) -> torch.Tensor:
    """Per-picture uniform noise in [-half_width, half_width], seeded by :func:`picture_keys`.

    ``generator_for(key)`` gives the generator of one picture. Drawn on the CPU
    (reproducible across devices), then moved to ``x``'s device.
    """
    noise = torch.stack([torch.rand(x.shape[1:], generator=generator_for(key)) for key in
                         picture_keys(x)])
    return (noise * 2 - 1).mul_(half_width).to(x.device)


class Cloak:
    """Base class: see the module docstring. Subclasses implement :meth:`perturb`."""

    type_name: ClassVar[str] = ""
    #: Every hyperparameter, declared once (see :mod:`cloakbench.params`).
    params: ClassVar[tuple[Param, ...]] = ()
    #: Presets of the ``FROM_MODE`` parameters, ``{mode: {param: value}}``.
    modes: ClassVar[dict[str, dict[str, Any]]] = {}
    #: Key of ``history`` that ``loss_history`` returns.
    loss_key: ClassVar[str] = "loss"
    #: The dtype ``perturb`` receives.
    dtype: ClassVar[torch.dtype] = torch.float32

    # -- capabilities (class flags; callers read them, never probe with getattr) ----------
    #: Every extractor of the ensemble must be differentiable, and there must be one.
    needs_gradients: ClassVar[bool] = True
    #: ``cloak(images, image_ids=[...])``: the pictures' ids reach ``perturb`` (official tools).
    needs_image_ids: ClassVar[bool] = False
    #: ``prepare(context)`` must be called once per protected user before cloaking.
    needs_reference: ClassVar[bool] = False
    #: ``cloak(images, start=...)``: ``perturb`` takes a starting point (same shape as images).
    accepts_start: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_declaration(cls.params, cls.modes, f"cloak class {cls.__name__}",
                          reserved=_RESERVED + tuple(n for n in dir(Cloak) if not n.startswith("_")))

    def __init__(self, extractors: Sequence[Extractor] = (), *, seed: int = 0,
                 device: str | torch.device = "cpu", name: str | None = None, **params: Any):
        self.name = name or self.type_name
        where = self.params_key(name)
        self.extractors = list(extractors)
        if self.needs_gradients:
            for ex in self.extractors:
                if not ex.differentiable:
                    raise ConfigError(
                        f"cloak '{self.type_name}': extractor '{ex.name}' ({ex.type_name}) is not "
                        "differentiable and cannot be in a gradient-based cloak's ensemble; use it "
                        "only as a recogniser (extractors list), not in cloaks.*.ensemble")
            if not self.extractors:
                raise ConfigError(f"cloak '{self.type_name}': the ensemble is empty")
        values, self.overridden = resolve(self.params, self.modes, params, where=where,
                                          owner=f"cloak type '{self.type_name}'")
        self.check_resolved(values, ensemble=[ex.name for ex in self.extractors], where=where)
        self.resolved_params = values
        for key, value in values.items():
            setattr(self, key, value)
        self.seed = int(seed)
        self.device = torch.device(device)
        for ex in self.extractors:
            ex.eval().requires_grad_(False)
            ex.to(self.device)
        self.history = History()
        self.execution = "eager"
        self._runner: StepRunner | None = None

    # -- declaration-driven checks (no weights, no extractors) ----------------------------
    @classmethod
    def params_key(cls, name: str | None = None) -> str:
        return f"cloaks.{name or '<name>'}.params"

    @classmethod
    def validate_params(cls, params: Mapping[str, Any] | None, *, where: str,
                        ensemble: Sequence[str] | None = None) -> dict[str, Any]:
        """The resolved hyperparameters (mode presets filled) or a ConfigError naming
        ``where.<key>`` and the accepted values. Needs no weights: the config check runs it
        before any job. ``ensemble``: the configured extractor names, for checks that
        depend on them (e.g. Fawkes v1.0's number of models)."""
        values, _ = resolve(cls.params, cls.modes, params, where=where,
                            owner=f"cloak type '{cls.type_name}'")
        if ensemble is not None:
            cls.check_resolved(values, ensemble=list(ensemble), where=where)
        return values

    @classmethod
    def check_resolved(cls, values: dict[str, Any], *, ensemble: list[str], where: str) -> None:
        """Hook: checks across parameters and the ensemble's names (default: none)."""

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """JSON-safe description of the type, from the class alone (no weights)."""
        doc = (cls.__doc__ or "").strip().split("\n\n")[0]
        return {
            "kind": "cloak", "type": cls.type_name, "class": f"{cls.__module__}.{cls.__qualname__}",
            "doc": " ".join(doc.split()),
            "capabilities": {"needs_gradients": cls.needs_gradients,
                             "needs_image_ids": cls.needs_image_ids,
                             "needs_reference": cls.needs_reference,
                             "accepts_start": cls.accepts_start},
            "params": [p.describe() for p in cls.params],
            "modes": {m: dict(v) for m, v in cls.modes.items()},
        }

    # -- helpers for subclasses ------------------------------------------------------------
    def prepare(self, context: Mapping[str, Any]) -> None:
        """Reference data for one protected user (cloaks with ``needs_reference``)."""

    def generator(self, offset: int = 0) -> torch.Generator:
        g = torch.Generator(device="cpu")
        g.manual_seed(self.seed + offset)
        return g

    def picture_noise(self, x: torch.Tensor, half_width: float, *, offset: int = 0
                      ) -> torch.Tensor:
        """Uniform noise in [-half_width, half_width] drawn per picture from
        ``seed + offset + key(picture)``: a picture gets the same start in any batch."""
        return uniform_start(lambda key: self.generator(key + offset), x, half_width)

    def step_runner(self, step: Callable[[], None], *, warmup: int = 1) -> StepRunner:
        """A :class:`StepRunner` for this call's optimisation steps (CUDA graphs when the
        cloak's ``cuda_graph`` is on); ``execution`` records how they ran."""
        self._runner = StepRunner(step, self.device,
                                  bool(self.resolved_params.get("cuda_graph", False)), warmup)
        return self._runner

    def new_history(self, length: int, *keys: str) -> History:
        """This call's per-step history (exposed as ``self.history``)."""
        self.history = History(length, keys, self.device)
        return self.history

    @property
    def loss_history(self) -> list[float]:
        """Per-step batch mean of the cloak's objective (``history[loss_key]``)."""
        return self.history[self.loss_key] if self.loss_key in self.history else []

    def record_extras(self) -> dict[str, Any]:
        """Settings beyond the parameters that the record lists (optimiser, budget...)."""
        return {}

    def hyperparameters(self) -> dict[str, Any]:
        """The settings recorded next to every result of this cloak (JSON-safe)."""
        return {"type": self.type_name, **self.resolved_params, **self.record_extras(),
                "ensemble": [ex.name for ex in self.extractors],
                "overridden": list(self.overridden), "seed": self.seed}

    # -- the template ----------------------------------------------------------------------
    def __call__(self, images: torch.Tensor, *, image_ids: Sequence[str] | None = None,
                 start: torch.Tensor | None = None) -> torch.Tensor:
        """Cloak a batch Bx3xHxW in [0, 1]; returns the same shape, range, device and dtype.

        ``image_ids``: the pictures' ids, required by (and passed only to) cloaks with
        ``needs_image_ids``. ``start``: a starting point for cloaks with ``accepts_start``.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"cloak '{self.name}': expected Bx3xHxW pictures, got shape "
                             f"{tuple(images.shape)}")
        kwargs: dict[str, Any] = {}
        if self.needs_image_ids:
            if image_ids is None:
                raise TypeError(f"{self.type_name} cloak: call it as cloak(images, "
                                "image_ids=[...]); it needs the pictures' ids")
            ids = [str(i) for i in image_ids]
            if len(ids) != images.shape[0]:
                raise ValueError(f"{self.type_name} cloak: {images.shape[0]} pictures but "
                                 f"{len(ids)} image ids")
            kwargs["image_ids"] = ids
        if start is not None:
            if not self.accepts_start:
                raise TypeError(f"cloak type '{self.type_name}' takes no start= (its class does "
                                "not declare accepts_start)")
            if start.shape != images.shape:
                raise ValueError(f"cloak '{self.name}': start has shape {tuple(start.shape)}, "
                                 f"the pictures {tuple(images.shape)}")
            kwargs["start"] = start.detach().to(self.device, self.dtype)
        elif self.accepts_start:
            kwargs["start"] = None
        out_device, out_dtype = images.device, images.dtype
        x = images.detach().to(self.device, self.dtype)
        self._runner = None
        cloaked = self.perturb(x, **kwargs)
        if self._runner is not None:
            self.execution = self._runner.mode
        return cloaked.clamp(0.0, 1.0).to(out_device, out_dtype)

    def perturb(self, x: torch.Tensor, **inputs: Any) -> torch.Tensor:  # pragma: no cover
        """The algorithm: ``x`` (Bx3xHxW in [0, 1], on ``self.device``, ``self.dtype``) ->
        cloaked pictures. ``inputs``: ``image_ids`` / ``start`` when declared."""
        raise NotImplementedError


__all__ = ["CUDA_GRAPH", "Cloak", "FROM_MODE", "REQUIRED", "Param", "picture_keys", "uniform_start"]
