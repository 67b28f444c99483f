"""Small faces in high-resolution frames: detection recall per face size, and its cost.

Builds "many people at a distance" from ../shared/data/face_recognition_examples (never copied
into the project): each frame of a 1080p (3 x 3 slots) or 4K (6 x 6 slots) canvas holds copies of
the Hamilton clip, one per slot, each shrunk to 1/3, 1/2 or 2/3 of the clip's size (in turn),
centred in its slot on grey, and each slot a different moment of the clip (so the canvas is a
crowd, not one picture repeated). The reference is the faces YuNet finds in the original 640x360
clip frames at full size; a reference face counts as found when the pipeline reports a face on
the canvas that overlaps its scaled-down box (IoU >= 0.3).

Three ways of detecting are measured in the same run, on the same frames, through the live
pipeline (``CameraPipeline.process``: detect, track, best shot, quality, embed; an empty
watchlist):

- ``today``: one pass on the frame scaled down to 640 pixels (``tiling="off"``)
- ``tiled``: that and a full tiled scan at native resolution on every frame
  (``tiling="on"``, ``full_scan_every=1``)
- ``tiled+roi``: that and a full tiled scan every N detected frames, regions of interest around
  the tracks' predicted small faces in between (``tiling="on"``, ``full_scan_every=N``)

Recall is per reference face size on the canvas (<20, 20-30, 30-40, 40+ pixels); cost is frames
per second and CPU-seconds per frame (one OpenCV thread), also as a ratio to ``today``. Frames
are fed as a camera analysed at 15 detections per second would be (every other clip frame).

    python benchmarks/bench_smallfaces.py                      # 1080p and 4K, 30 frames each
    python benchmarks/bench_smallfaces.py --frames 60 --full-scan-every 15 --out sf.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
DATA = next((p / "shared" / "data" / "face_recognition_examples" for p in HERE.parents
             if (p / "shared" / "data").is_dir()),
            HERE.parent.parent / "shared" / "data" / "face_recognition_examples")
CLIP = "short_hamilton_clip.mp4"
CANVASES = {"1080p": (1920, 1080, 3), "4k": (3840, 2160, 6)}
SCALES = (1 / 3, 1 / 2, 2 / 3)
BUCKETS = ((0, 20, "<20"), (20, 30, "20-30"), (30, 40, "30-40"), (40, 1e9, "40+"))
STRIDE = 2  # clip frames per detected frame: 29.97 fps analysed at ~15 detections per second


class _Empty:
    """A watchlist with nobody in it (every best shot is still embedded, as in a live run)."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    def __len__(self) -> int:
        return 0

    def search(self, queries: np.ndarray, k: int = 5, per_subject: bool = True) -> list:
        return [[] for _ in range(len(queries))]


def _read_clip(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    if not frames:
        sys.exit(f"cannot read {path}")
    return frames


class Scene:
    """The canvases, and where each reference face lies on them."""

    def __init__(self, clip: list[np.ndarray], references: list[list[tuple]], width: int,
                 height: int, grid: int) -> None:
        self.clip, self.references = clip, references
        self.width, self.height, self.grid = width, height, grid

    def slots(self, i: int) -> list[tuple[int, float, int, int]]:
        """(clip frame, scale, x, y) of every slot of canvas frame ``i``."""
        n = len(self.clip)
        sw, sh = self.width // self.grid, self.height // self.grid
        ch, cw = self.clip[0].shape[:2]
        out = []
        for k in range(self.grid * self.grid):
            scale = SCALES[k % len(SCALES)]
            w, h = round(cw * scale), round(ch * scale)
            x = (k % self.grid) * sw + (sw - w) // 2
            y = (k // self.grid) * sh + (sh - h) // 2
            out.append(((i * STRIDE + 37 * k) % n, scale, x, y))
        return out

    def canvas(self, i: int) -> np.ndarray:
        image = np.full((self.height, self.width, 3), 114, dtype=np.uint8)
        for index, scale, x, y in self.slots(i):
            src = self.clip[index]
            small = cv2.resize(src, (round(src.shape[1] * scale), round(src.shape[0] * scale)),
                               interpolation=cv2.INTER_AREA)
            image[y:y + small.shape[0], x:x + small.shape[1]] = small
        return image

    def truth(self, i: int) -> list[tuple[float, float, float, float]]:
        boxes = []
        for index, scale, x, y in self.slots(i):
            for bx, by, bw, bh in self.references[index]:
                boxes.append((x + bx * scale, y + by * scale, bw * scale, bh * scale))
        return boxes


def _iou(a: tuple, b: tuple) -> float:
    ix = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    iy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _bucket(width: float) -> str:
    return next(name for lo, hi, name in BUCKETS if lo <= width < hi)


def run_mode(scene: Scene, engine, frames: int, tiling: str, every: int) -> dict:
    from openlfr.video.pipeline import CameraPipeline, PipelineConfig
    from openlfr.video.sinks import MemorySink
    from openlfr.video.types import Frame

    config = PipelineConfig(threshold=engine.default_threshold, tiling=tiling,
                            full_scan_every=every)
    pipeline = CameraPipeline("bench", engine, _Empty(engine.model_id), config,  # type: ignore[arg-type]
                              MemorySink(), fps=15.0)
    found = {name: 0 for _, _, name in BUCKETS}
    total = {name: 0 for _, _, name in BUCKETS}
    wall = cpu = detect_cpu = 0.0
    scans: dict[str, int] = {}
    for i in range(frames):
        image = scene.canvas(i)
        frame = Frame("bench", i, i / 15.0, time.time(), time.monotonic(), image)
        w0, c0 = time.perf_counter(), time.process_time()
        detected = pipeline.detect(frame)
        detect_cpu += time.process_time() - c0
        result = pipeline.advance(detected)
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
        scans[detected.scan] = scans.get(detected.scan, 0) + 1
        boxes = [f.box for f in result.faces]
        for ref in scene.truth(i):
            name = _bucket(ref[2])
            total[name] += 1
            found[name] += any(_iou(ref, box) >= 0.3 for box in boxes)
    pipeline.flush()
    return {
        "recall": {n: (round(found[n] / total[n], 3) if total[n] else None) for n in total},
        "faces": total,
        "fps": round(frames / wall, 2),
        "cpu_s_per_frame": round(cpu / frames, 4),
        "detect_cpu_s_per_frame": round(detect_cpu / frames, 4),
        "scans": scans,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=30, help="canvas frames per mode")
    parser.add_argument("--canvas", choices=sorted(CANVASES), action="append",
                        help="canvas size(s) (default: both)")
    parser.add_argument("--full-scan-every", type=int, default=15,
                        help="N of tiled+roi (default: the pipeline's default, 15)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    args = parser.parse_args()
    if not (DATA / CLIP).is_file():
        sys.exit(f"missing {DATA / CLIP} (the shared evaluation data)")
    cv2.setNumThreads(1)
    from openlfr.vision import get_engine

    engine = get_engine("sface")
    clip = _read_clip(DATA / CLIP)
    detector = engine.detector
    references = [[f.box for f in detector.detect(image)] for image in clip]
    results: dict[str, dict] = {}
    modes = (("today", "off", 1), ("tiled", "on", 1),
             ("tiled+roi", "on", args.full_scan_every))
    for name in args.canvas or ["1080p", "4k"]:
        width, height, grid = CANVASES[name]
        scene = Scene(clip, references, width, height, grid)
        results[name] = {mode: run_mode(scene, engine, args.frames, tiling, every)
                         for mode, tiling, every in modes}
        base = results[name]["today"]["cpu_s_per_frame"]
        for mode in results[name].values():
            mode["cpu_ratio"] = round(mode["cpu_s_per_frame"] / base, 2) if base else None
        print(f"\n{name} ({width}x{height}, {grid}x{grid} slots, {args.frames} frames)")
        print(f"{'mode':<10} " + " ".join(f"{b:>7}" for _, _, b in BUCKETS)
              + f" {'fps':>6} {'cpu s/fr':>9} {'detect':>7} {'x today':>8}")
        faces = results[name]["today"]["faces"]
        print(f"{'faces':<10} " + " ".join(f"{faces[b]:>7}" for _, _, b in BUCKETS))
        for mode, r in results[name].items():
            cells = " ".join(f"{'-' if r['recall'][b] is None else r['recall'][b]:>7}"
                             for _, _, b in BUCKETS)
            print(f"{mode:<10} {cells} {r['fps']:>6} {r['cpu_s_per_frame']:>9} "
                  f"{r['detect_cpu_s_per_frame']:>7} {r['cpu_ratio']:>8}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
