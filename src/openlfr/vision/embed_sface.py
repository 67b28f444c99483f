"""SFace recogniser (OpenCV Zoo, int8 block-quantised) through OpenCV's DNN module."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import cv2
import numpy as np

from openlfr.vision import registry
from openlfr.vision.align import align
from openlfr.vision.imageio import ImageArray
from openlfr.vision.types import Face, FloatArray, Template

SFACE_MODEL_ID = "sface-2021dec-int8bq"


def l2_normalise(vectors: np.ndarray) -> FloatArray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class SFaceEmbedder:
    """Aligns each face to 112×112 and embeds it into a 128-d unit vector.

    ``flip=True`` adds the mirrored crop's embedding to the original's before normalising
    (test-time augmentation): twice the work, measurably better accuracy on LFW.
    """

    model_id = SFACE_MODEL_ID
    dim = 128
    input_size = 112

    def __init__(self, flip: bool = True) -> None:
        self.flip = flip
        path = registry.resolve("sface")
        self._net = cv2.dnn.readNetFromONNX(str(path))
        self._lock = threading.Lock()

    def crops(self, image: ImageArray, faces: Sequence[Face]) -> list[ImageArray]:
        return [align(image, f.landmarks, self.input_size) for f in faces]

    def embed_crops(self, crops: Sequence[ImageArray]) -> FloatArray:
        """Embeddings (N×128, L2-normalised) of already aligned 112×112 BGR crops."""
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = list(crops)
        if self.flip:
            batch += [cv2.flip(c, 1) for c in crops]
        # OpenCV's DNN gives corrupt rows for this int8 graph when the batch holds more than
        # one image, so each crop goes through on its own.
        rows = []
        with self._lock:
            for crop in batch:
                blob = cv2.dnn.blobFromImage(crop, 1.0, (self.input_size, self.input_size),
                                             (0, 0, 0), swapRB=True)
                self._net.setInput(blob)
                rows.append(np.asarray(self._net.forward(), dtype=np.float32).reshape(-1))
        out = np.stack(rows)
        if self.flip:
            out = out[: len(crops)] + out[len(crops):]
        return l2_normalise(out)

    def embed(self, image: ImageArray, faces: Sequence[Face]) -> list[Template]:
        vectors = self.embed_crops(self.crops(image, faces))
        return [Template(v, self.model_id) for v in vectors]
