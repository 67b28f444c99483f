"""Faults: a stream that drops mid-way and comes back (served from a local HTTP server on
127.0.0.1), MJPEG over HTTP, a corrupt frame, an unreadable file."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from openlfr.cli import app
from openlfr.video.pipeline import CameraPipeline, PipelineConfig
from openlfr.video.preview import PreviewServer
from openlfr.video.runner import Runner
from openlfr.video.sinks import MemorySink
from openlfr.video.sources import Backoff, CaptureSource, SourceSpec, SourceState, open_sources
from openlfr.vision import get_engine

from . import videoclips


@pytest.fixture(scope="session")
def clips(tmp_path_factory, face_images, no_face_path) -> videoclips.ClipSet:
    return videoclips.clip_set(tmp_path_factory, face_images, no_face_path)


class FlakyCamera:
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

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/camera.avi"

    def __enter__(self) -> FlakyCamera:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


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
    assert door.frames == door.frames_in - door.dropped
    assert door.dropped <= door.frames_in // 4
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
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
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


def test_an_unreadable_file_is_a_one_line_error_with_exit_code_2(clips, tmp_path):
    bad = tmp_path / "camera-7.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, np.uint8).tobytes())
    result = CliRunner().invoke(app, ["watch", str(clips.empty), str(bad), "--watchlist",
                                      str(clips.watchlist), "--json"])
    assert result.exit_code == 2
    assert "camera-7: cannot open" in result.stderr and str(bad) in result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
