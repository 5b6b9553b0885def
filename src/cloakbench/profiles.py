"""Install the project's Snakemake profiles under their names, so that
``snakemake --profile slurm`` works from the repository root.

Snakemake looks a profile *name* up in the current directory, then in the user's Snakemake
config folder (``$XDG_CONFIG_HOME/snakemake``, else ``~/.config/snakemake`` on Linux), then
in the site's. The profiles live in ``profiles/<name>/`` of the checkout; this module links
each of them (except ``default``, the workflow profile Snakemake picks up by itself) into the
user's folder as ``<prefix><name>``. It never replaces anything it did not put there: an
existing entry of that name is left alone, with a message naming it and how to install under
another name (``make profiles PROFILE_PREFIX=cloakbench-``). Running it again changes nothing.

    python -m cloakbench.profiles install [--prefix P] [--profiles DIR] [--dest DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cloakbench.errors import CloakbenchError

WORKFLOW_PROFILE = "default"  # picked up by Snakemake from profiles/default; never installed
PROFILE_FILES = ("config.yaml", "profile.yaml")
PREFIX_HINT = "make profiles PROFILE_PREFIX=cloakbench-"


class ProfileInstallError(CloakbenchError):
    """The profiles folder is missing or the Snakemake config folder cannot be written."""


def snakemake_config_dir() -> Path:
    """The user's Snakemake config folder, where ``--profile <name>`` is looked up: the same
    call Snakemake makes (``snakemake.common.get_appdirs``), so the two cannot disagree."""
    from platformdirs import user_config_dir

    return Path(user_config_dir("snakemake", "snakemake"))


def cluster_profiles(profiles_dir: Path) -> dict[str, Path]:
    """name -> folder of every profile in ``profiles_dir`` except the workflow profile."""
    profiles_dir = Path(profiles_dir)
    if not profiles_dir.is_dir():
        raise ProfileInstallError(
            f"no profiles folder at {profiles_dir}: run from the repository root "
            f"(make profiles) or give its profiles/ folder with --profiles")
    found = {p.name: p.resolve() for p in sorted(profiles_dir.iterdir())
             if p.is_dir() and p.name != WORKFLOW_PROFILE
             and any((p / f).is_file() for f in PROFILE_FILES)}
    if not found:
        raise ProfileInstallError(f"{profiles_dir} holds no profile (a folder with config.yaml)")
    return found


@dataclass(frozen=True)
class Outcome:
    name: str       # the name to give --profile
    link: Path      # <config dir>/<name>
    target: Path    # profiles/<profile> of this checkout
    status: str     # "installed", "already installed" or "conflict"
    message: str


def _describe(path: Path) -> str:
    if path.is_symlink():
        dest = os.readlink(path)
        return f"a link to {dest}" + ("" if path.exists() else " (which does not exist)")
    return "a folder" if path.is_dir() else "a file"


def install_profile(name: str, target: Path, dest_dir: Path) -> Outcome:
    link = dest_dir / name
    if link.is_symlink() and link.resolve() == target.resolve():
        return Outcome(name, link, target, "already installed",
                       f"{link} -> {target} (already installed)")
    if link.exists() or link.is_symlink():
        return Outcome(
            name, link, target, "conflict",
            f"NOT installed: {link} already exists ({_describe(link)}), and it is not this "
            f"checkout's {target}; it is left as it is. Install the project's profiles under "
            f"another name, e.g. `{PREFIX_HINT}` (then: snakemake --profile cloakbench-"
            f"{target.name}), or remove {link} if it is an old copy of this project's profile.")
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target, target_is_directory=True)
    except OSError as e:
        raise ProfileInstallError(f"could not create the link {link} -> {target}: {e}") from e
    return Outcome(name, link, target, "installed", f"{link} -> {target} (installed)")


def install_profiles(profiles_dir: Path, dest_dir: Path | None = None,
                     prefix: str = "") -> list[Outcome]:
    """Link every cluster profile of ``profiles_dir`` into ``dest_dir`` (default: the user's
    Snakemake config folder) as ``<prefix><name>``. Never replaces an existing entry."""
    if "/" in prefix or os.sep in prefix or prefix in (".", ".."):
        raise ProfileInstallError(f"profile prefix {prefix!r}: a name prefix cannot contain '/'")
    dest_dir = Path(dest_dir) if dest_dir is not None else snakemake_config_dir()
    return [install_profile(prefix + name, target, dest_dir)
            for name, target in cluster_profiles(profiles_dir).items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cloakbench.profiles",
        description="Link the project's Snakemake profiles (profiles/<name>) into the user's "
                    "Snakemake config folder, so that `snakemake --profile <name>` finds them.")
    sub = parser.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install", help="install (idempotent; never replaces another profile)")
    inst.add_argument("--profiles", type=Path, default=Path("profiles"),
                      help="the checkout's profiles folder (default: ./profiles)")
    inst.add_argument("--prefix", default="",
                      help="install profile NAME as PREFIX+NAME (e.g. cloakbench-)")
    inst.add_argument("--dest", type=Path, default=None,
                      help="Snakemake config folder (default: where Snakemake looks, "
                           "$XDG_CONFIG_HOME/snakemake or ~/.config/snakemake)")
    args = parser.parse_args(argv)
    try:
        outcomes = install_profiles(args.profiles, args.dest, args.prefix)
    except ProfileInstallError as e:
        print(f"profiles: error: {e}", file=sys.stderr)
        return 2
    for o in outcomes:
        print(f"profiles: {o.message}", file=sys.stderr if o.status == "conflict" else sys.stdout)
    usable = [o.name for o in outcomes if o.status != "conflict"]
    if usable:
        print("profiles: from the repository root: "
              + "; ".join(f"snakemake --profile {n}" for n in usable))
    return 1 if any(o.status == "conflict" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
