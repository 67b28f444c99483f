"""The per-camera pipeline on real clips (made from registry-package photos) and on stubs."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from openlfr.errors import InvalidInput
from openlfr.video.bestshot import ShotPolicy, TrackRecord, meets, shot_score
from openlfr.video.pipeline import CameraPipeline, PipelineConfig, detection_size
from openlfr.video.sinks import MemorySink
from openlfr.video.sources import CaptureSource, SourceSpec
from openlfr.video.types import Frame
from openlfr.vision import get_engine
from openlfr.vision import quality as q
from openlfr.vision.types import Candidate, Face, Template

from . import videoclips


def _frames(path: Path, camera: str = "cam") -> list[Frame]:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 15.0
    out = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        i = len(out)
        out.append(Frame(camera, i, i / fps, time.time(), time.monotonic(), image))
    cap.release()
    return out


def _run(clips, path: Path, config: PipelineConfig | None = None, frames=None):
    engine = get_engine("sface")
    gallery, names = videoclips.load_gallery(clips.watchlist)
    sink = MemorySink()
    pipeline = CameraPipeline("cam", engine, gallery,  # type: ignore[arg-type]
                              config or PipelineConfig(threshold=engine.default_threshold),
                              sink, fps=15.0, names=names)
    results = [pipeline.process(f) for f in (frames if frames is not None else _frames(path))]
    results_alerts = [a for r in results for a in r.alerts]
    results_alerts += pipeline.flush()
    return pipeline, sink, results, results_alerts


def test_watchlisted_face_walking_in_raises_one_alert_with_what_a_reviewer_needs(clips):
    _pipeline, sink, results, returned = _run(clips, clips.obama)
    firsts = sink.firsts()
    assert len(firsts) == 1, [a.as_event() for a in sink.alerts]
    alert = firsts[0]
    assert alert.subject_id == "obama" and alert.display_name == "Barack Obama"
    assert alert.camera == "cam" and alert.track_id >= 1
    assert alert.score >= alert.threshold == get_engine("sface").default_threshold
    assert alert.reference_id == clips.reference_id
    assert alert.model_id == get_engine("sface").model_id
    assert 0 <= alert.frame < 40 and alert.t == pytest.approx(alert.frame / 15.0)
    assert abs(alert.wall_time - time.time()) < 120
    crop = alert.probe_crop
    assert crop.dtype == np.uint8 and crop.ndim == 3 and min(crop.shape[:2]) >= 40
    x, y, w, _h = alert.box
    assert w > 30 and 0 <= x < 640 and 0 <= y < 360
    # Updates carry the same alert id, a higher score and the next revision.
    for i, update in enumerate(sink.alerts[1:], 1):
        assert update.alert_id == alert.alert_id and update.revision == i
        assert update.score > sink.alerts[i - 1].score
    assert returned == sink.alerts
    # The track is labelled in the frames after the alert (for the preview).
    assert any(r.labels for r in results)


def test_stranger_and_empty_scene_raise_no_alert(clips):
    pipeline, sink, _, _ = _run(clips, clips.stranger)
    assert sink.alerts == []
    figures = pipeline.stats.figures()
    assert figures.faces >= 30 and figures.tracks >= 1 and figures.embeddings >= 1

    pipeline, sink, _, _ = _run(clips, clips.empty)
    assert sink.alerts == []
    figures = pipeline.stats.figures()
    assert figures.faces == 0 and figures.tracks == 0 and figures.embeddings == 0


def test_embeddings_are_a_few_per_track_not_one_per_frame(clips):
    pipeline, _, results, _ = _run(clips, clips.obama)
    figures = pipeline.stats.figures()
    assert figures.frames == len(results) == 40
    assert figures.faces >= 30
    assert 1 <= figures.embeddings <= figures.tracks * ShotPolicy().max_embeddings
    assert figures.embeddings <= 4


def test_detection_rate_and_downscaled_detection(clips):
    frames = _frames(clips.obama)
    big = [Frame(f.camera, f.index, f.t, f.wall, f.mono,
                 cv2.resize(f.image, (1280, 720), interpolation=cv2.INTER_LINEAR))
           for f in frames]
    config = PipelineConfig(threshold=0.4, detect_fps=7.5, detect_max_side=640)
    pipeline, sink, results, _ = _run(clips, clips.obama, config, frames=big)
    figures = pipeline.stats.figures()
    assert figures.frames == 40 and figures.detected_frames == 20
    assert [r.detected for r in results[:4]] == [True, False, True, False]
    assert len(sink.firsts()) == 1
    x, y, w, h = sink.alerts[0].box  # full-frame coordinates, not the detector's
    assert w > 60 and x + w <= 1280 and y + h <= 720


@pytest.mark.parametrize(("size", "limit", "expected"), [
    ((640, 360), 640, (640, 352)), ((1920, 1080), 640, (640, 352)), ((320, 240), 640, (320, 224)),
    ((1280, 720), 480, (480, 256)), ((20, 10), 640, (32, 32)),
])
def test_detection_size_keeps_the_aspect_and_multiples_of_32(size, limit, expected):
    assert detection_size(*size, limit) == expected


def test_corrupt_or_odd_frames_are_counted_not_fatal(clips):
    every = _frames(clips.obama)
    good, face_frame = every[:3], every[30].image
    odd: list[np.ndarray] = [
        np.zeros((0, 0, 3), np.uint8),  # empty
        np.zeros((8, 8, 3), np.uint8),  # too small
        np.zeros((360, 640, 3), np.float32),  # wrong dtype
        np.zeros((360, 640, 5), np.uint8),  # wrong channels
        cv2.cvtColor(face_frame, cv2.COLOR_BGR2GRAY),  # grey: usable
        cv2.cvtColor(face_frame, cv2.COLOR_BGR2BGRA),  # BGRA: usable
    ]
    frames = good + [Frame("cam", 3 + i, 1.0 + i / 15, 0.0, time.monotonic(), img)
                     for i, img in enumerate(odd)]
    frames.append(Frame("cam", 99, 2.0, 0.0, time.monotonic(), None))  # type: ignore[arg-type]
    pipeline, _, results, _ = _run(clips, clips.obama, frames=frames)
    figures = pipeline.stats.figures()
    assert figures.frames == len(frames)
    assert figures.bad_frames == 5
    assert results[-2].faces  # the BGRA frame was analysed


class StubDetector:
    name = "stub"

    def __init__(self, box=(200.0, 100.0, 100.0, 120.0)) -> None:
        x, y, _w, _h = box
        self.face = Face(box, np.array([[x + 30, y + 50], [x + 70, y + 50], [x + 50, y + 75],
                                        [x + 35, y + 95], [x + 65, y + 95]], np.float32), 0.95)

    def detect(self, image):
        return [self.face] if image.mean() > 1 else []


class StubEngine:
    """A detector that sees one frontal face on any non-black frame; an embedder that counts."""

    model_id = "stub-1"
    default_threshold = 0.5

    def __init__(self) -> None:
        self.detector = StubDetector()
        self.embedded = 0

    def embed(self, image, faces):
        self.embedded += len(faces)
        return [Template(np.ones(4, np.float32) / 2, self.model_id) for _ in faces]


class ScriptedGallery:
    """Returns the scripted scores, one per search."""

    model_id = "stub-1"

    def __init__(self, scores) -> None:
        self.scores = list(scores)

    def __len__(self) -> int:
        return 1

    def search(self, queries, k=5, per_subject=True):
        score = self.scores.pop(0) if self.scores else 0.0
        return [[Candidate("s1", score, "s1/ref")] for _ in range(len(queries))]


def _noise_frames(n: int, fps: float = 10.0) -> list[Frame]:
    rng = np.random.default_rng(0)
    now = time.monotonic()
    return [Frame("stub", i, i / fps, time.time(), now,
                  rng.integers(40, 220, (360, 640, 3), dtype=np.uint8)) for i in range(n)]


def _stub_pipeline(scores, shots: ShotPolicy):
    engine, sink = StubEngine(), MemorySink()
    pipeline = CameraPipeline("stub", engine, ScriptedGallery(scores),  # type: ignore[arg-type]
                              PipelineConfig(threshold=0.5, shots=shots), sink, fps=10.0)
    return engine, sink, pipeline


def test_alert_once_per_track_and_subject_then_updates_only_when_higher():
    shots = ShotPolicy(window=0.0, min_gap=0.0, max_embeddings=5, improve=1.0)
    engine, sink, pipeline = _stub_pipeline([0.3, 0.6, 0.55, 0.6, 0.8], shots)
    for frame in _noise_frames(8):
        pipeline.process(frame)
    assert engine.embedded == 5  # the budget, not one per frame
    assert [(a.revision, a.score) for a in sink.alerts] == [(0, 0.6), (1, 0.8)]
    assert len({a.alert_id for a in sink.alerts}) == 1
    figures = pipeline.stats.figures()
    assert figures.alerts == 1 and figures.alert_updates == 1


def test_best_shot_waits_for_its_window_and_respects_the_gap():
    shots = ShotPolicy(window=0.25, min_gap=0.5, max_embeddings=2, improve=1.0)
    engine, _sink, pipeline = _stub_pipeline([0.9, 0.95], shots)
    embedded_at = []
    for frame in _noise_frames(20):
        before = engine.embedded
        pipeline.process(frame)
        if engine.embedded > before:
            embedded_at.append(frame.t)
    # The track starts on the first frame; its first shot is embedded once the window closed,
    # the second no sooner than min_gap later; then the budget is spent.
    assert len(embedded_at) == 2
    assert embedded_at[0] >= 0.25 and embedded_at[1] - embedded_at[0] >= 0.5 - 1e-9


def test_a_track_that_leaves_before_its_window_closes_is_still_decided():
    shots = ShotPolicy(window=5.0, min_gap=0.0, max_embeddings=2)
    engine, sink, pipeline = _stub_pipeline([0.9], shots)
    frames = _noise_frames(18)
    for frame in frames[:4]:
        pipeline.process(frame)
    assert engine.embedded == 0
    black = [Frame("stub", f.index, f.t, f.wall, f.mono, np.zeros_like(f.image))
             for f in frames[4:]]
    for frame in black:  # the person has gone; the track expires after lost_seconds
        pipeline.process(frame)
    assert engine.embedded == 1 and len(sink.alerts) == 1
    assert pipeline.tracks == {}


def test_pipeline_refuses_a_watchlist_of_another_model():
    engine = StubEngine()
    gallery = ScriptedGallery([])
    gallery.model_id = "other"
    with pytest.raises(ValueError, match="not comparable"):
        CameraPipeline("x", engine, gallery, PipelineConfig(threshold=0.5),  # type: ignore[arg-type]
                       MemorySink())


@pytest.mark.parametrize("kwargs", [
    {"threshold": 1.5}, {"threshold": 0.4, "detect_fps": -1},
    {"threshold": 0.4, "detect_max_side": 10}, {"threshold": 0.4, "lost_seconds": 0},
])
def test_config_is_validated(kwargs):
    with pytest.raises((ValueError, InvalidInput)):  # the threshold: the one range check
        PipelineConfig(**kwargs)


def test_shot_score_prefers_large_sharp_frontal_faces_and_meets_checks_a_policy():
    landmarks = np.array([[30, 50], [70, 50], [50, 75], [35, 95], [65, 95]], np.float32)
    face = Face((0, 0, 100, 120), landmarks, 0.9)
    sharp = q.Quality(100, 40, 80, 0, 0, 0, 120, 50)
    blurry = q.Quality(100, 40, 10, 0, 0, 0, 120, 50)
    turned = q.Quality(100, 40, 80, 40, 0, 0, 120, 50)
    small = Face((0, 0, 40, 48), landmarks * 0.4, 0.9)
    assert shot_score(face, sharp) > shot_score(face, blurry)
    assert shot_score(face, sharp) > shot_score(face, turned)
    assert shot_score(face, sharp) > shot_score(small, sharp)
    assert meets(sharp, q.ENROLMENT) and not meets(turned, q.ENROLMENT)
    assert meets(turned, q.LIVE) and not meets(blurry, q.ENROLMENT)


def test_track_record_keeps_only_the_best_shot_of_its_window():
    policy = ShotPolicy(window=0.2, min_gap=0.0, max_embeddings=2, improve=1.5)
    record = TrackRecord(1, 0.0, 0.0, (0, 0, 1, 1))

    def sighting(t, score):
        from openlfr.video.types import Sighting

        face = Face((0, 0, 1, 1), np.zeros((5, 2), np.float32), 1.0)
        return Sighting("c", 1, 0, t, 0.0, 0.0, face, np.zeros((2, 2, 3), np.uint8), (0, 0),
                        score)

    record.offer(sighting(0.0, 1.0), policy)
    record.offer(sighting(0.1, 2.0), policy)
    record.offer(sighting(0.15, 1.5), policy)
    assert not record.due(0.1, policy) and record.due(0.2, policy)
    taken = record.take(0.2)
    assert taken is not None and taken.shot_score == 2.0 and record.best is None
    record.offer(sighting(0.3, 2.5), policy)  # not 1.5x better than the embedded shot
    assert record.best is None
    record.offer(sighting(0.3, 3.5), policy)
    assert record.best is not None


def test_capture_source_feeds_the_pipeline_in_order(clips):
    source = CaptureSource(SourceSpec("cam", str(clips.obama), "file"))
    source.open()
    source.start()
    indexes = []
    deadline = time.monotonic() + 30
    while not source.finished and time.monotonic() < deadline:
        frame = source.take()
        if frame is None:
            time.sleep(0.005)
            continue
        indexes.append(frame.index)
    source.stop()
    assert indexes == list(range(40))
