"""Best shot: per track, the largest, sharpest, most frontal face within a short window.

Embedding is the expensive step, so a track is embedded a few times at most: when its first
window of gated faces closes, and again only when a clearly better shot comes along (and not
sooner than ``min_gap`` after the previous one). Only the best shot's small crop is held, never
whole frames, and it is released as soon as it has been embedded and searched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from openlfr.video.types import Alert, Frame, Sighting
from openlfr.vision.imageio import ImageArray
from openlfr.vision.quality import QualityPolicy
from openlfr.vision.types import Face, Quality

#: Face width (pixels) beyond which size no longer improves a shot: the embedder sees 112x112.
SIZE_SATURATION = 160.0
#: Laplacian variance (on a 112-pixel-wide face) beyond which a face counts as fully sharp.
SHARPNESS_SATURATION = 60.0


@dataclass(frozen=True)
class ShotPolicy:
    """When a track is embedded: after ``window`` seconds of gated faces, at most
    ``max_embeddings`` times, ``min_gap`` seconds apart, each time with a shot at least
    ``improve`` times better than the one embedded before."""

    window: float = 0.2
    min_gap: float = 0.4
    max_embeddings: int = 3
    improve: float = 1.2

    def __post_init__(self) -> None:
        if self.window < 0 or self.min_gap < 0:
            raise ValueError("best-shot window and gap must not be negative")
        if self.max_embeddings < 1:
            raise ValueError("a track needs at least one embedding")
        if self.improve < 1.0:
            raise ValueError("improve must be at least 1")


def meets(quality: Quality, policy: QualityPolicy) -> bool:
    """Whether measured ``quality`` (under any policy) also satisfies ``policy``."""
    return (
        quality.face_width >= policy.min_face_width
        and quality.inter_ocular >= policy.min_inter_ocular
        and quality.sharpness >= policy.min_sharpness
        and abs(quality.yaw) <= policy.max_yaw
        and abs(quality.pitch) <= policy.max_pitch
        and abs(quality.roll) <= policy.max_roll
        and policy.min_brightness <= quality.brightness <= policy.max_brightness
        and quality.contrast >= policy.min_contrast
    )


def shot_score(face: Face, quality: Quality) -> float:
    """How good a face is to embed: size x sharpness x frontality x detector confidence."""
    size = min(face.width, SIZE_SATURATION) / SIZE_SATURATION
    sharp = min(quality.sharpness / SHARPNESS_SATURATION, 1.0)
    frontal = max(math.cos(math.radians(quality.yaw)), 0.0) * max(
        math.cos(math.radians(quality.pitch)), 0.0)
    return size * (0.5 + 0.5 * sharp) * frontal * frontal * max(face.score, 0.0)


def crop_face(image: ImageArray, face: Face, margin: float = 0.5
              ) -> tuple[ImageArray, Face, tuple[int, int]]:
    """A copy of the region around ``face`` (``margin`` x its size on each side), the face in
    the crop's coordinates, and the crop's top-left corner in the image.

    The copy matters: a view would keep the whole frame alive for as long as the crop lives.
    """
    h, w = image.shape[:2]
    x, y, bw, bh = face.box
    pad_x, pad_y = bw * margin, bh * margin
    x0, y0 = max(int(x - pad_x), 0), max(int(y - pad_y), 0)
    x1, y1 = min(math.ceil(x + bw + pad_x), w), min(math.ceil(y + bh + pad_y), h)
    crop = np.ascontiguousarray(image[y0:y1, x0:x1]).copy()
    return crop, face.shifted(-x0, -y0), (x0, y0)


def make_sighting(frame: Frame, track_id: int, face: Face, score: float,
                  margin: float = 0.5) -> Sighting:
    crop, local, origin = crop_face(frame.image, face, margin)
    return Sighting(frame.camera, track_id, frame.index, frame.t, frame.wall, frame.mono, local,
                    crop, origin, score)


@dataclass
class TrackRecord:
    """What the pipeline remembers of one live track (in memory only, until the track ends)."""

    track_id: int
    first_t: float
    last_t: float
    last_box: tuple[float, float, float, float]
    frames: int = 0
    best: Sighting | None = None
    window_start: float | None = None
    embeddings: int = 0
    last_embed_t: float | None = None
    last_embed_shot: float = 0.0
    enrol_quality_mono: float | None = None
    alerts: dict[str, Alert] = field(default_factory=dict)

    def offer(self, sighting: Sighting, policy: ShotPolicy) -> None:
        """Consider a gated face as this track's next shot to embed."""
        if self.embeddings >= policy.max_embeddings:
            return
        if self.embeddings and sighting.shot_score < self.last_embed_shot * policy.improve:
            return
        if self.best is None:
            self.best = sighting
            self.window_start = sighting.t
        elif sighting.shot_score > self.best.shot_score:
            self.best = sighting

    def due(self, t: float, policy: ShotPolicy) -> bool:
        """Whether the best shot should be embedded now (stream time ``t``)."""
        if self.best is None or self.window_start is None:
            return False
        if self.last_embed_t is not None and t - self.last_embed_t < policy.min_gap:
            return False
        return t - self.window_start >= policy.window

    def take(self, t: float) -> Sighting | None:
        """Hand over the best shot for embedding and forget it here."""
        sighting, self.best, self.window_start = self.best, None, None
        if sighting is not None:
            self.embeddings += 1
            self.last_embed_t = t
            self.last_embed_shot = sighting.shot_score
        return sighting
