"""The ``cloakbench`` command: one subcommand per module, imported only when it is run.

    cloakbench check [--configfile F]     validate a config, list missing data and weights,
                                          print the jobs Snakemake plans per rule

A subcommand is a module with ``add_arguments(parser)`` and ``run(args) -> int`` (the exit
status); registering one is a line in :data:`SUBCOMMANDS`. ``python -m cloakbench.cli`` is the
same command.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

#: (name, module, one-line help). The module is imported only when its subcommand runs (or
#: when ``cloakbench <name> --help`` asks for its options), so a slow import costs only its users.
SUBCOMMANDS: list[tuple[str, str, str]] = [
    ("check", "cloakbench.check", "validate a config, list missing data and weights, print the planned jobs"),
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
            p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    names = {name for name, _, _ in SUBCOMMANDS}
    chosen = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(chosen if chosen in names else None).parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
