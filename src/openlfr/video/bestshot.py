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
from openlfr.vision import quality as q
from openlfr.vision.imageio import ImageArray
from openlfr.vision.quality import QualityPolicy
from openlfr.vision.types import Face, Quality

SIZE_SATURATION = q.SIZE_SATURATION
SHARPNESS_SATURATION = q.SHARPNESS_SATURATION


@dataclass(frozen=True)
class ShotPolicy:
    """When a track is embedded: after ``window`` seconds of gated faces, at most
    ``max_embeddings`` times, ``min_gap`` seconds apart, each time with a shot at least
    ``improve`` times better than the one embedded before. ``early`` (off by default): a
    track's first shot that is already of enrolment quality and wholly inside the frame is
    embedded at once, without waiting out the window (later shots are fused with it)."""

    window: float = 0.2
    min_gap: float = 0.4
    max_embeddings: int = 3
    improve: float = 1.2
    early: bool = False

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
    """How good a face is to embed: :func:`openlfr.vision.quality.template_weight`."""
    return q.template_weight(face, quality)


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
    #: When the track's first frame arrived (monotonic clock): the person entered the view.
    first_mono: float | None = None
    #: The best templates embedded so far and their weights (:func:`fuse_templates`); in
    #: memory only, at most ``PipelineConfig.fuse_shots`` of them (none when it is 1),
    #: forgotten with the record.
    templates: list[tuple[np.ndarray, float]] = field(default_factory=list)

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
        if policy.early and self.embeddings == 0 and _early_shot(self.best):
            return True
        return t - self.window_start >= policy.window

    def take(self, t: float) -> Sighting | None:
        """Hand over the best shot for embedding and forget it here."""
        sighting, self.best, self.window_start = self.best, None, None
        if sighting is not None:
            self.embeddings += 1
            self.last_embed_t = t
            self.last_embed_shot = sighting.shot_score
        return sighting


def _early_shot(sighting: Sighting) -> bool:
    """Whether a shot may be embedded before its window closes: of enrolment quality, and
    wholly inside the frame (a face cut by the frame's edge waits for a better shot)."""
    face, (h, w) = sighting.face, sighting.crop.shape[:2]
    x, y, bw, bh = face.box
    inside = x >= 0 and y >= 0 and x + bw <= w and y + bh <= h
    return inside and face.quality is not None and meets(face.quality, q.ENROLMENT)


def fuse_templates(shots: list[tuple[np.ndarray, float]], k: int = 3) -> np.ndarray:
    """One template for a track: the weighted mean of its ``k`` best-weighted templates
    (each L2-normalised first), normalised again.

    The weights are :func:`openlfr.vision.quality.template_weight`, so a poor shot counts for
    little beside a good one; ties keep the earlier shot. ``k=1`` is the best shot alone. A
    zero or negative weight counts as a tiny one (never as a negative vote).
    """
    if not shots:
        raise ValueError("no template to fuse")
    if k < 1:
        raise ValueError("k must be at least 1")
    order = sorted(range(len(shots)), key=lambda i: (-shots[i][1], i))[:k]
    vectors = np.stack([np.asarray(shots[i][0], dtype=np.float64) for i in order])
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    weights = np.array([max(shots[i][1], 1e-6) for i in order])
    fused = weights @ vectors
    return (fused / max(float(np.linalg.norm(fused)), 1e-12)).astype(np.float32)
