"""The seams of the vision layer: a backend is one class implementing one of these.

The video pipeline and the runner depend on :class:`Engine` (and through it on
:class:`Detector` and :class:`Embedder`), never on a concrete model class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from openlfr.vision.imageio import ImageArray
from openlfr.vision.types import Face, Template


class Detector(Protocol):
    name: str

    def detect(self, image: ImageArray) -> list[Face]:
        """Every face in a BGR image, largest first."""
        ...

    def copy(self) -> Detector:
        """Another detector with the same settings, to run beside this one (detectors may
        keep per-call state, so one instance detects one image at a time)."""
        ...


class Embedder(Protocol):
    @property
    def model_id(self) -> str:
        """The id every template of this embedder carries."""
        ...

    @property
    def dim(self) -> int:
        """Length of a template vector."""
        ...

    def embed(self, image: ImageArray, faces: Sequence[Face]) -> list[Template]:
        """One L2-normalised template per face, in order."""
        ...


class Engine(Protocol):
    """What the video pipeline needs of a face engine
    (:class:`openlfr.vision.engine.FaceEngine` is one)."""

    @property
    def model_id(self) -> str: ...

    @property
    def detector(self) -> Detector: ...

    def embed(self, image: ImageArray, faces: Sequence[Face]) -> list[Template]: ...
