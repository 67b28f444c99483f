"""Threshold floor on UTKFace: ``openlfr calibrate`` for a watchlist size and target FPIR.

Usage: python benchmarks/bench_calibrate.py [--utkface ../shared/data/utkface/images]
       [--backend sface] [--watchlist-size 1000] [--target-fpir 1/6000] [-a race -a gender]
       [--cache /tmp/openlfr-bench/cache] [--report out.html]

Runs ``openlfr calibrate --dry-run --json`` in-process (nothing is recorded) with the template
cache that ``bench_fairness.py``/``bench_identify.py`` use, so only the first run embeds. UTKFace
has no identity labels: each image is taken as a different person. Needs the evaluation data
beside the project (not part of it); not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from openlfr.cli.calibrate import parse_rate
from openlfr.evaluation.calibrate import calibrate, summary_sentences, write_report

DEFAULT_UTK = Path(__file__).resolve().parents[2] / "shared" / "data" / "utkface" / "images"
DEFAULT_CACHE = Path("/tmp/openlfr-bench/cache")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--utkface", type=Path, default=DEFAULT_UTK)
    ap.add_argument("--backend", default="sface")
    ap.add_argument("--watchlist-size", type=int, default=1000)
    ap.add_argument("--target-fpir", default="1/6000")
    ap.add_argument("-a", "--attribute", action="append", default=None)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--report", type=Path, default=None)
    args = ap.parse_args()
    if not args.utkface.is_dir():
        print(f"UTKFace images not found at {args.utkface}", file=sys.stderr)
        return 1
    cal = calibrate(args.utkface, "utkface", args.backend, args.watchlist_size,
                    parse_rate(args.target_fpir), attributes=args.attribute,
                    cache_dir=args.cache)
    print(json.dumps(cal.to_dict(), indent=2))
    for sentence in summary_sentences(cal):
        print(sentence, file=sys.stderr)
    if args.report is not None:
        write_report(cal, args.report)
    print(f"{cal.evidence['seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
