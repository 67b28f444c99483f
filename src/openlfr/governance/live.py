"""A deployment's live run: the video pipeline under the deployment's rules.

:class:`DeploymentRun` runs :class:`openlfr.video.runner.Runner` over the deployment's cameras,
with the gallery of its approved watchlists (decrypted in memory only,
:func:`openlfr.governance.watchlists.deployment_gallery`), its threshold and model, and an
:class:`openlfr.governance.alerts.AlertRecorder` as the alert sink: an alert is stored
(encrypted, audited, committed) *before* ``on_alert`` shows it to anyone.

* It runs **only inside the window**: outside it, :meth:`DeploymentRun.run` refuses before any
  camera is opened (no frame is read, let alone processed).
* It **stops by itself at the planned end**: the deployment is then ended by the program
  (``system``, ``deployment.end`` audited with the per-camera counts).
* It also stops when the deployment is ended elsewhere (``openlfr deployment stop``, the
  retention runner) or stopped here with a reason (:meth:`stop`). A run that stops without
  ending the deployment (Ctrl-C, files read to their end, a time limit) leaves it ``running``,
  to be resumed, and audits ``deployment.pause`` with the counts.
* Per-camera **counts only** (frames, faces seen, tracks, dropped frames, seconds) are written
  to ``camera_stats`` every ``flush_interval`` seconds and at the end; they add up over the
  runs of a deployment.

For ``openlfr serve``: :meth:`start` runs it in a background thread, :meth:`stop` asks it to
end, :meth:`join` waits for the result; :meth:`figures` and :meth:`states` report camera health
from any thread. ``clock`` (aware UTC ``datetime``) is injectable so tests can place windows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from openlfr.audit import log as audit_log
from openlfr.governance import deployments as deps
from openlfr.governance.authz import SYSTEM_ACTOR, Actor, NotFound, Perm, RuleError, require
from openlfr.governance.system import System
from openlfr.store.enums import DeploymentStatus
from openlfr.store.models import CameraStats, Deployment, utcnow
from openlfr.video.bestshot import ShotPolicy
from openlfr.video.pipeline import CameraPipeline, PipelineConfig
from openlfr.video.runner import FrameCallback, Runner, Summary, close_quietly
from openlfr.video.sources import CaptureSource, SourceState, open_sources
from openlfr.video.stats import CameraFigures
from openlfr.video.types import Alert

log = logging.getLogger("openlfr.governance.live")

Clock = Callable[[], datetime]
OnAlert = Callable[[int, Alert], None]

#: Detections per second per camera (as ``openlfr watch``).
DEFAULT_DETECT_FPS = 15.0


@dataclass(frozen=True)
class RunOptions:
    """How the cameras are read and analysed (the rules come from the deployment)."""

    realtime: bool = False
    loop: bool = False
    detect_fps: float = DEFAULT_DETECT_FPS
    detect_max_side: int = 640
    workers: int | None = None
    max_embeddings: int = 3
    max_seconds: float | None = None
    flush_interval: float = 5.0
    status_interval: float = 2.0


@dataclass(frozen=True)
class RunResult:
    deployment_id: int
    summary: Summary
    ended: bool  # the deployment is ended (by its window, or a stop with a reason)
    end_reason: str | None
    resumed: bool
    counts: dict[str, dict[str, Any]]

    def as_event(self) -> dict[str, object]:
        event = self.summary.as_event()
        event.update(deployment=self.deployment_id, deployment_ended=self.ended,
                     end_reason=self.end_reason, resumed=self.resumed)
        return event


class DeploymentRun:
    """One run of one deployment (see the module). Not reusable: one :meth:`run` per object."""

    def __init__(self, system: System, deployment_id: int, actor: Actor, *,
                 options: RunOptions | None = None, clock: Clock = utcnow,
                 on_alert: OnAlert | None = None,
                 on_frame: FrameCallback | None = None,
                 on_start: Callable[[DeploymentRun], None] | None = None,
                 tick: Callable[[], None] | None = None) -> None:
        self.system = system
        self.deployment_id = deployment_id
        self.actor = actor
        self.options = options or RunOptions()
        self.clock = clock
        self.on_alert = on_alert
        self.on_frame = on_frame
        self.on_start = on_start
        self._tick_fn = tick
        self._runner: Runner | None = None
        self._sources: list[CaptureSource] = []
        self._stop = threading.Event()
        self._stop_reason: str | None = None
        self._stop_actor: Actor | None = None
        self._thread: threading.Thread | None = None
        self._result: RunResult | None = None
        self._error: BaseException | None = None
        self._planned_end: datetime | None = None
        self._base: dict[str, dict[str, Any]] = {}
        self._last_flush = 0.0
        self._last_status = 0.0
        self._ended_elsewhere = False
        self._window_over = False
        self._active = False
        self.names: dict[str, str] = {}

    # -- control (any thread) ----------------------------------------------------------------

    def start(self) -> None:
        """Run in a background thread (``openlfr serve``); see :meth:`join`."""
        if self._thread is not None:
            raise RuntimeError("this run has already been started")
        self._thread = threading.Thread(target=self._background,
                                        name=f"lfr-deployment-{self.deployment_id}",
                                        daemon=True)
        self._thread.start()

    def _background(self) -> None:
        try:
            self._result = self.run()
        except BaseException as exc:  # kept for join(); the thread must not die silently
            log.error("deployment %d: the run failed: %s", self.deployment_id, exc)
            self._error = exc

    def join(self, timeout: float | None = None) -> RunResult | None:
        """Wait for a background run; its result (None if still running). A run that failed
        raises its error here."""
        if self._thread is None:
            return self._result
        self._thread.join(timeout)
        if self._thread.is_alive():
            return None
        if self._error is not None:
            raise self._error
        return self._result

    def stop(self, reason: str | None = None, actor: Actor | None = None) -> None:
        """Ask the run to end. With a ``reason`` the deployment is ended too (by ``actor``,
        who needs ``deployment.run``; checked now); without one it is only paused."""
        if reason is not None:
            if not reason.strip():
                raise RuleError("stopping a deployment needs a reason")
            who = actor or self.actor
            require(self.system.db, who, Perm.DEPLOYMENT_RUN, "deployment",
                    str(self.deployment_id))
            self._stop_reason, self._stop_actor = reason.strip(), who
        self._stop.set()
        if self._runner is not None:
            self._runner.stop(interrupted=reason is None)

    @property
    def running(self) -> bool:
        """True from :meth:`start` (or the call of :meth:`run`) until the run has finished,
        including while the cameras are being opened."""
        if self._thread is not None:
            return self._thread.is_alive()
        return self._active

    def figures(self) -> list[CameraFigures]:
        return self._runner.figures() if self._runner is not None else []

    def states(self) -> dict[str, SourceState]:
        return self._runner.states() if self._runner is not None else {}

    @property
    def runner(self) -> Runner | None:
        return self._runner

    @property
    def sources(self) -> list[CaptureSource]:
        return list(self._sources)

    # -- the run -----------------------------------------------------------------------------

    def _check(self) -> tuple[str, list[tuple[str, str]], float, list[int], datetime]:
        """The deployment's rules at ``clock()``, before anything is opened."""
        require(self.system.db, self.actor, Perm.DEPLOYMENT_RUN, "deployment",
                str(self.deployment_id))
        now = self.clock()
        with self.system.db.reading() as s:
            dep = s.get(Deployment, self.deployment_id)
            if dep is None:
                raise NotFound(f"deployment {self.deployment_id} does not exist")
            if dep.status not in (DeploymentStatus.AUTHORISED, DeploymentStatus.RUNNING):
                raise RuleError(f"deployment {dep.id} is {dep.status.value}: only an authorised "
                                "deployment can run")
            window = deps.window_problem(dep, now)
            if window:
                raise RuleError(f"refused: {window}; no camera was opened")
            return (dep.model_id, deps.camera_sources(s, self.system.keyring, dep), dep.threshold,
                    [wl.id for wl in dep.watchlists], dep.planned_end)

    def run(self) -> RunResult:
        """Check, open, start, run until the window ends (or a stop), record, return."""
        self._active = True
        try:
            return self._run()
        finally:
            self._active = False

    def _run(self) -> RunResult:
        from openlfr.governance.alerts import AlertRecorder
        from openlfr.governance.watchlists import deployment_gallery
        from openlfr.vision.engine import get_engine, model_id_backend

        if self._stop.is_set():
            raise RuleError("the run was stopped before it started")
        model_id, cameras, threshold, watchlist_ids, planned_end = self._check()
        self._planned_end = planned_end
        engine = get_engine(model_id_backend(model_id))
        if engine.model_id != model_id:
            raise RuleError(f"deployment {self.deployment_id} uses model {model_id!r}; this "
                            f"openlfr makes {engine.model_id!r}")
        with self.system.db.reading() as s:
            gallery, names = deployment_gallery(s, self.system.keyring, watchlist_ids)
        self.names = names
        opt = self.options
        config = PipelineConfig(threshold=threshold, detect_fps=opt.detect_fps,
                                detect_max_side=opt.detect_max_side,
                                shots=ShotPolicy(max_embeddings=opt.max_embeddings))
        recorder = AlertRecorder(self.system, self.deployment_id, on_stored=self._stored)
        # Opening a stream may take seconds: check the window again afterwards (start does).
        self._sources = open_sources([f"{name}={source}" for name, source in cameras],
                                     realtime=opt.realtime, loop=opt.loop)
        try:
            pipelines = [(src, CameraPipeline(src.name, engine, gallery, config, recorder,
                                              fps=src.fps, names=names))
                         for src in self._sources]
            runner = Runner(pipelines, workers=opt.workers, max_seconds=opt.max_seconds,
                            on_frame=self.on_frame)
            resumed = deps.start(self.system.db, self.actor, self.deployment_id,
                                 now=self.clock())
            self._base = self._load_base()
        except BaseException:
            close_quietly(self._sources)
            raise
        self._runner = runner
        if self._stop.is_set():  # stopped while opening
            runner.stop(interrupted=self._stop_reason is None)
        if self.on_start is not None:
            self.on_start(self)
        self._last_flush = self._last_status = time.monotonic()
        try:
            summary = runner.run(until=self._until, tick=self._tick, tick_interval=0.25)
        finally:
            counts = self._flush_stats()
        return self._finish(summary, counts, resumed)

    def _stored(self, row_id: int, alert: Alert) -> None:
        if self.on_alert is not None:
            self.on_alert(row_id, alert)

    def _until(self) -> bool:
        if self._stop.is_set():
            return True
        if self._planned_end is not None and self.clock() >= self._planned_end:
            self._window_over = True
            return True
        mono = time.monotonic()
        if mono - self._last_status >= self.options.status_interval:
            self._last_status = mono
            try:
                with self.system.db.reading() as s:
                    status = s.scalar(select(Deployment.status).where(
                        Deployment.id == self.deployment_id))
            except Exception as exc:  # a busy database must not stop the cameras
                log.warning("deployment %d: status check failed: %s", self.deployment_id, exc)
                return False
            if status != DeploymentStatus.RUNNING:
                log.warning("deployment %d is now %s: stopping its cameras",
                            self.deployment_id, status)
                self._ended_elsewhere = True
                return True
        return False

    def _tick(self) -> None:
        if self._tick_fn is not None:
            try:
                self._tick_fn()
            except Exception:
                log.exception("tick failed")
        if time.monotonic() - self._last_flush >= self.options.flush_interval:
            try:
                self._flush_stats()
            except Exception as exc:  # counts are retried at the next flush and at the end
                log.warning("deployment %d: camera counts not written: %s",
                            self.deployment_id, exc)

    # -- counts ------------------------------------------------------------------------------

    def _load_base(self) -> dict[str, dict[str, Any]]:
        """The counts of earlier runs of this deployment (they add up)."""
        with self.system.db.reading() as s:
            rows = s.scalars(select(CameraStats).where(
                CameraStats.deployment_id == self.deployment_id)).all()
            return {r.camera: {"frames": r.frames, "faces_seen": r.faces_seen,
                               "tracks": r.tracks, "dropped": r.dropped, "seconds": r.seconds}
                    for r in rows}

    def counts(self) -> dict[str, dict[str, Any]]:
        """Per camera, this deployment's counts so far (earlier runs included)."""
        runner = self._runner
        if runner is None:
            return {}
        elapsed = runner.elapsed
        out = {}
        for f in runner.figures():
            base = self._base.get(f.camera, {})
            out[f.camera] = {
                "frames": int(base.get("frames", 0)) + f.frames,
                "faces_seen": int(base.get("faces_seen", 0)) + f.faces,
                "tracks": int(base.get("tracks", 0)) + f.tracks,
                "dropped": int(base.get("dropped", 0)) + f.dropped,
                "seconds": float(base.get("seconds", 0.0)) + elapsed,
            }
        return out

    def _flush_stats(self) -> dict[str, dict[str, Any]]:
        counts = self.counts()
        self._last_flush = time.monotonic()
        if not counts:
            return counts
        with self.system.db.session() as s:
            rows = {r.camera: r for r in s.scalars(select(CameraStats).where(
                CameraStats.deployment_id == self.deployment_id)).all()}
            for camera, c in counts.items():
                row = rows.get(camera)
                if row is None:
                    row = CameraStats(deployment_id=self.deployment_id, camera=camera)
                    s.add(row)
                row.frames, row.faces_seen = c["frames"], c["faces_seen"]
                row.tracks, row.dropped, row.seconds = c["tracks"], c["dropped"], c["seconds"]
                row.updated_at = utcnow()
        return counts

    @staticmethod
    def audit_counts(counts: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Counts as the audit log takes them (seconds as a decimal string)."""
        return {cam: {**c, "seconds": audit_log.fmt_float(c["seconds"], 1)}
                for cam, c in counts.items()}

    def _finish(self, summary: Summary, counts: dict[str, dict[str, Any]],
                resumed: bool) -> RunResult:
        db = self.system.db
        now = self.clock()
        ended, reason = False, None
        audit_counts = self.audit_counts(counts)
        with db.reading() as s:
            status = s.scalar(select(Deployment.status).where(
                Deployment.id == self.deployment_id))
        if status == DeploymentStatus.ENDED:
            ended, reason = True, "ended elsewhere"
            with db.reading() as s:
                dep = s.get(Deployment, self.deployment_id)
                reason = dep.end_reason if dep is not None else reason
            with db.session() as s:  # the counts of this run still go on record
                audit_log.record(s, SYSTEM_ACTOR.name, "deployment.run_end", "deployment",
                                 self.deployment_id, {"reason": "the deployment had ended",
                                                      "cameras": audit_counts})
        elif self._window_over or (self._planned_end is not None
                                   and now >= self._planned_end):
            reason = self._end(SYSTEM_ACTOR, deps.END_OF_WINDOW, now, audit_counts)
            ended = True
        elif self._stop_reason is not None:
            reason = self._end(self._stop_actor or self.actor, self._stop_reason, now,
                               audit_counts)
            ended = True
        else:
            why = ("interrupted" if summary.interrupted else
                   "time limit" if self.options.max_seconds is not None
                   and summary.seconds >= self.options.max_seconds else
                   "the camera sources ended")
            with db.session() as s:
                audit_log.record(s, self.actor.name, "deployment.pause", "deployment",
                                 self.deployment_id, {"reason": why, "at": now.isoformat(),
                                                      "cameras": audit_counts})
        return RunResult(self.deployment_id, summary, ended, reason, resumed, counts)

    def _end(self, actor: Actor, reason: str, now: datetime,
             counts: dict[str, dict[str, Any]]) -> str:
        """End the deployment; if something else (the retention runner, a person) ended it
        a moment before, that end stands. Returns the end reason on record."""
        try:
            deps.stop(self.system.db, actor, self.deployment_id, reason, now=now,
                      counts=counts)
        except RuleError:
            with self.system.db.reading() as s:
                dep = s.get(Deployment, self.deployment_id)
                if dep is None or dep.status != DeploymentStatus.ENDED:
                    raise
                return dep.end_reason or reason
        return reason
