"""A small pool of face detectors, so that several frames can be detected at once.

Detectors may keep per-input state (OpenCV's ``FaceDetectorYN`` does), so one instance runs one
detection at a time. The pool holds one detector per analysis worker (YuNet is a 230 kB
network), not one per camera: the first is the shared engine's own, the others are its
:meth:`~openlfr.vision.protocols.Detector.copy`. Embedders are never copied: the engine's one
embedder serves every camera.
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Iterator

from openlfr.vision.protocols import Detector, Engine


class DetectorPool:
    def __init__(self, engine: Engine, size: int = 1) -> None:
        self._free: queue.Queue[Detector] = queue.Queue()
        base = engine.detector
        detectors: list[Detector] = [base]
        detectors += [base.copy() for _ in range(max(size, 1) - 1)]
        for detector in detectors:
            self._free.put(detector)
        self.size = len(detectors)

    @contextlib.contextmanager
    def acquire(self) -> Iterator[Detector]:
        detector = self._free.get()
        try:
            yield detector
        finally:
            self._free.put(detector)
