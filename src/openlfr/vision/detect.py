"""Face detection with YuNet (OpenCV Zoo): boxes, 5 landmarks and a score per face."""

from __future__ import annotations

import threading
from typing import Any

import cv2
import numpy as np

from openlfr.vision import registry
from openlfr.vision.imageio import ImageArray, as_image
from openlfr.vision.types import Face

#: What ``runtime="auto"`` means for YuNet: ``"auto"`` (ONNX Runtime when importable, else
#: OpenCV). The benchmarks set it to ``"opencv"`` in a process, to measure the old path.
AUTO_RUNTIME = "auto"


class YuNetDetector:
    """YuNet, run by ONNX Runtime (:mod:`openlfr.vision.yunet_ort`) or by OpenCV's
    ``cv2.FaceDetectorYN``; both give the same faces, ONNX Runtime at less than half the CPU.

    Large images are scaled down so their longer side is at most ``max_side`` before detection
    (the coordinates are scaled back), which keeps a 12-megapixel photo as quick as a video frame.
    ``runtime``: ``"auto"`` (ONNX Runtime when importable, else OpenCV), ``"onnxruntime"`` or
    ``"opencv"``; the attribute holds the one in use. ONNX Runtime runs one thread per
    detection (a live run detects several frames at once, one per worker).
    """

    name = "yunet"

    def __init__(
        self,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        max_side: int = 1280,
        runtime: str = "auto",
    ) -> None:
        from openlfr.vision.embed_sface import resolve_runtime

        self.score_threshold = score_threshold
        self.max_side = max_side
        self.runtime = resolve_runtime(AUTO_RUNTIME if runtime == "auto" else runtime)
        path = registry.resolve("yunet")
        self._net: Any = None
        self._session: Any = None
        if self.runtime == "onnxruntime":
            from openlfr.vision.yunet_ort import YuNetSession

            self._session = YuNetSession(path, score_threshold, nms_threshold, top_k)
        else:
            self._net = cv2.FaceDetectorYN.create(
                str(path), "", (320, 320), score_threshold, nms_threshold, top_k
            )
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        # FaceDetectorYN keeps per-input-size state: one call at a time per detector.
        self._lock = threading.Lock()

    def copy(self) -> YuNetDetector:
        """A second detector with the same settings (its own network and lock)."""
        return YuNetDetector(self.score_threshold, self.nms_threshold, self.top_k, self.max_side,
                             self.runtime)

    def detect(self, image: ImageArray) -> list[Face]:
        h, w = image.shape[:2]
        scale = 1.0
        work = image
        if max(h, w) > self.max_side:
            scale = self.max_side / max(h, w)
            work = as_image(cv2.resize(image, (max(int(w * scale), 1), max(int(h * scale), 1)),
                                       interpolation=cv2.INTER_AREA))
        if work.ndim == 2:
            work = as_image(cv2.cvtColor(work, cv2.COLOR_GRAY2BGR))
        if self._session is not None:
            rows = self._session.detect(work)
        else:
            with self._lock:
                self._net.setInputSize((work.shape[1], work.shape[0]))
                _, rows = self._net.detect(work)
        if rows is None:
            return []
        faces = []
        for row in rows:
            box = tuple(float(v) / scale for v in row[:4])
            landmarks = (row[4:14].reshape(5, 2) / scale).astype(np.float32)
            faces.append(Face(box=box, landmarks=landmarks, score=float(row[14])))  # type: ignore[arg-type]
        faces.sort(key=lambda f: f.box[2] * f.box[3], reverse=True)
        return faces
