"""Per-camera figures: rates, counters and latencies. Counters are the only trace a passer-by
leaves: how many faces were seen, never which."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

#: Seconds of history behind a rate.
RATE_WINDOW = 3.0
#: Latency samples kept per camera for percentiles.
LATENCY_SAMPLES = 2048


class RateMeter:
    """Events per second over the last ``window`` seconds (thread-safe)."""

    def __init__(self, window: float = RATE_WINDOW) -> None:
        self.window = window
        self._lock = threading.Lock()
        self._events: deque[tuple[float, int]] = deque()
        self._total = 0

    def add(self, n: int = 1, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._total += n
            self._events.append((now, self._total))
            self._trim(now)

    def observe(self, total: int, now: float | None = None) -> None:
        """Record a running total (e.g. frames received so far) instead of an increment."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if total > self._total:
                self._total = total
                self._events.append((now, total))
                self._trim(now)

    def _trim(self, now: float) -> None:
        while len(self._events) > 1 and now - self._events[0][0] > self.window:
            self._events.popleft()

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            if len(self._events) < 2:
                return 0.0
            t0, c0 = self._events[0]
            if now - self._events[-1][0] > self.window:
                return 0.0  # nothing recent: stalled
            return (self._total - c0) / max(now - t0, 1e-3)


def percentile(values: list[float] | deque[float], q: float) -> float | None:
    return float(np.percentile(np.fromiter(values, dtype=np.float64), q)) if values else None


@dataclass(frozen=True)
class CameraFigures:
    camera: str
    state: str
    fps_in: float
    fps_processed: float
    frames_in: int
    frames: int
    detected_frames: int
    dropped: int
    corrupt: int
    bad_frames: int
    reconnects: int
    faces: int
    rejected: int
    tracks: int
    active_tracks: int
    embeddings: int
    alerts: int
    alert_updates: int
    latency_p50: float | None
    latency_p95: float | None
    alert_latency_p95: float | None
    since: float = 0.0  # wall clock (epoch seconds) of the source's last change of state
    error: str = ""  # the source's last error (credentials redacted)

    def as_dict(self) -> dict[str, object]:
        def r(v: float | None, n: int = 3) -> float | None:
            return None if v is None else round(v, n)

        return {
            "camera": self.camera,
            "state": self.state,
            "fps_in": round(self.fps_in, 2),
            "fps_processed": round(self.fps_processed, 2),
            "frames_in": self.frames_in,
            "frames": self.frames,
            "detected_frames": self.detected_frames,
            "dropped_frames": self.dropped,
            "corrupt_frames": self.corrupt,
            "bad_frames": self.bad_frames,
            "reconnects": self.reconnects,
            "faces": self.faces,
            "rejected_faces": self.rejected,
            "tracks": self.tracks,
            "active_tracks": self.active_tracks,
            "embeddings": self.embeddings,
            "alerts": self.alerts,
            "alert_updates": self.alert_updates,
            "latency_p50": r(self.latency_p50),
            "latency_p95": r(self.latency_p95),
            "alert_latency_p95": r(self.alert_latency_p95),
            "since": round(self.since, 3),
            "error": self.error,
        }


class CameraStats:
    """Counters of one camera's pipeline; safe to read from another thread."""

    def __init__(self, camera: str) -> None:
        self.camera = camera
        self._lock = threading.Lock()
        self.frames = 0
        self.detected_frames = 0
        self.bad_frames = 0
        self.faces = 0
        self.rejected = 0
        self.tracks = 0
        self.active_tracks = 0
        self.embeddings = 0
        self.alerts = 0
        self.alert_updates = 0
        self._processed = RateMeter()
        self._latency: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._alert_latency: deque[float] = deque(maxlen=LATENCY_SAMPLES)

    def frame_done(self, arrived_mono: float, detected: bool) -> None:
        now = time.monotonic()
        with self._lock:
            self.frames += 1
            self.detected_frames += int(detected)
            self._processed.add(1, now)
            self._latency.append(now - arrived_mono)

    def add(self, **counts: int) -> None:
        with self._lock:
            for key, value in counts.items():
                setattr(self, key, getattr(self, key) + value)

    def set_active(self, n: int) -> None:
        with self._lock:
            self.active_tracks = n

    def alert_latency(self, seconds: float) -> None:
        with self._lock:
            self._alert_latency.append(seconds)

    def figures(self, *, state: str = "", fps_in: float = 0.0, frames_in: int = 0,
                dropped: int = 0, corrupt: int = 0, reconnects: int = 0, since: float = 0.0,
                error: str = "") -> CameraFigures:
        with self._lock:
            latency = list(self._latency)
            alert_latency = list(self._alert_latency)
            return CameraFigures(
                camera=self.camera, state=state, fps_in=fps_in,
                fps_processed=self._processed.rate(), frames_in=frames_in, frames=self.frames,
                detected_frames=self.detected_frames, dropped=dropped, corrupt=corrupt,
                bad_frames=self.bad_frames, reconnects=reconnects, faces=self.faces,
                rejected=self.rejected, tracks=self.tracks, active_tracks=self.active_tracks,
                embeddings=self.embeddings, alerts=self.alerts,
                alert_updates=self.alert_updates,
                latency_p50=percentile(latency, 50), latency_p95=percentile(latency, 95),
                alert_latency_p95=percentile(alert_latency, 95),
                since=since, error=error,
            )
