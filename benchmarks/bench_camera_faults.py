"""One camera's failure affects that camera alone: timings with and without a second camera
whose URL never answers (a local server on 127.0.0.1 that accepts and stays silent).

For each try: open the sources (``open_sources``), start the run, wait for the good camera's
first analysed frame, let it run 0.5 s, stop it. Reported: start → first frame analysed
(from the call of ``open_sources``), and stop → run ended (``Runner.stop`` → ``run`` returned),
median and max.

    python benchmarks/bench_camera_faults.py --tries 20 [--clip PATH]

The good camera is ``short_hamilton_clip.mp4`` from ../shared/data/face_recognition_examples
(never copied), paced at its frame rate and looped, against an empty watchlist.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import threading
import time
from pathlib import Path

from openlfr.video.pipeline import CameraPipeline, PipelineConfig
from openlfr.video.runner import Runner
from openlfr.video.sinks import MemorySink
from openlfr.video.sources import open_sources
from openlfr.vision import get_engine
from openlfr.watchlist import Watchlist

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.test_video_faults import HangingServer

CLIP = (Path(__file__).resolve().parent.parent.parent / "shared" / "data"
        / "face_recognition_examples" / "short_hamilton_clip.mp4")


def once(clip: Path, silent: HangingServer | None, engine, gallery) -> tuple[float, float]:
    texts = [f"gate={clip}"] + ([f"side={silent.url}"] if silent else [])
    t0 = time.monotonic()
    sources = open_sources(texts, realtime=True, loop=True)
    first: list[float] = []
    seen = threading.Event()

    def on_frame(pipeline: CameraPipeline, _result: object) -> None:
        if pipeline.camera == "gate" and not first:
            first.append(time.monotonic())
            seen.set()

    config = PipelineConfig(threshold=engine.default_threshold, detect_fps=15)
    cameras = [(s, CameraPipeline(s.name, engine, gallery, config, MemorySink(), fps=s.fps))
               for s in sources]
    runner = Runner(cameras, workers=2, on_frame=on_frame)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    if not seen.wait(60):
        raise SystemExit("no frame was analysed within 60 s")
    time.sleep(0.5)
    stop = time.monotonic()
    runner.stop()
    thread.join()
    return first[0] - t0, time.monotonic() - stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--clip", type=Path, default=CLIP)
    args = parser.parse_args()
    if not args.clip.exists():
        raise SystemExit(f"{args.clip}: not found")
    engine = get_engine("sface")
    gallery = Watchlist(model_id=engine.model_id, dim=engine.embedder.dim).gallery()
    for label, with_silent in (("cameras all answer", False), ("one camera silent", True)):
        starts, stops = [], []
        for _ in range(args.tries):
            with HangingServer() if with_silent else contextlib.nullcontext() as silent:
                start, stop = once(args.clip, silent, engine, gallery)
            starts.append(start)
            stops.append(stop)
        print(f"{label}: start → first frame analysed median {statistics.median(starts):.2f} s,"
              f" max {max(starts):.2f} s; stop → run ended median "
              f"{statistics.median(stops):.2f} s, max {max(stops):.2f} s ({args.tries} tries)",
              flush=True)


if __name__ == "__main__":
    main()
