"""The ``cloakbench`` command: one subcommand per module, imported only when it is run.

    cloakbench check [--configfile F]     validate a config, list missing data and weights,
                                          print the jobs Snakemake plans per rule
    cloakbench cloak IN_DIR OUT_DIR --cloak NAME [--configfile F]
                                          cloak one person's photos at full resolution
    cloakbench audit --clean DIR --cloaked DIR [--gallery DIR] [--extractors ...]
                                          does the cloak protect this person, per recogniser?

A subcommand is a module with ``add_arguments(parser)`` and ``run(args) -> int`` (the exit
status; ``main(args)`` is accepted too); registering one is a line in :data:`SUBCOMMANDS`.
``python -m cloakbench.cli`` is the same command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from .errors import CloakbenchError

#: (name, module, one-line help). The module is imported only when its subcommand runs (or
#: when ``cloakbench <name> --help`` asks for its options), so a slow import costs only its users.
SUBCOMMANDS: list[tuple[str, str, str]] = [
    ("check", "cloakbench.check", "validate a config, list missing data and weights, print the planned jobs"),
    ("cloak", "cloakbench.person.cloak_photos", "cloak a folder of one person's photos at full resolution"),
    ("audit", "cloakbench.person.audit", "measure, per recogniser, whether cloaked photos still protect a person"),
]


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the ``chosen`` subcommand's module is imported (for its options)."""
    parser = argparse.ArgumentParser(
        prog="cloakbench", description="cloakbench: do face cloaks still protect once scraped, against "
        "future recognisers? The pipeline itself runs with `snakemake` from the repository root.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module, help_text in SUBCOMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            mod = importlib.import_module(module)
            mod.add_arguments(p)
            p.set_defaults(_run=getattr(mod, "run", None) or mod.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    names = {name for name, _, _ in SUBCOMMANDS}
    chosen = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(chosen if chosen in names else None).parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args._run(args) or 0)
    except CloakbenchError as exc:
        print(f"cloakbench {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
