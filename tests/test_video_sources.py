"""Frame sources: parsing, reading files fully or in real time, looping, drops, corrupt frames,
clear errors, and reconnection with backoff."""

from __future__ import annotations

import itertools
import random
import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from openlfr.video.sources import (
    Backoff,
    CaptureSource,
    SourceError,
    SourceSpec,
    SourceState,
    open_capture,
    open_sources,
    parse_sources,
    redact,
    unique_names,
)

from . import videoclips
from .videoclips import wait_until as _wait_for


def _drain(source, slow: float = 0.0, timeout: float = 30.0):
    frames = []
    deadline = time.monotonic() + timeout
    while not source.finished and time.monotonic() < deadline:
        frame = source.take()
        if frame is None:
            time.sleep(0.002)
            continue
        frames.append(frame)
        if slow:
            time.sleep(slow)
    # The newest frame may have arrived just before the source finished.
    last = source.take()
    if last is not None:
        frames.append(last)
    return frames


@pytest.mark.parametrize(("text", "name", "target", "kind"), [
    ("clip.mp4", "clip", "clip.mp4", "file"),
    ("/videos/door 1.avi", "door 1", "/videos/door 1.avi", "file"),
    ("0", "webcam0", "0", "device"),
    ("/dev/video2", "video2", "/dev/video2", "device"),
    ("rtsp://user:pw@10.1.2.3:554/stream1", "10.1.2.3:554", "rtsp://user:pw@10.1.2.3:554/stream1",
     "stream"),
    ("http://cam.local/video.mjpg", "cam.local", "http://cam.local/video.mjpg", "stream"),
    ("entrance=rtmp://host/live/key", "entrance", "rtmp://host/live/key", "stream"),
    ("lobby=2", "lobby", "2", "device"),
    ("http://h/x?a=b", "h", "http://h/x?a=b", "stream"),
])
def test_source_specs_are_parsed(text, name, target, kind):
    spec = SourceSpec.parse(text)
    assert (spec.name, spec.target, spec.kind) == (name, target, kind)


def test_bad_specs_are_refused_and_names_made_unique():
    with pytest.raises(SourceError, match="unsupported URL scheme 'ftp'"):
        SourceSpec.parse("ftp://x/y.mp4")
    with pytest.raises(SourceError):
        SourceSpec.parse("  ")
    specs = unique_names([SourceSpec.parse(t) for t in ("a.mp4", "b/a.mp4", "a.mp4")])
    assert [s.name for s in specs] == ["a", "a-2", "a-3"]
    assert redact("rtsp://admin:secret@cam/s") == "rtsp://***@cam/s"


def test_a_file_is_read_in_full_in_order_without_drops(clips):
    source = CaptureSource(SourceSpec("c", str(clips.obama), "file"))
    source.open()
    assert not source.live and source.fps == pytest.approx(15.0)
    source.start()
    frames = _drain(source, slow=0.003)  # a slow consumer: the reader waits, nothing is lost
    status = source.status()
    source.stop()
    assert [f.index for f in frames] == list(range(40))
    assert status.state == SourceState.ENDED and status.dropped == 0 and status.frames_in == 40
    assert frames[-1].t == pytest.approx(39 / 15.0)
    assert frames[0].image.shape == (360, 640, 3)


def test_realtime_file_is_paced_keeps_a_short_buffer_and_counts_drops(clips):
    source = CaptureSource(SourceSpec("c", str(clips.obama), "file"), realtime=True,
                           live_buffer=8)
    source.open()
    assert source.live
    started = time.monotonic()
    source.start()
    frames = _drain(source, slow=0.2)  # 5 fps consumer on a 15 fps camera
    elapsed = time.monotonic() - started
    status = source.status()
    source.stop()
    assert elapsed >= 39 / 15.0 - 0.1  # paced at its own frame rate
    assert status.frames_in == 40
    assert status.dropped >= 10  # the consumer could not keep up: frames were given up …
    assert len(frames) + status.dropped == 40  # … and counted, every one
    indexes = [f.index for f in frames]
    assert indexes == sorted(indexes)
    # The oldest waiting frame gives way: what the buffer held at the end was the newest.
    assert indexes[-8:] == list(range(32, 40))


def test_a_live_source_rides_out_a_short_stall_of_the_analysis(clips):
    """A consumer that stops for less than the buffer (a slow frame: a detection and an
    embedding at once) loses nothing; with a one-frame buffer the same stall costs frames."""
    dropped = {}
    for buffer in (8, 1):
        source = CaptureSource(SourceSpec("c", str(clips.obama), "file"), realtime=True,
                               live_buffer=buffer)
        source.open()
        source.start()
        assert _wait_for(lambda s=source: s.has_frame(), 30)
        time.sleep(4 / 15)  # about 4 frame intervals without taking anything
        frames = _drain(source)
        dropped[buffer] = source.status().dropped
        source.stop()
        assert len(frames) + dropped[buffer] == 40
    assert dropped[8] == 0 and dropped[1] >= 2


def test_a_live_source_buffers_fewer_frames_of_a_high_resolution(monkeypatch):
    from openlfr.video import sources

    # frames of 48 x 64 x 3 = 9216 bytes; room for two of them
    monkeypatch.setattr(sources, "LIVE_BUFFER_BYTES", 2 * 9216)
    source = CaptureSource(SourceSpec("cam", "rtsp://x/y", "stream"),
                           opener=ScriptedOpener([10]), probe=False, max_reconnects=0)
    source.open()
    source.start()
    assert _wait_for(lambda: source.status().frames_in == 10, 30)
    status = source.status()
    frames = [source.take(), source.take(), source.take()]
    source.stop()
    assert [f.index for f in frames[:2] if f is not None] == [8, 9] and frames[2] is None
    assert status.dropped == 8


def test_loop_restarts_a_file_with_time_running_on(clips):
    source = CaptureSource(SourceSpec("c", str(clips.empty), "file"), loop=True)
    source.open()
    source.start()
    frames = []
    while len(frames) < 75:
        frame = source.take()
        if frame is None:
            time.sleep(0.002)
            continue
        frames.append(frame)
    source.stop()
    assert [f.index for f in frames] == list(range(75))
    ts = [f.t for f in frames]
    assert all(b > a for a, b in itertools.pairwise(ts))
    assert source.status().state == SourceState.STOPPED


def test_a_corrupt_frame_in_the_middle_does_not_end_the_file(clips, tmp_path):
    path = tmp_path / "corrupt.avi"
    videoclips.write_clip(path, _clip_frames(clips))
    videoclips.corrupt_middle_frame(path)
    source = CaptureSource(SourceSpec("c", str(path), "file"))
    source.open()
    source.start()
    frames = _drain(source)
    source.stop()
    assert len(frames) >= 35  # the damaged frame may be decoded garbage or skipped, no more
    assert frames[-1].index >= 38
    assert source.status().state == SourceState.ENDED


def _clip_frames(clips) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(clips.obama))
    out = []
    while True:
        ok, image = cap.read()
        if not ok:
            return out
        out.append(image)


FAST = Backoff(initial=0.01, factor=2.0, cap=0.05, jitter=0.5)


def test_unreadable_missing_and_odd_files_are_named_then_given_up(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01 this is not a video " * 500)
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    cases = {
        str(garbage): "garbage: cannot open .*garbage.mp4: not a video file",
        str(empty): "empty: cannot open .*empty.avi",
        str(tmp_path / "nope.mp4"): "nope: .*nope.mp4: no such file",
        str(tmp_path): "not a file",
    }
    # One attempt (open) is a clear error …
    for text, message in cases.items():
        with pytest.raises(SourceError, match=message):
            CaptureSource(SourceSpec.parse(text)).open()
    # … and a run does not fail for it: the file is retried a bounded number of times (it
    # may be put in place), then given up with the reason.
    started = time.time()
    sources = open_sources(list(cases), backoff=FAST, file_retries=3)
    try:
        for source in sources:
            source.start()
        assert _wait_for(lambda: all(s.finished for s in sources))
    finally:
        for source in sources:
            source.stop()
    for source, message in zip(sources, cases.values(), strict=True):
        status = source.status()
        assert status.state == SourceState.FAILED, status
        assert re.search(message, status.error) and "gave up after 3 retries" in status.error
        assert status.reconnects == 3 and len(source.retry_delays) == 3
        assert started <= status.since <= time.time()
        assert status.as_dict()["since"] == round(status.since, 3)


def test_input_that_can_never_work_is_an_immediate_error():
    with pytest.raises(SourceError, match="unsupported URL scheme 'ftp'"):
        open_sources(["a.mp4", "ftp://x/y.mp4"])
    with pytest.raises(SourceError, match="camera name 'door' given more than once"):
        open_sources(["door=a.mp4", "door=rtsp://127.0.0.1:9/x"])
    # Names derived from the targets are made unique instead.
    assert [s.name for s in parse_sources(["a.mp4", "b/a.mp4"])] == ["a", "a-2"]


def test_one_bad_source_does_not_stop_the_others(tmp_path, clips):
    """A camera that cannot be opened is retried in its own thread while the others run."""
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(b"nonsense")
    with socket.socket() as closed:  # a port on which nobody listens: connection refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"http://user:secret@127.0.0.1:{port}/none.mjpg"
    sources = open_sources([str(clips.obama), str(bad), f"side={url}"], backoff=FAST,
                           file_retries=2)
    good, bad_file, side = sources
    try:
        assert good.status().state == SourceState.RUNNING
        for source in sources:
            source.start()
        frames = _drain(good)  # the good camera is read to its end meanwhile
        assert _wait_for(lambda: side.status().reconnects >= 4 and bad_file.finished)
        status = side.status()
    finally:
        for source in sources:
            source.stop()
    assert good.status().state == SourceState.ENDED and good.status().frames_in == 40
    assert len(frames) == 40
    assert bad_file.status().state == SourceState.FAILED
    assert "bad: cannot open" in bad_file.status().error
    # The stream is retried for ever; its error names it, without the credentials.
    assert status.state == SourceState.RECONNECTING
    assert f"side: cannot open http://***@127.0.0.1:{port}/none.mjpg" in status.error
    assert "secret" not in status.error and "secret" not in str(status.as_dict())
    assert side.status().state == SourceState.STOPPED


def test_a_missing_webcam_is_retried_with_a_clear_error():
    (source,) = open_sources(["57"], backoff=FAST)
    try:
        status = source.status()
        assert status.state == SourceState.RECONNECTING
        assert "webcam57: cannot open 57: no such camera" in status.error
    finally:
        source.stop()


class FakeCapture:
    """A stream that yields ``frames`` frames and then drops (read fails)."""

    def __init__(self, frames: int, opened: bool = True) -> None:
        self.frames = frames
        self.opened = opened
        self.released = False

    def isOpened(self) -> bool:
        return self.opened

    def read(self):
        if self.frames <= 0 or not self.opened:
            return False, None
        self.frames -= 1
        time.sleep(0.002)
        return True, np.full((48, 64, 3), 100, np.uint8)

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        self.released = True


class ScriptedOpener:
    """Opens captures from a script: an int is a stream of that many frames, None a failure."""

    def __init__(self, script) -> None:
        self.script = list(script)
        self.calls: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, spec):
        with self.lock:
            self.calls.append(time.monotonic())
            item = self.script.pop(0) if self.script else None
        return FakeCapture(item or 0, opened=item is not None)


def test_a_lost_stream_reconnects_with_backoff_and_reports_its_state():
    opener = ScriptedOpener([5, None, None, 5, None])
    source = CaptureSource(SourceSpec("cam", "rtsp://x/y", "stream"), opener=opener, probe=False,
                           backoff=Backoff(initial=0.05, factor=2.0, cap=1.0, jitter=0.0),
                           max_reconnects=3)
    source.open()
    states = []
    source.start(lambda name: states.append(source.status().state))
    frames = _drain(source, timeout=10)
    status = source.status()
    # A live source keeps only its newest frame: every frame is either taken or counted.
    indexes = [f.index for f in frames]
    assert indexes == sorted(set(indexes)) and indexes[-1] == 9
    assert len(frames) + status.dropped == 10
    assert status.reconnects == 3 + 3  # attempts: two failed and one good, then three failed
    assert status.state == SourceState.FAILED
    assert "gave up after 3" in status.error
    gaps = [b - a for a, b in zip(opener.calls, opener.calls[1:], strict=False)]
    # 1st open, stream lost → wait 0.05, fail → 0.1, fail → 0.2, open ok … exponential waits
    assert gaps[1] >= 0.09 and gaps[2] >= 0.18
    assert SourceState.RUNNING in states


def test_stop_interrupts_a_reconnect_wait_promptly():
    opener = ScriptedOpener([2])
    wait = 600.0  # the reconnect wait stop() interrupts: ten minutes
    source = CaptureSource(SourceSpec("cam", "rtsp://x/y", "stream"), opener=opener, probe=False,
                           backoff=Backoff(initial=wait, cap=wait, jitter=0.0))
    source.open()
    source.start()
    assert _wait_for(lambda: source.status().state == SourceState.RECONNECTING, 60.0)
    started = time.monotonic()
    source.stop()
    assert time.monotonic() - started < wait / 10  # not at the end of the wait
    assert source.status().state == SourceState.STOPPED


def test_backoff_grows_exponentially_with_bounded_jitter():
    backoff = Backoff(initial=0.5, factor=2.0, cap=8.0, jitter=0.5)
    rng = random.Random(1)
    for attempt, base in [(0, 0.5), (1, 1.0), (3, 4.0), (10, 8.0)]:
        delays = [backoff.delay(attempt, rng) for _ in range(200)]
        assert base * 0.5 <= min(delays) and max(delays) <= base
        assert max(delays) - min(delays) > base * 0.3  # jittered, not in lock step


def test_open_sources_opens_in_parallel(clips):
    """Each opening waits until all three cameras are opening (a barrier): one after the
    other, the first would wait in vain."""
    together = threading.Barrier(3, timeout=60)

    def opener(spec):
        together.wait()
        return open_capture(spec)

    sources = open_sources([str(clips.obama), str(clips.stranger), str(clips.empty)],
                           opener=opener)
    try:
        assert [s.name for s in sources] == ["obama", "stranger", "empty"]
        assert all(s.status().state == SourceState.RUNNING for s in sources)
    finally:
        for s in sources:
            s.stop()


def test_file_paths_with_spaces_work(clips, tmp_path):
    path = Path(tmp_path / "a clip with spaces.avi")
    path.write_bytes(clips.empty.read_bytes())
    (source,) = open_sources([str(path)])
    source.stop()
    assert source.name == "a clip with spaces"


def test_a_source_that_cannot_open_at_first_is_retried_until_it_runs():
    opener = ScriptedOpener([None, None, None, 6])
    source = CaptureSource(SourceSpec("cam", "rtsp://x/y", "stream"), opener=opener, probe=False,
                           backoff=Backoff(initial=0.01, factor=2.0, cap=1.0, jitter=0.5),
                           max_reconnects=4, seed=3)
    assert source.status().state == SourceState.CONNECTING
    seen: list[tuple[SourceState, float, str]] = []
    lock = threading.Lock()

    def watch() -> None:
        status = source.status()
        with lock:
            if not seen or seen[-1][0] != status.state:
                seen.append((status.state, status.since, status.error))

    source.connect()  # opening starts; no frame flows before start()
    assert source.wait_attempted(10)
    watch()
    source.start(lambda name: watch())
    frames = _drain(source, timeout=20)
    source.stop()
    status = source.status()
    assert seen[0][0] == SourceState.RECONNECTING
    assert "cam: cannot open rtsp://x/y: stream unreachable" in seen[0][2]
    assert SourceState.RUNNING in [s for s, _, _ in seen]
    assert [f.index for f in frames][-1] == 5 and len(frames) + status.dropped == 6
    # Three failed attempts, then the fourth opened: three retries, each waiting longer; once
    # the stream was lost, four more failed and it was given up.
    assert status.state == SourceState.FAILED and "gave up after 4 retries" in status.error
    assert len(opener.calls) == 1 + 3 + 4 and status.reconnects == 3 + 4
    delays = source.retry_delays[:3]
    assert delays == sorted(delays) and delays[2] > delays[0]
    # ``since`` moves with each change of state and never goes back.
    sinces = [t for _, t, _ in seen]
    assert sinces == sorted(sinces)


class HangingOpener:
    """An opener that blocks (like FFmpeg on a stream that never answers) until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.capture: FakeCapture | None = None

    def __call__(self, spec):
        self.entered.set()
        self.release.wait(30)
        self.capture = FakeCapture(5)
        return self.capture


def test_stop_does_not_wait_for_an_open_that_hangs_and_its_late_result_is_dropped():
    opener = HangingOpener()
    source = CaptureSource(SourceSpec("cam", "rtsp://x/y", "stream"), opener=opener, probe=False)
    source.start()
    assert opener.entered.wait(10)
    assert source.status().state == SourceState.CONNECTING
    assert not source.finished
    source.stop()  # waits STOP_WAIT_S at most, not for the open
    assert source.status().state == SourceState.STOPPED and source.finished
    opener.release.set()
    assert _wait_for(lambda: opener.capture is not None and opener.capture.released, 10)
    assert source.status().state == SourceState.STOPPED
    assert source.take() is None


def test_a_flapping_stream_does_not_start_its_backoff_again_each_time():
    """A stream lost soon after each reopening goes on waiting longer, instead of being
    hammered at the shortest wait."""
    opener = ScriptedOpener([2, None, 2, None, 2])
    source = CaptureSource(SourceSpec("cam", "rtsp://x/y", "stream"), opener=opener, probe=False,
                           backoff=Backoff(initial=0.01, factor=2.0, cap=10.0, jitter=0.0),
                           max_reconnects=2)
    source.open()
    source.start()
    _drain(source, timeout=20)
    status = source.status()
    source.stop()
    assert status.state == SourceState.FAILED and status.reconnects == 6
    assert source.retry_delays == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.16, 0.32])
