"""Frame sources: video files, network streams (RTSP, RTMP, HTTP(S), MJPEG) and webcams.

Each source decodes in its own thread, so decoding overlaps with analysis and one slow or broken
camera never blocks another:

* a **live** source (a stream, a webcam, or a file with ``realtime=True``) keeps only the newest
  frame: a frame that is replaced before the pipeline took it is counted as dropped;
* a **file** read as fast as possible keeps a small bounded buffer and its reader waits when the
  buffer is full (back-pressure), so every frame is analysed.

A stream that fails is reopened with exponential backoff and jitter; its state
(``connecting``, ``live``, ``reconnecting``, ``ended``, ``failed``, ``stopped``) is reported by
:meth:`CaptureSource.status`. A file can be looped (``loop=True``) to simulate an endless camera.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal, Protocol

import cv2
import numpy as np

from openlfr.redact import redact
from openlfr.video.types import Frame
from openlfr.vision.imageio import ImageArray

log = logging.getLogger("openlfr.video.sources")

SourceKind = Literal["file", "stream", "device"]

#: URL schemes handed to FFmpeg as network streams.
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp")
#: How long FFmpeg may wait to open a stream, or for the next packet of an open one.
OPEN_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 5.0
#: Frame rate assumed when a source does not say (or says something absurd).
DEFAULT_FPS = 25.0
#: A file read stops at the first failed read, unless more frames follow within this many
#: failed reads (a corrupt frame in the middle is skipped, not taken for the end).
MAX_CORRUPT_SKIP = 8
#: Frames a file source buffers ahead when it is read as fast as possible.
FILE_BUFFER = 4

_NAME_RE = re.compile(r"^([A-Za-z][\w.-]{0,63})=(.+)$")


class SourceError(ValueError):
    """A video source cannot be used; the message names the source and the reason."""


class SourceState(StrEnum):
    CONNECTING = "connecting"
    RUNNING = "running"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class SourceSpec:
    """What to open: a file path, a stream URL or a device index, and the camera's name."""

    name: str
    target: str
    kind: SourceKind

    @property
    def device(self) -> int:
        return int(self.target)

    @classmethod
    def parse(cls, text: str) -> SourceSpec:
        """``NAME=TARGET`` or ``TARGET``, where TARGET is a device index (``0``), a URL
        (``rtsp://…``, ``http://…/stream.mjpg``) or a video file path."""
        text = text.strip()
        if not text:
            raise SourceError("an empty video source was given")
        name = ""
        match = _NAME_RE.match(text)
        if match and "://" not in match.group(1):
            name, text = match.group(1), match.group(2).strip()
        scheme = text.split("://", 1)[0].lower() if "://" in text else ""
        if text.isdigit():
            return cls(name or f"webcam{int(text)}", text, "device")
        if scheme in STREAM_SCHEMES:
            return cls(name or _stream_name(text), text, "stream")
        if scheme:
            raise SourceError(
                f"{text}: unsupported URL scheme {scheme!r} (use one of "
                f"{', '.join(STREAM_SCHEMES)}, a file path or a webcam index)"
            )
        if text.startswith("/dev/video"):
            return cls(name or Path(text).name, text, "device")
        return cls(name or Path(text).stem or "video", text, "file")


def _stream_name(url: str) -> str:
    rest = url.split("://", 1)[1]
    rest = rest.rsplit("@", 1)[-1]  # never show credentials in a camera name
    host = rest.split("/", 1)[0].split("?", 1)[0]
    return host or "stream"


def unique_names(specs: Sequence[SourceSpec]) -> list[SourceSpec]:
    """The same specs with duplicate camera names made unique (``name``, ``name-2`` …)."""
    seen: dict[str, int] = {}
    out = []
    for spec in specs:
        count = seen.get(spec.name, 0) + 1
        seen[spec.name] = count
        name = spec.name if count == 1 else f"{spec.name}-{count}"
        while name in seen and name != spec.name:
            count += 1
            name = f"{spec.name}-{count}"
        seen.setdefault(name, 1)
        out.append(SourceSpec(name, spec.target, spec.kind))
    return out


class Capture(Protocol):
    """What a source reads from; ``cv2.VideoCapture`` is one."""

    def isOpened(self) -> bool: ...

    def read(self) -> tuple[bool, ImageArray | None]: ...

    def get(self, prop: int) -> float: ...

    def release(self) -> None: ...


Opener = Callable[[SourceSpec], Capture]


def open_capture(spec: SourceSpec) -> Capture:
    """An opened ``cv2.VideoCapture`` for ``spec`` (FFmpeg for files and streams)."""
    if spec.kind == "device":
        target: str | int = spec.device if spec.target.isdigit() else spec.target
        return cv2.VideoCapture(target)
    if spec.kind == "stream":
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(OPEN_TIMEOUT_S * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(READ_TIMEOUT_S * 1000),
        ]
        return cv2.VideoCapture(spec.target, cv2.CAP_FFMPEG, params)
    return cv2.VideoCapture(spec.target, cv2.CAP_FFMPEG)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: attempt n waits ``min(cap, initial·factor^n)`` scaled by
    a random factor in ``[1 - jitter, 1]``, so cameras that fail together do not retry in step."""

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.cap, self.initial * self.factor ** max(attempt, 0))
        return base * (1.0 - self.jitter * rng.random())


@dataclass(frozen=True)
class SourceStatus:
    name: str
    kind: SourceKind
    state: SourceState
    live: bool
    fps: float
    frames_in: int
    dropped: int
    corrupt: int
    reconnects: int
    error: str

    def as_dict(self) -> dict[str, object]:
        return {
            "camera": self.name,
            "kind": self.kind,
            "state": str(self.state),
            "live": self.live,
            "fps": round(self.fps, 2),
            "frames_in": self.frames_in,
            "dropped": self.dropped,
            "corrupt": self.corrupt,
            "reconnects": self.reconnects,
            "error": self.error,
        }


class FrameSource(Protocol):
    """A camera as the runner sees it: frames to take, a status, a stop."""

    name: str

    @property
    def live(self) -> bool: ...

    @property
    def fps(self) -> float: ...

    def open(self) -> None:
        """Open the source and check that it yields a frame; raise :class:`SourceError`."""
        ...

    def start(self, on_frame: Callable[[str], None] | None = None) -> None:
        """Start decoding in the background; ``on_frame(name)`` is called for each frame."""
        ...

    def take(self) -> Frame | None:
        """The next frame to analyse (the newest, for a live source), or ``None``."""
        ...

    def has_frame(self) -> bool: ...

    @property
    def finished(self) -> bool:
        """No frame is waiting and none will come."""
        ...

    def status(self) -> SourceStatus: ...

    def stop(self) -> None: ...


class CaptureSource:
    """A :class:`FrameSource` over an OpenCV capture (or anything with its ``read``).

    ``realtime``: pace a file at its own frame rate and treat it as live (newest frame only,
    drops counted), to simulate a camera. ``loop``: start a file again at its end (stream time
    keeps increasing). ``max_reconnects``: give a stream up after that many failed reconnection
    attempts in a row (``None``: never).
    """

    def __init__(
        self,
        spec: SourceSpec,
        *,
        realtime: bool = False,
        loop: bool = False,
        opener: Opener = open_capture,
        backoff: Backoff | None = None,
        max_reconnects: int | None = None,
        buffer: int = FILE_BUFFER,
        seed: int | None = None,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.realtime = realtime
        self.loop = loop
        self._opener = opener
        self._backoff = backoff or Backoff()
        self._max_reconnects = max_reconnects
        self._live = spec.kind != "file" or realtime
        self._capacity = 1 if self._live else max(1, buffer)
        self._rng = random.Random(seed)
        self._cond = threading.Condition()
        self._frames: deque[Frame] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cap: Capture | None = None
        self._on_frame: Callable[[str], None] | None = None
        self._state = SourceState.CONNECTING
        self._error = ""
        self._fps = DEFAULT_FPS
        self._frame_count = 0
        self._index = 0  # frames decoded so far, across loops and reconnects
        self._pass_start = 0  # index of the first frame of this pass through a file
        self._frames_in = 0
        self._dropped = 0
        self._corrupt = 0
        self._reconnects = 0
        self._t0 = time.monotonic()
        self._pace0: float | None = None
        self._first: ImageArray | None = None

    # -- description -------------------------------------------------------------------------

    @property
    def live(self) -> bool:
        return self._live

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def label(self) -> str:
        return redact(self.spec.target)

    def status(self) -> SourceStatus:
        with self._cond:
            return SourceStatus(self.name, self.spec.kind, self._state, self._live, self._fps,
                                self._frames_in, self._dropped, self._corrupt, self._reconnects,
                                self._error)

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        if self.spec.kind == "file":
            path = Path(self.spec.target)
            if not path.exists():
                raise SourceError(f"{self.name}: {path}: no such file")
            if not path.is_file():
                raise SourceError(f"{self.name}: {path}: not a file")
        try:
            cap = self._opener(self.spec)
        except (cv2.error, OSError, RuntimeError) as exc:
            raise SourceError(f"{self.name}: cannot open {self.label}: {exc}") from exc
        first = self._first_frame(cap)
        if first is None:
            with contextlib.suppress(Exception):
                cap.release()
            what = {
                "file": "not a video file that OpenCV/FFmpeg can decode",
                "stream": "stream unreachable, refused, or not a video stream",
                "device": "no such camera, or it is busy",
            }[self.spec.kind]
            raise SourceError(f"{self.name}: cannot open {self.label}: {what}")
        self._cap = cap
        self._first = first
        self._fps = _sane_fps(cap.get(cv2.CAP_PROP_FPS))
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self._frame_count = int(count) if math.isfinite(count) and count > 0 else 0
        self._set_state(SourceState.RUNNING)

    @staticmethod
    def _first_frame(cap: Capture) -> ImageArray | None:
        try:
            if not cap.isOpened():
                return None
            for _ in range(MAX_CORRUPT_SKIP):
                ok, image = cap.read()
                if ok and _valid(image):
                    return image
        except cv2.error:
            return None
        return None

    def start(self, on_frame: Callable[[str], None] | None = None) -> None:
        if self._cap is None:
            self.open()
        self._on_frame = on_frame
        self._thread = threading.Thread(target=self._run, name=f"source-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=READ_TIMEOUT_S + 2)
        if thread is None or not thread.is_alive():
            self._release()  # else the reader, stuck in a read, releases it when it returns
        with self._cond:
            if self._state not in (SourceState.ENDED, SourceState.FAILED):
                self._state = SourceState.STOPPED
            self._frames.clear()

    # -- consumer side -----------------------------------------------------------------------

    def take(self) -> Frame | None:
        with self._cond:
            if not self._frames:
                return None
            frame = self._frames.popleft()
            self._cond.notify_all()
            return frame

    def has_frame(self) -> bool:
        with self._cond:
            return bool(self._frames)

    @property
    def finished(self) -> bool:
        with self._cond:
            done = self._state in (SourceState.ENDED, SourceState.FAILED, SourceState.STOPPED)
            return done and not self._frames

    # -- reader thread -----------------------------------------------------------------------

    def _set_state(self, state: SourceState, error: str = "") -> None:
        with self._cond:
            changed = state != self._state
            self._state = state
            if error:
                self._error = error
        if changed:
            level = logging.WARNING if state in (SourceState.RECONNECTING,
                                                 SourceState.FAILED) else logging.INFO
            log.log(level, "camera %s: %s%s", self.name, state, f" ({error})" if error else "")

    def _release(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            with contextlib.suppress(Exception):
                cap.release()

    def _deliver(self, image: ImageArray) -> None:
        now_mono = time.monotonic()
        t = self._index / self._fps if self.spec.kind == "file" else now_mono - self._t0
        frame = Frame(self.name, self._index, t, time.time(), now_mono, image)
        self._index += 1
        with self._cond:
            if not self._live:
                while len(self._frames) >= self._capacity and not self._stop.is_set():
                    self._cond.wait(0.2)
            elif len(self._frames) >= self._capacity:
                self._frames.popleft()
                self._dropped += 1
            self._frames.append(frame)
            self._frames_in += 1
        if self._on_frame is not None:
            self._on_frame(self.name)

    def _pace(self) -> None:
        """In realtime mode, wait until this frame is due at the file's own frame rate."""
        if not (self.realtime and self.spec.kind == "file"):
            return
        now = time.monotonic()
        if self._pace0 is None:
            self._pace0 = now - self._index / self._fps
        due = self._pace0 + self._index / self._fps
        if due > now:
            self._stop.wait(due - now)
        elif now - due > 1.0:  # far behind (a stall): do not burst to catch up
            self._pace0 = now - self._index / self._fps

    def _run(self) -> None:
        try:
            self._read_loop()
        except Exception as exc:  # a broken source must never take the process down
            log.exception("camera %s: reader stopped", self.name)
            self._set_state(SourceState.FAILED, f"{type(exc).__name__}: {exc}")
        finally:
            self._release()
            with self._cond:
                self._cond.notify_all()
            if self._on_frame is not None:
                self._on_frame(self.name)  # wake the runner so it sees the end

    def _read_loop(self) -> None:
        first, self._first = self._first, None
        if first is not None:
            self._pace()
            self._deliver(first)
        failures = 0
        while not self._stop.is_set():
            if self._cap is None and not self._reconnect():
                return
            assert self._cap is not None
            try:
                ok, image = self._cap.read()
            except cv2.error:
                ok, image = False, None
            if ok and _valid(image):
                failures = 0
                self._pace()
                assert image is not None
                self._deliver(image)
                continue
            failures += 1
            if self.spec.kind == "file":
                if self._more_frames_expected() and failures <= MAX_CORRUPT_SKIP:
                    with self._cond:
                        self._corrupt += 1
                    self._index += 1
                    continue
                if self.loop and self._index > 0:
                    self._restart_file()
                    failures = 0
                    continue
                self._set_state(SourceState.ENDED)
                return
            # A stream or webcam that stops delivering has dropped: reconnect.
            self._release()
            self._set_state(SourceState.RECONNECTING, "stream lost")

    def _more_frames_expected(self) -> bool:
        """Whether the file says it holds frames beyond the one that just failed."""
        position = self._index - self._pass_start
        return self._frame_count > 0 and position < self._frame_count - 1

    def _restart_file(self) -> None:
        """Start the file again (``loop``); the index and stream time keep increasing."""
        self._release()
        cap = self._opener(self.spec)
        if not cap.isOpened():
            self._set_state(SourceState.FAILED, "cannot reopen the file to loop it")
            self._stop.set()
            return
        self._cap = cap
        self._pass_start = self._index

    def _reconnect(self) -> bool:
        """Reopen a lost stream with backoff; False when given up or stopped."""
        attempt = 0
        while not self._stop.is_set():
            if self._max_reconnects is not None and attempt >= self._max_reconnects:
                self._set_state(SourceState.FAILED,
                                f"gave up after {attempt} reconnection attempts")
                return False
            delay = self._backoff.delay(attempt, self._rng)
            if self._stop.wait(delay):
                return False
            attempt += 1
            with self._cond:
                self._reconnects += 1
            try:
                cap = self._opener(self.spec)
                opened = cap.isOpened()
            except (cv2.error, OSError, RuntimeError):
                opened = False
            if opened:
                self._cap = cap
                self._set_state(SourceState.RUNNING)
                return True
            log.info("camera %s: reconnection attempt %d failed", self.name, attempt)
        return False


def _sane_fps(value: float) -> float:
    if not math.isfinite(value) or value < 1.0 or value > 240.0:
        return DEFAULT_FPS
    return float(value)


def _valid(image: object) -> bool:
    return isinstance(image, np.ndarray) and image.size > 0 and image.ndim in (2, 3)


def open_sources(
    texts: Sequence[str],
    *,
    realtime: bool = False,
    loop: bool = False,
    opener: Opener = open_capture,
    max_reconnects: int | None = None,
) -> list[CaptureSource]:
    """Parse and open every source (in parallel: a stream may take seconds to answer).

    Raises one :class:`SourceError` naming every source that could not be opened.
    """
    specs = unique_names([SourceSpec.parse(t) for t in texts])
    sources = [CaptureSource(s, realtime=realtime, loop=loop, opener=opener,
                             max_reconnects=max_reconnects) for s in specs]
    errors: dict[str, str] = {}

    def attempt(source: CaptureSource) -> None:
        try:
            source.open()
        except SourceError as exc:
            errors[source.name] = str(exc)

    threads = [threading.Thread(target=attempt, args=(s,), daemon=True) for s in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        for source in sources:
            source.stop()
        raise SourceError("; ".join(errors[s.name] for s in sources if s.name in errors))
    return sources
