"""The face engine: one detector and one embedder behind a backend spec.

``FaceEngine`` is what the rest of openlfr uses: detect faces with their quality, embed the ones
worth embedding, and know the model's default threshold (from its
:class:`~openlfr.vision.registry.BackendSpec`). It holds no state about people.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import cv2
import numpy as np

from openlfr.vision import quality as q
from openlfr.vision import registry
from openlfr.vision.imageio import ImageArray, as_image
from openlfr.vision.protocols import Detector, Embedder
from openlfr.vision.registry import BackendSpec
from openlfr.vision.types import Face, Template

#: How far to pad an image (fraction of its size on each side) so a tight face crop still has
#: the margin the detector needs.
ENROL_PADDING = 0.3


class FaceEngine:
    """A detector and an embedder; ``backend`` is a registered backend's name or its spec."""

    def __init__(self, backend: str | BackendSpec, detector: Detector,
                 embedder: Embedder) -> None:
        self.spec = registry.backend_spec(backend) if isinstance(backend, str) else backend
        self.backend = self.spec.name
        self.detector = detector
        self.embedder = embedder

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    @property
    def default_threshold(self) -> float:
        """The model's default threshold; a ModelError for a model not calibrated yet."""
        if self.spec.default_threshold is None:
            raise registry.ModelError(
                f"model {self.backend} has no threshold yet: run `openlfr calibrate --backend "
                f"{self.backend}` on your evaluation data first")
        return self.spec.default_threshold

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
        padded = as_image(cv2.copyMakeBorder(image, py, py, px, px, cv2.BORDER_CONSTANT,
                                             value=mean))
        return [f.shifted(-px, -py) for f in self.detector.detect(padded)]

    def embed(self, image: ImageArray, faces: Sequence[Face]) -> list[Template]:
        return self.embedder.embed(image, faces) if faces else []

    def prepare_for_threads(self) -> None:
        """Before several threads use this engine at once (a live run): a recogniser that
        holds Python's lock while it computes (dlib) moves to a helper process."""
        use = getattr(self.embedder, "use_helper_process", None)
        if use is not None:
            use()

    def helper_cpu_seconds(self) -> float:
        """CPU time used by the recogniser's helper process (0 without one)."""
        used = getattr(self.embedder, "helper_cpu_seconds", None)
        return float(used()) if used is not None else 0.0



def get_engine(backend: str | BackendSpec = registry.DEFAULT_BACKEND) -> FaceEngine:
    """The shared engine of a backend (a built-in name or a spec): one copy of each model per
    process. Loading is lazy: nothing is read before the first call for a backend."""
    return _engine(registry.backend_spec(backend) if isinstance(backend, str) else backend)


def build_engine(spec: BackendSpec) -> FaceEngine:
    """A new engine for ``spec`` (its detector and embedder loaded now), not shared."""
    return FaceEngine(spec, spec.detector(), spec.embedder())


@cache
def _engine(spec: BackendSpec) -> FaceEngine:
    return build_engine(spec)


def loaded_engines() -> int:
    """How many engines this process has loaded (and shares)."""
    return _engine.cache_info().currsize


def clear_engines() -> None:
    """Forget the shared engines (the next :func:`get_engine` loads again)."""
    _engine.cache_clear()


def model_id_backend(model_id: str) -> str:
    """Which built-in backend produced templates with this model id."""
    return registry.spec_for_model_id(model_id).name
