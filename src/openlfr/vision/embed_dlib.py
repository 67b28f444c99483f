"""dlib's ResNet recogniser (128-d), aligned with dlib's own 5-point shape predictor.

An optional backend: ``pip install 'openlfr[dlib]'`` brings ``dlib-bin`` and the model files.
Faces come from the shared YuNet detector; dlib's shape predictor refines the landmarks from
the YuNet box so the crop is aligned exactly the way the recogniser was trained.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from openlfr.vision import registry
from openlfr.vision.embed_sface import l2_normalise
from openlfr.vision.imageio import ImageArray
from openlfr.vision.types import Face, FloatArray, Template

DLIB_MODEL_ID = registry.DLIB_MODEL_ID


def import_dlib() -> Any:
    try:
        import dlib
    except ImportError as exc:
        raise registry.ModelError(
            "the dlib backend needs the optional extra: pip install 'openlfr[dlib]'"
        ) from exc
    return dlib


def _square_box(face: Face) -> tuple[int, int, int, int]:
    """YuNet boxes are taller than dlib's; give the shape predictor a dlib-like square box."""
    x, y, w, h = face.box
    cx, cy = x + w / 2.0, y + h / 2.0 + 0.05 * h
    side = 0.9 * max(w, h)
    return (int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2))


class DlibEmbedder:
    model_id = DLIB_MODEL_ID
    dim = 128

    def __init__(self, jitter: int = 0) -> None:
        self._dlib = import_dlib()
        self.jitter = jitter
        self._shape = self._dlib.shape_predictor(str(registry.resolve("dlib_shape5")))
        self._net = self._dlib.face_recognition_model_v1(str(registry.resolve("dlib_resnet")))
        self._lock = threading.Lock()

    def _shapes(self, rgb: np.ndarray, faces: Sequence[Face]) -> Any:
        shapes = self._dlib.full_object_detections()
        for face in faces:
            rect = self._dlib.rectangle(*_square_box(face))
            shapes.append(self._shape(rgb, rect))
        return shapes

    def embed(self, image: ImageArray, faces: Sequence[Face]) -> list[Template]:
        if not faces:
            return []
        rgb = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        with self._lock:
            shapes = self._shapes(rgb, faces)
            vectors = self._net.compute_face_descriptor(rgb, shapes, self.jitter)
        out: FloatArray = l2_normalise(np.asarray([list(v) for v in vectors], dtype=np.float32))
        return [Template(v, self.model_id) for v in out]
