"""A small pool of face detectors, so that several frames can be detected at once.

OpenCV's ``FaceDetectorYN`` keeps per-input state, so one instance runs one detection at a
time. The pool holds one detector per analysis worker (YuNet is a 230 kB network), not one per
camera: the first is the shared engine's own, the others are copies of it. Embedders are never
copied: the engine's one embedder serves every camera.
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Iterator

from openlfr.vision.detect import YuNetDetector
from openlfr.vision.engine import FaceEngine
from openlfr.vision.protocols import Detector


class DetectorPool:
    def __init__(self, engine: FaceEngine, size: int = 1) -> None:
        self._free: queue.Queue[Detector] = queue.Queue()
        detectors: list[Detector] = [engine.detector]
        base = engine.detector
        if isinstance(base, YuNetDetector):
            for _ in range(max(size, 1) - 1):
                copy = YuNetDetector(score_threshold=base.score_threshold,
                                     max_side=base.max_side)
                detectors.append(copy)
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
