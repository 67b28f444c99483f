"""dlib's recognition network in a helper process of its own (see :mod:`openlfr.vision.embed_dlib`
for why).

The helper is ``python -m openlfr.vision.dlib_helper MODEL``, started by :class:`DlibHelper`
and spoken to over its standard input and output in fixed binary records (no pickles):

* request: ``<II`` (the number of chips ``n``, jitter) then ``n`` × 150 × 150 × 3 bytes
  (aligned RGB chips, as dlib's ``get_face_chips`` makes them);
* answer: ``<Id`` (``n``, the helper's CPU seconds so far) then ``n`` × 128 float32.

A plain subprocess rather than :mod:`multiprocessing`: its ``spawn`` re-imports the parent's
main script, which breaks under ``python -c`` or a script read from standard input, and ``fork``
is unsafe in a process whose decoder threads are already running. The helper ends when its
input closes (the parent ended or closed it).
"""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
import time
from typing import IO

import numpy as np

CHIP_SIZE = 150
CHIP_BYTES = CHIP_SIZE * CHIP_SIZE * 3
DIM = 128
_REQUEST = struct.Struct("<II")
_ANSWER = struct.Struct("<Id")
#: At most this many chips in one request (a frame never has that many faces to embed).
MAX_CHIPS = 256


class HelperGone(RuntimeError):
    """The helper process stopped (or never started)."""


def _read(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if data is None or len(data) != size:
        raise HelperGone("dlib's helper process stopped")
    return data


class DlibHelper:
    """The parent's side: one helper process, one request at a time (thread-safe)."""

    def __init__(self, model_path: str) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "openlfr.vision.dlib_helper", model_path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._lock = threading.Lock()
        self.cpu_seconds = 0.0
        self.describe(np.zeros((0, CHIP_SIZE, CHIP_SIZE, 3), np.uint8))  # loaded and answering

    def describe(self, chips: np.ndarray, jitter: int = 0) -> np.ndarray:
        """The 128-d descriptors of aligned chips (``n`` × 150 × 150 × 3, uint8 RGB)."""
        if chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3) or len(chips) > MAX_CHIPS:
            raise ValueError(f"chips must be n x {CHIP_SIZE} x {CHIP_SIZE} x 3, n <= {MAX_CHIPS}")
        payload = np.ascontiguousarray(chips, dtype=np.uint8).tobytes()
        with self._lock:
            stdin, stdout = self._proc.stdin, self._proc.stdout
            if stdin is None or stdout is None or self._proc.poll() is not None:
                raise HelperGone("dlib's helper process stopped")
            try:
                stdin.write(_REQUEST.pack(len(chips), int(jitter)) + payload)
                stdin.flush()
                n, self.cpu_seconds = _ANSWER.unpack(_read(stdout, _ANSWER.size))
                raw = _read(stdout, n * DIM * 4)
            except (BrokenPipeError, OSError) as exc:
                raise HelperGone(f"dlib's helper process stopped ({exc})") from None
        return np.frombuffer(raw, dtype=np.float32).reshape(n, DIM).copy()

    def close(self) -> None:
        with self._lock:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._proc.stdout is not None:
                self._proc.stdout.close()


def serve(model_path: str, stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """The helper's loop: answer requests until the input closes."""
    from openlfr.vision.embed_dlib import import_dlib

    net = import_dlib().face_recognition_model_v1(model_path)
    while True:
        head = stdin.read(_REQUEST.size)
        if len(head) != _REQUEST.size:
            return
        n, jitter = _REQUEST.unpack(head)
        if n > MAX_CHIPS:
            return
        chips = np.frombuffer(_read(stdin, n * CHIP_BYTES), dtype=np.uint8).reshape(
            n, CHIP_SIZE, CHIP_SIZE, 3)
        vectors = np.asarray([list(net.compute_face_descriptor(np.ascontiguousarray(c), jitter))
                              for c in chips], dtype=np.float32).reshape(n, DIM)
        stdout.write(_ANSWER.pack(n, time.process_time()) + vectors.tobytes())
        stdout.flush()


if __name__ == "__main__":
    serve(sys.argv[1], sys.stdin.buffer, sys.stdout.buffer)
