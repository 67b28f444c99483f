"""Where a live camera's CPU goes: decode, detection, tracking, embedding and matching.

Runs one camera's pipeline over the Hamilton clip in this process, one thread (as a worker
does, OpenCV at one thread), at the clip's own rate and the ``watch`` defaults (detection at
most 15 times a second), and times each stage with the process's CPU clock (FFmpeg
decodes in threads of its own).

    python benchmarks/bench_profile.py [--passes 2] [--detect-fps F] [--roi-every N]
        [--motion-gate] [--yunet-runtime opencv|onnxruntime] [--backend sface|fusion]

``--yunet-runtime opencv`` measures detection as it was before YuNet ran on ONNX Runtime
(``cv2.FaceDetectorYN``), for a baseline in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import cv2

from openlfr.video.bestshot import ShotPolicy
from openlfr.video.pipeline import CameraPipeline, PipelineConfig
from openlfr.video.sinks import CallbackSink
from openlfr.video.types import Frame

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "face_recognition_examples"
sys.path.insert(0, str(HERE))
from bench_live import CLIP, build_watchlist  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--detect-fps", type=float, default=15.0)
    parser.add_argument("--motion-gate", action="store_true")
    parser.add_argument("--roi-every", type=int, default=1)
    parser.add_argument("--backend", default=None,
                        help="the watchlist's recogniser (default: the program's default)")
    parser.add_argument("--yunet-runtime", default="auto",
                        choices=["auto", "onnxruntime", "opencv"])
    args = parser.parse_args()
    from openlfr.cli.common import open_watchlist

    cv2.setNumThreads(1)
    spent: dict[str, float] = defaultdict(float)
    clock = time.process_time  # FFmpeg decodes in threads of its own

    def timed(name: str, fn):  # type: ignore[no-untyped-def]
        def wrapper(*a, **k):  # type: ignore[no-untyped-def]
            t0 = clock()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += clock() - t0
        return wrapper

    with tempfile.TemporaryDirectory() as tmp:
        wl_path = build_watchlist(args.data, Path(tmp), args.backend)
        wl, engine, thr = open_watchlist(wl_path, None)
        from openlfr.vision.detect import YuNetDetector

        engine.detector = YuNetDetector(runtime=args.yunet_runtime)
        config = PipelineConfig(threshold=thr, detect_fps=args.detect_fps,
                                shots=ShotPolicy(max_embeddings=3),
                                motion_gate=args.motion_gate, roi_every=args.roi_every)
        alerts: list[str] = []
        gallery = wl.gallery()
        names = {sid: s.display_name for sid, s in wl.subjects.items()}
        cap = cv2.VideoCapture(str(args.data / CLIP), cv2.CAP_FFMPEG)
        fps = cap.get(cv2.CAP_PROP_FPS)
        pipe = CameraPipeline("cam", engine, gallery, config,
                              CallbackSink(lambda a: alerts.append(a.subject_id)),
                              fps=fps, names=names)
        pipe._detect = timed("detection", pipe._detect)  # type: ignore[method-assign]
        pipe.tracker.update = timed("tracking", pipe.tracker.update)  # type: ignore[method-assign]
        engine.embed = timed("embedding", engine.embed)  # type: ignore[method-assign]
        gallery.search = timed("matching", gallery.search)  # type: ignore[method-assign]
        frames = 0
        total0 = clock()
        for _ in range(args.passes):
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            while True:
                t0 = clock()
                ok, image = cap.read()
                spent["decode"] += clock() - t0
                if not ok:
                    break
                pipe.process(Frame("cam", frames, frames / fps, time.time(),
                                   time.monotonic(), image))
                frames += 1
        pipe.flush()
        total = clock() - total0
    stages = ["decode", "detection", "tracking", "embedding", "matching"]
    other = total - sum(spent[s] for s in stages)
    # detection includes the downscale; "other" is quality, best shots, bookkeeping.
    out = {
        "frames": frames, "fps": round(fps, 2), "cpu_seconds": round(total, 3),
        "cores_per_camera_at_clip_rate": round(total / frames * fps, 3),
        "ms_per_frame": {s: round(1000 * spent[s] / frames, 3) for s in stages}
        | {"other": round(1000 * other / frames, 3), "total": round(1000 * total / frames, 3)},
        "share": {s: round(spent[s] / total, 3) for s in stages}
        | {"other": round(other / total, 3)},
        "detected_frames": pipe.stats.figures().detected_frames,
        "alerted": sorted(set(alerts)),
        "yunet_runtime": engine.detector.runtime,
        "backend": engine.backend,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
