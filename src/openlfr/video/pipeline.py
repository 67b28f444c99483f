"""The per-camera pipeline: detect → track → best shot → quality gate → embed → search → alert.

One :class:`CameraPipeline` per camera; it is fed that camera's frames in order, by one thread
at a time. The face models are the process's shared engine.

Privacy by construction: a face's crop lives in the track's best-shot slot until it is embedded
and searched, and is dropped there and then when the search does not reach the threshold. The
track's few templates (at most ``ShotPolicy.max_embeddings``, fused for the search) live in its
in-memory record and are forgotten when the track ends; only counters record that a face was
seen. Only an
:class:`Alert` is handed on (to the :class:`AlertSink`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from openlfr.video.bestshot import (
    ShotPolicy,
    TrackRecord,
    fuse_templates,
    make_sighting,
    meets,
    shot_score,
)
from openlfr.video.sinks import AlertSink
from openlfr.video.stats import CameraStats
from openlfr.video.tracking import FaceTracker
from openlfr.video.types import Alert, Frame, Sighting
from openlfr.video.zones import CameraZones
from openlfr.vision import quality as q
from openlfr.vision.imageio import ImageArray, as_image
from openlfr.vision.protocols import Detector, Engine
from openlfr.vision.thresholds import check_threshold
from openlfr.vision.tiling import detect_regions, merge_faces, roi_regions, tile_grid
from openlfr.vision.types import Candidate, Face

log = logging.getLogger("openlfr.video.pipeline")

#: ``tiling="auto"`` tiles frames whose longer side is above this (1080p and up; 720p and
#: smaller keep the single downscaled pass).
AUTO_TILING_ABOVE = 1280
TILING_MODES = ("auto", "on", "off")
#: ``roi_every``: a region of interest is a predicted face grown by this times its side on
#: every side (tracks are updated 15 times a second: a face moves far less in between).
ROI_EXPAND = 0.5
#: Motion gating compares grey copies of frames this many pixels wide ...
MOTION_SIDE = 160
#: ... in which a pixel whose grey level changed by more than this (of 255) moved ...
MOTION_LEVEL = 20
#: ... and the frame moved when more than this share of the pixels did (a 40-pixel face
#: entering a 640-pixel frame is about 0.7 % of it).
MOTION_SHARE = 0.001


class GallerySearch(Protocol):
    """The part of :class:`openlfr.watchlist.gallery.Gallery` the pipeline uses."""

    @property
    def model_id(self) -> str: ...

    def __len__(self) -> int: ...

    def search(self, queries: np.ndarray, k: int = 5,
               per_subject: bool = True) -> list[list[Candidate]]: ...


@dataclass(frozen=True)
class PipelineConfig:
    """How one camera is analysed.

    ``detect_fps``: run the detector at most this many times per second of stream time (the
    other frames only count as processed; tracks carry over); 0 detects every frame. A camera
    that falls behind drops frames, so the frames it does get are further apart and all
    detected. ``detect_max_side``: frames whose longer side is larger are scaled down
    to it for detection (quality and embedding still use the full frame). ``lost_seconds``: a
    track unseen for that long ends (and its memory is released).

    Small faces in large frames (``tiling``): ``"off"`` (the default) always detects the
    downscaled frame alone; ``"on"`` adds detection at the frame's own resolution whenever
    the frame is larger than the detection size; ``"auto"`` does so only for frames whose
    longer side is above :data:`AUTO_TILING_ABOVE` (1080p and up), so 720p and smaller frames
    keep the single downscaled pass. A tiled camera still runs the downscaled pass on every detected
    frame (large and new faces, as before); every ``full_scan_every``-th detected frame (the
    first included) it also scans the whole frame in overlapping ``tile_size`` tiles
    (``tile_overlap`` pixels of overlap), and on the frames in between only regions of
    interest around the faces its tracks predict (each scaled so that its smallest face is
    at most 64 pixels: small faces unscaled). Faces are in full-frame coordinates
    throughout, so crops for quality and embedding come from the full-resolution frame.

    Cheaper cameras (both off by default): ``motion_gate`` skips the detector on a frame due
    for detection when no track is alive and nothing moved since the last detected frame (a
    grey copy :data:`MOTION_SIDE` pixels wide, compared pixel by pixel); a still scene is still
    detected every ``motion_refresh`` seconds. ``roi_every``: on a frame that is not tiled,
    the whole (downscaled) frame is detected on every ``roi_every``-th detected frame (the
    first included) and whenever no track is alive; on the detected frames in between only
    regions of interest around the faces the tracks predict. A face that enters is detected
    within ``roi_every`` detected frames of its first moving frame: at the default 15
    detections a second and ``roi_every=3``, 0.2 s.

    ``fuse_shots``: a track's first embedded shot is searched alone (so a good first shot
    alerts at once); each later one is searched as the quality-weighted mean of the track's
    ``fuse_shots`` best templates so far (:func:`openlfr.video.bestshot.fuse_templates`);
    1 searches the best shot alone.
    """

    threshold: float
    detect_fps: float = 0.0
    detect_max_side: int = 640
    shots: ShotPolicy = field(default_factory=ShotPolicy)
    lost_seconds: float = 1.0
    crop_margin: float = 0.5
    top_k: int = 3
    gate: q.QualityPolicy = q.LIVE
    tiling: str = "off"
    tile_size: int = 640
    tile_overlap: int = 128
    full_scan_every: int = 15
    motion_gate: bool = False
    motion_refresh: float = 1.0
    roi_every: int = 1
    fuse_shots: int = 3

    def __post_init__(self) -> None:
        check_threshold(self.threshold)
        if self.detect_fps < 0:
            raise ValueError("detect_fps must not be negative (0: every frame)")
        if self.detect_max_side < 64:
            raise ValueError("detect_max_side must be at least 64 pixels")
        if self.lost_seconds <= 0:
            raise ValueError("lost_seconds must be positive")
        if self.tiling not in TILING_MODES:
            raise ValueError(f"tiling must be one of {', '.join(TILING_MODES)}")
        if self.tile_size < 128:
            raise ValueError("tile_size must be at least 128 pixels")
        if not 0 <= self.tile_overlap <= self.tile_size // 2:
            raise ValueError("tile_overlap must be between 0 and half the tile size")
        if self.full_scan_every < 1:
            raise ValueError("full_scan_every must be at least 1")
        if self.motion_refresh <= 0:
            raise ValueError("motion_refresh must be positive")
        if self.roi_every < 1:
            raise ValueError("roi_every must be at least 1")
        if self.fuse_shots < 1:
            raise ValueError("fuse_shots must be at least 1 (1: the best shot alone)")

    def tiles(self, width: int, height: int) -> bool:
        """Whether a ``width`` x ``height`` frame is detected at its own resolution too."""
        if self.tiling == "off" or max(width, height) <= self.detect_max_side:
            return False
        return self.tiling == "on" or max(width, height) > AUTO_TILING_ABOVE


@dataclass(frozen=True)
class Detected:
    """A frame after the stateless stage: its faces (``None`` when the frame was not
    detected, by ``detect_fps``), or ``usable=False`` for a corrupt frame. ``scan`` says how
    it was detected: ``"downscaled"`` (one pass on the downscaled frame), ``"full"`` (that
    and overlapping tiles at full resolution), ``"regions"`` (that and regions of interest
    around the tracks' predicted faces), ``"roi"`` (only regions of interest around the
    tracks' predicted faces, ``roi_every``), or ``""`` (not detected: by ``detect_fps``, or
    ``motion_gate`` found nothing moving)."""

    frame: Frame
    faces: tuple[Face, ...] | None
    usable: bool
    scan: str = ""


@dataclass(frozen=True)
class FrameResult:
    """What one frame produced: the faces (frame coordinates) with their track ids, the
    subject shown for alerted tracks, and the alerts raised or updated on this frame."""

    frame: Frame
    faces: tuple[Face, ...]
    track_ids: tuple[int | None, ...]
    labels: Mapping[int, str]
    alerts: tuple[Alert, ...]
    detected: bool


class CameraPipeline:
    def __init__(
        self,
        camera: str,
        engine: Engine,
        gallery: GallerySearch,
        config: PipelineConfig,
        sink: AlertSink,
        *,
        fps: float = 25.0,
        names: Mapping[str, str] | None = None,
        stats: CameraStats | None = None,
        zones: CameraZones | None = None,
    ) -> None:
        if gallery.model_id != engine.model_id:
            raise ValueError(
                f"the watchlist holds {gallery.model_id!r} templates but the engine makes "
                f"{engine.model_id!r}; scores of different models are not comparable"
            )
        self.camera = camera
        #: analysis zones and privacy masks (:mod:`openlfr.video.zones`)
        self.zones = zones or CameraZones()
        self.engine = engine
        self.config = config
        self.sink = sink
        # The gallery and its display names are swapped together, atomically (one reference):
        # a search uses the pair it read, never a mix of two galleries.
        self._live: tuple[GallerySearch, dict[str, str]] = (gallery, dict(names or {}))
        self._generation = 0
        self._seen_generation = 0
        self.stats = stats or CameraStats(camera)
        rate = min(fps, config.detect_fps) if config.detect_fps > 0 else fps
        # ByteTrack lets a track go a little before this pipeline forgets it, so an id it
        # revives is always one whose record (and alerts) still exist here.
        self.tracker = FaceTracker(frame_rate=rate, lost_seconds=0.8 * config.lost_seconds)
        self.tracks: dict[int, TrackRecord] = {}
        self._last_detect_t: float | None = None
        self._rate_lock = threading.Lock()
        self._last_faces: tuple[Face, ...] = ()
        self._last_ids: tuple[int | None, ...] = ()
        self._last_t = 0.0
        self._detections = 0  # detected frames of a tiled camera, for full_scan_every
        self._predicted: tuple[tuple[float, float, float, float], ...] = ()
        self._scans = 0  # detected frames, for roi_every
        self._motion_ref: np.ndarray | None = None  # grey copy of the last detected frame
        self._motion_t = -float("inf")  # stream time of the last detected frame (gate)

    @property
    def gallery(self) -> GallerySearch:
        return self._live[0]

    @property
    def names(self) -> dict[str, str]:
        return self._live[1]

    def replace_gallery(self, gallery: GallerySearch,
                        names: Mapping[str, str] | None = None) -> GallerySearch:
        """Search ``gallery`` from now on (any thread; atomic). A search already under way
        finishes on the old one; the alerts a track raised for subjects no longer in the
        gallery are forgotten on the next frame (they are not shown as labels, and the subject
        is not debounced if it comes back). Returns the old gallery (for the caller to clear:
        it may be shared by other cameras)."""
        if gallery.model_id != self.engine.model_id:
            raise ValueError(
                f"the new gallery holds {gallery.model_id!r} templates but the engine makes "
                f"{self.engine.model_id!r}")
        old = self._live[0]
        self._live = (gallery, dict(names or {}))
        self._generation += 1
        return old

    def _prune_alerts(self) -> None:
        """After a gallery swap (in frame order): forget track alerts of subjects that left."""
        generation = self._generation
        if generation == self._seen_generation:
            return
        self._seen_generation = generation
        gallery, names = self._live
        subjects = getattr(gallery, "subjects", None)
        present = set(subjects()) if callable(subjects) else set(names)
        for record in self.tracks.values():
            for subject_id in [sid for sid in record.alerts if sid not in present]:
                del record.alerts[subject_id]

    # -- per frame ---------------------------------------------------------------------------

    def process(self, frame: Frame) -> FrameResult:
        """Analyse one frame; alerts go to the sink and are also returned."""
        return self.advance(self.detect(frame))

    def wants_detection(self, frame: Frame) -> bool:
        """Whether this frame is to be detected (``detect_fps``); call it in frame order."""
        if self.config.detect_fps <= 0:
            return True
        with self._rate_lock:
            last = self._last_detect_t
            if last is None or frame.t - last >= 0.999 / self.config.detect_fps or frame.t < last:
                self._last_detect_t = frame.t
                return True
            return False

    def detect(self, frame: Frame, detect: bool | None = None,
               detector: Detector | None = None) -> Detected:
        """The stateless first stage: check the frame and find its faces.

        Safe to run for several frames of one camera at once (on different detectors); the
        results must then be passed to :meth:`advance` in frame order. ``detect=None`` asks
        :meth:`wants_detection`.
        """
        if detect is None:
            detect = self.wants_detection(frame)
        image = _usable(frame.image)
        if image is None:
            return Detected(frame, None, False)
        image = self.zones.apply(image)  # privacy masks: before anything sees the frame
        if image is not frame.image:
            frame = Frame(frame.camera, frame.index, frame.t, frame.wall, frame.mono, image)
        if not detect or (self.config.motion_gate and not self._moved(frame.t, image)):
            return Detected(frame, None, True)
        faces, scan = self._detect(image, detector)
        if self.zones:
            h, w = image.shape[:2]
            faces = [f for f in faces if self.zones.analysed(f.box, w, h)]
        return Detected(frame, tuple(faces), True, scan)

    def advance(self, detected: Detected) -> FrameResult:
        """The stateful second stage, in frame order: track, best shot, embed, search, alert."""
        frame = detected.frame
        if not detected.usable:
            if self.zones.masks:  # never pass on an unmasked frame (e.g. to a preview)
                image = _usable(frame.image)
                frame = Frame(frame.camera, frame.index, frame.t, frame.wall, frame.mono,
                              np.zeros((1, 1, 3), np.uint8) if image is None
                              else self.zones.apply(image))
            self.stats.add(bad_frames=1)
            self.stats.frame_done(frame.mono, False)
            return FrameResult(frame, (), (), {}, (), False)
        self._last_t = frame.t
        self._prune_alerts()
        alerts: list[Alert] = []
        faces = detected.faces
        if faces is not None:
            ids = self.tracker.update(faces)
            if detected.scan in ("full", "regions") or self.config.roi_every > 1:
                self._predicted = tuple(self.tracker.predicted_boxes())
            self._last_faces, self._last_ids = faces, tuple(ids)
            self.stats.add(faces=len(faces))
            for face, track_id in zip(faces, ids, strict=True):
                if track_id is not None:
                    self._observe(frame, face, track_id)
        for record in list(self.tracks.values()):
            if record.due(frame.t, self.config.shots):
                alerts += self._decide(record, record.take(frame.t))
        alerts += self._expire(frame.t)
        self.stats.set_active(len(self.tracks))
        self.stats.frame_done(frame.mono, faces is not None)
        labels = {tid: next(iter(r.alerts)) for tid, r in self.tracks.items() if r.alerts}
        return FrameResult(frame, self._last_faces, self._last_ids, labels, tuple(alerts),
                           faces is not None)

    def flush(self) -> list[Alert]:
        """End of stream: decide every pending best shot, then forget every track."""
        alerts: list[Alert] = []
        for record in list(self.tracks.values()):
            if record.best is not None:
                alerts += self._decide(record, record.take(self._last_t))
        self.tracks.clear()
        self.stats.set_active(0)
        return alerts

    # -- steps -------------------------------------------------------------------------------

    def _detect(self, image: ImageArray, detector: Detector | None) -> tuple[list[Face], str]:
        """Faces in full-frame coordinates and how they were found (see :class:`Detected`):
        the downscaled pass, and for a tiled frame (:meth:`PipelineConfig.tiles`) a full
        tiled scan or regions of interest, merged."""
        chosen = detector or self.engine.detector
        h, w = image.shape[:2]
        config = self.config
        if config.roi_every > 1 and not config.tiles(w, h):
            with self._rate_lock:
                whole = self._scans % config.roi_every == 0 or not self._predicted
                self._scans += 1
                predicted = self._predicted
            if not whole:
                rois, roi_scales = roi_regions(predicted, w, h, expand=ROI_EXPAND)
                return merge_faces(detect_regions(chosen, image, rois, roi_scales)), "roi"
        faces = self._detect_downscaled(image, chosen)
        if not config.tiles(w, h):
            return faces, "downscaled"
        with self._rate_lock:
            full = self._detections % config.full_scan_every == 0
            self._detections += 1
            predicted = self._predicted
        scales: list[float] | None = None
        if full:
            regions = tile_grid(w, h, config.tile_size, config.tile_overlap)
        else:
            regions, scales = roi_regions(predicted, w, h)
        found = detect_regions(chosen, image, regions, scales)
        return (merge_faces(faces + found) if found else faces), ("full" if full else "regions")

    def _moved(self, t: float, image: ImageArray) -> bool:
        """Motion gate: whether to detect this frame: a track is alive, the scene moved since
        the last detected frame, or that was ``motion_refresh`` seconds ago (or is unknown).
        The grey copy of a frame that is detected becomes the reference."""
        h, w = image.shape[:2]
        scale = MOTION_SIDE / max(w, h)
        small = cv2.resize(image, (max(round(w * scale), 1), max(round(h * scale), 1)),
                           interpolation=cv2.INTER_AREA)
        grey = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (3, 3), 0)
        with self._rate_lock:
            ref, last_t = self._motion_ref, self._motion_t
            moved = bool(self.tracks or ref is None or ref.shape != grey.shape
                     or not 0 <= t - last_t < self.config.motion_refresh
                     or np.count_nonzero(cv2.absdiff(grey, ref) > MOTION_LEVEL)
                     > MOTION_SHARE * grey.size)
            if moved:
                self._motion_ref, self._motion_t = grey, t
        return moved

    def _detect_downscaled(self, image: ImageArray, detector: Detector) -> list[Face]:
        """Faces in full-frame coordinates, detected on a copy scaled to at most
        ``detect_max_side`` with both sides a multiple of 32 (YuNet pads its input to one:
        640x360 costs as much as 640x384, 640x352 a third less)."""
        run = detector.detect
        h, w = image.shape[:2]
        dw, dh = detection_size(w, h, self.config.detect_max_side)
        if (dw, dh) == (w, h):
            return run(image)
        sx, sy = w / dw, h / dh
        # Area averaging only pays for a real reduction; a few rows less is a linear resize.
        shrink = cv2.INTER_AREA if max(sx, sy) > 1.3 else cv2.INTER_LINEAR
        small = as_image(cv2.resize(image, (dw, dh), interpolation=shrink))
        scale = np.array([sx, sy], dtype=np.float32)
        return [
            Face((f.box[0] * sx, f.box[1] * sy, f.box[2] * sx, f.box[3] * sy),
                 (f.landmarks * scale).astype(np.float32), f.score)
            for f in run(small)
        ]

    def _observe(self, frame: Frame, face: Face, track_id: int) -> None:
        record = self.tracks.get(track_id)
        if record is None:
            record = self.tracks[track_id] = TrackRecord(track_id, frame.t, frame.t, face.box,
                                                                first_mono=frame.mono)
            # one person passing: counted once, when the tracker first reports the track (it
            # forgets a track before this record expires, so a track id never comes back)
            self.stats.add(tracks=1)
        record.frames += 1
        record.last_t = frame.t
        record.last_box = face.box
        if record.embeddings >= self.config.shots.max_embeddings:
            return
        quality = q.measure(frame.image, face, self.config.gate)
        if not quality.ok:
            self.stats.add(rejected=1)
            return
        if record.enrol_quality_mono is None and meets(quality, q.ENROLMENT):
            record.enrol_quality_mono = frame.mono
        score = shot_score(face, quality)
        best = record.best
        if best is not None and score <= best.shot_score:
            return  # not better than the shot already held: no need to crop it
        if record.embeddings and score < record.last_embed_shot * self.config.shots.improve:
            return
        record.offer(make_sighting(frame, track_id, face.with_quality(quality), score,
                                   self.config.crop_margin), self.config.shots)

    def _decide(self, record: TrackRecord, sighting: Sighting | None) -> list[Alert]:
        """Embed one best shot, fuse it with the track's earlier ones, search the gallery,
        alert or forget.

        The first shot is searched alone (an early alert); from the second on, the search is
        for the quality-weighted mean of the track's ``fuse_shots`` best templates
        (:func:`fuse_templates`), steadier than any one shot."""
        if sighting is None:
            return []
        templates = self.engine.embed(sighting.crop, [sighting.face])
        self.stats.add(embeddings=1)
        gallery, names = self._live  # one consistent pair, whatever a swap does meanwhile
        if not templates:
            return []
        vector = templates[0].vector
        del templates
        keep = self.config.fuse_shots
        if keep > 1:  # the track's best ``keep`` templates, for fusion; none kept with 1
            record.templates.append((vector, sighting.shot_score))
            record.templates.sort(key=lambda t: t[1], reverse=True)
            del record.templates[keep:]
        if len(gallery) == 0:
            return []
        query = fuse_templates(record.templates, keep) if keep > 1 else vector
        hits = gallery.search(query[None, :], k=self.config.top_k)[0]
        del query  # the fused template is not needed past the search, whatever the outcome
        best = hits[0] if hits else None
        if best is None or best.score < self.config.threshold:
            return []  # no match: the sighting (crop) goes out of scope here
        previous = record.alerts.get(best.subject_id)
        if previous is not None and best.score <= previous.score:
            return []  # debounced: this track already raised this subject at least as high
        alert = self._alert(record, sighting, best, previous, names)
        record.alerts[best.subject_id] = alert
        if previous is None:
            self.stats.add(alerts=1)
            if alert.latency is not None:
                self.stats.alert_latency(alert.latency)
        else:
            self.stats.add(alert_updates=1)
        self.sink.publish(alert)
        return [alert]

    def _alert(self, record: TrackRecord, sighting: Sighting, best: Candidate,
               previous: Alert | None, names: Mapping[str, str]) -> Alert:
        now_mono = time.monotonic()
        latency = None
        if record.enrol_quality_mono is not None:
            latency = max(0.0, now_mono - record.enrol_quality_mono)
        in_view = None if record.first_mono is None else max(0.0, now_mono - record.first_mono)
        return Alert(
            alert_id=f"{self.camera}:{record.track_id}:{best.subject_id}",
            camera=self.camera,
            track_id=record.track_id,
            subject_id=best.subject_id,
            display_name=names.get(best.subject_id, best.subject_id),
            score=float(best.score),
            threshold=self.config.threshold,
            reference_id=best.reference_id,
            model_id=self.engine.model_id,
            frame=sighting.frame,
            t=sighting.t,
            wall_time=time.time(),
            frame_wall=sighting.wall,
            box=sighting.box,
            probe_crop=sighting.crop,
            revision=0 if previous is None else previous.revision + 1,
            latency=latency if previous is None else previous.latency,
            in_view=in_view if previous is None else previous.in_view,
        )

    def _expire(self, t: float) -> list[Alert]:
        """End the tracks unseen for ``lost_seconds``: decide a pending shot, then forget."""
        alerts: list[Alert] = []
        for track_id, record in list(self.tracks.items()):
            if t - record.last_t > self.config.lost_seconds:
                if record.best is not None:
                    alerts += self._decide(record, record.take(t))
                del self.tracks[track_id]
        return alerts


def detection_size(width: int, height: int, max_side: int, align: int = 32) -> tuple[int, int]:
    """The size a frame is detected at: longer side at most ``max_side``, aspect kept, both
    sides rounded down to a multiple of ``align`` (at least one ``align``)."""
    scale = min(1.0, max_side / max(width, height))
    return (max(align, int(width * scale) // align * align),
            max(align, int(height * scale) // align * align))


def _usable(image: object) -> ImageArray | None:
    """The frame as 8-bit BGR, or ``None`` if it cannot be analysed (a corrupt frame)."""
    if not isinstance(image, np.ndarray) or image.size == 0 or image.ndim not in (2, 3):
        return None
    if image.shape[0] < 16 or image.shape[1] < 16:
        return None
    if image.dtype != np.uint8:
        return None
    if image.ndim == 2:
        return as_image(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
    if image.shape[2] == 4:
        return as_image(cv2.cvtColor(image, cv2.COLOR_BGRA2BGR))
    if image.shape[2] == 1:
        return as_image(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
    if image.shape[2] != 3:
        return None
    return image
