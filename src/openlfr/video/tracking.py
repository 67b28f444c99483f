"""Tracking: one person = one track, with ByteTrack from ``supervision``.

supervision's ``ByteTrack`` numbers tracks with class-level counters shared by every tracker in
the process, so updates are serialised by one lock (an update costs well under a millisecond)
and track ids are unique across all cameras of a process.

``supervision`` is pinned to 0.23, the last release whose ``ByteTrack`` ships with it *and*
that depends on ``opencv-python-headless`` rather than the GUI ``opencv-python`` (two OpenCV
wheels in one environment overwrite each other's ``cv2``). Later releases moved ByteTrack to
the separate ``trackers`` package; moving there is a change to this module only.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from types import ModuleType

import numpy as np

from openlfr.vision.types import Face

_LOCK = threading.Lock()


def _sv() -> ModuleType:
    """``supervision``, imported on first use: it takes over a second to import (it loads
    matplotlib), which every command would otherwise pay, tracking or not."""
    import supervision

    return supervision


class FaceTracker:
    """Assigns a track id to each detected face of one camera.

    ``frame_rate`` is the rate at which :meth:`update` is called (detections per second), and
    ``lost_seconds`` how long a track survives without a detection before it ends.
    """

    def __init__(self, frame_rate: float = 25.0, lost_seconds: float = 1.0,
                 match_threshold: float = 0.8) -> None:
        rate = round(min(max(frame_rate, 1.0), 120.0))
        with _LOCK:
            self._tracker = _sv().ByteTrack(
                track_activation_threshold=0.4,
                lost_track_buffer=max(1, round(lost_seconds * 30)),
                minimum_matching_threshold=match_threshold,
                frame_rate=rate,
            )

    def update(self, faces: Sequence[Face]) -> list[int | None]:
        """The track id of each face, in order (``None``: not (yet) part of a track)."""
        if faces:
            xyxy = np.array([(x, y, x + w, y + h) for x, y, w, h in (f.box for f in faces)],
                            dtype=np.float32)
            detections = _sv().Detections(
                xyxy=xyxy,
                confidence=np.array([f.score for f in faces], dtype=np.float32),
                class_id=np.zeros(len(faces), dtype=int),
                data={"index": np.arange(len(faces))},
            )
        else:
            detections = _sv().Detections.empty()
        with _LOCK:
            tracked = self._tracker.update_with_detections(detections)
        ids: list[int | None] = [None] * len(faces)
        if len(tracked) and tracked.tracker_id is not None:
            for index, track_id in zip(tracked.data["index"].tolist(),
                                       tracked.tracker_id.tolist(), strict=True):
                ids[int(index)] = int(track_id)
        return ids

    def predicted_boxes(self) -> list[tuple[float, float, float, float]]:
        """Where the tracks alive now expect their face at the next update: ``(x, y, w, h)``
        from each track's motion model (lost tracks at their last place), for detecting
        regions of interest around them."""
        boxes: list[tuple[float, float, float, float]] = []
        with _LOCK:
            states = [(np.array(t.mean, dtype=np.float64), moving)
                      for group, moving in ((self._tracker.tracked_tracks, True),
                                            (self._tracker.lost_tracks, False))
                      for t in group if t.mean is not None]
        for mean, moving in states:
            cx, cy, aspect, h = mean[:4]
            if moving:
                cx, cy, h = cx + mean[4], cy + mean[5], h + mean[7]
            w = aspect * h
            if w > 0 and h > 0:
                boxes.append((float(cx - w / 2), float(cy - h / 2), float(w), float(h)))
        return boxes
