"""LFW verification benchmark: ``openlfr eval verify`` on ../shared/data/lfw for each backend.

Usage (from the project root)::

    python benchmarks/bench_lfw.py --backends sface,dlib,fusion [--plot-dir DIR] [--no-progress]

Prints a table per backend and, last, one JSON line ``{"benchmark": "lfw", "results": [...]}``.
The data (``images/`` and ``pairs.txt``, see ../shared/data/README.md) is read in place, never
copied. Exits with status 1 and a message if it is absent.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from openlfr.evaluation.verify import VerifyReport, run_verify
from openlfr.vision.registry import BACKENDS, ModelError

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "lfw"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="sface,dlib",
                    help=f"comma-separated backends (known: {','.join(BACKENDS)})")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA,
                    help="LFW folder with images/ and pairs.txt (default: ../shared/data/lfw)")
    ap.add_argument("--pairs", type=Path, default=None,
                    help="another pairs file (default: DATA/pairs.txt)")
    ap.add_argument("--plot-dir", type=Path, default=None,
                    help="write a ROC/DET PNG per backend into this directory")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return ap.parse_args(argv)


def summary(r: VerifyReport) -> dict[str, object]:
    d = r.to_dict()
    return {
        "backend": d["backend"],
        "model_id": d["model_id"],
        "pairs": d["pairs"],
        "images": d["images"],
        "folds": d["folds"],
        "accuracy": round(r.accuracy, 5),
        "accuracy_std": round(r.accuracy_std, 5),
        "threshold": round(r.threshold, 4),
        "auc": round(r.auc, 5),
        "eer": round(r.eer, 5),
        "eer_threshold": round(r.eer_threshold, 4),
        "tar_at_far": {k: round(v, 5) for k, v in r.tar_at_far.items()},
        "threshold_at_far": {k: round(v, 4) for k, v in r.threshold_at_far.items()},
        "fold_threshold_at_far": {k: round(v["threshold_mean"], 4)
                                  for k, v in r.fold_far.items()},
        "fold_threshold_at_far_std": {k: round(v["threshold_std"], 4)
                                      for k, v in r.fold_far.items()},
        "fold_tar_at_far": {k: round(v["tar_mean"], 5) for k, v in r.fold_far.items()},
        "default_threshold": r.default_threshold,
        "at_default_threshold": {k: round(v, 5) for k, v in r.at_default_threshold.items()},
        "failed_images": d["failed_images"],
        "failed_pairs": r.failed_pairs,
        "per_fold": d["per_fold"],
        "seconds": round(r.seconds, 1),
        "embedder": d["embedder"],
    }


def table(results: list[dict[str, object]]) -> Table:
    t = Table(title="LFW verification (threshold per fold chosen on the other folds)")
    for col in ("backend", "accuracy ± std", "AUC", "EER", "TAR@FAR=1%", "TAR@FAR=0.1%",
                "threshold", "thr@FAR=0.1% (fold mean)", "failed img/pairs", "seconds"):
        t.add_column(col, justify="right")
    for r in results:
        tar: dict[str, float] = r["tar_at_far"]  # type: ignore[assignment]
        fthr: dict[str, float] = r["fold_threshold_at_far"]  # type: ignore[assignment]
        failed: list[object] = r["failed_images"]  # type: ignore[assignment]
        t.add_row(
            str(r["backend"]),
            f"{float(r['accuracy']) * 100:.2f}% ± {float(r['accuracy_std']) * 100:.2f}",
            f"{float(r['auc']):.4f}",
            f"{float(r['eer']) * 100:.2f}%",
            f"{tar['0.01'] * 100:.2f}%",
            f"{tar['0.001'] * 100:.2f}%",
            f"{float(r['threshold']):.4f}",
            f"{fthr['0.001']:.4f}",
            f"{len(failed)}/{r['failed_pairs']}",
            f"{r['seconds']}",
        )
    return t


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        print(f"bench_lfw: unknown backend(s) {', '.join(unknown)}; known: "
              f"{', '.join(BACKENDS)}", file=sys.stderr)
        return 2
    images = args.data / "images"
    pairs = args.pairs or args.data / "pairs.txt"
    if not images.is_dir() or not pairs.is_file():
        print(f"bench_lfw: LFW data not found (need {images}/ and {pairs}); "
              "see ../shared/data/README.md. Skipping.", file=sys.stderr)
        return 1
    if args.plot_dir is not None:
        args.plot_dir.mkdir(parents=True, exist_ok=True)

    console = Console() if sys.stdout.isatty() else Console(width=170)
    results: list[dict[str, object]] = []
    for backend in backends:
        try:
            report = run_verify(images, pairs, backend, progress=not args.no_progress)
        except ModelError as exc:
            print(f"bench_lfw: {backend}: {exc}", file=sys.stderr)
            return 2
        results.append(summary(report))
        if args.plot_dir is not None:
            from openlfr.evaluation.plots import plot_roc_det

            s, y = report.score_arrays()
            plot_roc_det(s, y, args.plot_dir / f"lfw_{backend}.png",
                         title=f"LFW: {report.model_id} ({report.pairs} pairs)")
        console.print(table(results[-1:]))
        for f in report.failed_images:
            console.print(f"  {backend}: failed {f.path}: {f.reason}", highlight=False)
    if len(results) > 1:
        console.print(table(results))
    sys.stdout.flush()
    print(json.dumps({"benchmark": "lfw", "data": str(args.data), "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
