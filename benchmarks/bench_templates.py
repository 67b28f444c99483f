"""Templates per second on ONE core for each backend, detection included, on 250x250 faces.

Usage (from the project root, in the project's virtualenv)::

    python benchmarks/bench_templates.py [--images 200] [--repeats 3] [--all-faces] [--flip]
        [--backends sface-onnxruntime sface-opencv dlib fusion]

One core is forced: OMP/OpenBLAS/MKL thread variables are set to 1 before anything is imported,
``cv2.setNumThreads(1)``, ONNX Runtime gets one intra-op thread, and the process is pinned to a
single CPU (Linux). Images are LFW's 250x250 photos from ``../shared/data/lfw/images`` when
present (an evenly spaced sample), else the test photos cached by ``tests/conftest.py``
(run ``pytest`` once to fetch them) resized to 250x250. Images are decoded before timing; a
timed pass per image is YuNet detection + alignment + embedding of the largest face (or of every
face with ``--all-faces``).

Two rates are given per backend: templates per wall-clock second (best pass) and templates per
CPU-second of this process, which is what one core delivers even when other work shares the
machine. The last line printed is one JSON object: ``{"benchmark": "templates_per_second", ...}``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from openlfr.vision import load_image, registry  # noqa: E402
from openlfr.vision.detect import YuNetDetector  # noqa: E402
from openlfr.vision.engine import FaceEngine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LFW_IMAGES = ROOT.parent / "shared" / "data" / "lfw" / "images"
SIZE = 250
BACKENDS = ("sface-onnxruntime", "sface-opencv", "dlib", "fusion")


def pin_one_cpu() -> int | None:
    """Pin this process to one CPU it may run on; the CPU's number, or None if unsupported."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def test_cache_images() -> list[Path]:
    cache = Path(os.environ.get("OPENLFR_TEST_CACHE", Path.home() / ".cache" / "openlfr-test"))
    return sorted((cache / "images").glob("*.jpg"))


def square_250(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    side = min(h, w)
    y, x = (h - side) // 2, (w - side) // 2
    return cv2.resize(image[y: y + side, x: x + side], (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def load_images(count: int) -> tuple[list[np.ndarray], str]:
    files = sorted(LFW_IMAGES.glob("*/*.jpg")) if LFW_IMAGES.is_dir() else []
    if files:
        step = max(len(files) // count, 1)
        chosen = files[::step][:count]
        images = [load_image(p) for p in chosen]
        return [im if im.shape[:2] == (SIZE, SIZE) else square_250(im) for im in images], "lfw"
    cached = test_cache_images()
    if not cached:
        sys.exit(f"no images: neither {LFW_IMAGES} nor the test cache (run pytest once)")
    base = [square_250(load_image(p)) for p in cached]
    return [base[k % len(base)] for k in range(count)], "test-cache"


def make_engine(name: str, flip: bool = False) -> FaceEngine:
    from openlfr.vision.embed_sface import SFaceEmbedder

    if name == "sface-onnxruntime":
        return FaceEngine("sface", YuNetDetector(), SFaceEmbedder(flip=flip, runtime="onnxruntime",
                                                                   threads=1))
    if name == "sface-opencv":
        return FaceEngine("sface", YuNetDetector(), SFaceEmbedder(flip=flip, runtime="opencv"))
    from openlfr.vision.embed_dlib import DlibEmbedder

    if name == "dlib":
        return FaceEngine("dlib", YuNetDetector(), DlibEmbedder())
    if name == "fusion":
        from openlfr.vision.embed_fusion import FusionEmbedder

        return FaceEngine("fusion", YuNetDetector(),
                          FusionEmbedder(sface=SFaceEmbedder(flip=True, threads=1),
                                         dlib=DlibEmbedder()))
    raise SystemExit(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")


def one_pass(engine: FaceEngine, images: list[np.ndarray], all_faces: bool) -> dict[str, float]:
    templates = 0
    detect_s = embed_s = 0.0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for image in images:
        t0 = time.perf_counter()
        faces = engine.detect(image)
        t1 = time.perf_counter()
        if faces:
            templates += len(engine.embed(image, faces if all_faces else faces[:1]))
        detect_s += t1 - t0
        embed_s += time.perf_counter() - t1
    return {
        "wall_s": time.perf_counter() - wall0,
        "cpu_s": time.process_time() - cpu0,
        "templates": templates,
        "detect_s": detect_s,
        "embed_s": embed_s,
    }


def bench(name: str, images: list[np.ndarray], repeats: int, all_faces: bool,
          flip: bool) -> dict:
    try:
        engine = make_engine(name, flip)
    except (registry.ModelError, ImportError) as exc:
        return {"skipped": str(exc)}
    one_pass(engine, images[:5], all_faces)  # warm-up: first-run allocations, lazy init
    passes = [one_pass(engine, images, all_faces) for _ in range(repeats)]
    best = min(passes, key=lambda p: p["wall_s"])
    n = best["templates"]
    embedder = engine.embedder
    sface = getattr(embedder, "sface", embedder)
    return {
        "templates_per_s": n / best["wall_s"],
        "templates_per_cpu_s": n / min(p["cpu_s"] for p in passes),
        "median_templates_per_s": statistics.median(n / p["wall_s"] for p in passes),
        "ms_per_template": 1000 * best["wall_s"] / max(n, 1),
        "detect_ms_per_image": 1000 * best["detect_s"] / len(images),
        "embed_ms_per_template": 1000 * best["embed_s"] / max(n, 1),
        "templates": n,
        "images": len(images),
        "runtime": getattr(sface, "runtime", None),
        "flip": getattr(sface, "flip", None),
    }


def show(results: dict[str, dict], header: str) -> None:
    columns = ("templates/s", "templates/CPU-s", "median/s", "ms/template", "detect ms/img",
               "embed ms/template")
    keys = ("templates_per_s", "templates_per_cpu_s", "median_templates_per_s",
            "ms_per_template", "detect_ms_per_image", "embed_ms_per_template")
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(header)
        print("backend".ljust(20) + "".join(c.rjust(18) for c in columns))
        for name, r in results.items():
            cells = ([f"{r[k]:.1f}".rjust(18) for k in keys] if "skipped" not in r
                     else [f"skipped: {r['skipped']}"])
            print(name.ljust(20) + "".join(cells))
        return
    table = Table(title=header)
    table.add_column("backend")
    for c in columns:
        table.add_column(c, justify="right")
    for name, r in results.items():
        if "skipped" in r:
            table.add_row(name, f"skipped: {r['skipped']}", *[""] * (len(columns) - 1))
        else:
            table.add_row(name, *(f"{r[k]:.1f}" for k in keys))
    Console(width=140).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--all-faces", action="store_true",
                        help="embed every detected face, not only the largest")
    parser.add_argument("--flip", action="store_true",
                        help="SFace with its test-time flip (two forwards per face; off by "
                             "default, as in the library; fusion always flips)")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    args = parser.parse_args()

    cv2.setNumThreads(1)
    cpu = pin_one_cpu()
    images, source = load_images(args.images)
    results = {name: bench(name, images, args.repeats, args.all_faces, args.flip)
               for name in args.backends}

    import onnxruntime

    faces = "all" if args.all_faces else "largest"
    header = (f"{len(images)} images {SIZE}x{SIZE} from {source}, one core (CPU {cpu}), "
              f"{faces} face(s) per image, SFace flip {'on' if args.flip else 'off'}, "
              f"best of {args.repeats} passes")
    show(results, header)
    print(json.dumps({
        "benchmark": "templates_per_second",
        "images": len(images),
        "image_source": source,
        "image_size": [SIZE, SIZE],
        "faces_per_image": faces,
        "sface_flip": args.flip,
        "cores": 1,
        "pinned_cpu": cpu,
        "repeats": args.repeats,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "versions": {"python": platform.python_version(), "opencv": cv2.__version__,
                     "onnxruntime": onnxruntime.__version__},
        "results": {name: ({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()})
                    for name, r in results.items()},
    }))


if __name__ == "__main__":
    main()
