"""Cheaper cameras: motion-gated detection and regions of interest between whole-frame scans
(``PipelineConfig.motion_gate``, ``roi_every``), on clips made from registry-package photos."""

from __future__ import annotations

import time

import numpy as np
import pytest

from openlfr.video.pipeline import PipelineConfig
from openlfr.video.types import Frame
from openlfr.vision import get_engine

from . import videoclips
from .test_video_pipeline import _frames, _run

FPS = videoclips.FPS


def _config(**kwargs: object) -> PipelineConfig:
    return PipelineConfig(threshold=get_engine("sface").default_threshold, **kwargs)  # type: ignore[arg-type]


def _as_frames(images: list[np.ndarray]) -> list[Frame]:
    return [Frame("cam", i, i / FPS, time.time(), time.monotonic(), image)
            for i, image in enumerate(images)]


def _enter_late(face_images, before: int = 10, after: int = 20) -> list[Frame]:
    """A still, empty room for ``before`` frames, then a face steps in (and stays, moving a
    little) for ``after`` frames."""
    bg = videoclips.background()
    person = videoclips.sprite(face_images["obama2"], 80.0)
    images = [bg.copy() for _ in range(before)]
    for i in range(after):
        frame = bg.copy()
        videoclips.paste(frame, person, 200 + 4 * i, 50)
        images.append(frame)
    return _as_frames(images)


def test_motion_gate_skips_a_still_empty_scene_but_looks_again_every_refresh(clips):
    still = _as_frames(videoclips.empty_frames(40))  # no prop: nothing moves
    _pipeline, sink, results, _ = _run(clips, clips.empty, _config(motion_gate=True),
                                       frames=still)
    detected = [r.frame.index for r in results if r.detected]
    assert detected == [0, 15, 30]  # the first frame, then once a second (motion_refresh)
    _, _, all_results, _ = _run(clips, clips.empty, _config(), frames=still)
    assert sum(r.detected for r in all_results) == 40
    assert sink.alerts == []


def test_motion_gate_detects_a_moving_scene_and_a_face_entering_at_once(clips, face_images):
    # Something moves (no face): every frame is looked at.
    _, _, results, _ = _run(clips, clips.empty, _config(motion_gate=True))
    assert all(r.detected for r in results)
    # A face steps into a still room: found on the very frame it appears, as without the gate.
    frames = _enter_late(face_images)
    _, _, gated, _ = _run(clips, clips.obama, _config(motion_gate=True), frames=frames)
    _, _, plain, _ = _run(clips, clips.obama, _config(), frames=frames)
    first_gated = next(r.frame.index for r in gated if r.faces)
    first_plain = next(r.frame.index for r in plain if r.faces)
    assert first_gated == first_plain == 10
    assert not any(r.detected for r in gated[1:10])  # the still room before it was skipped
    assert all(r.detected for r in gated[10:])  # a track is alive: every frame is detected


def test_roi_detection_finds_a_second_face_entering_within_roi_every_detections(
        clips, face_images):
    bg = videoclips.background()
    first = videoclips.sprite(face_images["obama2"], 90.0)
    second = videoclips.sprite(face_images["biden"], 90.0)
    images = []
    for i in range(24):
        frame = bg.copy()
        videoclips.paste(frame, first, 150 + i, 40)
        if i >= 8:
            videoclips.paste(frame, second, 470 - i, 60)
        images.append(frame)
    frames = _as_frames(images)
    for roi_every in (3, 5):
        pipeline, _, results, _ = _run(clips, clips.obama, _config(roi_every=roi_every),
                                       frames=frames)
        counts = [len(r.faces) for r in results]
        assert counts[:8] == [1] * 8
        found = next(i for i, n in enumerate(counts) if n == 2)
        assert 8 <= found < 8 + roi_every, counts
        assert all(n == 2 for n in counts[found:]), counts  # both followed in their regions
        # one person each: regions of interest keep the tracks
        assert pipeline.stats.figures().tracks == 2


@pytest.mark.parametrize("options", [{"motion_gate": True}, {"roi_every": 3},
                                     {"motion_gate": True, "roi_every": 3}])
def test_alerts_are_unchanged_on_the_test_clips(clips, options):
    for clip in (clips.obama, clips.stranger, clips.empty):
        _, base, _, _ = _run(clips, clip, _config())
        _, cheap, results, _ = _run(clips, clip, _config(**options))
        assert [a.subject_id for a in cheap.firsts()] == [a.subject_id for a in base.firsts()]
        assert len(results) == len(_frames(clip))
    _, sink, _, _ = _run(clips, clips.obama, _config(**options))
    assert [a.subject_id for a in sink.firsts()] == ["obama"]


@pytest.mark.parametrize("kwargs", [{"roi_every": 0}, {"motion_refresh": 0.0},
                                    {"motion_refresh": -1.0}])
def test_cheaper_camera_options_are_validated(kwargs):
    with pytest.raises(ValueError):
        _config(**kwargs)


def test_defaults_detect_every_frame_due_whole():
    config = _config()
    assert config.motion_gate is False and config.roi_every == 1


def test_the_watch_command_takes_the_options_and_alerts_as_by_default(clips):
    from .test_video_cli import _events, _watch

    sources = (clips.obama, clips.stranger, clips.empty)
    base = _watch(*sources, "--watchlist", clips.watchlist, "--json")
    cheap = _watch(*sources, "--watchlist", clips.watchlist, "--json", "--motion-gate",
                   "--roi-every", "3")
    assert base.exit_code == 0 and cheap.exit_code == 0, cheap.output

    def alerted(output: str) -> list[tuple[str, str]]:
        return sorted((e["camera"], e["subject"]) for e in _events(output)
                      if e["event"] == "alert")

    assert alerted(cheap.stdout) == alerted(base.stdout) == [("obama", "obama")]
    assert _events(cheap.stdout)[-1]["frames"] == _events(base.stdout)[-1]["frames"]
    bad = _watch(clips.obama, "--watchlist", clips.watchlist, "--roi-every", "0")
    assert bad.exit_code == 2 and "--roi-every" in bad.output and "Traceback" not in bad.output
