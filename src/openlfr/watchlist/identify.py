"""Identification of a still image: every face, its quality, its best candidates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from openlfr.vision.engine import FaceEngine
from openlfr.vision.imageio import ImageArray
from openlfr.vision.quality import LIVE, QualityPolicy
from openlfr.vision.types import Candidate, Face
from openlfr.watchlist.gallery import Gallery


@dataclass(frozen=True)
class FaceResult:
    face: Face
    candidates: list[Candidate]
    threshold: float

    @property
    def match(self) -> Candidate | None:
        """The best candidate if it reaches the threshold: a *possible* match, for a person
        to review."""
        if self.candidates and self.candidates[0].score >= self.threshold:
            return self.candidates[0]
        return None

    def as_dict(self) -> dict[str, object]:
        x, y, w, h = self.face.box
        best = self.match
        return {
            "box": [round(x, 1), round(y, 1), round(w, 1), round(h, 1)],
            "detector_score": round(self.face.score, 4),
            "quality": self.face.quality.as_dict() if self.face.quality else None,
            "candidates": [
                {"subject": c.subject_id, "score": round(c.score, 4),
                 "reference_id": c.reference_id}
                for c in self.candidates
            ],
            "above_threshold": best is not None,
            "match": best.subject_id if best else None,
        }


def identify(engine: FaceEngine, gallery: Gallery, image: ImageArray, threshold: float,
             k: int = 3, policy: QualityPolicy = LIVE) -> list[FaceResult]:
    """Search every face in ``image`` against ``gallery``; faces are reported largest first."""
    if gallery.model_id != engine.model_id:
        raise ValueError(
            f"the watchlist holds {gallery.model_id!r} templates but the engine makes "
            f"{engine.model_id!r}"
        )
    faces = engine.detect(image, policy)
    if not faces:
        return []
    templates = engine.embed(image, faces)
    if len(gallery) == 0:
        hits: list[list[Candidate]] = [[] for _ in faces]
    else:
        hits = gallery.search(np.stack([t.vector for t in templates]), k=k)
    return [FaceResult(f, h, threshold) for f, h in zip(faces, hits, strict=True)]
