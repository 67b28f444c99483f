"""Many cameras in one process: one decoder thread per camera, a few analysis workers, one copy
of each model (the small detector once per worker, see :mod:`openlfr.video.detectors`).

Scheduling: each source calls back when it has a frame and the camera is put on a bounded
*ready* queue (at most once: the queue never holds more entries than there are cameras). A
worker takes the next ready camera and that camera's next frame (the oldest waiting), with a
ticket. Detection is stateless, so up to ``max_inflight`` frames of one camera
are detected at once by different workers; tracking and everything after it run in ticket
order, so each camera's frames stay in order. Cameras are served round-robin. When the workers
cannot keep up, a live camera's oldest unconsumed frame gives way to the next one once its short
buffer is full (a counted drop) and a file's reader waits (back-pressure): memory stays bounded
either way.

OpenCV and ONNX Runtime release the GIL while they decode and run networks, so decoder threads
and workers use every core; ``workers`` defaults to the number of CPUs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2

from openlfr.video.detectors import DetectorPool
from openlfr.video.pipeline import CameraPipeline, Detected, FrameResult
from openlfr.video.sources import FrameSource, SourceState, SourceStatus
from openlfr.video.stats import CameraFigures, RateMeter
from openlfr.video.types import Frame
from openlfr.vision.protocols import Engine

log = logging.getLogger("openlfr.video.runner")

FrameCallback = Callable[[CameraPipeline, FrameResult], None]


@dataclass(frozen=True)
class Summary:
    """The figures of a whole run (all cameras together, and each one)."""

    frames: int
    faces: int
    tracks: int
    embeddings: int
    alerts: int
    alert_updates: int
    dropped_frames: int
    seconds: float
    cameras: tuple[CameraFigures, ...]
    interrupted: bool = False
    cpu_seconds: float = 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def as_event(self) -> dict[str, object]:
        return {
            "event": "summary",
            "frames": self.frames,
            "faces": self.faces,
            "tracks": self.tracks,
            "embeddings": self.embeddings,
            "alerts": self.alerts,
            "alert_updates": self.alert_updates,
            "dropped_frames": self.dropped_frames,
            "seconds": round(self.seconds, 3),
            "fps": round(self.fps, 2),
            "interrupted": self.interrupted,
            "cpu_seconds": round(self.cpu_seconds, 3),
            "cameras": [c.as_dict() for c in self.cameras],
        }


@dataclass
class _Camera:
    source: FrameSource
    pipeline: CameraPipeline
    meter: RateMeter
    turn: threading.Condition = field(default_factory=threading.Condition)
    inflight: int = 0
    queued: bool = False
    flushed: bool = False
    next_ticket: int = 0
    next_turn: int = 0


class Runner:
    """Runs cameras until their sources end, ``max_seconds`` pass, or :meth:`stop` is called.

    A source need not be open when the run starts: it opens (and reopens, after a failure) in
    its own thread while the other cameras run. The run ends by itself only when every source
    is ``ended``, ``failed`` or ``stopped``: a camera that is connecting or retrying keeps it
    going.

    ``on_frame(pipeline, result)`` is called after each analysed frame (from a worker thread,
    in frame order per camera), e.g. to feed a preview. ``cv_threads`` sets OpenCV's own thread
    pool while running (default 1 when there are several workers, so workers and OpenCV do not
    oversubscribe the cores); it is restored afterwards.
    """

    def __init__(
        self,
        cameras: Sequence[tuple[FrameSource, CameraPipeline]],
        *,
        workers: int | None = None,
        max_inflight: int | None = None,
        max_seconds: float | None = None,
        on_frame: FrameCallback | None = None,
        cv_threads: int | None = None,
        detectors: DetectorPool | None = None,
    ) -> None:
        if not cameras:
            raise ValueError("no camera to run")
        names = [s.name for s, _ in cameras]
        if len(set(names)) != len(names):
            raise ValueError(f"camera names must be unique: {names}")
        if max_seconds is not None and max_seconds <= 0:
            raise ValueError("max_seconds must be positive")
        self._cameras = {s.name: _Camera(s, p, RateMeter()) for s, p in cameras}
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.max_inflight = max(1, max_inflight or self.workers)
        self.max_seconds = max_seconds
        self._on_frame = on_frame
        self._cv_threads = cv_threads if cv_threads is not None else (
            1 if self.workers > 1 else 0)
        engine = cameras[0][1].engine
        self._detectors = detectors or DetectorPool(engine, self.workers)
        self._ready: queue.Queue[str] = queue.Queue(maxsize=len(self._cameras))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._started: float | None = None
        self._ended: float | None = None
        self._cpu0 = self._cpu1 = 0.0
        self._engines: list[Engine] = []
        self._interrupted = False
        self._errors: deque[str] = deque(maxlen=100)  # the latest, for the operator

    # -- control -----------------------------------------------------------------------------

    @property
    def pipelines(self) -> list[CameraPipeline]:
        return [c.pipeline for c in self._cameras.values()]

    def stop(self, interrupted: bool = True) -> None:
        """Ask the run to end (from any thread, e.g. on Ctrl-C)."""
        self._interrupted = self._interrupted or interrupted
        self._stop.set()

    def run(self, until: Callable[[], bool] | None = None,
            tick: Callable[[], None] | None = None, tick_interval: float = 0.5) -> Summary:
        """Run to the end and return the summary. ``tick()`` is called from this thread every
        ``tick_interval`` seconds (a live display); ``until()`` returning True ends the run."""
        previous_threads = cv2.getNumThreads()
        if self._cv_threads > 0:
            cv2.setNumThreads(self._cv_threads)
        engines = {id(c.pipeline.engine): c.pipeline.engine for c in self._cameras.values()}
        self._engines = list(engines.values())
        for engine in self._engines:  # e.g. dlib's network to a helper process
            prepare = getattr(engine, "prepare_for_threads", None)
            if prepare is not None:
                prepare()
        self._started = time.monotonic()
        self._cpu0 = self._cpu_now()
        workers = [threading.Thread(target=self._work, name=f"lfr-worker-{i}", daemon=True)
                   for i in range(self.workers)]
        try:
            for worker in workers:
                worker.start()
            for camera in self._cameras.values():
                camera.source.start(self._notify)
            while not self._done.is_set():
                if self._stop.wait(tick_interval if tick else 0.1):
                    break
                if tick is not None:
                    try:
                        tick()
                    except Exception:  # a display glitch must not stop the cameras
                        log.exception("display update failed")
                if until is not None and until():
                    self.stop(interrupted=False)
                if self.max_seconds is not None and self.elapsed >= self.max_seconds:
                    self.stop(interrupted=False)
        except KeyboardInterrupt:
            self.stop(interrupted=True)
        finally:
            self._stop.set()
            _stop_all([c.source for c in self._cameras.values()])
            for worker in workers:
                worker.join()
            self._flush_all()
            self._ended = time.monotonic()
            self._cpu1 = self._cpu_now()
            cv2.setNumThreads(previous_threads)
        return self.summary()

    def _cpu_now(self) -> float:
        """CPU seconds of this process and of its engines' helper processes."""
        helpers = (getattr(e, "helper_cpu_seconds", None) for e in self._engines)
        return time.process_time() + sum(float(h()) for h in helpers if h is not None)

    @property
    def elapsed(self) -> float:
        if self._started is None:
            return 0.0
        return (self._ended or time.monotonic()) - self._started

    # -- scheduling --------------------------------------------------------------------------

    def _notify(self, name: str) -> None:
        camera = self._cameras[name]
        camera.meter.observe(camera.source.status().frames_in)
        self._enqueue(name)

    def _enqueue(self, name: str) -> None:
        camera = self._cameras[name]
        with self._lock:
            if camera.queued or camera.inflight >= self.max_inflight:
                return
            camera.queued = True
        # Never blocks: each camera is in the queue at most once and it holds them all.
        self._ready.put_nowait(name)

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                name = self._ready.get(timeout=0.1)
            except queue.Empty:
                self._check_done()
                continue
            camera = self._cameras[name]
            flush = False
            with self._lock:
                camera.queued = False
                if camera.inflight >= self.max_inflight:
                    continue
                frame = camera.source.take()
                if frame is None:
                    if not (camera.source.finished and camera.inflight == 0
                            and not camera.flushed):
                        continue
                    flush = True
                    ticket, detect = -1, False
                else:
                    ticket = camera.next_ticket
                    camera.next_ticket += 1
                    detect = camera.pipeline.wants_detection(frame)
                camera.inflight += 1
            try:
                if camera.source.has_frame():
                    self._enqueue(name)  # let another worker start on the next frame
                if flush:
                    self._flush(camera)
                elif frame is not None:
                    self._analyse(camera, frame, ticket, detect)
            finally:
                with self._lock:
                    camera.inflight -= 1
                if camera.source.has_frame() or (camera.source.finished
                                                 and not camera.flushed):
                    self._enqueue(name)
                else:
                    self._check_done()

    def _analyse(self, camera: _Camera, frame: Frame, ticket: int, detect: bool) -> None:
        pipeline = camera.pipeline
        try:
            with self._detectors.acquire() as detector:
                detected = pipeline.detect(frame, detect, detector)
        except Exception as exc:  # one camera's failure must not take the others down
            self._error(camera, frame, exc)
            detected = Detected(frame, None, False)
        with camera.turn:
            while camera.next_turn != ticket:
                camera.turn.wait()
        try:
            result = pipeline.advance(detected)
            if self._on_frame is not None:
                try:
                    self._on_frame(pipeline, result)
                except Exception:
                    log.exception("frame callback failed")
        except Exception as exc:
            self._error(camera, frame, exc)
        finally:
            with camera.turn:
                camera.next_turn += 1
                camera.turn.notify_all()

    def _error(self, camera: _Camera, frame: Frame, exc: Exception) -> None:
        log.error("camera %s: frame %d could not be analysed: %s: %s", camera.source.name,
                  frame.index, type(exc).__name__, exc)
        self._errors.append(f"{camera.source.name}: {type(exc).__name__}: {exc}")
        camera.pipeline.stats.add(bad_frames=1)

    def _flush(self, camera: _Camera) -> None:
        """A source has ended: decide its tracks' pending best shots, then forget them."""
        camera.flushed = True
        try:
            camera.pipeline.flush()
        except Exception:
            log.exception("camera %s: flush failed", camera.source.name)

    def _flush_all(self) -> None:
        """After the workers stopped: files read to the end still get a decision on their
        pending best shots; on an interrupt or a time limit they are dropped."""
        for camera in self._cameras.values():
            if camera.flushed:
                continue
            if camera.source.status().state == SourceState.ENDED and not self._interrupted:
                self._flush(camera)
            else:
                camera.flushed = True
                camera.pipeline.tracks.clear()

    def _check_done(self) -> None:
        """End the run when every source has ended and been flushed."""
        pending = []
        with self._lock:
            done = True
            for name, c in self._cameras.items():
                idle = c.inflight == 0 and not c.queued
                if not (c.source.finished and c.flushed and idle):
                    done = False
                    if c.source.finished and not c.flushed and idle:
                        pending.append(name)
        for name in pending:
            self._enqueue(name)
        if done:
            self._done.set()
            self._stop.set()

    # -- figures -----------------------------------------------------------------------------

    def figures(self) -> list[CameraFigures]:
        out = []
        for camera in self._cameras.values():
            status = camera.source.status()
            out.append(camera.pipeline.stats.figures(
                state=str(status.state), fps_in=camera.meter.rate(),
                frames_in=status.frames_in, dropped=status.dropped, corrupt=status.corrupt,
                reconnects=status.reconnects, since=status.since, error=status.error))
        return out

    def states(self) -> dict[str, SourceState]:
        return {name: c.source.status().state for name, c in self._cameras.items()}

    def statuses(self) -> dict[str, SourceStatus]:
        """Each camera's source status: state, since when, last error, counts."""
        return {name: c.source.status() for name, c in self._cameras.items()}

    def summary(self) -> Summary:
        figures = tuple(self.figures())
        return Summary(
            frames=sum(f.frames for f in figures),
            faces=sum(f.faces for f in figures),
            tracks=sum(f.tracks for f in figures),
            embeddings=sum(f.embeddings for f in figures),
            alerts=sum(f.alerts for f in figures),
            alert_updates=sum(f.alert_updates for f in figures),
            dropped_frames=sum(f.dropped for f in figures),
            seconds=self.elapsed,
            cameras=figures,
            interrupted=self._interrupted,
            cpu_seconds=(self._cpu1 or self._cpu_now()) - self._cpu0,
        )

    @property
    def errors(self) -> list[str]:
        return list(self._errors)


def _stop_all(sources: Sequence[FrameSource]) -> None:
    """Stop every source at once: one stuck in FFmpeg must not delay the others' stop."""
    def stop(source: FrameSource) -> None:
        with contextlib.suppress(Exception):
            source.stop()

    threads = [threading.Thread(target=stop, args=(s,), daemon=True) for s in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def close_quietly(sources: Sequence[FrameSource]) -> None:
    _stop_all(sources)
