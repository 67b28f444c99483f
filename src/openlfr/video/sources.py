"""Frame sources: video files, network streams (RTSP, RTMP, HTTP(S), MJPEG) and webcams.

Each source decodes in its own thread, so decoding overlaps with analysis and one slow or broken
camera never blocks another:

* a **live** source (a stream, a webcam, or a file with ``realtime=True``) keeps at most
  ``live_buffer`` frames (:data:`LIVE_BUFFER`, about a quarter of a second at 30 fps; fewer of
  a high resolution, :data:`LIVE_BUFFER_BYTES`) and never waits: the analysis catches up after
  a short burst of slow frames (a detection and an embedding on the same frame) instead of
  losing them, and when it stays behind the oldest frame waiting is discarded and counted as
  dropped;
* a **file** read as fast as possible keeps a small bounded buffer and its reader waits when the
  buffer is full (back-pressure), so every frame is analysed.

One camera's failure affects that camera alone. A source is opened in its own thread and, when
it cannot be opened or is lost later, retried there with exponential backoff and jitter
(:class:`Backoff`) while the other cameras run:

* a **stream or webcam** is retried for ever (capped backoff, ``max_reconnects=None``): a camera
  that is down, unreachable or hanging may come back at any time;
* a **file** that is missing or cannot be decoded is retried ``file_retries`` times (someone may
  be putting it in place) and then given up (``failed``), so a run of only bad files ends with
  a clear error instead of waiting for ever.

OpenCV's FFmpeg backend opens one capture at a time (a process-wide lock), so a stream that
never answers would hold up every other camera's opening for the whole open timeout. Before
handing a TCP-based stream (HTTP(S), RTSP(S), RTMP(S), TCP) to OpenCV, its server is therefore
*probed* from Python, outside that lock: connect, send a harmless request without credentials
(``GET``, ``OPTIONS``, the RTMP handshake) and wait for the first byte of any answer. A server
that refuses, cannot be reached or does not answer within the open timeout fails the attempt
there, and the other cameras are not held up.

Only input that can never work is an immediate :class:`SourceError`: text that does not parse,
and one camera name given twice. The state of each source (:class:`SourceState`) is reported
by :meth:`CaptureSource.status` with the wall-clock time of its last change (``since``) and the
last error (credentials redacted). A file can be looped (``loop=True``) to simulate an endless
camera.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import errno
import functools
import hashlib
import logging
import math
import os
import random
import re
import select
import socket
import ssl
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal, Protocol, cast
from urllib.parse import unquote, urlsplit, urlunsplit

import cv2
import numpy as np

from openlfr import errors
from openlfr.redact import redact, redact_text
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
#: Frames a live source keeps for the analysis (0.27 s at 30 fps). With one frame, any frame
#: slower to analyse than the camera's frame interval cost a drop: two cameras on an idle
#: machine dropped 6.4 % of their frames at 0.49 cores, none with 8 (README "Capacity").
LIVE_BUFFER = 8
#: ... and at most this many bytes of them, so that high-resolution cameras stay cheap in
#: memory (1080p: 7 frames, 4K: 2).
LIVE_BUFFER_BYTES = 48 * 1024 * 1024
#: Retries of a file that is missing or cannot be decoded before it is given up (a stream or a
#: webcam is retried for ever unless ``max_reconnects`` says otherwise).
FILE_RETRIES = 3
#: How long :func:`open_sources` waits for the first attempt to open each source (so that the
#: frame rate of the cameras that open is known); a slower one goes on in the background.
OPEN_WAIT_S = 0.5
#: How long :meth:`CaptureSource.stop` waits for its thread; one stuck in FFmpeg (opening a
#: hanging stream) finishes on its own and releases what it opened.
STOP_WAIT_S = 2.0
#: A connection that lasted less than this is flapping: its next outage goes on with the
#: backoff where the last one left off instead of starting again at the shortest wait.
STABLE_S = 10.0

#: The one camera-name rule: a letter, then letters, digits, ``_``, ``.`` or ``-`` (at most
#: 64). Deployments use it too (:mod:`openlfr.governance.deployments`).
CAMERA_NAME = re.compile(r"^[A-Za-z][\w.-]{0,63}$")
CAMERA_NAME_RULE = "a letter, then letters, digits, _ . or - (at most 64)"
_NAME_RE = re.compile(r"^(" + CAMERA_NAME.pattern[1:-1] + r")=(.+)$")


class SourceError(errors.InvalidInput):
    """A video source cannot be used; the message names the source and the reason."""


class SourceState(StrEnum):
    """``connecting``: the first attempt to open is in progress; ``running``: live, frames
    arrive; ``reconnecting``: retrying (with backoff) since ``since``, ``error`` says why;
    ``ended``: a file was read to its end; ``failed``: given up; ``stopped``: stopped by the
    run."""

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
        name, text = _split_name(text)
        scheme = text.split("://", 1)[0].lower() if "://" in text else ""
        if text.isascii() and text.isdigit() and len(text) <= 6:  # not "¹", nor 5,000 digits
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


def check_camera_name(name: str) -> str:
    """``name`` if it follows :data:`CAMERA_NAME`, else :class:`SourceError` saying the
    rule."""
    if not CAMERA_NAME.match(name):
        raise SourceError(f"camera name {name!r}: {CAMERA_NAME_RULE}", field="cameras")
    return name


def split_camera(text: str) -> tuple[str, str]:
    """The one ``NAME=SOURCE`` parser (a deployment's camera line): ``(name, source)``, blanks
    around either part dropped; :class:`SourceError` unless both parts are there. The name is
    checked by :func:`check_camera_name`, not here."""
    name, sep, source = text.partition("=")
    if not sep or not name.strip() or not source.strip():
        shown = repr(text) if len(text) <= 80 else repr(text[:60]) + "…"
        raise SourceError(f"camera {shown}: give it as NAME=SOURCE (e.g. "
                          "gate=rtsp://10.0.0.5/stream)", field="cameras")
    return name.strip(), source.strip()


def _split_name(text: str) -> tuple[str, str]:
    """``("NAME", "TARGET")`` for ``NAME=TARGET``, ``("", TARGET)`` when no name is given."""
    text = text.strip()
    if not text:
        raise SourceError("an empty video source was given")
    match = _NAME_RE.match(text)
    if match and "://" not in match.group(1):
        return match.group(1), match.group(2).strip()
    return "", text


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


def parse_sources(texts: Sequence[str]) -> list[SourceSpec]:
    """Parse every source; a name given twice (``door=… door=…``) is an error, names derived
    from targets are made unique (``name``, ``name-2`` …)."""
    specs = [SourceSpec.parse(t) for t in texts]
    given = [n for n in (_split_name(t)[0] for t in texts) if n]
    twice = sorted({n for n in given if given.count(n) > 1})
    if twice:
        raise SourceError(f"camera name {', '.join(map(repr, twice))} given more than once: "
                          "each camera needs its own name")
    return unique_names(specs)


class Capture(Protocol):
    """What a source reads from; ``cv2.VideoCapture`` is one."""

    def isOpened(self) -> bool: ...

    def read(self) -> tuple[bool, ImageArray | None]: ...

    def get(self, prop: int) -> float: ...

    def release(self) -> None: ...


Opener = Callable[[SourceSpec], Capture]


def open_capture(spec: SourceSpec, *, open_timeout: float = OPEN_TIMEOUT_S,
                 read_timeout: float = READ_TIMEOUT_S) -> Capture:
    """An opened ``cv2.VideoCapture`` for ``spec`` (FFmpeg for files and streams); a stream
    that does not answer within ``open_timeout`` (or stops sending for ``read_timeout``)
    fails."""
    if spec.kind == "device":
        target: str | int = spec.device if spec.target.isdigit() else spec.target
        return _capture(cv2.VideoCapture(target))
    if spec.kind == "stream":
        # RTSP over TCP (UDP is lost behind most NATs and firewalls), unless the process was
        # given its own FFmpeg options; FFmpeg reads the variable at each opening.
        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout * 1000),
        ]
        return _capture(cv2.VideoCapture(spec.target, cv2.CAP_FFMPEG, params))
    return _capture(cv2.VideoCapture(spec.target, cv2.CAP_FFMPEG))


def _capture(capture: cv2.VideoCapture) -> Capture:
    """``capture`` as a :class:`Capture`: OpenCV's stubs type ``read`` as giving any Mat
    (float, UMat…); a video capture gives 8-bit BGR frames."""
    return cast(Capture, capture)


#: A stream read that took this share of the read timeout or more ran into it (FFmpeg's own
#: clock starts a little after ours).
STALL_FRACTION = 0.9

#: Default ports of the stream schemes that are probed before OpenCV opens them.
_PROBE_PORTS = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322, "rtmp": 1935,
                "rtmps": 443, "tcp": None}
_TLS_SCHEMES = ("https", "rtsps", "rtmps")
#: The User-Agent of an HTTP probe, so that a camera's log tells it from the stream itself.
PROBE_AGENT = "openlfr-probe"
_SLICE_S = 0.25  # how often a probe looks at its stop event


def probe_stream(url: str, timeout: float = OPEN_TIMEOUT_S,
                 stop: threading.Event | None = None) -> None:
    """Check that a stream's server answers, without OpenCV (see the module); raise
    :class:`OSError` with a plain reason if it refuses, cannot be reached, or says nothing
    within ``timeout`` seconds. Schemes without a request of their own (``tcp``) are only
    connected; UDP-based ones, and HTTP when a proxy is configured, are not probed."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _PROBE_PORTS or parts.hostname is None:
        return
    if scheme.startswith("http") and any(os.environ.get(v) for v in (
            "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY")):
        return  # FFmpeg goes through the proxy: a direct probe would say nothing useful
    try:
        port = parts.port or _PROBE_PORTS[scheme]
    except ValueError as exc:
        raise OSError(f"bad port: {exc}") from exc
    if port is None:
        return
    deadline = time.monotonic() + timeout

    def left() -> float:
        if stop is not None and stop.is_set():
            raise OSError("stopped")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise OSError(f"no answer within {timeout:g} s")
        return min(remaining, _SLICE_S)

    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {parts.hostname}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        code = sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            raise OSError(os.strerror(code).lower())
        while not select.select([], [sock], [], left())[1]:
            pass
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(os.strerror(code).lower())
        if scheme == "tcp":
            return
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        conn: socket.socket = sock
        if scheme in _TLS_SCHEMES:
            context = ssl.create_default_context()
            context.check_hostname = False  # only whether it answers: nothing is trusted
            context.verify_mode = ssl.CERT_NONE
            try:
                conn = context.wrap_socket(sock, server_hostname=parts.hostname)
            except TimeoutError as exc:
                raise OSError(f"no answer within {timeout:g} s") from exc
            except ssl.SSLError:
                return  # it answered, in its own way: let FFmpeg judge
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        path = parts.path or "/"
        if scheme.startswith("http"):
            request = (f"GET {path} HTTP/1.0\r\nHost: {host}\r\n"
                       f"User-Agent: {PROBE_AGENT}\r\n\r\n").encode()
        elif scheme.startswith("rtsp"):
            request = (f"OPTIONS {scheme}://{host}:{port}{path} RTSP/1.0\r\nCSeq: 1\r\n"
                       "\r\n").encode()
        else:  # RTMP: C0 and C1 of the handshake
            request = b"\x03" + bytes(1536)
        conn.sendall(request)
        conn.setblocking(False)
        while True:
            if isinstance(conn, ssl.SSLSocket) and conn.pending():
                return
            if select.select([conn], [], [], left())[0]:
                return  # an answer (or the server closed the connection): it is there
    except ConnectionRefusedError as exc:
        raise OSError("connection refused") from exc
    finally:
        sock.close()


def rtsp_refusal(url: str, timeout: float = OPEN_TIMEOUT_S) -> str | None:
    """Why an RTSP server refuses ``url``, in plain words, or ``None`` if it does not: ask
    for the stream's description (``DESCRIBE``) as FFmpeg does, with the URL's user name and
    password when the server asks for them (Basic or Digest). Used after OpenCV failed to
    open a stream, which says nothing about why. The reason never holds the credentials."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("rtsp", "rtsps") or parts.hostname is None:
        return None
    try:
        port = parts.port or _PROBE_PORTS[parts.scheme.lower()]
    except ValueError:
        return None
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password or "")
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    target = urlunsplit((parts.scheme, f"{netloc}:{port}", parts.path or "/", parts.query, ""))
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout) as sock:
            conn: socket.socket = sock
            if parts.scheme.lower() == "rtsps":
                context = ssl.create_default_context()
                context.check_hostname = False  # only why it refuses: nothing is trusted
                context.verify_mode = ssl.CERT_NONE
                conn = context.wrap_socket(sock, server_hostname=parts.hostname)
            code, reason, headers = _describe(conn, target, 1, None)
            if code == 401 and user is not None:
                challenge = headers.get("www-authenticate", "")
                answer = _authorization(challenge, user, password, target)
                if answer is not None:
                    code, reason, headers = _describe(conn, target, 2, answer)
                    if code == 401:
                        return (f"the camera refused the user name or password ({code} "
                                f"{reason})")
    except (OSError, ValueError):
        return None
    if code == 401:
        return (f"the camera asks for a user name and password ({code} {reason}): give them "
                "in the URL, as USER:PASSWORD@ before the host")
    if code == 404:
        return f"no such stream at this path ({code} {reason})"
    if code >= 400:
        return f"the camera answered {code} {reason}"
    return None


def _describe(conn: socket.socket, target: str, cseq: int, authorization: str | None
              ) -> tuple[int, str, dict[str, str]]:
    """Send ``DESCRIBE`` and read the answer's status and headers (the body is not needed)."""
    lines = [f"DESCRIBE {target} RTSP/1.0", f"CSeq: {cseq}", "Accept: application/sdp",
             f"User-Agent: {PROBE_AGENT}"]
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > 65536:
            raise ValueError("answer too long")
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = head[0].split(" ", 2)
    if len(status) < 2 or not status[0].startswith("RTSP/") or not status[1].isdigit():
        raise ValueError("not an RTSP answer")
    headers: dict[str, str] = {}
    content_length = 0
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            content_length = int(value.strip())
    body = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
    left = min(content_length, 65536) - len(body)
    while left > 0:  # the next answer on this connection starts after this body
        chunk = conn.recv(min(left, 4096))
        if not chunk:
            break
        left -= len(chunk)
    reason = status[2] if len(status) > 2 else ""
    reason = "".join(c for c in reason if c.isprintable())[:60]  # the camera's own words
    return int(status[1]), reason, headers


def _authorization(challenge: str, user: str, password: str, target: str) -> str | None:
    """The ``Authorization`` header answering a ``WWW-Authenticate`` challenge (Basic, or
    Digest with MD5), or ``None`` for a scheme this does not speak."""
    scheme, _, rest = challenge.strip().partition(" ")
    if scheme.lower() == "basic":
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        return f"Basic {token}"
    if scheme.lower() != "digest":
        return None
    fields = dict((k.lower(), v.strip('"')) for k, v in re.findall(
        r'(\w+)=("[^"]*"|[^,\s]+)', rest))
    realm, nonce = fields.get("realm", ""), fields.get("nonce", "")
    if fields.get("algorithm", "MD5").upper() != "MD5":
        return None

    def md5(text: str) -> str:
        return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

    first, second = md5(f"{user}:{realm}:{password}"), md5(f"DESCRIBE:{target}")
    header = f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{target}"'
    if "qop" in fields:  # RFC 2617: with a client nonce and a count
        if "auth" not in [q.strip() for q in fields["qop"].split(",")]:
            return None
        cnonce = os.urandom(8).hex()
        response = md5(f"{first}:{nonce}:00000001:{cnonce}:auth:{second}")
        header += f', qop=auth, nc=00000001, cnonce="{cnonce}"'
    else:
        response = md5(f"{first}:{nonce}:{second}")
    if "opaque" in fields:
        header += f', opaque="{fields["opaque"]}"'
    return header + f', response="{response}"'


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
    since: float = 0.0  # wall clock (epoch seconds) of the last change of state

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
            "since": round(self.since, 3),
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
        """Start decoding in the background (opening first, with retries, if not open yet);
        ``on_frame(name)`` is called for each frame and when the source finishes."""
        ...

    def take(self) -> Frame | None:
        """The next frame to analyse (the oldest one waiting), or ``None``."""
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

    The source is opened, read and reopened in its own thread: :meth:`connect` starts opening
    (retrying on failure, see the module), :meth:`start` lets frames flow (connecting first if
    needed). :meth:`open` is one attempt in the caller's thread that raises
    :class:`SourceError`.

    ``realtime``: pace a file at its own frame rate and treat it as live (at most
    ``live_buffer`` frames kept, drops counted), to simulate a camera. ``loop``: start a file
    again at its end (stream time keeps increasing). ``max_reconnects``: give a stream or webcam
    up after that many failed attempts in a row (``None``: never); ``file_retries``: the same
    for a file. ``probe``: check that a stream's server answers (:func:`probe_stream`,
    ``open_timeout``) before OpenCV opens it. ``read_timeout``: the wait for a stream's next
    frame that the opener was given (:func:`open_capture`); a read that failed after waiting
    that long is reported as a stall (``stalled: no frame for … s``), one that failed sooner as
    ``stream lost``.
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
        file_retries: int = FILE_RETRIES,
        probe: bool = True,
        open_timeout: float = OPEN_TIMEOUT_S,
        read_timeout: float = READ_TIMEOUT_S,
        buffer: int = FILE_BUFFER,
        live_buffer: int = LIVE_BUFFER,
        seed: int | None = None,
    ) -> None:
        self.spec = spec
        self._probe = probe and spec.kind == "stream"
        self._open_timeout = open_timeout
        self._read_timeout = read_timeout
        self.name = spec.name
        self.realtime = realtime
        self.loop = loop
        if opener is open_capture:  # OpenCV waits as long as this source was told
            opener = functools.partial(open_capture, open_timeout=open_timeout,
                                       read_timeout=read_timeout)
        self._opener = opener
        self._backoff = backoff or Backoff()
        self._max_retries = file_retries if spec.kind == "file" else max_reconnects
        self._live = spec.kind != "file" or realtime
        self._capacity = max(1, live_buffer) if self._live else max(1, buffer)
        self._rng = random.Random(seed)
        self._cond = threading.Condition()
        self._frames: deque[Frame] = deque()
        self._stop = threading.Event()
        self._go = threading.Event()  # start() was called: frames may flow
        self._thread: threading.Thread | None = None
        self._cap: Capture | None = None
        self._on_frame: Callable[[str], None] | None = None
        self._state = SourceState.CONNECTING
        self._since = time.time()
        self._error = ""
        self._attempted = False  # the first attempt to open has finished (either way)
        self._fps = DEFAULT_FPS
        self._frame_count = 0
        self._index = 0  # frames decoded so far, across loops and reconnects
        self._pass_start = 0  # index of the first frame of this pass through a file
        self._frames_in = 0
        self._dropped = 0
        self._corrupt = 0
        self._reconnects = 0
        self._delays: deque[float] = deque(maxlen=64)
        self._carry = 0  # backoff steps taken before the latest (re)opening
        self._opened_at = -math.inf  # monotonic time of the latest (re)opening
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

    @property
    def retry_delays(self) -> list[float]:
        """The waits (seconds) chosen before the latest retries, oldest first."""
        with self._cond:
            return list(self._delays)

    def status(self) -> SourceStatus:
        with self._cond:
            return SourceStatus(self.name, self.spec.kind, self._state, self._live, self._fps,
                                self._frames_in, self._dropped, self._corrupt, self._reconnects,
                                self._error, self._since)

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """One attempt to open the source, now, in this thread; :class:`SourceError` if it
        fails (the state is not changed then)."""
        cap, first = self._attempt()
        self._adopt(cap, first)
        self._set_state(SourceState.RUNNING)
        self._attempt_done()

    def _attempt(self) -> tuple[Capture, ImageArray]:
        """Open the capture and read its first frame, or raise :class:`SourceError`."""
        if self.spec.kind == "file":
            path = Path(self.spec.target)
            if not path.exists():
                raise SourceError(f"{self.name}: {path}: no such file")
            if not path.is_file():
                raise SourceError(f"{self.name}: {path}: not a file")
        started = time.monotonic()
        if self._probe:
            try:
                probe_stream(self.spec.target, self._open_timeout, self._stop)
            except OSError as exc:
                raise SourceError(f"{self.name}: cannot open {self.label}: {exc}") from exc
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
            took = time.monotonic() - started
            after = f" (no frame after {took:.1f} s)" if took >= 1.0 else ""
            if self._probe and not self._stop.is_set():
                why = rtsp_refusal(self.spec.target, self._open_timeout)
                if why is not None:
                    what, after = why, ""
            raise SourceError(f"{self.name}: cannot open {self.label}: {what}{after}")
        return cap, first

    def _adopt(self, cap: Capture, first: ImageArray) -> None:
        self._opened_at = time.monotonic()
        self._cap = cap
        self._first = first
        self._fps = _sane_fps(cap.get(cv2.CAP_PROP_FPS))
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self._frame_count = int(count) if math.isfinite(count) and count > 0 else 0

    def _first_frame(self, cap: Capture) -> ImageArray | None:
        try:
            if not cap.isOpened():
                return None
            for _ in range(MAX_CORRUPT_SKIP):
                ok, image = cap.read()
                if ok and _valid(image):
                    return image
                if self._stop.is_set():
                    return None
        except cv2.error:
            return None
        return None

    def connect(self) -> None:
        """Start opening the source in its own thread (retrying on failure); frames flow only
        after :meth:`start`. Does nothing if the thread runs already."""
        with self._cond:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name=f"source-{self.name}",
                                            daemon=True)
            _RUNNING.add(self)
        self._thread.start()

    def wait_attempted(self, timeout: float) -> bool:
        """Wait until the first attempt to open has finished (opened or failed): True, or
        False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._attempted and not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def start(self, on_frame: Callable[[str], None] | None = None) -> None:
        """Let frames flow (see :class:`FrameSource`); never raises for a source that cannot
        be opened: it is retried in its own thread and its state says so."""
        self._on_frame = on_frame
        self._go.set()
        self.connect()

    def stop(self) -> None:
        self._stop.set()
        self._go.set()
        with self._cond:
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=STOP_WAIT_S)
        if thread is None or not thread.is_alive():
            self._release()  # else the thread, stuck in FFmpeg, releases it when it returns
        with self._cond:
            if self._state not in (SourceState.ENDED, SourceState.FAILED,
                                   SourceState.STOPPED):
                self._state = SourceState.STOPPED
                self._since = time.time()
            self._frames.clear()
            self._cond.notify_all()

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
            if self._state == SourceState.STOPPED:
                return  # a late result of an attempt that was under way when stopped
            changed = state != self._state
            self._state = state
            if changed:
                self._since = time.time()
            if error:
                self._error = redact_text(error)
            self._cond.notify_all()
        if changed:
            level = logging.WARNING if state in (SourceState.RECONNECTING,
                                                 SourceState.FAILED) else logging.INFO
            shown = f" ({redact_text(error)})" if error else ""
            log.log(level, "camera %s: %s%s", self.name, state, shown)

    def _release(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            with contextlib.suppress(Exception):
                cap.release()

    def _deliver(self, image: ImageArray) -> None:
        if self._stop.is_set():
            return
        now_mono = time.monotonic()
        t = self._index / self._fps if self.spec.kind == "file" else now_mono - self._t0
        frame = Frame(self.name, self._index, t, time.time(), now_mono, image)
        self._index += 1
        with self._cond:
            if not self._live:
                while len(self._frames) >= self._capacity and not self._stop.is_set():
                    self._cond.wait(0.2)
            else:
                keep = min(self._capacity, max(1, LIVE_BUFFER_BYTES // max(1, image.nbytes)))
                while len(self._frames) >= keep:
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
            if self._cap is None and not self._connect(initial=True):
                return
            self._go.wait()  # opened early (open_sources): frames flow once started
            if not self._stop.is_set():
                self._read_loop()
        except Exception as exc:  # a broken source must never take the process down
            log.exception("camera %s: reader stopped", self.name)
            self._set_state(SourceState.FAILED, f"{type(exc).__name__}: {exc}")
        finally:
            self._release()
            self._attempt_done()
            if self._on_frame is not None:
                self._on_frame(self.name)  # wake the runner so it sees the end

    def _read_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            if self._cap is None and not self._connect(initial=False):
                return
            assert self._cap is not None
            first, self._first = self._first, None
            if first is not None:  # read when the source was (re)opened
                failures = 0
                self._pace()
                self._deliver(first)
                continue
            began = time.monotonic()
            try:
                ok, image = self._cap.read()
            except cv2.error:
                ok, image = False, None
            waited = time.monotonic() - began
            if self.spec.kind == "stream" and waited >= self._read_timeout * STALL_FRACTION:
                # FFmpeg gave up waiting for the next packet: the server keeps the connection
                # but sends nothing. A frame it hands over now is an old one from its buffers
                # (and more of them would each take another timeout): reconnect at once.
                self._release()
                self._set_state(SourceState.RECONNECTING,
                                f"stalled: no frame for {waited:.1f} s")
                continue
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

    def _connect(self, initial: bool) -> bool:
        """Open the source, retrying with backoff; False when given up or stopped.

        ``initial``: the first attempt is made at once; a lost source waits first. Every
        attempt after the first counts as a reconnect."""
        retries = 0
        # A source that was lost soon after it (re)opened keeps its longer waits.
        carry = self._carry if time.monotonic() - self._opened_at < STABLE_S else 0
        wait = not initial
        while not self._stop.is_set():
            if wait:
                if self._max_retries is not None and retries >= self._max_retries:
                    with self._cond:
                        last = self._error
                    self._set_state(SourceState.FAILED,
                                    f"{last} (gave up after {retries} retries)" if last
                                    else f"gave up after {retries} retries")
                    return False
                delay = self._backoff.delay(carry + retries, self._rng)
                with self._cond:
                    self._delays.append(delay)
                if self._stop.wait(delay):
                    return False
                retries += 1
                with self._cond:
                    self._reconnects += 1
            wait = True
            try:
                cap, first = self._attempt()
            except SourceError as exc:
                if self._stop.is_set():  # stopped while trying: not a failure of the camera
                    return False
                self._set_state(SourceState.RECONNECTING, str(exc))
                self._attempt_done()
                log.info("camera %s: attempt failed: %s", self.name, redact_text(str(exc)))
                continue
            if self._stop.is_set():
                with contextlib.suppress(Exception):
                    cap.release()
                return False
            self._adopt(cap, first)
            self._carry, self._opened_at = carry + retries, time.monotonic()
            self._set_state(SourceState.RUNNING)
            self._attempt_done()
            return True
        return False

    def _attempt_done(self) -> None:
        with self._cond:
            self._attempted = True
            self._cond.notify_all()


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
    backoff: Backoff | None = None,
    max_reconnects: int | None = None,
    file_retries: int = FILE_RETRIES,
    open_timeout: float | None = None,
    read_timeout: float | None = None,
    probe: bool = True,
    wait: float = OPEN_WAIT_S,
) -> list[CaptureSource]:
    """Parse every source and start opening each in its own thread (in parallel: a stream may
    take seconds to answer); return them once each has made its first attempt, or after
    ``wait`` seconds at most.

    A source that cannot be opened is no error here: it keeps retrying in its own thread (see
    the module) and its :meth:`~CaptureSource.status` says ``reconnecting`` with the error.
    Only input that can never work raises :class:`SourceError`: text that does not parse, and
    one camera name given twice.

    ``open_timeout`` (default :data:`OPEN_TIMEOUT_S`) bounds the probe of a stream and, with
    the default opener, OpenCV's own wait; ``read_timeout`` (default :data:`READ_TIMEOUT_S`,
    at most ``open_timeout``) is how long a stream may send nothing before it is reported
    stalled and reopened.
    """
    specs = parse_sources(texts)
    timeout = OPEN_TIMEOUT_S if open_timeout is None else open_timeout
    stall = min(READ_TIMEOUT_S, timeout) if read_timeout is None else read_timeout
    sources = [CaptureSource(s, realtime=realtime, loop=loop, opener=opener, backoff=backoff,
                             max_reconnects=max_reconnects, file_retries=file_retries,
                             probe=probe, open_timeout=timeout, read_timeout=stall)
               for s in specs]
    for source in sources:
        source.connect()
    deadline = time.monotonic() + max(wait, 0.0)
    for source in sources:
        source.wait_attempted(max(deadline - time.monotonic(), 0.0))
    return sources


#: Sources whose thread has started: at exit they are stopped, and their threads are given
#: time to leave OpenCV (a thread still inside OpenCV when the interpreter shuts down aborts
#: the process).
_RUNNING: weakref.WeakSet[CaptureSource] = weakref.WeakSet()
EXIT_WAIT_S = OPEN_TIMEOUT_S + READ_TIMEOUT_S


@atexit.register
def _stop_at_exit() -> None:
    sources = list(_RUNNING)
    for source in sources:
        source._stop.set()
        source._go.set()
        with source._cond:
            source._cond.notify_all()
    deadline = time.monotonic() + EXIT_WAIT_S
    for source in sources:
        thread = source._thread
        if thread is not None and thread.is_alive():
            thread.join(max(deadline - time.monotonic(), 0.0))


def grab_still(name: str, source: str, *, open_timeout: float = OPEN_TIMEOUT_S) -> ImageArray:
    """One frame of a camera (``source`` as :func:`split_camera` takes it), for drawing its
    analysis zones and privacy masks on; :class:`SourceError` when it cannot be read. Opened,
    read once and closed again, in this thread."""
    spec = SourceSpec.parse(f"{name}={source}")
    src = CaptureSource(spec, open_timeout=open_timeout, read_timeout=open_timeout)
    try:
        cap, first = src._attempt()
        with contextlib.suppress(Exception):
            cap.release()
        return first
    finally:
        with contextlib.suppress(Exception):
            src.stop()
