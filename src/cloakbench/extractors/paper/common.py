"""Shared loading code for the paper's pretrained models.

Every loader here reads a weight file in the format its authors published it in (so a user who
downloads the original file gets the original model), and fails with a
:class:`~cloakbench.errors.MissingWeightsError` that names the expected file, where it is
published and the config key to set, when the file is missing, has the wrong sha256, or is not
a checkpoint of the expected architecture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import MissingWeightsError
from ..base import Extractor, ExtractorInfo, resolve_weights

__all__ = ["PaperExtractor", "load_state_dict_into", "short_error"]


def short_error(exc: BaseException, limit: int = 300) -> str:
    """One line of an exception's message (type name if empty), at most ``limit`` chars."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PaperExtractor(Extractor):
    """Base of the paper-model loaders: weight resolution, format errors, metadata.

    Subclasses set, besides the :class:`Extractor` attributes:

    - ``weights_filename``: the file name the authors published (used in error messages);
    - ``published_at``: where that file is published;
    - ``release``: publication date of the weights (``YYYY-MM``), reported when the config
      gives no ``release_date``;
    - ``channel_order``: ``"RGB"`` or ``"BGR"`` (the order the network was trained on; the
      input is always RGB, the flip happens after normalisation, and ``mean``/``std`` are
      given in RGB order);
    - ``resize_mode``: interpolation used to reach ``input_size``;
    - ``metadata``: free-form facts for the report (architecture, training data, loss, paper).
    """

    weights_filename: ClassVar[str] = ""
    published_at: ClassVar[str] = ""
    release: ClassVar[str | None] = None
    channel_order: ClassVar[str] = "RGB"
    resize_mode: ClassVar[str] = "bilinear"
    metadata: ClassVar[dict[str, Any]] = {}

    # -- weights -------------------------------------------------------
    def weights_path(self) -> Path:
        return resolve_weights(self.name, self.spec, filename=self.weights_filename,
                               published_at=self.published_at)

    def format_error(self, path: Path | str, detail: str) -> MissingWeightsError:
        """The error for a file that exists but is not the expected checkpoint."""
        return MissingWeightsError(
            f"extractor '{self.name}': {path} is not a {self.weights_filename} checkpoint in the "
            f"original format ({detail}). Download {self.weights_filename} (published at "
            f"{self.published_at}) and set extractors.{self.name}.weights to its path.")

    def load_torch_file(self, path: Path) -> Any:
        """``torch.load`` on CPU with ``weights_only=True`` (no arbitrary pickles)."""
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure means "not this file"
            raise self.format_error(
                path, f"torch.load(weights_only=True) failed: {short_error(exc)}") from exc

    def load_checkpoint(self) -> tuple[Path, Any]:
        """(the weights file, what it holds: ``torch.load`` on CPU, pickles refused)."""
        path = self.weights_path()
        return path, self.load_torch_file(path)

    def load_state(self) -> tuple[Path, Any]:
        """(the weights file, its state dict: a checkpoint's ``state_dict`` entry when it has one)."""
        path, checkpoint = self.load_checkpoint()
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
            checkpoint = checkpoint["state_dict"]
        return path, checkpoint

    # -- preprocessing -------------------------------------------------
    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            kwargs = {} if self.resize_mode == "nearest" else {"align_corners": False}
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode=self.resize_mode,
                              **kwargs)
        x = (x - self._mean) / self._std
        if self.channel_order == "BGR":
            x = x.flip(1)
        return x

    # -- metadata ------------------------------------------------------
    def info(self) -> ExtractorInfo:
        info = super().info()
        extra = {**self.metadata, "weights_filename": self.weights_filename,
                 "published_at": self.published_at, "channel_order": self.channel_order,
                 "resize_mode": self.resize_mode, **getattr(self, "_extra_info", {})}
        values = {**info.__dict__, "extra": extra,
                  "release_date": info.release_date or self.release}
        return ExtractorInfo(**values)


def _candidate_prefixes(keys: Iterable[str], prefixes: Iterable[str]) -> list[str]:
    keys = list(keys)
    found = [p for p in prefixes if any(k.startswith(p) for k in keys)]
    if "" not in found:
        found.append("")
    return found


def load_state_dict_into(owner: PaperExtractor, module: nn.Module, state_dict: Any, path: Path, *,
                         prefixes: Iterable[str] = ("module.",),
                         ignore: Iterable[str] = ()) -> dict[str, Any]:
    """Load an original checkpoint's state dict into ``module``, strictly.

    ``prefixes``: key prefixes the original files may carry (``DataParallel``'s ``module.``,
    MagFace's ``features.module.``); the one under which the checkpoint's keys cover the most
    of ``module``'s keys is stripped, and keys outside it (classification heads stored beside
    the backbone) are left out. ``ignore``: prefixes (after stripping) of keys that belong to
    a head the embedding does not use (e.g. FaceNet's ``logits.``).

    Every parameter and buffer of ``module`` must be found with the right shape, except
    BatchNorm ``num_batches_tracked`` counters (absent from files saved by old PyTorch
    versions; unused in eval mode). Any other missing, extra or mis-shaped key raises the
    format error naming the file. Returns a small report (prefix used, keys skipped).
    """
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise owner.format_error(path, f"expected a state dict, found {type(state_dict).__name__}")
    bad = [k for k, v in state_dict.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise owner.format_error(path, f"entries that are not tensors, e.g. {bad[0]!r}")
    target = module.state_dict()
    best: tuple[int, str] | None = None
    for prefix in _candidate_prefixes(state_dict, prefixes):
        hits = sum(1 for k in state_dict if k.startswith(prefix) and k[len(prefix):] in target)
        if best is None or hits > best[0]:
            best = (hits, prefix)
    assert best is not None
    prefix = best[1]
    ignore = tuple(ignore)
    sub: dict[str, torch.Tensor] = {}
    skipped_outside, skipped_head = 0, 0
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            skipped_outside += 1
            continue
        short = key[len(prefix):]
        if ignore and short.startswith(ignore):
            skipped_head += 1
            continue
        sub[short] = value
    missing = [k for k in target if k not in sub and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sub if k not in target]
    shapes = [f"{k}: file {tuple(sub[k].shape)} vs model {tuple(target[k].shape)}"
              for k in target if k in sub and sub[k].shape != target[k].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys, e.g. {', '.join(missing[:3])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys, e.g. {', '.join(unexpected[:3])}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches, e.g. {'; '.join(shapes[:2])}")
    if problems:
        where = f" under prefix '{prefix}'" if prefix else ""
        raise owner.format_error(path, f"{'; '.join(problems)}{where}")
    for key, value in target.items():
        if key.endswith("num_batches_tracked") and key not in sub:
            sub[key] = torch.zeros_like(value)
    sub = {k: v.to(target[k].dtype) for k, v in sub.items()}
    module.load_state_dict(sub, strict=True)
    return {"prefix": prefix, "skipped_outside_prefix": skipped_outside,
            "skipped_head": skipped_head, "tensors": len(sub)}
