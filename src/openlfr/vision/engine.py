"""The face engine: one detector and one embedder behind a backend name.

``FaceEngine`` is what the rest of openlfr uses: detect faces with their quality, embed the ones
worth embedding, and know the model's default threshold. It holds no state about people.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import cv2
import numpy as np

from openlfr.vision import quality as q
from openlfr.vision import registry
from openlfr.vision.detect import YuNetDetector
from openlfr.vision.imageio import ImageArray
from openlfr.vision.protocols import Detector, Embedder
from openlfr.vision.types import Face, Template

#: Default decision thresholds (cosine similarity), one per backend, chosen for the watchlist
#: case: on LFW (../shared/data/lfw) open-set identification with 1,000 enrolled identities
#: (``openlfr eval identify --gallery-sizes 1000``, one enrolment image each, seed 0), the
#: threshold at which 1 % of searches for people not on the list return a candidate
#: (FPIR 0.01), rounded up to the next 0.01 (README, "Default thresholds"). A pairwise
#: false-match rate that looks small (0.1 %) becomes a false alert in most searches against a
#: thousand people, so the default is set on searches, not on pairs. Scores of different models
#: are not comparable: each backend has its own.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "sface": 0.48,
    "dlib": 0.96,
    "fusion": 0.69,
}

#: How far to pad an image (fraction of its size on each side) so a tight face crop still has
#: the margin the detector needs.
ENROL_PADDING = 0.3


class FaceEngine:
    def __init__(self, backend: str, detector: Detector, embedder: Embedder) -> None:
        self.backend = backend
        self.detector = detector
        self.embedder = embedder

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    @property
    def default_threshold(self) -> float:
        return DEFAULT_THRESHOLDS[self.backend]

    def detect(self, image: ImageArray, policy: q.QualityPolicy | None = None,
               pad: float = 0.0) -> list[Face]:
        """Faces in ``image`` (largest first), each with its quality under ``policy``.

        ``pad`` > 0 adds a border before detecting, for tight crops; coordinates are returned
        in the original image.
        """
        faces = self._detect_padded(image, pad) if pad > 0 else self.detector.detect(image)
        if policy is not None:
            faces = [f.with_quality(q.measure(image, f, policy)) for f in faces]
        return faces

    def _detect_padded(self, image: ImageArray, pad: float) -> list[Face]:
        h, w = image.shape[:2]
        py, px = int(h * pad), int(w * pad)
        mean = [int(v) for v in np.asarray(image).reshape(-1, image.shape[2]).mean(axis=0)]
        padded = cv2.copyMakeBorder(image, py, py, px, px, cv2.BORDER_CONSTANT, value=mean)
        return [f.shifted(-px, -py) for f in self.detector.detect(padded)]

    def embed(self, image: ImageArray, faces: Sequence[Face]) -> list[Template]:
        return self.embedder.embed(image, faces) if faces else []



def _make_embedder(backend: str) -> Embedder:
    if backend == "sface":
        from openlfr.vision.embed_sface import SFaceEmbedder

        return SFaceEmbedder()
    if backend == "dlib":
        from openlfr.vision.embed_dlib import DlibEmbedder

        return DlibEmbedder()
    if backend == "fusion":
        from openlfr.vision.embed_fusion import FusionEmbedder

        return FusionEmbedder()
    raise AssertionError(f"backend {backend!r} is registered but has no embedder")


@cache
def get_engine(backend: str = registry.DEFAULT_BACKEND) -> FaceEngine:
    """The shared engine for a backend: one copy of each model per process."""
    registry.backend_spec(backend)
    return FaceEngine(backend, YuNetDetector(), _make_embedder(backend))


def model_id_backend(model_id: str) -> str:
    """Which backend produced templates with this model id."""
    for name in registry.BACKENDS:
        if model_id.startswith(name):
            return name
    raise registry.ModelError(f"templates of unknown model {model_id!r}")
