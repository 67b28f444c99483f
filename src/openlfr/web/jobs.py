"""The background work of ``openlfr serve``: live runs of deployments and the retention schedule.

:class:`BackgroundJobs` is handed to :func:`openlfr.web.app.create_app` as ``runner``; the app
starts it with the server and stops it (gracefully) on shutdown. It owns

* the **deployment runs**, through a :class:`openlfr.governance.reconcile.Reconciler` ticked
  every ``reconcile_every`` seconds (at most 1 s): a deployment set ``running`` — by the console,
  the API or the CLI of another process — gets a live run
  (:class:`openlfr.governance.live.DeploymentRun` in a background thread), one that is no longer
  running loses it, and watchlist changes reach the running cameras. No route starts a run
  itself. Alerts are passed to every listener added with :meth:`add_alert_listener` (the
  console's live alert stream subscribes here). When the server stops, its runs pause their
  deployments (``the server stopped``); with ``resume=True`` the next server resumes exactly
  those at start. A deployment left ``running`` by a server that crashed is simply
  reconciled: it runs again.
* the **schedule**: every ``tick`` seconds deployments past their end are ended
  (:func:`openlfr.governance.deployments.end_overdue`); every ``retention_every`` seconds
  :func:`openlfr.governance.retention.run_retention` runs as ``system``.

Each step is guarded: a failing step is logged and retried on the next tick.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from openlfr.governance.authz import SYSTEM_ACTOR
from openlfr.governance.system import System
from openlfr.store.enums import DeploymentStatus
from openlfr.store.models import Camera, Deployment
from openlfr.video.preview import PreviewFeeds

log = logging.getLogger("openlfr.web.jobs")

AlertListener = Callable[[int, Any], None]


class BackgroundJobs:
    def __init__(self, system: System, *, retention_every: float = 3600.0, tick: float = 30.0,
                 resume: bool = False, preview: bool = False, reconcile_every: float = 0.5,
                 run_options: dict[str, Any] | None = None) -> None:
        self.system = system
        #: Serve the privacy-masked live preview of running cameras in the console.
        self.preview = preview
        self.previews: dict[int, PreviewFeeds] = {}  # deployment id → its cameras' feeds
        self.retention_every = retention_every
        self.tick = tick
        self.resume = resume
        self.reconcile_every = min(1.0, reconcile_every)
        self.run_options = dict(run_options or {})
        self.runs: dict[int, Any] = {}  # deployment id → DeploymentRun (live or stopping)
        self.last_retention: float | None = None
        self.last_overdue: float | None = None
        self.last_retention_report: dict[str, Any] | None = None
        self._listeners: list[AlertListener] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        from openlfr.governance.reconcile import Reconciler

        self.reconciler = Reconciler(system, self)
        #: The link to the nodes (leases, health, their alerts and events) when a broker is
        #: configured (``OPENLFR_NATS_URL``); None on a single machine.
        self.nodes: Any = None
        if system.settings.nats_url:
            from openlfr.governance.ingest import CentreLink

            self.nodes = CentreLink(system, on_alert=self._on_alert)

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self.reconciler.reopen()
        if self.resume:
            self.resume_paused()
        self._thread = threading.Thread(target=self._loop, name="lfr-jobs", daemon=True)
        self._thread.start()
        if self.nodes is not None:
            self.nodes.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the schedule and every run (each pauses its deployment: ``the server
        stopped``; ``openlfr serve --resume`` resumes them)."""
        from openlfr.governance.live import PAUSE_SERVER_STOPPED

        self._stop.set()
        deadline = time.monotonic() + timeout
        if self.nodes is not None:
            self.nodes.stop(max(0.1, deadline - time.monotonic()))
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()))
            self._thread = None
        with self._lock:
            feeds = list(self.previews.values())
        for preview in feeds:
            preview.close()
        runs = self.reconciler.stop_all(PAUSE_SERVER_STOPPED)
        for run in runs:
            try:
                run.join(max(0.1, deadline - time.monotonic()))
            except Exception:  # pragma: no cover
                log.exception("waiting for a run")

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- deployment runs -------------------------------------------------------------------

    def add_alert_listener(self, listener: AlertListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def _on_alert(self, alert_id: int, alert: Any) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(alert_id, alert)
            except Exception:
                log.exception("alert listener failed")

    def launch(self, deployment_id: int, gallery: Any, names: dict[str, str]) -> Any:
        """The reconciler's launcher: start the live run of a running deployment in a
        background thread (with its first gallery)."""
        from openlfr.governance.live import DeploymentRun, RunOptions, runs_on_nodes_only

        if runs_on_nodes_only(self.system.db, deployment_id):
            gallery.clear()  # the nodes have their own (sealed to them): none is kept here
            nodes_only = OnNodes(self.system, deployment_id)
            with self._lock:
                self.runs[deployment_id] = nodes_only
            return nodes_only
        with self._lock:
            feeds = self._preview_feeds(deployment_id) if self.preview else None
            run = DeploymentRun(self.system, deployment_id, SYSTEM_ACTOR,
                                options=RunOptions(**self.run_options) if self.run_options
                                else None,
                                on_alert=self._on_alert,
                                on_frame=feeds.publish if feeds is not None else None,
                                gallery=(gallery, names))
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
                Camera.deployment_id == deployment_id, Camera.node_id.is_(None))
                .order_by(Camera.id)))
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

    def resume_paused(self) -> list[int]:
        """Resume the deployments the previous server paused when it stopped (and only
        those: one paused because its sources ended or by a person stays paused)."""
        from openlfr.governance import deployments as deps
        from openlfr.governance.live import PAUSE_SERVER_STOPPED

        try:
            with self.system.db.reading() as s:
                ids = list(s.scalars(select(Deployment.id).where(
                    Deployment.status == DeploymentStatus.PAUSED,
                    Deployment.pause_reason == PAUSE_SERVER_STOPPED)))
        except Exception:
            log.exception("reading the paused deployments")
            return []
        resumed = []
        for dep_id in ids:
            try:
                deps.resume(self.system.db, SYSTEM_ACTOR, dep_id)
                resumed.append(dep_id)
            except Exception as exc:
                log.warning("deployment %s was not resumed: %s", dep_id, exc)
        return resumed

    # -- the schedule ----------------------------------------------------------------------

    def _loop(self) -> None:
        self.step()
        while not self._stop.wait(self.reconcile_every):
            self.step()

    def step(self) -> None:
        """One tick: reconcile the runs; end overdue deployments every ``tick`` seconds;
        retention when due."""
        try:
            self.reconcile()
        except Exception:
            log.exception("reconciling the live runs")
        now = time.monotonic()
        if self.last_overdue is None or now - self.last_overdue >= self.tick:
            self.last_overdue = now
            self.end_overdue()
        if self.last_retention is None or now - self.last_retention >= self.retention_every:
            self.last_retention = now
            self.run_retention()

    def reconcile(self) -> Any:
        report = self.reconciler.tick()
        if self.nodes is not None:
            self.sync_nodes()
        owned = self.reconciler.runs
        with self._lock:
            for dep_id in [d for d in self.runs if d not in owned]:
                del self.runs[dep_id]
                feeds = self.previews.pop(dep_id, None)
                if feeds is not None:
                    feeds.close()
        return report

    def sync_nodes(self) -> None:
        """Write each node's desired state when it changed (cheap otherwise: digests are
        compared, nothing is sent)."""
        from openlfr.governance.nodes import sync_desired

        try:
            sync_desired(self.system.db, self.system.keyring, self.system.settings)
        except Exception as exc:
            log.warning("the nodes' desired state was not written (tried again next tick): "
                        "%s", exc)

    def end_overdue(self) -> list[int]:
        from openlfr.governance.deployments import end_overdue

        try:
            ended = end_overdue(self.system.db)
        except Exception:
            log.exception("ending overdue deployments")
            return []
        if ended:
            log.info("ended deployments past their window: %s", ended)
            self.reconcile()
        return ended

    def run_retention(self) -> dict[str, Any] | None:
        from openlfr.governance.retention import run_retention

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


class OnNodes:
    """The reconciler's handle of a running deployment whose cameras all run on nodes: the
    centre opens no camera and keeps no gallery for it (the nodes are told by
    :func:`openlfr.governance.nodes.sync_desired` and hold leases); it is "running" here until
    the reconciler stops it, so that it is not launched again on every tick."""

    def __init__(self, system: System, deployment_id: int) -> None:
        self.system = system
        self.deployment_id = deployment_id
        self._running = True

    @property
    def running(self) -> bool:
        return self._running

    def stop(self, reason: str | None = None, actor: Any = None, *,
             why: str | None = None) -> None:
        self._running = False

    def reload_gallery(self, gallery: Any, names: dict[str, str]) -> tuple[int, int]:
        """The plan changed: if a camera now runs on the centre, end this handle so that the
        reconciler launches a real run."""
        from openlfr.governance.live import runs_on_nodes_only

        gallery.clear()
        if not runs_on_nodes_only(self.system.db, self.deployment_id):
            self._running = False
        return (0, 0)

    def gallery_size(self) -> tuple[int, int]:
        return (0, 0)

    def join(self, timeout: float | None = None) -> None:
        return None
