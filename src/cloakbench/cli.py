"""``cloakbench <subcommand>``: the command-line tools.

Each subcommand is a module with ``HELP``, ``add_arguments(parser)`` and ``main(args) -> int``,
listed in :data:`SUBCOMMANDS` (imported only when its subcommand runs).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import CloakbenchError

SUBCOMMANDS = [
    ("cloak", "cloakbench.person.cloak_photos"),
    ("audit", "cloakbench.person.audit"),
]

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cloakbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in SUBCOMMANDS:
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=getattr(mod, "HELP", ""))
        p.set_defaults(_module=module)
        mod.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(importlib.import_module(args._module).main(args) or 0)
    except CloakbenchError as exc:
        print(f"cloakbench {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
