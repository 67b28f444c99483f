"""Small faces in large frames: tiled detection, seams, full-resolution crops, scan schedule.

The canvases are composed from the registry-package photos (tests/conftest.py's
``face_images``): copies of real faces shrunk to 22-46 pixels on a 1080p or 4K backdrop,
where the 640-pixel downscaled pass sees them at 7-11 pixels.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from openlfr.video.bestshot import ShotPolicy
from openlfr.video.pipeline import CameraPipeline, PipelineConfig
from openlfr.video.sinks import MemorySink
from openlfr.video.types import Frame
from openlfr.vision import get_engine, load_image
from openlfr.vision.tiling import detect_tiled, merge_faces, roi_regions, tile_grid
from openlfr.vision.types import Face
from openlfr.watchlist.gallery import Gallery

from . import videoclips

FACES = ("obama", "obama2", "obama3", "biden")


def _canvas(width: int, height: int) -> np.ndarray:
    return np.ascontiguousarray(cv2.resize(videoclips.background(), (width, height),
                                           interpolation=cv2.INTER_LINEAR))


def _place(canvas: np.ndarray, photo: Path, face_width: float, cx: float, cy: float
           ) -> tuple[float, float, float, float]:
    """Paste a head-and-shoulders copy of ``photo`` with its face ``face_width`` wide and
    centred on (cx, cy); returns the pasted face's box (from the photo's detection)."""
    image, (x, y, w, h) = videoclips._sprite_source(str(photo))
    scale = face_width / w
    x0, y0 = max(int(x - 0.6 * w), 0), max(int(y - 0.6 * h), 0)
    x1, y1 = min(int(x + 1.6 * w), image.shape[1]), min(int(y + 1.9 * h), image.shape[0])
    cut = image[y0:y1, x0:x1]
    size = (max(round(cut.shape[1] * scale), 1), max(round(cut.shape[0] * scale), 1))
    small = cv2.resize(cut, size, interpolation=cv2.INTER_AREA)
    fx, fy = (x - x0) * scale, (y - y0) * scale  # the face's corner in the sprite
    left = round(cx - fx - face_width / 2)
    top = round(cy - fy - h * scale / 2)
    canvas[top:top + small.shape[0], left:left + small.shape[1]] = small
    return (left + fx, top + fy, face_width, h * scale)


def _at(faces: list[Face] | tuple[Face, ...], box: tuple[float, float, float, float]
        ) -> list[Face]:
    """The faces whose centre lies within ``box`` (grown by half its size)."""
    x, y, w, h = box
    return [f for f in faces
            if x - w / 2 <= f.center[0] <= x + 1.5 * w and y - h / 2 <= f.center[1] <= y + 1.5 * h]


def _frame(image: np.ndarray, i: int = 0) -> Frame:
    return Frame("cam", i, i / 15.0, time.time(), time.monotonic(), image)


class _Empty:
    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    def __len__(self) -> int:
        return 0

    def search(self, queries: np.ndarray, k: int = 5, per_subject: bool = True) -> list:
        return [[] for _ in range(len(queries))]


def _pipeline(config: PipelineConfig, gallery: object | None = None,
              sink: MemorySink | None = None) -> CameraPipeline:
    engine = get_engine("sface")
    return CameraPipeline("cam", engine, gallery or _Empty(engine.model_id),  # type: ignore[arg-type]
                          config, sink or MemorySink(), fps=15.0)


class _Counting:
    """The real detector, counting the pixels it is given."""

    name = "counting"

    def __init__(self) -> None:
        self.inner = get_engine("sface").detector
        self.pixels = 0

    def detect(self, image: np.ndarray) -> list[Face]:
        self.pixels += image.shape[0] * image.shape[1]
        return self.inner.detect(image)

    def copy(self) -> _Counting:
        return _Counting()


@pytest.fixture(scope="module")
def crowd(face_images: dict[str, Path]
          ) -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
    """A 1080p frame with eight faces of 22 to 25 pixels, away from the tile seams."""
    canvas = _canvas(1920, 1080)
    spots = [(300, 300), (780, 260), (1200, 330), (1650, 280),
             (250, 820), (760, 780), (1180, 840), (1680, 800)]
    boxes = [_place(canvas, face_images[FACES[n % 4]], 22 + n % 4, cx, cy)
             for n, (cx, cy) in enumerate(spots)]
    return canvas, boxes


def test_tiled_detection_finds_small_faces_the_downscaled_pass_loses(crowd):
    canvas, boxes = crowd
    today = _pipeline(PipelineConfig(threshold=0.5, tiling="off")).detect(_frame(canvas))
    assert today.scan == "downscaled"
    assert sum(bool(_at(today.faces, b)) for b in boxes) <= 1  # 7-8 px after the downscale
    tiled = _pipeline(PipelineConfig(threshold=0.5, tiling="auto")).detect(_frame(canvas))  # 1080p
    assert tiled.scan == "full"
    assert [len(_at(tiled.faces, b)) for b in boxes] == [1] * len(boxes)
    for face, box in zip((_at(tiled.faces, b)[0] for b in boxes), boxes, strict=True):
        assert abs(face.width - box[2]) < 0.35 * box[2]  # full-frame size, not downscaled
        assert face.landmarks[:, 0].min() > box[0] - box[2] / 2  # landmarks moved back too


def test_a_face_on_a_tile_seam_is_found_once(face_images):
    width, height = 1920, 1080
    tiles = tile_grid(width, height)
    left, right = tiles[0], tiles[1]  # neighbours along x: right[0] < left[2]
    below = tiles[len({t[0] for t in tiles})]  # the tile under the first one
    assert right[0] < left[2] and below[1] < left[3]
    canvas = _canvas(width, height)
    spots = [(left[2], 250), (right[0], 820), (1500, below[1]), (left[2] + 3, left[3] - 2)]
    boxes = [_place(canvas, face_images[FACES[n]], 34, cx, cy)
             for n, (cx, cy) in enumerate(spots)]
    faces = detect_tiled(get_engine("sface").detector, canvas)
    assert [len(_at(faces, b)) for b in boxes] == [1, 1, 1, 1]


def test_merging_keeps_the_best_of_overlapping_faces_and_separate_ones():
    marks = np.zeros((5, 2), dtype=np.float32)
    a = Face((100, 100, 30, 36), marks, 0.9)
    part = Face((100, 100, 16, 36), marks, 0.7)  # a face cut by a seam, inside the whole one
    shifted = Face((103, 101, 30, 36), marks, 0.8)
    other = Face((140, 100, 30, 36), marks, 0.6)
    assert merge_faces([part, shifted, a, other]) == [a, other]


def test_tile_grid_covers_the_frame_with_the_overlap_asked():
    for width, height in ((1920, 1080), (3840, 2160), (1280, 720), (700, 500)):
        tiles = tile_grid(width, height, 640, 128)
        covered = np.zeros((height, width), dtype=bool)
        for x0, y0, x1, y1 in tiles:
            assert x1 - x0 <= 640 and y1 - y0 <= 640
            covered[y0:y1, x0:x1] = True
        assert covered.all()
        xs = sorted({(t[0], t[2]) for t in tiles})
        assert all(a[1] - b[0] >= 128 for a, b in itertools.pairwise(xs))
    assert tile_grid(640, 360) == [(0, 0, 640, 360)]


def test_regions_of_interest_join_only_when_cheaper():
    regions, scales = roi_regions([(100, 100, 30, 30), (120, 110, 30, 30)], 1920, 1080)
    assert len(regions) == 1 and scales == [1.0]
    # a large face's region beside a small one's: two regions, the large one scaled down
    regions, scales = roi_regions([(400, 400, 200, 200), (380, 380, 24, 24)], 1920, 1080)
    assert len(regions) == 2 and sorted(scales) == [pytest.approx(0.32), 1.0]


def test_small_frames_keep_the_single_downscaled_pass():
    assert not PipelineConfig(threshold=0.5).tiles(3840, 2160)  # the default: off
    config = PipelineConfig(threshold=0.5, tiling="auto")
    assert not config.tiles(1280, 720) and not config.tiles(640, 360)
    assert config.tiles(1920, 1080) and config.tiles(3840, 2160)
    assert PipelineConfig(threshold=0.5, tiling="on").tiles(1280, 720)
    assert not PipelineConfig(threshold=0.5, tiling="on").tiles(640, 360)
    assert not PipelineConfig(threshold=0.5, tiling="off").tiles(3840, 2160)
    detector = _Counting()
    result = _pipeline(config).detect(_frame(_canvas(1280, 720)), detector=detector)
    assert result.scan == "downscaled" and detector.pixels == 640 * 352
    for bad in ({"tiling": "sometimes"}, {"full_scan_every": 0}, {"tile_size": 64},
                {"tile_overlap": 400}):
        with pytest.raises(ValueError):
            PipelineConfig(threshold=0.5, **bad)  # type: ignore[arg-type]


def test_full_scan_every_n_frames_and_tracked_regions_in_between(crowd):
    canvas, boxes = crowd
    pipeline = _pipeline(PipelineConfig(threshold=0.5, tiling="on", full_scan_every=3))
    scans, pixels = [], []
    for i in range(7):
        detector = _Counting()
        detected = pipeline.detect(_frame(canvas, i), detector=detector)
        result = pipeline.advance(detected)
        scans.append(detected.scan)
        pixels.append(detector.pixels)
        # between full scans the tracked small faces are still found, in their regions
        assert sum(bool(_at(result.faces, b)) for b in boxes) == len(boxes), (i, detected.scan)
    assert scans == ["full", "regions", "regions", "full", "regions", "regions", "full"]
    full, regions = pixels[0], max(pixels[1], pixels[2])
    assert regions < full / 4  # regions around eight faces, not the whole frame


def test_regions_cost_only_the_downscaled_pass_when_nobody_is_there():
    empty = _canvas(1920, 1080)
    pipeline = _pipeline(PipelineConfig(threshold=0.5, tiling="auto", full_scan_every=5))
    seen = []
    for i in range(3):
        detector = _Counting()
        detected = pipeline.detect(_frame(empty, i), detector=detector)
        pipeline.advance(detected)
        seen.append((detected.scan, detector.pixels))
    assert seen[0][0] == "full" and seen[0][1] > 1920 * 1080
    assert seen[1:] == [("regions", 640 * 352), ("regions", 640 * 352)]


def test_recognition_crop_is_cut_from_the_full_resolution_frame(face_images):
    engine = get_engine("sface")
    photo = load_image(face_images["obama"])
    template = engine.embed(photo, engine.detect(photo)[:1])[0]
    gallery = Gallery(engine.model_id, template.vector.shape[0])
    gallery.add("obama", "obama-ref", template)
    canvas = _canvas(3840, 2160)
    box = _place(canvas, face_images["obama2"], 46, 2500, 1300)
    config = PipelineConfig(threshold=engine.default_threshold, tiling="auto",
                            shots=ShotPolicy(window=0.0))

    today = MemorySink()
    _pipeline(PipelineConfig(threshold=engine.default_threshold, tiling="off",
                             shots=ShotPolicy(window=0.0)), gallery, today
              ).process(_frame(canvas))
    assert today.alerts == []  # 8 pixels wide in the downscaled 4K frame: not found

    sink = MemorySink()
    _pipeline(config, gallery, sink).process(_frame(canvas))
    assert len(sink.alerts) == 1
    alert = sink.alerts[0]
    x, y, w, h = alert.box
    assert abs(x - box[0]) < 8 and abs(y - box[1]) < 8 and 0.75 * box[2] < w < 1.35 * box[2]
    crop = alert.probe_crop
    # margin 0.5 on each side: twice the face, in full-frame pixels (not a downscaled copy)
    assert abs(crop.shape[1] - 2 * w) <= 3 and abs(crop.shape[0] - 2 * h) <= 3
    x0, y0 = int(x - 0.5 * w), int(y - 0.5 * h)
    assert any(np.array_equal(crop, canvas[y0 + dy:y0 + dy + crop.shape[0],
                                           x0 + dx:x0 + dx + crop.shape[1]])
               for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def test_watch_finds_a_small_face_in_a_4k_camera_unless_tiling_is_off(clips, face_images,
                                                                       tmp_path):
    from typer.testing import CliRunner

    from openlfr.cli import app

    frames = []
    for i in range(3):
        canvas = _canvas(3840, 2160)
        _place(canvas, face_images["obama2"], 46, 2200 + 2 * i, 1200)
        frames.append(canvas)
    clip = videoclips.write_clip(tmp_path / "street.avi", frames)

    def alerts(*options: str) -> list[dict]:
        result = CliRunner().invoke(app, ["watch", f"street={clip}", "--watchlist",
                                          str(clips.watchlist), "--json", "--detect-fps", "0",
                                          *options])
        assert result.exit_code == 0, result.output
        events = [json.loads(line) for line in result.stdout.splitlines()]
        return [e for e in events if e["event"] == "alert"]

    found = alerts("--tiling", "auto")  # a 4K frame is tiled
    assert [(a["camera"], a["subject"]) for a in found] == [("street", "obama")]
    assert 30 < found[0]["box"][2] < 60  # the face's full-resolution width
    assert alerts() == []  # the default, off: as before tiling existed


def test_regions_follow_a_small_face_that_moves_between_full_scans(face_images):
    pipeline = _pipeline(PipelineConfig(threshold=0.5, tiling="auto", full_scan_every=10))
    found = []
    for i in range(6):
        canvas = _canvas(1920, 1080)
        box = _place(canvas, face_images["obama"], 24, 500 + 9 * i, 400 + 3 * i)
        detected = pipeline.detect(_frame(canvas, i))
        result = pipeline.advance(detected)
        found.append((detected.scan, len(_at(result.faces, box))))
    assert found == [("full", 1)] + [("regions", 1)] * 5
