"""A real RTSP server for the tests and benchmarks: ``scripts/rtsp-server.py`` (GStreamer's RTSP
server, run by the system Python that has ``gi``; ``scripts/test-services`` installs it) in a
child process on 127.0.0.1, on a free port, which a test can stall, resume, restart, make jump
in time or change resolution. Clips are encoded to H.264 or H.265 MP4 by the same script."""

from __future__ import annotations

import functools
import os
import select
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "rtsp-server.py"
#: The Python that has GStreamer's bindings (``python3-gi``): Debian's, not the virtualenv's.
SYSTEM_PYTHON = os.environ.get("OPENLFR_TEST_GI_PYTHON", "/usr/bin/python3")
CHECK = """
import gi
gi.require_version("Gst", "1.0"); gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
missing = [e for e in ("x264enc", "x265enc", "rtph264pay", "rtph265pay", "qtdemux", "mp4mux",
                       "avdec_h264", "avdec_h265", "valve") if Gst.ElementFactory.find(e) is None]
print(" ".join(missing))
"""


@functools.lru_cache(maxsize=1)
def missing() -> str | None:
    """Why the server cannot run here (to skip with), or ``None``."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found (run scripts/test-services)"
    found = subprocess.run([SYSTEM_PYTHON, "-c", CHECK], capture_output=True, text=True,
                           timeout=60)
    if found.returncode != 0:
        last = (found.stderr.strip().splitlines() or ["?"])[-1]
        return f"GStreamer's RTSP server is not installed ({last}); run scripts/test-services"
    if found.stdout.strip():
        return (f"GStreamer elements missing: {found.stdout.strip()}; run "
                "scripts/test-services")
    return None


def encode(source: Path, target: Path, codec: str = "h264", fps: float = 15.0,
           size: tuple[int, int] | None = None) -> Path:
    """``source`` (any video GStreamer decodes) as an MP4 of ``codec`` (h264 or h265)."""
    extra = ["--width", str(size[0]), "--height", str(size[1])] if size else []
    subprocess.run([SYSTEM_PYTHON, str(SCRIPT), "encode", str(source), str(target),
                    "--codec", codec, "--fps", str(fps), *extra],
                   check=True, capture_output=True, timeout=300)
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RtspServer:
    """The server in a child process, serving ``clip`` at ``rtsp://127.0.0.1:PORT/cam`` over
    TCP; a context manager. The port stays the same across :meth:`restart`."""

    def __init__(self, clip: Path, codec: str = "h264", *, user: str | None = None,
                 password: str | None = None, transcode: bool = False,
                 port: int | None = None, log_frames: Path | None = None,
                 digest: bool = False) -> None:
        self.clip, self.codec = clip, codec
        self.digest = digest
        self.log_frames = log_frames
        self.user, self.password = user, password
        self.transcode = transcode
        self.port = port or free_port()
        self.proc: subprocess.Popen[str] | None = None
        self.starts = 0

    def url(self, user: str | None = None, password: str | None = None) -> str:
        auth = ""
        if user is not None:
            auth = quote(user, safe="") + (":" + quote(password, safe="")
                                           if password is not None else "") + "@"
        return f"rtsp://{auth}127.0.0.1:{self.port}/cam"

    def start(self, timeout: float = 30.0) -> None:
        args = [SYSTEM_PYTHON, str(SCRIPT), "serve", "--clip", str(self.clip), "--codec",
                self.codec, "--port", str(self.port)]
        if self.user is not None:
            args += ["--user", self.user, "--password", self.password or ""]
            if self.digest:
                args.append("--digest")
        if self.transcode:
            args.append("--transcode")
        if self.log_frames is not None:
            args += ["--log-frames", str(self.log_frames)]
        deadline = time.monotonic() + timeout
        while True:  # the port of a server just stopped may take a moment to be free again
            with tempfile.TemporaryFile("w+") as errors:  # a file: a full pipe would stall it
                self.proc = subprocess.Popen(args, stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, stderr=errors, text=True)
                line = self._line(self.proc.stdout, deadline)
                if line.startswith("ready"):
                    self.starts += 1
                    return
                self.stop()
                errors.seek(0)
                said = errors.read()[-2000:]
            if time.monotonic() > deadline:
                raise RuntimeError(f"the RTSP server did not start: {line!r} {said}")
            time.sleep(0.2)

    @staticmethod
    def _line(stream: IO[str] | None, deadline: float) -> str:
        assert stream is not None
        ready, _, _ = select.select([stream], [], [], max(deadline - time.monotonic(), 0.0))
        return stream.readline().strip() if ready else ""

    def command(self, text: str) -> str:
        """Send a command (``stall``, ``resume``, ``jump S``, ``size W H``); its answer."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        answer = self._line(self.proc.stdout, time.monotonic() + 10)
        if not answer.startswith("ok"):
            raise RuntimeError(f"rtsp server: {text}: {answer!r}")
        return answer

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()  # as a camera that loses power: no goodbye to the clients
        proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
