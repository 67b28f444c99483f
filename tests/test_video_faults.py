"""Faults: a stream that drops mid-way and comes back (served from a local HTTP server on
127.0.0.1), a camera whose URL hangs or refuses while another runs, MJPEG over HTTP, a corrupt
frame, an unreadable file. No traffic leaves 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from openlfr.cli import app
from openlfr.errors import InvalidInput
from openlfr.video.pipeline import CameraPipeline, PipelineConfig
from openlfr.video.preview import PreviewServer
from openlfr.video.runner import Runner
from openlfr.video.sinks import MemorySink
from openlfr.video.sources import (
    PROBE_AGENT,
    Backoff,
    CaptureSource,
    SourceSpec,
    SourceState,
    open_sources,
)
from openlfr.vision import get_engine

from . import videoclips
from .videoclips import wait_for as _wait_for


class LocalCamera:
    """An HTTP camera on 127.0.0.1 (a free port) serving ``/camera.avi`` with the handler a
    subclass gives :meth:`_serve`; a context manager. ``closing`` is set on exit, so that a
    handler waiting on purpose lets go."""

    closing: threading.Event

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.closing = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/camera.avi"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


class FlakyCamera(LocalCamera):
    """Serves a video over HTTP on 127.0.0.1: the 1st request is cut off after ``cut`` of the
    bytes, the next ``down`` requests get 503 (camera down), one request is served in full,
    and every later one is refused (the camera is gone for good)."""

    def __init__(self, data: bytes, cut: float = 0.4, down: int = 2) -> None:
        self.data, self.cut, self.down = data, cut, down
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                if self.headers.get("User-Agent") == PROBE_AGENT:  # is anybody there? yes
                    self.send_response(204)
                    self.end_headers()
                    return
                n = len(owner.requests)  # a Range header is ignored: the whole file is sent
                if n == 0:
                    owner.requests.append("cut")
                    self._headers()
                    self._paced(owner.data[: int(len(owner.data) * owner.cut)])
                    self.close_connection = True
                elif n <= owner.down or n > owner.down + 1:
                    owner.requests.append("503")
                    self.send_error(503, "camera down")
                else:
                    owner.requests.append("full")
                    self._headers()
                    self._paced(owner.data)

            def _paced(self, data: bytes) -> None:
                """Send at the clip's own rate (15 fps, 40 frames), as a camera would."""
                step = len(owner.data) // 40 + 1
                for i in range(0, len(data), step):
                    self.wfile.write(data[i: i + step])
                    self.wfile.flush()
                    time.sleep(1 / 15)

            def _headers(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "video/x-msvideo")
                self.send_header("Content-Length", str(len(owner.data)))
                self.end_headers()

        self._serve(Handler)


def test_a_stream_that_drops_comes_back_and_never_takes_the_other_camera_down(clips, caplog):
    caplog.set_level(logging.INFO, logger="openlfr.video")
    engine = get_engine("sface")
    gallery, names = videoclips.load_gallery(clips.watchlist)
    config = PipelineConfig(threshold=engine.default_threshold)
    sink = MemorySink()
    with FlakyCamera(clips.obama.read_bytes()) as camera:
        stream = CaptureSource(SourceSpec("door", camera.url, "stream"),
                               backoff=Backoff(initial=0.1, factor=2.0, cap=0.5, jitter=0.5),
                               max_reconnects=3, seed=1)
        stream.open()
        (other,) = open_sources([str(clips.stranger)], realtime=True)
        cameras = [(s, CameraPipeline(s.name, engine, gallery, config, sink, fps=s.fps,
                                      names=names)) for s in (stream, other)]
        summary = Runner(cameras, workers=2, max_seconds=60).run()
    by_camera = {f.camera: f for f in summary.cameras}
    door, stranger = by_camera["door"], by_camera["stranger"]
    assert camera.requests[:4] == ["cut", "503", "503", "full"], camera.requests
    # The door camera lost its stream, retried with backoff, came back and was analysed …
    assert door.reconnects >= 3 and door.frames_in >= 40 + 5
    # A live camera drops what the workers cannot take in time (how many depends on the load
    # of the machine); every frame is either analysed or counted as dropped.
    assert door.frames == door.frames_in - door.dropped and door.frames > 0
    messages = [r.getMessage() for r in caplog.records]
    lost = messages.index("camera door: reconnecting (stream lost)")
    assert "camera door: running" in messages[lost:]
    # … and still raised its alert on the part served after the drop.
    after_drop = [a for a in sink.firsts() if a.camera == "door" and a.frame >= door.frames_in - 40]
    assert after_drop and after_drop[0].subject_id == "obama"
    # Finally the camera is gone for good: it is reported failed, not hung.
    assert door.state == str(SourceState.FAILED)
    # The other camera never noticed.
    assert stranger.state == str(SourceState.ENDED) and stranger.frames_in == 40
    assert stranger.alerts == 0


class HangingServer:
    """A TCP server on 127.0.0.1 that accepts every connection and never answers (a camera
    whose URL hangs); the connections are closed when it exits."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/live.mjpg"
        self.accepted: list[socket.socket] = []
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self.closing.is_set():
            with contextlib.suppress(OSError):
                conn, _ = self.sock.accept()
                self.accepted.append(conn)

    def __enter__(self) -> HangingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.closing.set()
        self.thread.join(timeout=5)
        for conn in [*self.accepted, self.sock]:
            conn.close()


def _pipelines(sources, sink, watchlist):
    engine = get_engine("sface")
    gallery, names = videoclips.load_gallery(watchlist)
    config = PipelineConfig(threshold=engine.default_threshold)
    return [(s, CameraPipeline(s.name, engine, gallery, config, sink, fps=s.fps, names=names))
            for s in sources]


def test_a_camera_whose_url_hangs_is_retried_while_the_other_is_analysed(clips):
    """The deployment case: a working camera and one whose URL hangs. The run starts at once,
    analyses the good camera, and keeps retrying the bad one with growing delays."""
    sink = MemorySink()
    started = time.time()
    with HangingServer() as hanging:
        sources = open_sources([f"gate={clips.obama}", f"side={hanging.url}"],
                               open_timeout=1.0, wait=0.0,
                               backoff=Backoff(initial=0.2, factor=2.0, cap=2.0, jitter=0.5))
        side = sources[1]
        runner = Runner(_pipelines(sources, sink, clips.watchlist), workers=2, max_seconds=120)
        seen: dict[str, object] = {}

        def until() -> bool:
            """Checked while the run goes on: the good camera has ended, the bad one is still
            retrying, and the run has not finished by itself."""
            status = side.status()
            gate_done = next(f for f in runner.figures() if f.camera == "gate").frames == 40
            if gate_done and status.reconnects >= 3:
                seen.update(status=status, states=runner.states(),
                            statuses=runner.statuses(), figures=runner.figures())
                return True
            return False

        summary = runner.run(until=until)
    assert seen, "the run ended before the bad camera had been retried"
    assert not summary.interrupted  # ended by until(), well before max_seconds
    by_camera = {f.camera: f for f in summary.cameras}
    # The good camera was analysed in full and raised its alert.
    assert by_camera["gate"].state == str(SourceState.ENDED)
    assert by_camera["gate"].frames == 40
    assert [a.subject_id for a in sink.firsts() if a.camera == "gate"] == ["obama"]
    # The bad one was retrying, since a known time, with its error.
    status = seen["status"]
    assert status.state == SourceState.RECONNECTING
    assert seen["states"] == {"gate": SourceState.ENDED, "side": SourceState.RECONNECTING}
    assert f"side: cannot open {hanging.url}" in status.error
    assert started <= status.since <= time.time()
    side_figures = next(f for f in seen["figures"] if f.camera == "side")
    assert side_figures.state == "reconnecting" and side_figures.error == status.error
    assert side_figures.as_dict()["since"] == round(status.since, 3)
    assert len(hanging.accepted) >= 4  # it really was tried again and again
    delays = side.retry_delays
    assert len(delays) >= 3 and delays == sorted(delays) and delays[2] > delays[0]
    assert by_camera["side"].state == str(SourceState.STOPPED)
    assert by_camera["side"].frames == 0


def test_a_camera_that_does_not_answer_does_not_hold_up_another_cameras_opening(clips):
    """OpenCV opens one capture at a time; the probe keeps a silent server out of OpenCV, so
    another camera opens while the silent one is still waiting for its answer."""
    with HangingServer() as hanging:
        silent = CaptureSource(SourceSpec("side", hanging.url, "stream"), open_timeout=60)
        silent.connect()
        _wait_for(lambda: len(hanging.accepted) >= 1)  # its first attempt is under way
        good = CaptureSource(SourceSpec("gate", str(clips.obama), "file"))
        good.open()
        try:
            assert silent.status().state == SourceState.CONNECTING
            assert good.status().state == SourceState.RUNNING
        finally:
            good.stop()
            silent.stop()
        assert silent.status().state == SourceState.STOPPED


class SwitchableCamera(LocalCamera):
    """An HTTP camera on 127.0.0.1 whose behaviour the test switches: ``hang`` (accepts, never
    answers), ``refuse`` (503) or ``serve`` (the clip, paced at 15 fps). Requests are logged
    with the mode they met."""

    def __init__(self, data: bytes, mode: str = "hang") -> None:
        self.data, self.mode = data, mode
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                mode = owner.mode
                owner.requests.append(mode)
                if mode == "hang":  # say nothing until the test moves on (bounded)
                    deadline = time.monotonic() + 30
                    while (owner.mode == "hang" and not owner.closing.is_set()
                           and time.monotonic() < deadline):
                        time.sleep(0.05)
                    self.close_connection = True
                elif mode == "refuse":
                    with contextlib.suppress(OSError):  # a probe hangs up after the first byte
                        self.send_error(503, "camera down")
                else:
                    self.send_response(200)
                    self.send_header("Content-Type", "video/x-msvideo")
                    self.send_header("Content-Length", str(len(owner.data)))
                    self.end_headers()
                    step = len(owner.data) // 40 + 1
                    with contextlib.suppress(OSError):
                        for i in range(0, len(owner.data), step):
                            self.wfile.write(owner.data[i: i + step])
                            self.wfile.flush()
                            time.sleep(1 / 15)

        self._serve(Handler)


def test_a_bad_camera_comes_up_later_fails_again_and_the_other_never_notices(clips):
    sink = MemorySink()
    with SwitchableCamera(clips.obama.read_bytes(), mode="hang") as camera:
        sources = open_sources([f"door={camera.url}", f"hall={clips.stranger}"],
                               realtime=True, loop=True, open_timeout=1.0, wait=0.0,
                               backoff=Backoff(initial=0.1, factor=2.0, cap=0.8, jitter=0.5))
        door, hall = sources
        runner = Runner(_pipelines(sources, sink, clips.watchlist), workers=2, max_seconds=180)
        thread = threading.Thread(target=runner.run, daemon=True)
        thread.start()
        try:
            # 1. The door camera's URL hangs: it is retried, the hall camera runs.
            _wait_for(lambda: door.status().reconnects >= 2 and hall.status().frames_in > 0)
            status = door.status()
            assert status.state == SourceState.RECONNECTING and "door: cannot open" in status.error
            assert door.status().frames_in == 0
            hall_before = hall.status().frames_in
            # 2. It becomes reachable: it runs and is analysed.
            camera.mode = "serve"
            _wait_for(lambda: door.status().state == SourceState.RUNNING)
            up_since = door.status().since
            assert up_since >= status.since
            _wait_for(lambda: door.status().frames_in >= 10)
            # 3. It fails again (the served clip ends, then 503): it retries, and says why.
            camera.mode = "refuse"
            reconnects = door.status().reconnects
            _wait_for(lambda: door.status().state == SourceState.RECONNECTING
                      and door.status().reconnects >= reconnects + 2)
            lost = door.status()
            assert lost.since > up_since and "door: cannot open" in lost.error
            hall_after = hall.status().frames_in
            assert runner.states() == {"door": SourceState.RECONNECTING,
                                       "hall": SourceState.RUNNING}
        finally:
            runner.stop()
            thread.join(timeout=60)
    assert not thread.is_alive()
    # The hall camera kept going the whole time.
    assert hall_after > hall_before > 0
    summary = runner.summary()
    by_camera = {f.camera: f for f in summary.cameras}
    assert by_camera["door"].frames > 0 and by_camera["hall"].frames > 0
    assert "hang" in camera.requests and "serve" in camera.requests
    assert camera.requests.index("serve") < len(camera.requests) - 1
    # The door camera's frames, served once it came up, were analysed: Obama was alerted.
    assert "obama" in {a.subject_id for a in sink.firsts() if a.camera == "door"}
    assert not [a for a in sink.firsts() if a.camera == "hall"]


def test_mjpeg_over_http_is_a_source_and_the_preview_serves_it_masked(clips):
    engine = get_engine("sface")
    gallery, names = videoclips.load_gallery(clips.watchlist)
    (source,) = open_sources([str(clips.stranger)], realtime=True, loop=True)
    server = PreviewServer([source.name], port=0, fps=15)
    server.start()
    pipeline = CameraPipeline(source.name, engine, gallery, PipelineConfig(threshold=0.4),
                              MemorySink(), fps=source.fps, names=names)
    runner = Runner([(source, pipeline)], workers=1, on_frame=server.publish)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        page = urllib.request.urlopen(server.url, timeout=5).read().decode()
        assert "/cameras/stranger.mjpg" in page
        snapshot = urllib.request.urlopen(server.url + "cameras/stranger.jpg", timeout=10).read()
        assert snapshot[:2] == b"\xff\xd8"
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(server.url + "cameras/nobody.mjpg", timeout=5)
        mjpeg = CaptureSource(SourceSpec("preview", server.url + "cameras/stranger.mjpg",
                                         "stream"))
        mjpeg.open()
        mjpeg.start()
        frames = []
        deadline = time.monotonic() + 20
        while len(frames) < 5 and time.monotonic() < deadline:
            frame = mjpeg.take()
            if frame is None:
                time.sleep(0.02)
            else:
                frames.append(frame)
        mjpeg.stop()
    finally:
        runner.stop()
        thread.join(timeout=10)
        server.stop()
    assert len(frames) == 5 and frames[0].image.shape == (360, 640, 3)
    # The person in the preview is masked: where the detector finds a face in the clip, the
    # preview shows a smooth blob (almost no fine detail left).
    faces = [f for f in (engine.detect(fr.image) for fr in frames) if f]
    for found in faces:
        for face in found:
            x, y, w, h = (int(v) for v in face.box)
            patch = frames[0].image[max(y, 0): y + h, max(x, 0): x + w]
            if patch.size:
                gray = cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY)
                assert cv2.Laplacian(gray, cv2.CV_64F).var() < 30


def test_the_preview_listens_on_localhost_only():
    with pytest.raises(InvalidInput, match=r"127\.0\.0\.1"):
        PreviewServer(["a"], port=0, host="0.0.0.0")


def test_a_corrupt_frame_is_skipped_and_the_watchlisted_person_still_alerted(clips, tmp_path):
    path = tmp_path / "corrupt.avi"
    path.write_bytes(clips.obama.read_bytes())
    videoclips.corrupt_middle_frame(path, fraction=0.3)
    result = CliRunner().invoke(app, ["watch", str(path), "--watchlist", str(clips.watchlist),
                                      "--json"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["subject"] for e in events if e["event"] == "alert"] == ["obama"]
    summary = events[-1]
    assert summary["event"] == "summary" and summary["frames"] >= 38


def test_an_unreadable_file_fails_alone_and_the_good_camera_is_watched(clips, tmp_path):
    bad = tmp_path / "camera-7.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, np.uint8).tobytes())
    result = CliRunner().invoke(app, ["watch", str(clips.obama), str(bad), "--watchlist",
                                      str(clips.watchlist), "--json"])
    assert result.exit_code == 1, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["subject"] for e in events if e["event"] == "alert"] == ["obama"]
    states = [(e["camera"], e["state"]) for e in events if e["event"] == "camera"]
    assert ("obama", "ended") in states
    bad_events = [e for e in events if e["event"] == "camera" and e["camera"] == "camera-7"]
    # States are sampled (twice a second): "reconnecting" may fall between two samples.
    assert {e["state"] for e in bad_events} <= {"reconnecting", "failed"}
    assert bad_events[-1]["state"] == "failed"
    assert "camera-7: cannot open" in bad_events[-1]["error"]
    assert "gave up after 3 retries" in bad_events[-1]["error"]
    assert bad_events[0]["since"] <= bad_events[-1]["since"] <= time.time()
    summary = events[-1]
    assert summary["event"] == "summary"
    assert {c["camera"]: c["frames"] for c in summary["cameras"]} == {"obama": 40,
                                                                     "camera-7": 0}
    assert "camera(s) failed: camera-7: cannot open" in result.stderr
    assert str(bad) in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_camera_that_refuses_is_shown_retrying_while_the_file_is_watched(clips):
    with socket.socket() as closed:  # nobody listens there: connection refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = CliRunner().invoke(app, ["watch", str(clips.obama), f"side=http://127.0.0.1:{port}/x",
                                      "--watchlist", str(clips.watchlist), "--json",
                                      "--max-seconds", "3"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    side = [e for e in events if e["event"] == "camera" and e["camera"] == "side"]
    assert next(e["state"] for e in side if e["state"] != "connecting") == "reconnecting"
    assert side[-1]["state"] == "stopped"
    retrying = next(e for e in side if e["state"] == "reconnecting")
    assert f"side: cannot open http://127.0.0.1:{port}/x" in retrying["error"]
    assert isinstance(retrying["since"], float) and retrying["since"] <= side[-1]["since"]
    assert ("obama", "running") in [(e["camera"], e["state"]) for e in events
                                    if e["event"] == "camera"]


def test_exit_while_a_camera_is_inside_opencv_does_not_abort_the_process():
    """A server that answers the probe but never sends the stream keeps a decoder thread
    inside OpenCV; the process exits normally (it waits for the thread) instead of aborting
    ("terminate called without an active exception", exit status -6)."""
    opened = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            if self.headers.get("User-Agent") == PROBE_AGENT:
                self.send_response(204)
                self.end_headers()
                return
            opened.set()  # OpenCV is now waiting for an answer that does not come
            time.sleep(10)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/live.mjpg"
    # The interpreter's own shutdown is made to last (as a large program's does), so that
    # OpenCV gives up on the open while it is under way.
    code = textwrap.dedent(f"""
        import sys, time
        from openlfr.video.sources import open_sources

        class SlowShutdown:
            def __del__(self):
                time.sleep(5)

        slow = SlowShutdown()
        (source,) = open_sources([{url!r}], open_timeout=2.0, wait=0.0)
        source.start()
        sys.stdin.readline()  # the test says when OpenCV is inside its open
        print("exiting", source.status().state, flush=True)
    """)
    try:
        proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert opened.wait(60)
        out, err = proc.communicate("go\n", timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    assert out.strip() == "exiting connecting", err
    assert proc.returncode == 0, err
    assert "terminate called" not in err
