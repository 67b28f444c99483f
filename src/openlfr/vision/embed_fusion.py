"""Score-level fusion of SFace and dlib: one template whose cosine is a weighted mean of both.

Each part is a unit vector; scaling them by ``sqrt(w)`` and ``sqrt(1 - w)`` and concatenating
gives a unit vector whose dot product with another is ``w·cos_sface + (1 - w)·cos_dlib``. The
gallery, FAISS and every threshold path then work unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from openlfr.vision.embed_dlib import DlibEmbedder
from openlfr.vision.embed_sface import SFaceEmbedder
from openlfr.vision.imageio import ImageArray
from openlfr.vision.types import Face, Template


class FusionEmbedder:
    dim = SFaceEmbedder.dim + DlibEmbedder.dim

    def __init__(self, weight: float = 0.5, sface: SFaceEmbedder | None = None,
                 dlib: DlibEmbedder | None = None) -> None:
        if not 0.0 < weight < 1.0:
            raise ValueError("fusion weight must be strictly between 0 and 1")
        self.weight = weight
        self.sface = sface or SFaceEmbedder(flip=True)
        self.dlib = dlib or DlibEmbedder()
        self.model_id = f"fusion-{self.sface.model_id}+{self.dlib.model_id}-w{weight:g}"

    def use_helper_process(self) -> None:
        """dlib's network in a helper process (see :mod:`openlfr.vision.embed_dlib`)."""
        self.dlib.use_helper_process()

    def helper_cpu_seconds(self) -> float:
        return self.dlib.helper_cpu_seconds()

    def embed(self, image: ImageArray, faces: Sequence[Face]) -> list[Template]:
        a = self.sface.embed(image, faces)
        b = self.dlib.embed(image, faces)
        wa, wb = math.sqrt(self.weight), math.sqrt(1.0 - self.weight)
        return [
            Template(np.concatenate([wa * x.vector, wb * y.vector]).astype(np.float32),
                     self.model_id)
            for x, y in zip(a, b, strict=True)
        ]
