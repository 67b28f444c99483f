"""Many cameras in one process: shared models, ordered frames, isolation of failures."""

from __future__ import annotations

import threading
from collections import defaultdict

import pytest

from openlfr.video.pipeline import CameraPipeline, PipelineConfig
from openlfr.video.runner import Runner, Summary
from openlfr.video.sinks import CallbackSink, MemorySink, SerialSink
from openlfr.video.sources import SourceState, open_sources
from openlfr.video.types import Alert
from openlfr.vision import get_engine

from . import videoclips


def _cameras(clips, paths, sink, pipeline_cls=CameraPipeline, **source_kwargs):
    engine = get_engine("sface")
    gallery, names = videoclips.load_gallery(clips.watchlist)
    sources = open_sources([str(p) for p in paths], **source_kwargs)
    config = PipelineConfig(threshold=engine.default_threshold)
    return [(s, pipeline_cls(s.name, engine, gallery, config, sink, fps=s.fps, names=names))
            for s in sources]


def test_three_cameras_share_one_engine_and_alert_only_where_the_person_is(clips):
    sink = MemorySink()
    cameras = _cameras(clips, [clips.obama, clips.stranger, clips.empty], sink)
    seen: dict[str, list[int]] = defaultdict(list)
    lock = threading.Lock()

    def on_frame(pipeline, result):
        with lock:
            seen[pipeline.camera].append(result.frame.index)

    runner = Runner(cameras, workers=2, on_frame=on_frame)
    summary = runner.run()
    engines = {id(p.engine) for _, p in cameras}
    embedders = {id(p.engine.embedder) for _, p in cameras}
    assert len(engines) == 1 and len(embedders) == 1
    assert [a.camera for a in sink.firsts()] == ["obama"]
    by_camera = {f.camera: f for f in summary.cameras}
    assert by_camera["obama"].alerts == 1 and by_camera["stranger"].alerts == 0
    assert by_camera["empty"].faces == 0 and by_camera["stranger"].faces >= 30
    for name in ("obama", "stranger", "empty"):
        assert seen[name] == list(range(len(seen[name])))  # in order, per camera
        assert by_camera[name].frames == 40 if name != "empty" else 30
        assert by_camera[name].state == "ended" and by_camera[name].dropped == 0
    assert summary.frames == 110 and summary.alerts == 1 and summary.dropped_frames == 0
    assert summary.fps > 0 and not summary.interrupted
    event = summary.as_event()
    assert {"event", "frames", "faces", "tracks", "embeddings", "alerts", "dropped_frames",
            "seconds", "fps"} <= set(event)


def test_one_camera_failing_does_not_stop_the_others(clips):
    class Broken(CameraPipeline):
        def advance(self, detected):
            if self.camera == "stranger":
                raise RuntimeError("boom")
            return super().advance(detected)

    sink = MemorySink()
    cameras = _cameras(clips, [clips.obama, clips.stranger], sink, pipeline_cls=Broken)
    runner = Runner(cameras, workers=2)
    summary = runner.run()
    by_camera = {f.camera: f for f in summary.cameras}
    assert by_camera["obama"].alerts == 1 and by_camera["obama"].frames == 40
    assert by_camera["stranger"].bad_frames == 40
    assert runner.errors and "boom" in runner.errors[0]


def test_a_failing_sink_does_not_silence_the_others_or_the_camera(clips):
    received, failures = MemorySink(), []

    def explode(alert):
        raise OSError("disk full")

    sink = SerialSink([CallbackSink(explode), received],
                      on_error=lambda s, e: failures.append(str(e)))
    runner = Runner(_cameras(clips, [clips.obama], sink), workers=1)
    summary = runner.run()
    assert summary.alerts == 1 and len(received.firsts()) == 1
    assert failures and failures[0] == "disk full"


def test_max_seconds_stops_looping_cameras_with_a_summary(clips):
    sink = MemorySink()
    runner = Runner(_cameras(clips, [clips.empty, clips.obama], sink, loop=True, realtime=True),
                    max_seconds=1.5)
    summary = runner.run()
    assert summary.seconds >= 1.4  # not before max_seconds (an upper bound is the machine's)
    assert not summary.interrupted
    assert all(f.state == str(SourceState.STOPPED) for f in summary.cameras)
    # 1.5 s of two 15 fps cameras came in; how many the workers analysed (the rest is counted
    # as dropped) depends on the load of the machine.
    assert sum(f.frames_in for f in summary.cameras) > 20 and summary.frames > 0
    for f in summary.cameras:  # at most the newest frame of each was still waiting at the end
        assert f.frames_in - 1 <= f.frames + f.dropped <= f.frames_in
        assert f.frames_in <= 15 * summary.seconds + 2  # paced at the clip's 15 fps


def test_stop_from_another_thread_interrupts(clips):
    """A looping camera never ends by itself: the run ending at all is stop()'s doing, asked
    from another thread once frames are being analysed."""
    analysed = threading.Event()
    runner = Runner(_cameras(clips, [clips.empty], MemorySink(), loop=True, realtime=True),
                    on_frame=lambda pipeline, result: analysed.set())
    done: list[Summary] = []
    thread = threading.Thread(target=lambda: done.append(runner.run()), daemon=True)
    thread.start()
    assert analysed.wait(60), "no frame was analysed"
    runner.stop()
    thread.join(timeout=60)
    if thread.is_alive():  # do not leave a camera looping behind a failed test
        runner.stop()
    assert done, "the run did not stop"
    assert done[0].interrupted


def test_runner_rejects_duplicate_names_and_no_cameras(clips):
    cameras = _cameras(clips, [clips.empty], MemorySink())
    try:
        with pytest.raises(ValueError, match="no camera"):
            Runner([])
        with pytest.raises(ValueError, match="unique"):
            Runner(cameras + cameras)
    finally:
        cameras[0][0].stop()


def test_at_live_speed_the_alert_follows_the_face_within_a_few_analysed_frames(clips):
    """At camera speed (a short buffer of frames, the oldest dropped when the workers fall
    behind) the alert comes within as many analysed frames of the face's first sighting as
    when every frame is analysed. Counted in frames, not seconds: how long that takes (p95 ≤
    1 s) is a figure of the machine, measured by ``benchmarks/bench_live.py latency``."""

    def run(realtime: bool) -> tuple[Summary, list[Alert], list[int]]:
        sink = MemorySink()
        analysed: list[tuple[int, bool]] = []
        lock = threading.Lock()

        def on_frame(pipeline, result):
            with lock:
                analysed.append((result.frame.index, bool(result.faces)))

        runner = Runner(_cameras(clips, [clips.obama], sink, realtime=realtime), workers=2,
                        on_frame=on_frame)
        summary = runner.run()
        # Only the person on the watchlist; a busy machine may drop enough frames in a row to
        # lose the track and alert again on a new one: the first alert is the one timed.
        assert {a.subject_id for a in sink.firsts()} == {"obama"}
        alerts = sorted(sink.firsts(), key=lambda a: a.frame)
        first_face = min(i for i, faces in analysed if faces)
        return summary, alerts, sorted(i for i, _ in analysed
                                       if first_face <= i <= alerts[0].frame)

    _, _, every = run(realtime=False)
    summary, alerts, between = run(realtime=True)
    detail = f"all frames: {every}; live: {between}, {summary.as_event()}"
    assert 1 <= len(between) <= len(every), detail
    (camera,) = summary.cameras
    # None: the alert came before any enrolment-quality frame.
    latencies = [a.latency for a in alerts if a.latency is not None]
    # the time from entering the view is always there, and never shorter than the time from
    # the first usable face (the track's first frame comes first)
    assert all(a.in_view is not None for a in alerts), detail
    assert all(a.in_view + 1e-6 >= a.latency for a in alerts  # type: ignore[operator]
               if a.latency is not None), detail
    if latencies:  # the camera's p95 is that of its alerts
        assert camera.alert_latency_p95 is not None, detail
        assert min(latencies) - 1e-3 <= camera.alert_latency_p95 <= max(latencies) + 1e-3

    assert camera.frames + camera.dropped in (camera.frames_in - 1, camera.frames_in), detail
    assert summary.cpu_seconds > 0
