"""People passing, counted by the real pipeline (YuNet + ByteTrack) on a clip made from the
registry packages' photos: three people cross the view, two of them at the same time. The
count is the number of tracks, far below the number of face detections, and it goes from the
live run's camera statistics to the public page (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from openlfr.governance import deployments as deps
from openlfr.governance.live import DeploymentRun, RunOptions
from openlfr.transparency import public
from openlfr.video.pipeline import CameraPipeline, PipelineConfig
from openlfr.video.sinks import MemorySink
from openlfr.video.types import Frame
from openlfr.vision import get_engine
from tests import videoclips
from tests.govfix import Gov
from tests.test_gov_live import authorised, stats

#: Who walks when: (photo, first frame, last frame + 1, x at the start, x at the end). Three
#: different people (two photos of the same man are two people to a tracker, which never
#: compares faces); the first two are in view together for a second, without crossing.
WALKERS = (("obama2", 0, 40, 90, 250), ("biden", 25, 65, 560, 400), ("obama3", 55, 90, 110, 290))


def crowd_frames(face_images: dict[str, Path],
                 walkers: tuple[tuple[str, int, int, int, int], ...] = WALKERS,
                 n: int = 90) -> list[np.ndarray]:
    bg = videoclips.background(11)
    sprites = {name: videoclips.sprite(face_images[name], 70) for name, *_ in walkers}
    frames = []
    for i in range(n):
        frame = bg.copy()
        for name, first, end, x0, x1 in walkers:
            if first <= i < end:
                k = (i - first) / (end - first)
                videoclips.paste(frame, sprites[name], x0 + (x1 - x0) * k, 60)
        frames.append(frame)
    return frames


def run_pipeline(frames: list[np.ndarray]) -> CameraPipeline:
    engine = get_engine("sface")
    from openlfr.watchlist import Watchlist

    empty = Watchlist(model_id=engine.model_id, dim=engine.embedder.dim)
    pipeline = CameraPipeline("cam", engine, empty.gallery(),
                              PipelineConfig(threshold=engine.default_threshold), MemorySink(),
                              fps=videoclips.FPS)
    for i, image in enumerate(frames):
        pipeline.process(Frame("cam", i, i / videoclips.FPS, time.time(), time.monotonic(),
                               image))
    pipeline.flush()
    return pipeline


@pytest.fixture(scope="module")
def crowd_clip(tmp_path_factory: pytest.TempPathFactory, face_images: dict[str, Path]) -> Path:
    path = tmp_path_factory.mktemp("crowd") / "crowd.avi"
    return videoclips.write_clip(path, crowd_frames(face_images))


def test_three_people_passing_are_three_tracks_among_many_detections(face_images) -> None:
    figures = run_pipeline(crowd_frames(face_images)).stats.figures()
    assert figures.tracks == 3  # one per person
    # each person is detected in almost every frame they are in view: 40 + 40 + 35 frames
    assert 100 <= figures.faces <= 115
    assert figures.faces > 30 * figures.tracks


def test_a_person_who_leaves_and_comes_back_is_counted_twice(face_images) -> None:
    """The documented over-count: out of view for longer than the tracker's memory (about a
    second), the same person starts a new track."""
    back = (("obama2", 0, 20, 90, 200), ("obama2", 45, 65, 200, 300))
    figures = run_pipeline(crowd_frames(face_images, back, n=65)).stats.figures()
    assert figures.tracks == 2
    # a short gap (a few frames) is bridged: still one person
    blink = (("obama2", 0, 20, 90, 190), ("obama2", 23, 45, 195, 300))
    assert run_pipeline(crowd_frames(face_images, blink, n=45)).stats.figures().tracks == 1


def test_the_live_run_stores_people_passing_and_the_public_page_shows_them(
        gov: Gov, face_images, crowd_clip: Path) -> None:
    dep_id = authorised(gov, face_images, {"street": crowd_clip})
    deps.start(gov.db, gov.actors["op1"], dep_id)
    DeploymentRun(gov.system, dep_id, gov.actors["op1"], options=RunOptions(workers=1)).run()
    row = stats(gov, dep_id)["street"]
    assert row.frames == 90 and row.tracks == 3 and row.faces_seen > 30 * row.tracks
    shown = public.get_public(gov.db, dep_id)
    assert shown is not None and shown.figures is not None
    assert shown.figures.people_passing == 3
    assert shown.figures.faces_seen == row.faces_seen
    assert shown.figures.false_alert_rate == 0.0  # no false alert among 3 people passing
