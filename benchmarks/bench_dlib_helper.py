"""What dlib's helper process buys a live run: how much detection the other threads get done
while dlib computes descriptors, with dlib's network in the process and in its helper.

    python benchmarks/bench_dlib_helper.py [--seconds 10] [--rounds 2]

One thread detects faces (YuNet on ONNX Runtime, one thread, a 640 × 352 frame of the
Hamilton clip) as fast as it can, as a live run's worker does; another embeds a face with dlib
without pause (far more often than a live run does, to make the effect plain). Three
configurations are alternated ``rounds`` times in one run: detection alone (the baseline),
dlib in-process, dlib in its helper process. Reported: detections per second, and as a ratio
against the baseline of the same round (steadier than the raw rate on a shared machine).
Uses ../shared/data/face_recognition_examples (never copied).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import cv2

from openlfr.vision import get_engine, load_image
from openlfr.vision.embed_dlib import DlibEmbedder

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "face_recognition_examples"


def frame_of(clip: Path, index: int = 60):
    cap = cv2.VideoCapture(str(clip))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = cap.read()
    cap.release()
    if not ok:
        sys.exit(f"{clip}: no frame {index}")
    return cv2.resize(frame, (640, 352))


def detections_per_second(frame, seconds: float, embedder: DlibEmbedder | None,
                          photo, faces) -> tuple[float, int]:
    detector = get_engine("sface").detector
    stop = threading.Event()
    embedded = [0]

    def embed() -> None:
        while not stop.is_set():
            assert embedder is not None
            embedder.embed(photo, faces)
            embedded[0] += 1

    helper = threading.Thread(target=embed) if embedder is not None else None
    if helper is not None:
        helper.start()
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        detector.detect(frame)
        count += 1
    elapsed = time.perf_counter() - start
    stop.set()
    if helper is not None:
        helper.join()
    return count / elapsed, embedded[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    clip = args.data / "short_hamilton_clip.mp4"
    if not clip.exists():
        sys.exit(f"{clip}: not found (pass --data)")
    cv2.setNumThreads(1)
    frame = frame_of(clip)
    photo = load_image(args.data / "obama.jpg")
    faces = get_engine("sface").detect(photo)
    local, helped = DlibEmbedder(), DlibEmbedder()
    helped.use_helper_process()
    runs: dict[str, list[dict[str, float]]] = {"alone": [], "dlib_in_process": [],
                                                "dlib_in_helper": []}
    try:
        for _ in range(args.rounds):
            for name, embedder in (("alone", None), ("dlib_in_process", local),
                                   ("dlib_in_helper", helped)):
                rate, embedded = detections_per_second(frame, args.seconds, embedder, photo,
                                                       faces)
                runs[name].append({"detections_per_s": round(rate, 1),
                                   "embeddings_per_s": round(embedded / args.seconds, 1),
                                   "load": round(os.getloadavg()[0], 1)})
                print(f"  {name}: {rate:.1f} detections/s, {embedded / args.seconds:.1f} "
                      f"embeddings/s, load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    finally:
        helped.close()
    base = statistics.median(r["detections_per_s"] for r in runs["alone"])
    out = {name: {"detections_per_s": statistics.median(r["detections_per_s"] for r in done),
                  "ratio_to_alone": round(statistics.median(
                      r["detections_per_s"] for r in done) / base, 3),
                  "embeddings_per_s": statistics.median(r["embeddings_per_s"] for r in done),
                  "runs": done}
           for name, done in runs.items()}
    print(json.dumps({"cpu_count": os.cpu_count(), **out}, indent=1))


if __name__ == "__main__":
    main()
