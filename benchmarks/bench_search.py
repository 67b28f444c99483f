"""Exact top-k search latency: the gallery's NumPy engine against FAISS ``IndexFlatIP``.

Random unit float32 vectors (128-d by default). For each gallery size both engines answer the
same probes in the same run, taking turns pass by pass (order alternating between repeats, with
a short pause between engines so that neither runs against the other's still-spinning worker
threads):

* one row per batch size in ``--batch`` (default 1000 and 100): ``--probes`` probes sent in
  batches of that size; ms per probe of the best of ``--repeats`` passes (median in the JSON);
* a "single" row: ``--single`` probes sent one at a time; the median per-call latency over all
  probes and repeats (p90 in the JSON);
* the "Gallery" column: the same calls through ``Gallery.search`` (NumPy engine, per-subject
  top-k as ``Candidate`` objects), to show what the wrapper adds to the bare kernel.

Both engines are exact, so their top-k must agree; the agreement is checked and reported. A
table goes to stdout, then one JSON line ``{"benchmark": "search", "results": [...]}``.

Note: FAISS uses BLAS for a flat search only when the query batch is large; smaller batches
go through its per-query SIMD loop (with faiss-cpu 1.15, measured here, the switch is at
``n_queries * dim`` = ``faiss.cvar.distance_compute_blas_threshold`` = 128,000, i.e. 1,000
probes at 128-d). Both paths are measured as FAISS chooses them.

    python benchmarks/bench_search.py                    # 10k, 100k, 1M
    python benchmarks/bench_search.py --sizes 10000,50000 --batch 1000,32 --repeats 5
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_search.py --faiss-threads 1  # one core each
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable

import faiss
import numpy as np

from openlfr.watchlist import Gallery
from openlfr.watchlist.gallery import QUERY_CHUNK, SCORE_BUDGET, exact_topk_numpy

Search = Callable[[np.ndarray], object]
SETTLE_SECONDS = 0.3


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    out = np.empty((n, dim), dtype=np.float32)
    step = 1 << 18
    for start in range(0, n, step):
        block = rng.standard_normal((min(step, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + len(block)] = block
    return out


def timed(search: Search, queries: np.ndarray) -> float:
    start = time.perf_counter()
    search(queries)
    return time.perf_counter() - start


def settle() -> None:
    """Let the previous engine's idle worker threads stop spinning before the next one runs.

    OpenBLAS (NumPy) and OpenMP (FAISS) workers busy-wait for a while after each call; if the
    engines alternated call by call, each would run against the other's spinning threads.
    """
    time.sleep(SETTLE_SECONDS)


def turns(engines: dict[str, Search], repeat: int) -> list[tuple[str, Search]]:
    """The engines in turn, the order reversed on every other repeat to cancel drift."""
    items = list(engines.items())
    return items if repeat % 2 == 0 else items[::-1]


def batch_row(engines: dict[str, Search], probes: np.ndarray, batch: int,
              repeats: int) -> dict[str, object]:
    """Per-probe ms of the best pass over all probes in batches."""
    chunks = [probes[i : i + batch] for i in range(0, len(probes), batch)]
    passes: dict[str, list[float]] = {name: [] for name in engines}
    for repeat in range(repeats):
        for name, search in turns(engines, repeat):
            settle()
            passes[name].append(sum(timed(search, chunk) for chunk in chunks))
    row: dict[str, object] = {"mode": "batch", "batch": batch, "probes": len(probes)}
    for name, values in passes.items():
        row[f"{name}_ms"] = round(min(values) / len(probes) * 1e3, 4)
        row[f"{name}_ms_median"] = round(statistics.median(values) / len(probes) * 1e3, 4)
    return row


def single_row(engines: dict[str, Search], probes: np.ndarray,
               repeats: int) -> dict[str, object]:
    """Median per-call latency of probes sent one at a time."""
    calls: dict[str, list[float]] = {name: [] for name in engines}
    for repeat in range(repeats):
        for name, search in turns(engines, repeat):
            settle()
            calls[name] += [timed(search, row[None, :]) for row in probes]
    out: dict[str, object] = {"mode": "single", "batch": 1, "probes": len(probes)}
    for name, values in calls.items():
        out[f"{name}_ms"] = round(statistics.median(values) * 1e3, 4)
        out[f"{name}_ms_p90"] = round(float(np.percentile(values, 90)) * 1e3, 4)
    return out


def bench_size(n: int, args: argparse.Namespace, rng: np.random.Generator
               ) -> list[dict[str, object]]:
    database = unit_vectors(rng, n, args.dim)
    probes = unit_vectors(rng, args.probes, args.dim)
    k = args.k

    index = faiss.IndexFlatIP(args.dim)
    index.add(database)
    gallery = Gallery("bench", args.dim, engine="numpy")
    ids = [f"s{i}" for i in range(n)]
    gallery.add_many(ids, ids, database)
    engines: dict[str, Search] = {
        "numpy": lambda q: exact_topk_numpy(database, q, k),
        "faiss": lambda q: index.search(q, k),
        "gallery": lambda q: gallery.search(q, k=k),
    }

    # Warm-up, and the exactness check: both engines must find the same templates.
    np_scores, np_ids = exact_topk_numpy(database, probes, k)
    fa_scores, fa_ids = index.search(probes, k)
    same = float(np.mean([set(a) == set(b) for a, b in zip(np_ids, fa_ids, strict=True)]))
    score_diff = float(np.abs(np.sort(np_scores, 1) - np.sort(fa_scores, 1)).max())
    engines["gallery"](probes[:10])

    rows = [batch_row(engines, probes, b, args.repeats) for b in args.batch]
    rows.append(single_row(engines, probes[: args.single], args.repeats))
    for row in rows:
        row.update(size=n, dim=args.dim, k=k, repeats=args.repeats,
                   ratio=round(float(row["numpy_ms"]) / float(row["faiss_ms"]), 3),
                   same_topk_fraction=same, max_score_diff=score_diff)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="comma-separated gallery sizes (default: 10000,100000,1000000)")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--probes", type=int, default=1000, help="probes for the batch rows")
    parser.add_argument("--batch", default="1000,100",
                        help="comma-separated batch sizes (default: 1000,100)")
    parser.add_argument("--single", type=int, default=50, help="probes sent one at a time")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--faiss-threads", type=int, default=0,
                        help="OpenMP threads for FAISS (default: FAISS's own choice)")
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    args.batch = [int(b) for b in args.batch.split(",") if b.strip()]
    args.single = min(args.single, args.probes)
    if args.faiss_threads > 0:
        faiss.omp_set_num_threads(args.faiss_threads)

    env: dict[str, object] = {
        "cpus": os.cpu_count(), "faiss": faiss.__version__, "numpy": np.__version__,
        "faiss_omp_threads": faiss.omp_get_max_threads(),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        "query_chunk": QUERY_CHUNK, "score_budget": SCORE_BUDGET,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }
    print(f"# {env}", file=sys.stderr)
    print(f"exact top-{args.k}, {args.dim}-d, ms per probe. batch rows: {args.probes} probes, "
          f"best of {args.repeats} passes; single: median of {args.single} probes x "
          f"{args.repeats}. Gallery = Gallery.search (NumPy engine, per subject).")
    header = (f"{'size':>9} {'mode':>10} | {'numpy':>9} {'faiss':>9} {'numpy/faiss':>11} | "
              f"{'Gallery':>9} | same top-k")
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(args.seed)
    results: list[dict[str, object]] = []
    for n in sizes:
        for row in bench_size(n, args, rng):
            results.append(row)
            mode = "single" if row["mode"] == "single" else f"batch {row['batch']}"
            print(f"{n:>9} {mode:>10} | {row['numpy_ms']:>9.4f} {row['faiss_ms']:>9.4f} "
                  f"{row['ratio']:>11.2f} | {row['gallery_ms']:>9.4f} | "
                  f"{row['same_topk_fraction']:.4f}", flush=True)
    env["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"# load average at start {env['loadavg_start']}, at end {env['loadavg_end']} "
          f"on {env['cpus']} CPUs")
    print(json.dumps({"benchmark": "search", "env": env, "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
