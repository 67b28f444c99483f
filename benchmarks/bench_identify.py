"""Open-set identification on LFW: FNIR at FPIR 0.01 and 0.001 for gallery sizes 100 and 1000.

Usage: python benchmarks/bench_identify.py [--lfw ../shared/data/lfw/images] [--backend sface]
       [--cache /tmp/openlfr-cache] [--seed 0]

Needs the evaluation data beside the project (not part of it); not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from openlfr.evaluation.identify import run_identify

DEFAULT_LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw" / "images"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    ap.add_argument("--backend", default="sface")
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=None)
    args = ap.parse_args()
    if not args.lfw.is_dir():
        print(f"LFW images not found at {args.lfw}", file=sys.stderr)
        return 1
    sizes = [int(s) for s in args.sizes.split(",")]
    report = run_identify(args.lfw, sizes, args.backend, seed=args.seed, cache_dir=args.cache)
    out = report.to_dict()
    out.pop("failed_images")
    print(json.dumps(out, indent=2))
    for r in report.results:
        f = r.fnir_at_fpir
        print(f"N={r.gallery_size}: mated {r.mated_searches}, non-mated {r.nonmated_searches}, "
              f"rank-1 {r.rank1:.4f}, FNIR@FPIR0.01 {f['0.01']}, FNIR@FPIR0.001 {f['0.001']}, "
              f"FPIR/TPIR@default {r.fpir_at_default}/{r.tpir_at_default}", file=sys.stderr)
    print(f"{len(report.failed_images)} images without a face; {report.seconds:.1f} s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
