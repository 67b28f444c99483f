"""The seams of the vision layer: a backend is one class implementing one of these."""

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


class Embedder(Protocol):
    model_id: str
    dim: int

    def embed(self, image: ImageArray, faces: Sequence[Face]) -> list[Template]:
        """One L2-normalised template per face, in order."""
        ...
