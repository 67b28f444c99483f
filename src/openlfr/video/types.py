"""The small frozen values that cross the seams of the live pipeline: ``Frame``, ``Sighting``,
``Alert``.

A ``Sighting`` (the best shot of a track, with its probe crop) exists only in memory while the
pipeline decides about it; only an ``Alert`` is ever handed on, to an :class:`AlertSink`.
"""

from __future__ import annotations

from dataclasses import dataclass

from openlfr.vision.imageio import ImageArray
from openlfr.vision.types import Face


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame of one camera.

    ``index`` counts the frames the source decoded (dropped ones included), ``t`` is the stream
    time in seconds (the file's clock, or seconds since the live source started), ``wall`` the
    ``time.time()`` and ``mono`` the ``time.monotonic()`` at which the frame arrived.
    """

    camera: str
    index: int
    t: float
    wall: float
    mono: float
    image: ImageArray


@dataclass(frozen=True, slots=True)
class Sighting:
    """The best shot of one track: the face, a crop around it, and when it was seen.

    ``crop`` is a padded crop of the frame (``face`` is in the crop's coordinates, ``origin`` is
    the crop's top-left corner in the frame). It is released as soon as the gallery decision is
    made, unless the decision is an alert.
    """

    camera: str
    track_id: int
    frame: int
    t: float
    wall: float
    mono: float
    face: Face
    crop: ImageArray
    origin: tuple[int, int]
    shot_score: float

    @property
    def box(self) -> tuple[float, float, float, float]:
        """The face box in frame coordinates."""
        x, y, w, h = self.face.box
        return (x + self.origin[0], y + self.origin[1], w, h)


@dataclass(frozen=True, slots=True)
class Alert:
    """A *possible* match of a track against a watchlist subject, for a person to review.

    There is one alert per (camera, track, subject); ``revision`` 0 is the alert itself and each
    later revision is an update carrying a higher score from a better shot of the same track.
    ``probe_crop`` is the face crop (BGR) that produced the score; ``reference_id`` is the
    watchlist reference image it matched best. ``latency`` is the seconds from the arrival of
    the first frame in which this track's face met the enrolment quality policy to the alert
    (``None`` if it never did); ``in_view`` the seconds from the arrival of the track's first
    frame (the person entering the camera's view) to the alert.
    """

    alert_id: str
    camera: str
    track_id: int
    subject_id: str
    display_name: str
    score: float
    threshold: float
    reference_id: str
    model_id: str
    frame: int
    t: float
    wall_time: float
    frame_wall: float
    box: tuple[float, float, float, float]
    probe_crop: ImageArray
    revision: int = 0
    latency: float | None = None
    in_view: float | None = None

    @property
    def is_update(self) -> bool:
        return self.revision > 0

    def as_event(self) -> dict[str, object]:
        """The JSON-ready description of this alert (no pixels, no template)."""
        return {
            "event": "alert_update" if self.is_update else "alert",
            "camera": self.camera,
            "t": round(self.t, 3),
            "frame": self.frame,
            "track": self.track_id,
            "subject": self.subject_id,
            "score": round(self.score, 4),
            "threshold": self.threshold,
            "reference_id": self.reference_id,
            "alert_id": self.alert_id,
            "revision": self.revision,
            "wall_time": round(self.wall_time, 3),
            "frame_wall": round(self.frame_wall, 3),
            "box": [round(v, 1) for v in self.box],
            "latency": None if self.latency is None else round(self.latency, 3),
        }
