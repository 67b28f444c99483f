"""Privacy-masked live preview: an MJPEG stream over HTTP, on 127.0.0.1 only.

Every detected face that is not an alert is pixelated and blurred beyond recognition before the
frame leaves the pipeline; alert faces are boxed and labelled with the subject id. Frames are
rendered only while someone watches, at a capped rate, and live in memory only.

Limits: a face the detector missed in a frame cannot be masked in that frame. Between detected
frames (``detect_fps``) the last detected boxes are masked, with a wider margin.

Routes: ``/`` (a page with every camera), ``/cameras/<name>.mjpg`` (the stream),
``/cameras/<name>.jpg`` (one frame).
"""

from __future__ import annotations

import html
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast
from urllib.parse import quote, unquote

import cv2
import numpy as np

from openlfr.errors import InvalidInput
from openlfr.video.pipeline import CameraPipeline, FrameResult
from openlfr.vision.imageio import ImageArray
from openlfr.vision.types import Face

log = logging.getLogger("openlfr.video.preview")

BOUNDARY = "openlfr-frame"
#: Margin around a face box that is masked, as a fraction of the box (more between detections).
MASK_MARGIN = 0.35
MASK_MARGIN_UNDETECTED = 0.8
#: Cells across a masked face: few enough that no identity survives.
PIXEL_CELLS = 6
ALERT_COLOUR = (0, 0, 255)


def _expand(box: tuple[float, float, float, float], margin: float, width: int, height: int
            ) -> tuple[int, int, int, int]:
    x, y, w, h = box
    x0 = max(int(x - w * margin), 0)
    y0 = max(int(y - h * margin), 0)
    x1 = min(int(x + w * (1 + margin)) + 1, width)
    y1 = min(int(y + h * (1 + margin)) + 1, height)
    return x0, y0, x1, y1


def anonymise(region: ImageArray) -> ImageArray:
    """Pixelate to a few cells and blur: keeps a skin-coloured blob, no identity."""
    h, w = region.shape[:2]
    if h < 2 or w < 2:
        return region
    cells_x = max(1, min(PIXEL_CELLS, w))
    cells_y = max(1, min(PIXEL_CELLS, h))
    small = cv2.resize(region, (cells_x, cells_y), interpolation=cv2.INTER_AREA)
    blocky = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    k = max(3, (min(w, h) // 3) | 1)
    # OpenCV's stubs type every result as any Mat; resizing and blurring keep 8-bit pixels.
    return cast(ImageArray, cv2.GaussianBlur(blocky, (k, k), 0))


def mask_frame(
    image: ImageArray,
    faces: Sequence[Face],
    track_ids: Sequence[int | None],
    labels: Mapping[int, str],
    *,
    detected: bool = True,
) -> ImageArray:
    """A copy of ``image`` with every non-alert face anonymised and alert faces boxed."""
    out = image.copy()
    height, width = out.shape[:2]
    margin = MASK_MARGIN if detected else MASK_MARGIN_UNDETECTED
    boxed: list[tuple[tuple[int, int, int, int], str]] = []
    for face, track_id in zip(faces, track_ids, strict=True):
        label = labels.get(track_id) if track_id is not None else None
        if label is None:
            x0, y0, x1, y1 = _expand(face.box, margin, width, height)
            if x1 > x0 and y1 > y0:
                out[y0:y1, x0:x1] = anonymise(out[y0:y1, x0:x1])
        else:
            boxed.append((_expand(face.box, 0.1, width, height), label))
    for (x0, y0, x1, y1), label in boxed:  # drawn last, so no mask covers a label
        cv2.rectangle(out, (x0, y0), (x1, y1), ALERT_COLOUR, 2)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        ty = max(y0 - 4, th + 4)
        cv2.rectangle(out, (x0, ty - th - 4), (x0 + tw + 6, ty + base - 2), ALERT_COLOUR, -1)
        cv2.putText(out, label, (x0 + 3, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return out


class _Feed:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.jpeg: bytes | None = None
        self.seq = 0
        self.viewers = 0
        self.wanted_until = 0.0
        self.last_render = 0.0


class PreviewFeeds:
    """The masked frames of some cameras, rendered only while someone watches, at a capped
    rate, kept in memory only (the newest JPEG per camera). :meth:`publish` is a frame callback
    for :class:`~openlfr.video.runner.Runner`; :meth:`next_frame` blocks until a newer frame.
    Served over plain HTTP by :class:`PreviewServer`, or by the web console."""

    def __init__(self, cameras: Sequence[str], fps: float = 10.0,
                 jpeg_quality: int = 70) -> None:
        self._feeds = {name: _Feed() for name in cameras}
        self._interval = 1.0 / max(fps, 0.5)
        self._quality = int(jpeg_quality)
        self._closing = threading.Event()

    @property
    def cameras(self) -> list[str]:
        return list(self._feeds)

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def close(self) -> None:
        """Wake every viewer and end their streams."""
        self._closing.set()
        for feed in self._feeds.values():
            with feed.cond:
                feed.cond.notify_all()

    # -- producer side (pipeline workers) ----------------------------------------------------

    def wants(self, camera: str) -> bool:
        feed = self._feeds.get(camera)
        if feed is None:
            return False
        now = time.monotonic()
        watched = feed.viewers > 0 or now < feed.wanted_until
        return watched and now - feed.last_render >= self._interval

    def publish(self, pipeline: CameraPipeline, result: FrameResult) -> None:
        """A frame callback for :class:`~openlfr.video.runner.Runner`."""
        camera = pipeline.camera
        if not self.wants(camera):
            return
        feed = self._feeds[camera]
        feed.last_render = time.monotonic()
        masked = mask_frame(result.frame.image, result.faces, result.track_ids, result.labels,
                            detected=result.detected)
        ok, data = cv2.imencode(".jpg", masked, [cv2.IMWRITE_JPEG_QUALITY, self._quality])
        if not ok:
            return
        with feed.cond:
            feed.jpeg = np.asarray(data).tobytes()
            feed.seq += 1
            feed.cond.notify_all()

    # -- consumer side -----------------------------------------------------------------------

    def watch(self, camera: str) -> bool:
        """Count a viewer of ``camera`` (False: no such camera). Pair with :meth:`unwatch`."""
        feed = self._feeds.get(camera)
        if feed is None:
            return False
        with feed.cond:
            feed.viewers += 1
        return True

    def unwatch(self, camera: str) -> None:
        feed = self._feeds.get(camera)
        if feed is not None:
            with feed.cond:
                feed.viewers = max(0, feed.viewers - 1)

    def next_frame(self, camera: str, after: int, timeout: float) -> tuple[int, bytes | None]:
        """``(seq, jpeg)`` of a frame newer than ``after``, or ``(seq, None)`` on timeout."""
        feed = self._feeds[camera]
        return self._next(feed, after, timeout)

    def multipart_part(self, jpeg: bytes) -> bytes:
        return (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                f"Content-Length: {len(jpeg)}\r\n\r\n").encode() + jpeg + b"\r\n"

    def _next(self, feed: _Feed, after: int, timeout: float) -> tuple[int, bytes | None]:
        with feed.cond:
            feed.cond.wait_for(lambda: feed.seq > after or self._closing.is_set(), timeout)
            return feed.seq, feed.jpeg if feed.seq > after else None


class PreviewServer(PreviewFeeds):
    """Serves masked MJPEG previews of the cameras on ``host:port`` (``port=0``: any free)."""

    def __init__(self, cameras: Sequence[str], port: int = 0, host: str = "127.0.0.1",
                 fps: float = 10.0, jpeg_quality: int = 70) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise InvalidInput("the preview shows live video: it only listens on 127.0.0.1")
        if not 0 <= port <= 65535:
            raise InvalidInput(f"--preview {port}: not a TCP port")
        super().__init__(cameras, fps, jpeg_quality)
        handler = _make_handler(self)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise InvalidInput(f"--preview {port}: cannot listen on {host}:{port} ({exc})") from exc
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="preview",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.close()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- the HTTP side -----------------------------------------------------------------------

    def _index_page(self) -> bytes:
        items = "\n".join(
            f'<figure><img src="/cameras/{quote(name)}.mjpg" alt="{html.escape(name)}">'
            f"<figcaption>{html.escape(name)}</figcaption></figure>"
            for name in self._feeds
        )
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>openlfr preview</title>"
            "<style>body{font-family:sans-serif;background:#111;color:#eee}"
            "figure{display:inline-block;margin:8px}img{max-width:640px}</style></head><body>"
            "<h1>openlfr live preview</h1><p>Faces that are not alerts are masked. Alerts are "
            f"possible matches for a person to review.</p>{items}</body></html>"
        ).encode()


def _make_handler(server: PreviewServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "openlfr-preview"

        def log_message(self, format: str, *args: object) -> None:
            log.debug("preview: " + format, *args)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, "text/html; charset=utf-8", server._index_page())
                return
            if path.startswith("/cameras/"):
                name, _, ext = unquote(path[len("/cameras/"):]).rpartition(".")
                feed = server._feeds.get(name)
                if feed is not None and ext == "mjpg":
                    self._stream(feed)
                    return
                if feed is not None and ext == "jpg":
                    self._snapshot(feed)
                    return
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")

        def _send(self, status: HTTPStatus, ctype: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _snapshot(self, feed: _Feed) -> None:
            feed.wanted_until = time.monotonic() + 5.0
            _, jpeg = server._next(feed, feed.seq, timeout=5.0)
            if jpeg is None:
                self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"no frame yet\n")
            else:
                self._send(HTTPStatus.OK, "image/jpeg", jpeg)

        def _stream(self, feed: _Feed) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            with feed.cond:
                feed.viewers += 1
            seq = 0
            try:
                while not server._closing.is_set():
                    seq, jpeg = server._next(feed, seq, timeout=1.0)
                    if jpeg is None:
                        continue
                    self.wfile.write(server.multipart_part(jpeg))
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                pass
            finally:
                with feed.cond:
                    feed.viewers -= 1

    return Handler
