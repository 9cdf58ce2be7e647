"""`python -m drm.analysis.plot`: the workflow's `figures` target; re-draws every figure from the cache.

It reads only what `python -m drm.analysis.aggregate` wrote (estimates.csv, claims.csv and cache/), so it
never re-samples and never needs the runs themselves. It prints one line per claim.
"""
from __future__ import annotations

import argparse
import sys

from drm.analysis import claims, figures
from drm.layout import AGGREGATE_DIR, FIGURES_DIR


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drm.analysis.plot", description=__doc__.split("\n")[0])
    parser.add_argument("--aggregate", default=AGGREGATE_DIR, help="what drm.analysis.aggregate wrote")
    parser.add_argument("--out", default=FIGURES_DIR, help="output folder (PNG and PDF)")
    parser.add_argument("--only", nargs="+", choices=figures.FIGURES, default=figures.FIGURES,
                        metavar="NAME", help=f"draw only these: {', '.join(figures.FIGURES)}")
    args = parser.parse_args(argv)
    try:
        paths = figures.draw_all(args.aggregate, args.out, args.only)
    except figures.CacheMissing as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    claims.show(args.aggregate, args.out)  # one line per claim, and the report's verdict table
    print(f"plot: wrote {len(paths) + 1} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
