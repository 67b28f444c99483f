"""The background work of ``openlfr serve``: live runs of deployments and the retention schedule.

:class:`BackgroundJobs` is handed to :func:`openlfr.web.app.create_app` as ``runner``; the app
starts it with the server and stops it (gracefully) on shutdown. It owns

* the **deployment runs**: :meth:`run_deployment` starts a
  :class:`openlfr.governance.live.DeploymentRun` in a background thread (the console's "start"
  calls it after :func:`openlfr.governance.deployments.start`), :meth:`stop_deployment` stops
  one; alerts are passed to every listener added with :meth:`add_alert_listener` (the console's
  live alert stream subscribes here); on :meth:`start` with ``resume=True``, deployments left
  ``running`` by a previous server are resumed;
* the **schedule**: every ``tick`` seconds deployments past their end are ended
  (:func:`openlfr.governance.deployments.end_overdue`) and finished runs are reaped; every
  ``retention_every`` seconds :func:`openlfr.governance.retention.run_retention` runs as
  ``system``.

Each step is guarded: a failing step is logged and retried on the next tick; a module that is
missing disables its step only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from openlfr.governance.authz import SYSTEM_ACTOR, Actor
from openlfr.governance.system import System
from openlfr.store.enums import DeploymentStatus
from openlfr.store.models import Camera, Deployment
from openlfr.video.preview import PreviewFeeds

log = logging.getLogger("openlfr.web.jobs")

AlertListener = Callable[[int, Any], None]


class BackgroundJobs:
    def __init__(self, system: System, *, retention_every: float = 3600.0, tick: float = 30.0,
                 resume: bool = False, preview: bool = False) -> None:
        self.system = system
        #: Serve the privacy-masked live preview of running cameras in the console.
        self.preview = preview
        self.previews: dict[int, PreviewFeeds] = {}  # deployment id → its cameras' feeds
        self.retention_every = retention_every
        self.tick = tick
        self.resume = resume
        self.runs: dict[int, Any] = {}  # deployment id → DeploymentRun
        self.last_retention: float | None = None
        self.last_retention_report: dict[str, Any] | None = None
        self._listeners: list[AlertListener] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        if self.resume:
            self.resume_running()
        self._thread = threading.Thread(target=self._loop, name="lfr-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the schedule and every run (a run stopped without a reason leaves its
        deployment ``running``, to be resumed by the next server)."""
        self._stop.set()
        with self._lock:
            runs = list(self.runs.items())
            feeds = list(self.previews.values())
        for preview in feeds:
            preview.close()
        for dep_id, run in runs:
            try:
                run.stop()
            except Exception:  # pragma: no cover - logged, shutdown goes on
                log.exception("stopping the run of deployment %s", dep_id)
        deadline = time.monotonic() + timeout
        for _, run in runs:
            try:
                run.join(max(0.1, deadline - time.monotonic()))
            except Exception:  # pragma: no cover
                log.exception("waiting for a run")
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()))
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- deployment runs -------------------------------------------------------------------

    def add_alert_listener(self, listener: AlertListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def remove_alert_listener(self, listener: AlertListener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _on_alert(self, alert_id: int, alert: Any) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(alert_id, alert)
            except Exception:
                log.exception("alert listener failed")

    def run_deployment(self, deployment_id: int, actor: Actor, **options: Any) -> Any:
        """Start the live run of a (started) deployment in a background thread."""
        from openlfr.governance.live import DeploymentRun, RunOptions

        with self._lock:
            current = self.runs.get(deployment_id)
            if current is not None and current.running:
                return current
            feeds = self._preview_feeds(deployment_id) if self.preview else None
            run = DeploymentRun(self.system, deployment_id, actor,
                                options=RunOptions(**options) if options else None,
                                on_alert=self._on_alert,
                                on_frame=feeds.publish if feeds is not None else None)
            self.runs[deployment_id] = run
            old = self.previews.pop(deployment_id, None)
            if old is not None:
                old.close()
            if feeds is not None:
                self.previews[deployment_id] = feeds
        run.start()
        return run

    def _preview_feeds(self, deployment_id: int) -> PreviewFeeds:
        with self.system.db.reading() as s:
            names = list(s.scalars(select(Camera.name).where(
                Camera.deployment_id == deployment_id).order_by(Camera.id)))
        return PreviewFeeds(names)

    def preview_feeds(self, deployment_id: int) -> PreviewFeeds | None:
        """The masked preview of a deployment's cameras while it runs here (None otherwise,
        or when the preview is not enabled)."""
        with self._lock:
            run = self.runs.get(deployment_id)
            feeds = self.previews.get(deployment_id)
        if feeds is None or run is None or not run.running:
            return None
        return feeds

    def stop_deployment(self, deployment_id: int, reason: str | None = None,
                        actor: Actor | None = None) -> bool:
        with self._lock:
            run = self.runs.get(deployment_id)
        if run is None:
            return False
        run.stop(reason, actor)
        return True

    def resume_running(self) -> list[int]:
        """Resume the runs of deployments a previous server left ``running``."""
        try:
            with self.system.db.reading() as s:
                ids = list(s.scalars(select(Deployment.id).where(
                    Deployment.status == DeploymentStatus.RUNNING)))
        except Exception:
            log.exception("reading the running deployments")
            return []
        resumed = []
        for dep_id in ids:
            try:
                self.run_deployment(dep_id, SYSTEM_ACTOR)
                resumed.append(dep_id)
            except Exception:
                log.exception("resuming deployment %s", dep_id)
        return resumed

    # -- the schedule ----------------------------------------------------------------------

    def _loop(self) -> None:
        self.step()
        while not self._stop.wait(self.tick):
            self.step()

    def step(self) -> None:
        """One tick: reap finished runs, end overdue deployments, retention when due."""
        with self._lock:
            for dep_id in [d for d, r in self.runs.items() if not r.running]:
                del self.runs[dep_id]
        try:
            from openlfr.governance.deployments import end_overdue
        except ImportError:
            end_overdue = None
        if end_overdue is not None:
            try:
                ended = end_overdue(self.system.db)
                if ended:
                    log.info("ended deployments past their window: %s", ended)
            except Exception:
                log.exception("ending overdue deployments")
        now = time.monotonic()
        if self.last_retention is None or now - self.last_retention >= self.retention_every:
            self.last_retention = now
            self.run_retention()

    def run_retention(self) -> dict[str, Any] | None:
        try:
            from openlfr.governance.retention import run_retention
        except ImportError:
            return None
        try:
            report = run_retention(self.system, SYSTEM_ACTOR)
        except Exception:
            log.exception("retention run failed")
            return None
        data = report.to_dict() if hasattr(report, "to_dict") else {}
        self.last_retention_report = data
        log.info("retention run: %s", "; ".join(report.summary())
                 if hasattr(report, "summary") else "done")
        return data
