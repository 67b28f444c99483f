"""A deployment's live run: the video pipeline under the deployment's rules.

:class:`DeploymentRun` runs :class:`openlfr.video.runner.Runner` over the deployment's cameras,
with the gallery of its approved watchlists (decrypted in memory only), its threshold and model,
and an :class:`openlfr.governance.alerts.AlertRecorder` as the alert sink: an alert is stored
(encrypted, audited, committed) *before* ``on_alert`` shows it to anyone.

A run does not decide whether it should exist: :mod:`openlfr.governance.reconcile` starts it
when the deployment is ``running`` (inside its window), stops it when it no longer is, and
swaps its gallery (:meth:`DeploymentRun.reload_gallery`) when its watchlists change. A run never
changes the deployment to ``running`` itself.

* It runs **only while the deployment is running, inside the window**: otherwise
  :meth:`DeploymentRun.run` refuses before any camera is opened.
* It **stops by itself at the planned end**: the deployment is then ended by the program
  (``system``, ``deployment.end`` audited with the per-camera counts).
* It also stops when the deployment is ended or paused elsewhere, or stopped here with a
  reason (:meth:`stop`, which ends the deployment). A run that stops without ending the
  deployment (Ctrl-C, files read to their end, a time limit, the server stopping) leaves it
  ``paused`` (:func:`openlfr.governance.deployments.pause`, audited with the counts).
* Per-camera **counts only** (frames, faces seen, tracks, dropped frames, seconds spent
  analysing) and each camera's **state** (connecting, running, reconnecting since when with its
  last error, ended) are written to ``camera_stats`` whenever a state changes and every
  ``flush_interval`` seconds, so any process can show them; counts add up over the runs.

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
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from openlfr.audit import log as audit_log
from openlfr.errors import OpenLFRError
from openlfr.governance import deployments as deps
from openlfr.governance.authz import SYSTEM_ACTOR, Actor, NotFound, Perm, RuleError, require
from openlfr.governance.system import System
from openlfr.redact import redact_text
from openlfr.store.enums import DeploymentStatus
from openlfr.store.models import CameraStats, Deployment, utcnow
from openlfr.video.bestshot import ShotPolicy
from openlfr.video.galleryslot import GallerySlot
from openlfr.video.pipeline import CameraPipeline, PipelineConfig
from openlfr.video.runner import FrameCallback, Runner, Summary, close_quietly
from openlfr.video.sources import CaptureSource, SourceState, open_sources
from openlfr.video.stats import CameraFigures
from openlfr.video.types import Alert
from openlfr.video.zones import CameraZones

if TYPE_CHECKING:
    from openlfr.store.db import Database
    from openlfr.watchlist.gallery import Gallery

log = logging.getLogger("openlfr.governance.live")

Clock = Callable[[], datetime]
OnAlert = Callable[[int, Alert], None]

#: Detections per second per camera (as ``openlfr watch``).
DEFAULT_DETECT_FPS = 15.0

#: Why a run paused its deployment (``Deployment.pause_reason``).
PAUSE_INTERRUPTED = "interrupted"
PAUSE_TIME_LIMIT = "time limit"
PAUSE_SOURCES_ENDED = "the camera sources ended"
PAUSE_SERVER_STOPPED = "the server stopped"

@dataclass(frozen=True)
class RunOptions:
    """How the cameras are read and analysed (the rules come from the deployment)."""

    realtime: bool = False
    loop: bool = False
    detect_fps: float = DEFAULT_DETECT_FPS
    detect_max_side: int = 640
    tiling: str = "off"  # small faces in large frames: see PipelineConfig
    full_scan_every: int = 15
    motion_gate: bool = False  # cheaper cameras: see PipelineConfig
    roi_every: int = 1
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
    paused: bool  # the run paused the deployment (``pause_reason`` says why)
    pause_reason: str | None
    counts: dict[str, dict[str, Any]]

    def as_event(self) -> dict[str, object]:
        event = self.summary.as_event()
        event.update(deployment=self.deployment_id, deployment_ended=self.ended,
                     end_reason=self.end_reason, deployment_paused=self.paused,
                     pause_reason=self.pause_reason)
        return event


class DeploymentRun:
    """One run of one deployment (see the module). Not reusable: one :meth:`run` per object."""

    def __init__(self, system: System, deployment_id: int, actor: Actor, *,
                 options: RunOptions | None = None, clock: Clock = utcnow,
                 on_alert: OnAlert | None = None,
                 on_frame: FrameCallback | None = None,
                 on_start: Callable[[DeploymentRun], None] | None = None,
                 tick: Callable[[], None] | None = None,
                 gallery: tuple[Gallery, dict[str, str]] | None = None) -> None:
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
        self._zones: dict[str, CameraZones] = {}
        self._base: dict[str, dict[str, Any]] = {}
        self._last_flush = 0.0
        self._last_status = 0.0
        self._ended_elsewhere = False
        self._window_over = False
        self._active = False
        self._pause_why: str | None = None
        self._recorder: Any = None
        self._gallery = GallerySlot(*gallery) if gallery is not None else GallerySlot()
        self._live_seconds: dict[str, float] = {}
        self._last_live_tick: float | None = None
        self._seen: dict[str, tuple[str, float, str | None]] = {}  # state, since, error
        self.names: dict[str, str] = dict(gallery[1]) if gallery is not None else {}

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

    def stop(self, reason: str | None = None, actor: Actor | None = None, *,
             why: str | None = None) -> None:
        """Ask the run to end. With a ``reason`` the deployment is ended too (by ``actor``,
        who needs ``deployment.run``; checked now); without one it is paused, ``why`` saying
        why (default: interrupted) — unless it is no longer running anyway."""
        if why is not None and self._pause_why is None:
            self._pause_why = why
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

    @property
    def alerts_refused(self) -> int:
        """Matches not stored because their subject had left the deployment's watchlists."""
        return int(getattr(self._recorder, "refused", 0))

    def figures(self) -> list[CameraFigures]:
        return self._runner.figures() if self._runner is not None else []

    def states(self) -> dict[str, SourceState]:
        return self._runner.states() if self._runner is not None else {}

    @property
    def runner(self) -> Runner | None:
        return self._runner

    # -- the gallery -------------------------------------------------------------------------

    def gallery_size(self) -> tuple[int, int]:
        """(subjects, templates) of the gallery searched now."""
        return self._gallery.size()

    def reload_gallery(self, gallery: Gallery, names: dict[str, str]) -> tuple[int, int]:
        """Search ``gallery`` from now on, in every camera (:meth:`GallerySlot.replace`).
        Returns the old (subjects, templates)."""
        self.names = dict(names)
        return self._gallery.replace(gallery, names)

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
            if dep.status != DeploymentStatus.RUNNING:
                raise RuleError(f"deployment {dep.id} is {dep.status.value}: only a running "
                                "deployment has a live run (start it first)")
            window = deps.window_problem(dep, now)
            if window:
                raise RuleError(f"refused: {window}; no camera was opened")
            self._zones = deps.camera_zones(dep)  # the plan's zones and masks, per camera
            # a camera that names a node is run by that node, never opened here
            local = {c.name for c in dep.cameras if c.node_id is None}
            if not local and dep.cameras:
                raise RuleError(f"every camera of deployment {dep.id} runs on a node: none is "
                                "opened by the centre")
            sources = deps.camera_sources(s, self.system.keyring, dep, local)
            return (dep.model_id, sources, dep.threshold,
                    [wl.id for wl in dep.watchlists], dep.planned_end)

    def _failed(self, cameras: list[tuple[str, str]], exc: BaseException) -> None:
        """A run that could not start: its cameras say so (for the console)."""
        try:
            now = utcnow()
            error = redact_text(f"{type(exc).__name__}: {exc}" if not isinstance(
                exc, OpenLFRError | ValueError) else str(exc))
            with self.system.db.session() as s:
                rows = {r.camera: r for r in s.scalars(select(CameraStats).where(
                    CameraStats.deployment_id == self.deployment_id)).all()}
                for name, _source in cameras:
                    row = rows.get(name)
                    if row is None:
                        row = CameraStats(deployment_id=self.deployment_id, camera=name,
                                          frames=0, faces_seen=0, tracks=0, dropped=0,
                                          seconds=0.0)
                        s.add(row)
                    row.state, row.state_since, row.last_error = "failed", now, error
                    row.updated_at = now
        except Exception:  # pragma: no cover - only a display
            log.exception("deployment %d: camera states not written", self.deployment_id)

    def run(self) -> RunResult:
        """Check, open, start, run until the window ends (or a stop), record, return."""
        self._active = True
        try:
            return self._run()
        finally:
            self._active = False

    def _run(self) -> RunResult:
        from openlfr.governance.alerts import AlertRecorder
        from openlfr.governance.models import engine_for

        if self._stop.is_set():
            raise RuleError("the run was stopped before it started")
        model_id, cameras, threshold, _watchlists, planned_end = self._check()
        self._planned_end = planned_end
        try:
            engine = engine_for(self.system.db, model_id, self.system.settings.data_dir)
            if engine.model_id != model_id:
                raise RuleError(f"deployment {self.deployment_id} uses model {model_id!r}; "
                                f"this openlfr makes {engine.model_id!r}")
            def load() -> tuple[Gallery, dict[str, str]]:
                from openlfr.governance.reconcile import desired_gallery

                with self.system.db.reading() as s:
                    return desired_gallery(s, self.system.keyring, self.deployment_id)
            self.names = dict(self._gallery.fill(load)[1])
            opt = self.options
            config = PipelineConfig(threshold=threshold, detect_fps=opt.detect_fps,
                                    detect_max_side=opt.detect_max_side,
                                    shots=ShotPolicy(max_embeddings=opt.max_embeddings),
                                    tiling=opt.tiling, full_scan_every=opt.full_scan_every,
                                    motion_gate=opt.motion_gate, roi_every=opt.roi_every)
            recorder = AlertRecorder(self.system, self.deployment_id, on_stored=self._stored)
            self._recorder = recorder
            self._sources = open_sources([f"{name}={source}" for name, source in cameras],
                                         realtime=opt.realtime, loop=opt.loop)
        except BaseException as exc:
            self._failed(cameras, exc)
            raise
        try:
            pipelines = self._gallery.attach(lambda gallery, names: [
                (src, CameraPipeline(src.name, engine, gallery, config, recorder, fps=src.fps,
                                     names=names, zones=self._zones.get(src.name)))
                for src in self._sources])
            runner = Runner(pipelines, workers=opt.workers, max_seconds=opt.max_seconds,
                            on_frame=self.on_frame)
            self._base = self._load_base()
        except BaseException as exc:
            close_quietly(self._sources)
            self._failed(cameras, exc)
            raise
        self._runner = runner
        if self._stop.is_set():  # stopped while opening
            runner.stop(interrupted=self._stop_reason is None)
        if self.on_start is not None:
            self.on_start(self)
        self._last_flush = self._last_status = time.monotonic()
        self._last_live_tick = time.monotonic()
        self._flush_safely()
        try:
            summary = runner.run(until=self._until, tick=self._tick, tick_interval=0.25)
        finally:
            self._count_live()
            counts = self._flush_stats()
            self._gallery.empty()  # the templates leave memory with the run
        return self._finish(summary, counts)

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
                log.info("deployment %d is now %s: stopping its cameras",
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
        self._count_live()
        if (self._states_changed()
                or time.monotonic() - self._last_flush >= self.options.flush_interval):
            self._flush_safely()

    def _flush_safely(self) -> None:
        try:
            self._flush_stats()
        except Exception as exc:  # counts are retried at the next flush and at the end
            log.warning("deployment %d: camera counts not written: %s",
                        self.deployment_id, exc)

    def _count_live(self) -> None:
        """Add the time since the last call to each camera that is delivering frames (the
        public hours are time spent analysing, not time since the start)."""
        runner = self._runner
        now = time.monotonic()
        last, self._last_live_tick = self._last_live_tick, now
        if runner is None or last is None:
            return
        for name, state in runner.states().items():
            if state == SourceState.RUNNING:
                self._live_seconds[name] = self._live_seconds.get(name, 0.0) + (now - last)

    def _camera_states(self) -> dict[str, tuple[str, float, str | None]]:
        """Per camera: state, since (epoch seconds), last error (credentials removed)."""
        out = {}
        for source in self._sources:
            status = source.status()
            state = str(status.state)
            previous = self._seen.get(source.name)
            since = getattr(status, "since", None)
            if not isinstance(since, int | float):
                since = previous[1] if previous is not None and previous[0] == state \
                    else time.time()
            error = redact_text(status.error) if status.error else None
            out[source.name] = (state, float(since), error)
        return out

    def _states_changed(self) -> bool:
        current = self._camera_states()
        return any(self._seen.get(k, (None,))[0] != v[0] or self._seen[k][2] != v[2]
                   for k, v in current.items())

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
        """Per camera, this deployment's counts so far (earlier runs included); ``seconds`` is
        the time the camera was delivering frames to the analysis."""
        runner = self._runner
        if runner is None:
            return {}
        out = {}
        for f in runner.figures():
            base = self._base.get(f.camera, {})
            out[f.camera] = {
                "frames": int(base.get("frames", 0)) + f.frames,
                "faces_seen": int(base.get("faces_seen", 0)) + f.faces,
                "tracks": int(base.get("tracks", 0)) + f.tracks,
                "dropped": int(base.get("dropped", 0)) + f.dropped,
                "seconds": float(base.get("seconds", 0.0))
                + self._live_seconds.get(f.camera, 0.0),
            }
        return out

    def _flush_stats(self) -> dict[str, dict[str, Any]]:
        counts = self.counts()
        states = self._camera_states()
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
                if camera in states:
                    state, since, error = states[camera]
                    row.state = state
                    row.state_since = datetime.fromtimestamp(since, UTC)
                    row.last_error = error
        self._seen.update(states)
        return counts

    @staticmethod
    def audit_counts(counts: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Counts as the audit log takes them (seconds as a decimal string)."""
        return {cam: {**c, "seconds": audit_log.fmt_float(c["seconds"], 1)}
                for cam, c in counts.items()}

    def _finish(self, summary: Summary, counts: dict[str, dict[str, Any]]) -> RunResult:
        db = self.system.db
        now = self.clock()
        ended, reason, paused, why = False, None, False, None
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
            why = (self._pause_why if self._pause_why is not None else
                   PAUSE_INTERRUPTED if summary.interrupted else
                   PAUSE_TIME_LIMIT if self.options.max_seconds is not None
                   and summary.seconds >= self.options.max_seconds else
                   PAUSE_SOURCES_ENDED)
            paused = deps.pause(db, self.actor, self.deployment_id, why, now=now,
                                counts=audit_counts, alerts_refused=self.alerts_refused)
            if not paused:
                why = None
        return RunResult(self.deployment_id, summary, ended, reason, paused, why, counts)

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


def runs_on_nodes_only(db: Database, deployment_id: int) -> bool:
    """Whether every camera of the deployment names a node (so the centre opens none)."""
    from openlfr.store.models import Camera

    with db.reading() as s:
        nodes = {node_id is not None for node_id in s.scalars(
            select(Camera.node_id).where(Camera.deployment_id == deployment_id))}
    return nodes == {True}


#: A running deployment whose cameras reported this recently is taken to run somewhere else.
RUNNING_ELSEWHERE_S = 15.0


def running_elsewhere(db: Database, deployment_id: int) -> float | None:
    """Seconds since a running deployment's cameras last reported, if that is recent (another
    process runs it); None otherwise."""
    with db.reading() as s:
        dep = s.get(Deployment, deployment_id)
        if dep is None or dep.status != DeploymentStatus.RUNNING:
            return None
        last = s.scalar(select(func.max(CameraStats.updated_at)).where(
            CameraStats.deployment_id == deployment_id))
    if last is None:
        return None
    if last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    age = (utcnow() - last).total_seconds()
    return age if age < RUNNING_ELSEWHERE_S else None
