"""False-match rate per race, gender and age band on UTKFace at the backend's default threshold.

Usage: python benchmarks/bench_fairness.py [--utkface ../shared/data/utkface/images]
       [--backend sface] [--threshold T] [--cache /tmp/openlfr-cache] [--report out.html]

UTKFace has no identity labels: each image is taken as a different person, so every pair is an
impostor pair. Needs the evaluation data beside the project (not part of it); not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from openlfr.evaluation.fairness import run_fairness, summary_sentences, write_html_report
from openlfr.vision import get_engine

DEFAULT_UTK = Path(__file__).resolve().parents[2] / "shared" / "data" / "utkface" / "images"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--utkface", type=Path, default=DEFAULT_UTK)
    ap.add_argument("--backend", default="sface")
    ap.add_argument("--threshold", type=float, default=None)
    ap.add_argument("--max-pairs", type=int, default=200_000)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--report", type=Path, default=None)
    args = ap.parse_args()
    if not args.utkface.is_dir():
        print(f"UTKFace images not found at {args.utkface}", file=sys.stderr)
        return 1
    engine = get_engine(args.backend)
    threshold = engine.default_threshold if args.threshold is None else args.threshold
    report = run_fairness(args.utkface, "utkface", threshold, args.backend,
                          max_pairs=args.max_pairs, cache_dir=args.cache, engine=engine)
    out = report.to_dict()
    out.pop("failed_images")
    print(json.dumps(out, indent=2))
    for sentence in summary_sentences(report):
        print(sentence, file=sys.stderr)
    if args.report is not None:
        write_html_report(report, args.report)
    print(f"{len(report.failed_images)} images without a face; {report.seconds:.1f} s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
