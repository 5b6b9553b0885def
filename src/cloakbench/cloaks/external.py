"""Import pictures cloaked by the official tools (the ``external`` cloak).

The reimplementations in this package are checked against their papers, but a study can
also want the official outputs: run Fawkes or LowKey on the dataset's aligned crops
(e.g. ``fawkes --no-align -d crops/ -m high``, LowKey's ``lowkey_attack.py --dir crops/``),
then point an ``external`` cloak at the folder::

    cloaks:
      fawkes_official:
        type: external
        params: {folder: /data/fawkes_out, tool: fawkes}

Names the tools write, matched to the dataset's pictures by stem:

- Fawkes 1.0: ``<stem>_cloaked.<png|jpg|jpeg>``;
- Fawkes 0.3: ``<stem>_<mode>_cloaked.<ext>`` (mode in min/low/mid/high/ultra);
- LowKey: ``<stem>_attacked.png`` (its ``<stem>_small.png`` resized originals are ignored
  and listed as unmatched).

A dataset picture's id is ``<identity>/<stem>``. Files in a sub-folder named after the
identity (``<folder>/<identity>/<stem>_cloaked.png``) match that id exactly; files at
the top of the folder match by stem alone, which must then be unique in the dataset
(else they are reported as ambiguous). Every file and picture left over is reported
with the reason, in both directions.

A picture to cloak with no imported file is an error (``DataError``), never a silent
fallback to the clean picture: the study would otherwise count clean pictures as cloaked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..errors import ConfigError, DataError
from ..images import to_tensor
from ..io import read_rgb
from .base import REQUIRED, Cloak, Param
from .registry import register_cloak

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FAWKES_V03_MODES = ("min", "low", "mid", "high", "ultra")
TOOL_MARKERS = {"fawkes": ("_cloaked",), "lowkey": ("_attacked",),
                "any": ("_cloaked", "_attacked")}
UNMATCHED_COLUMNS = ["side", "name", "reason"]


@dataclass(frozen=True)
class ExternalFile:
    path: Path
    relative: str          # path inside the folder, posix
    folder: str            # sub-folder inside the folder ('' at the top)
    candidates: tuple[str, ...]  # possible stems, most literal first
    tool: str


def parse_name(path: Path, tool: str = "any") -> tuple[tuple[str, ...], str] | None:
    """Stems a tool output's file name may stand for, and the tool; ``None`` if not one.

    ``x_high_cloaked.png`` may be Fawkes 1.0's output for ``x_high`` or Fawkes 0.3's for
    ``x`` (mode high): both stems are returned, the literal one first.
    """
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return None
    stem = path.stem
    for marker in TOOL_MARKERS[tool]:
        if not stem.endswith(marker) or len(stem) == len(marker):
            continue
        base = stem[: -len(marker)]
        if marker == "_attacked":
            return (base,), "lowkey"
        candidates = [base]
        for mode in FAWKES_V03_MODES:
            suffix = "_" + mode
            if base.endswith(suffix) and len(base) > len(suffix):
                candidates.append(base[: -len(suffix)])
        return tuple(candidates), "fawkes"
    return None


def scan_folder(folder: str | Path, tool: str = "any") -> tuple[list[ExternalFile], list[dict]]:
    """Tool outputs under ``folder`` (recursively, sorted) and the files that are not."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"external cloak: folder {root} does not exist or is not a folder")
    found: list[ExternalFile] = []
    skipped: list[dict] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if path.name.startswith("."):
            continue
        parsed = parse_name(path, tool)
        if parsed is None:
            markers = "/".join(TOOL_MARKERS[tool])
            skipped.append({"side": "file", "name": rel,
                            "reason": f"not a cloaked picture (no {markers} suffix on a "
                                      f"{'/'.join(IMAGE_SUFFIXES)} file)"})
            continue
        candidates, which = parsed
        sub = path.parent.relative_to(root).as_posix()
        found.append(ExternalFile(path, rel, "" if sub == "." else sub, candidates, which))
    return found, skipped


def match_files(files: Sequence[ExternalFile], image_stems: Iterable[str]
                ) -> tuple[dict[str, Path], list[dict]]:
    """Match scanned files to dataset pictures; see the module docstring for the rules."""
    keys = list(dict.fromkeys(str(s) for s in image_stems))
    key_set = set(keys)
    by_stem: dict[str, list[str]] = {}
    for key in keys:
        by_stem.setdefault(key.rsplit("/", 1)[-1], []).append(key)

    matches: dict[str, Path] = {}
    owner: dict[str, str] = {}
    rows: list[dict] = []
    for f in files:
        key, reason = None, None
        if f.folder:
            key = next((f"{f.folder}/{c}" for c in f.candidates if f"{f.folder}/{c}" in key_set),
                       None)
        if key is None:
            for cand in f.candidates:
                if cand in key_set:  # image ids given as bare stems
                    key = cand
                    break
                hits = by_stem.get(cand, [])
                if len(hits) == 1:
                    key = hits[0]
                    break
                if len(hits) > 1 and reason is None:
                    shown = ", ".join(hits[:5]) + (" ..." if len(hits) > 5 else "")
                    reason = (f"ambiguous: stem '{cand}' names {len(hits)} pictures ({shown}); "
                              "put the file in a sub-folder named after the identity")
        if key is None:
            rows.append({"side": "file", "name": f.relative,
                         "reason": reason or "no dataset picture with stem "
                                   + " or ".join(f"'{c}'" for c in f.candidates)})
            continue
        if key in matches:
            rows.append({"side": "file", "name": f.relative,
                         "reason": f"duplicate: '{key}' already matched by {owner[key]}"})
            continue
        matches[key] = f.path
        owner[key] = f.relative
    for key in keys:
        if key not in matches:
            rows.append({"side": "image", "name": key,
                         "reason": "no cloaked picture in the folder"})
    return matches, rows


def import_external(folder: str | Path, image_stems: Iterable[str], *, tool: str = "any"
                    ) -> tuple[dict[str, Path], pd.DataFrame]:
    """Match the official tools' outputs in ``folder`` to dataset pictures.

    ``image_stems``: the pictures to find, as image ids (``identity/stem``) or bare stems.
    Returns ``matches`` (``{image id or stem: file path}``) and ``unmatched``, a table
    with columns ``side`` (``file``: a file in the folder that matched nothing; ``image``:
    a picture with no file), ``name`` (the file's path inside the folder, or the picture's
    id) and ``reason``.
    """
    if tool not in TOOL_MARKERS:
        raise ValueError(f"import_external: tool must be one of {sorted(TOOL_MARKERS)}, "
                         f"not {tool!r}")
    files, skipped = scan_folder(folder, tool)
    matches, rows = match_files(files, image_stems)
    unmatched = pd.DataFrame(skipped + rows, columns=UNMATCHED_COLUMNS)
    return matches, unmatched


@register_cloak
class ExternalCloak(Cloak):
    """Pictures cloaked by an official tool, read from a folder (no optimisation here).

    Parameters: see ``params`` (``folder`` is required). Unlike the optimising cloaks, it
    needs the pictures' ids: ``cloak(images, image_ids=[...])`` (``needs_image_ids``). An id
    without a file raises :class:`DataError`; :meth:`report` gives the unmatched table for a
    set of ids.
    """

    type_name: ClassVar[str] = "external"
    needs_gradients: ClassVar[bool] = False
    needs_image_ids: ClassVar[bool] = True
    params = (
        Param("folder", str, REQUIRED, check=lambda v: v != "", accepted="a folder path",
              deviation=False, doc="the folder holding the official tool's outputs"),
        Param("tool", str, "any", choices=tuple(TOOL_MARKERS),
              doc="any, fawkes (*_cloaked) or lowkey (*_attacked)"),
        Param("resize", bool, False,
              doc="resize an imported picture whose size differs from the dataset crop "
                  "(antialiased bilinear) instead of failing; Fawkes writes whole photos "
                  "unless run with --no-align on the crops, and resizing those would not "
                  "align them"),
    )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.folder = Path(str(self.folder)).expanduser()
        if not self.folder.is_dir():
            raise ConfigError(f"{self.params_key(kwargs.get('name'))}.folder: {self.folder} does "
                              "not exist or is not a folder")
        self._files, self._skipped = scan_folder(self.folder, self.tool)

    def match(self, image_ids: Iterable[str]) -> tuple[dict[str, Path], pd.DataFrame]:
        """Like :func:`import_external`, on the folder scanned at construction."""
        matches, rows = match_files(self._files, image_ids)
        return matches, pd.DataFrame(self._skipped + rows, columns=UNMATCHED_COLUMNS)

    def report(self, image_ids: Iterable[str]) -> pd.DataFrame:
        """The unmatched table (both directions) for the pictures ``image_ids``."""
        return self.match(image_ids)[1]

    def perturb(self, x: torch.Tensor, image_ids: Sequence[str]) -> torch.Tensor:
        ids = list(image_ids)
        matches, _ = match_files(self._files, ids)
        missing = [i for i in ids if i not in matches]
        if missing:
            shown = ", ".join(missing[:10])
            if len(missing) > 10:
                shown += f" and {len(missing) - 10} more"
            raise DataError(
                f"external cloak: no cloaked picture in {self.folder} for {len(missing)} of "
                f"{len(ids)} pictures to cloak: {shown}. Expected <stem>_cloaked.png (Fawkes) or "
                "<stem>_attacked.png (LowKey), in a sub-folder named after the identity when "
                "stems repeat across identities. Run the tool on these pictures, or leave them "
                "out of the protected subset.")
        size = tuple(x.shape[-2:])
        out = []
        for image_id in ids:
            path = matches[image_id]
            try:
                pic = to_tensor(np.array(read_rgb(path)))  # writable copy for torch
            except Exception as exc:  # unreadable file: name it
                raise DataError(f"external cloak: cannot read {path} ({exc})") from exc
            if tuple(pic.shape[-2:]) != size:
                if not self.resize:
                    raise DataError(
                        f"external cloak: {path} is {pic.shape[-1]}x{pic.shape[-2]} but the "
                        f"dataset picture {image_id} is {size[1]}x{size[0]}. Run the tool on the "
                        "aligned crops (Fawkes: --no-align), or set params.resize: true")
                pic = F.interpolate(pic, size=size, mode="bilinear", align_corners=False,
                                    antialias=True).clamp_(0, 1)
            out.append(pic)
        return torch.cat(out)

    def record_extras(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "files_found": len(self._files)}
