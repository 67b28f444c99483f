"""dlib's ResNet recogniser (128-d), aligned with dlib's own 5-point shape predictor.

An optional backend: ``pip install 'openlfr[dlib]'`` brings ``dlib-bin`` and the model files.
Faces come from the shared YuNet detector; dlib's shape predictor refines the landmarks from
the YuNet box so the crop is aligned exactly the way the recogniser was trained.

**dlib holds Python's lock while its network runs** (unlike OpenCV and ONNX Runtime, which let
go of it), so in a live run of several cameras one descriptor (30–100 ms) held up every decoder
and worker thread: with 8 cameras it was 54 % of the samples of the thread holding the lock,
and the process could not use more than 1.4 of its 2 cores. :meth:`DlibEmbedder.use_helper_process`
(called by every live run, :class:`openlfr.video.runner.Runner`) moves the network into a
helper process of its own: the 150 × 150 aligned chips (made here by dlib's own
``get_face_chips``, the same crops the network makes for itself: identical descriptors) go to
it and 128 numbers per face come back. Enrolment and evaluation, single-threaded, keep the
network in-process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from openlfr.vision import registry
from openlfr.vision.dlib_helper import CHIP_SIZE, DlibHelper, HelperGone
from openlfr.vision.embed_sface import l2_normalise
from openlfr.vision.imageio import ImageArray
from openlfr.vision.types import Face, FloatArray, Template

DLIB_MODEL_ID = registry.DLIB_MODEL_ID
#: The padding of the aligned chip the network reads (dlib's own; its size is 150).
CHIP_PADDING = 0.25

log = logging.getLogger("openlfr.vision.embed_dlib")


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
        self._helper: DlibHelper | None = None

    def use_helper_process(self) -> None:
        """Run the network in a helper process from now on (see the module); started here,
        once, so that the first alert does not wait for it. Safe to call again."""
        with self._lock:
            if self._helper is not None:
                return
            try:
                self._helper = DlibHelper(str(registry.resolve("dlib_resnet")))
            except (HelperGone, OSError) as exc:
                log.warning("dlib's helper process did not start (%s): its network runs in "
                            "this process", exc)

    def helper_cpu_seconds(self) -> float:
        """The CPU time the helper process has used (0 without one), as of its last answer."""
        helper = self._helper
        return helper.cpu_seconds if helper is not None else 0.0

    def close(self) -> None:
        """Stop the helper process, if any."""
        with self._lock:
            helper, self._helper = self._helper, None
        if helper is not None:
            helper.close()

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
        helper = self._helper
        if helper is not None:
            with self._lock:  # the shape predictor and the chips: about 2 ms a face
                shapes = self._shapes(rgb, faces)
                chips = np.stack([np.asarray(c) for c in self._dlib.get_face_chips(
                    rgb, shapes, size=CHIP_SIZE, padding=CHIP_PADDING)])
            try:
                raw = helper.describe(chips, self.jitter)
            except HelperGone as exc:
                log.warning("%s: its network runs in this process from now on", exc)
                with self._lock:
                    if self._helper is helper:
                        self._helper = None
                return self.embed(image, faces)
            return [Template(v, self.model_id) for v in l2_normalise(raw)]
        with self._lock:
            shapes = self._shapes(rgb, faces)
            vectors = self._net.compute_face_descriptor(rgb, shapes, self.jitter)
        out: FloatArray = l2_normalise(np.asarray([list(v) for v in vectors], dtype=np.float32))
        return [Template(v, self.model_id) for v in out]
