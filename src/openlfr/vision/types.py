"""The small typed values that cross the seams between vision, watchlist and video."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Quality:
    """Measured image quality of one face, and why it fails a policy (empty if it passes)."""

    face_width: float
    inter_ocular: float
    sharpness: float
    yaw: float
    pitch: float
    roll: float
    brightness: float
    contrast: float
    reasons: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.reasons

    def as_dict(self) -> dict[str, object]:
        return {
            "face_width": round(self.face_width, 1),
            "inter_ocular": round(self.inter_ocular, 1),
            "sharpness": round(self.sharpness, 1),
            "yaw": round(self.yaw, 1),
            "pitch": round(self.pitch, 1),
            "roll": round(self.roll, 1),
            "brightness": round(self.brightness, 1),
            "contrast": round(self.contrast, 1),
            "ok": self.ok,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class Face:
    """One detected face.

    ``box`` is ``(x, y, w, h)`` in image pixels. ``landmarks`` is a 5×2 array in the order
    right eye, left eye, nose tip, right mouth corner, left mouth corner (the subject's right and
    left, so the "right eye" has the smaller x in a frontal photo).
    """

    box: tuple[float, float, float, float]
    landmarks: FloatArray
    score: float
    quality: Quality | None = None

    @property
    def width(self) -> float:
        return self.box[2]

    @property
    def center(self) -> tuple[float, float]:
        x, y, w, h = self.box
        return (x + w / 2.0, y + h / 2.0)

    def with_quality(self, quality: Quality) -> Face:
        return Face(self.box, self.landmarks, self.score, quality)

    def shifted(self, dx: float, dy: float) -> Face:
        """The same face in a frame offset by (dx, dy) — used to undo padding."""
        x, y, w, h = self.box
        offset = np.array([dx, dy], dtype=np.float32)
        return Face((x + dx, y + dy, w, h), self.landmarks + offset, self.score, self.quality)

    def mirrored(self, width: int) -> Face:
        """The same face in the image flipped left to right (``width`` pixels wide): the
        landmarks keep their meaning (the right eye stays first)."""
        x, y, w, h = self.box
        marks = np.array(self.landmarks, dtype=np.float32)
        marks[:, 0] = width - 1 - marks[:, 0]
        if len(marks) == 5:
            marks = marks[[1, 0, 2, 4, 3]]
        return Face((width - 1 - x - w, y, w, h), marks, self.score, self.quality)


@dataclass(frozen=True)
class Template:
    """An L2-normalised face embedding, tagged with the model that produced it.

    Templates from different models are not comparable; the gallery refuses to mix them.
    """

    vector: FloatArray
    model_id: str

    def __post_init__(self) -> None:
        if self.vector.ndim != 1:
            raise ValueError("a template vector must be one-dimensional")

    def similarity(self, other: Template) -> float:
        if other.model_id != self.model_id:
            raise ValueError(
                f"templates from different models cannot be compared: "
                f"{self.model_id!r} vs {other.model_id!r}"
            )
        return float(np.dot(self.vector, other.vector))


@dataclass(frozen=True)
class Candidate:
    """One gallery hit: who, with what cosine similarity, and through which reference image."""

    subject_id: str
    score: float
    reference_id: str = ""
    extra: dict[str, object] = field(default_factory=dict)
