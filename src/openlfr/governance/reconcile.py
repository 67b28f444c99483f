"""Desired state, reconciled: the one place that decides which live runs exist and what they
search.

The database says what should run: deployments that are ``running`` and inside their window,
with their cameras and the approved watchlists attached to them (their enrolled, unexpired
subjects). :class:`Reconciler` makes the runs it owns match that, one :meth:`Reconciler.tick`
at a time:

* a deployment that should run and has no live run gets one (through its :class:`Launcher`);
  a run that failed to start is tried again after ``retry_after`` seconds (doubling, at most
  ``retry_max``);
* a run whose deployment should no longer run (stopped, ended, paused, out of its window) is
  asked to stop (it records the pause or the end itself, see
  :mod:`openlfr.governance.live`);
* an urgent use (:mod:`openlfr.governance.urgent`) not authorised by its deadline is ended
  and its results deleted at the start of each tick, and never runs past its deadline;
* a run whose desired gallery changed — a subject removed or expired, a watchlist back to
  draft, destroyed, taken off or (re)approved — gets the new gallery, decrypted in memory, and
  the old one is overwritten; each reload is audited (``deployment.gallery_reload``) with
  counts only.

Whether a gallery changed is decided by a cheap fingerprint (one aggregate query for all the
deployments: per attached watchlist its status, approval time, and the count, sum and maximum
of the ids of its unexpired subjects' images), so a tick costs two small queries when nothing
changed. The reconciler holds no thread and no policy of its own about when to tick: ``openlfr
serve`` ticks it every half second (:mod:`openlfr.web.jobs`), ``openlfr watch --deployment``
in its own loop.

Where the desired state comes from is a :class:`DesiredSource`: which deployments should run
now (each with the fingerprint of its desired gallery), the gallery of one, and what to do
before each tick and after each reload. :class:`DatabaseSource` is the database's (above: the
urgent-use expiry before each tick, each reload audited); a node of a centre
(:mod:`openlfr.nodes.agent`) reconciles the same way from the desired state document the
centre sends it. Within a tick, runs are stopped first, then galleries reloaded, and only then
new runs started (revocations before anything is matched again).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from openlfr.audit import log as audit_log
from openlfr.governance.authz import SYSTEM_ACTOR, NotFound
from openlfr.governance.system import System
from openlfr.store.crypto import Keyring
from openlfr.store.enums import DeploymentStatus, WatchlistStatus
from openlfr.store.models import (
    Deployment,
    Subject,
    SubjectImage,
    Watchlist,
    deployment_watchlists,
    utcnow,
)
from openlfr.watchlist.gallery import Gallery

log = logging.getLogger("openlfr.governance.reconcile")

Clock = Callable[[], datetime]
#: Per attached watchlist: (id, status, model, approved_at, images, sum of ids, max id).
Fingerprint = tuple[tuple[Any, ...], ...]


class RunHandle(Protocol):
    """What the reconciler needs of a live run."""

    @property
    def running(self) -> bool: ...

    def stop(self, reason: str | None = None, actor: Any = None, *,
             why: str | None = None) -> None: ...

    def reload_gallery(self, gallery: Gallery, names: dict[str, str]) -> tuple[int, int]: ...

    def gallery_size(self) -> tuple[int, int]: ...

    def join(self, timeout: float | None = None) -> object:
        """Wait (at most ``timeout`` s) for the run to end."""
        ...


class Launcher(Protocol):
    """Starts a live run of a deployment with its first gallery (and returns at once)."""

    def launch(self, deployment_id: int, gallery: Gallery,
               names: dict[str, str]) -> RunHandle: ...


class DesiredSource(Protocol):
    """Where a :class:`Reconciler`'s desired state comes from. A fingerprint is any value that
    compares equal when a deployment's desired gallery has not changed."""

    def wanted(self, now: datetime) -> dict[int, Any]:
        """The deployments that should run now (in id order), each with its gallery's
        fingerprint."""
        ...

    def gallery(self, deployment_id: int, now: datetime
                ) -> tuple[Gallery, dict[str, str], Any]:
        """The desired gallery of one deployment (a new object: the run owns it and clears it
        when it is replaced), its display names and its fingerprint."""
        ...

    def empty_gallery(self, deployment_id: int) -> Gallery | None:
        """An empty gallery of the deployment's model (None: the model is not known)."""
        ...

    def reason(self, before: Any, after: Any) -> str:
        """What changed between two fingerprints, in words (ids and counts only)."""
        ...

    def before_tick(self, now: datetime) -> None:
        """Called at the start of every tick (the database's: urgent uses past their
        deadline are ended)."""
        ...

    def reloaded(self, event: Reload) -> None:
        """A gallery was reloaded (the database's: audited)."""
        ...


# -- the desired gallery -----------------------------------------------------------------------

def fingerprints(session: Session, deployment_ids: Iterable[int], now: datetime
                 ) -> dict[int, Fingerprint]:
    """The fingerprint of each deployment's desired gallery (see the module)."""
    ids = sorted(set(deployment_ids))
    if not ids:
        return {}
    dw = deployment_watchlists
    rows = session.execute(
        select(dw.c.deployment_id, Watchlist.id, Watchlist.status, Watchlist.model_id,
               Watchlist.approved_at, func.count(SubjectImage.id),
               func.coalesce(func.sum(SubjectImage.id), 0), func.max(SubjectImage.id))
        .select_from(dw)
        .join(Watchlist, Watchlist.id == dw.c.watchlist_id)
        .outerjoin(Subject, and_(Subject.watchlist_id == Watchlist.id,
                                 Subject.expires_at > now))
        .outerjoin(SubjectImage, SubjectImage.subject_id == Subject.id)
        .where(dw.c.deployment_id.in_(ids))
        .group_by(dw.c.deployment_id, Watchlist.id, Watchlist.status, Watchlist.model_id,
                  Watchlist.approved_at)
        .order_by(dw.c.deployment_id, Watchlist.id)).all()
    out: dict[int, list[tuple[Any, ...]]] = {i: [] for i in ids}
    for dep_id, wl_id, status, model, approved_at, count, total, top in rows:
        usable = status == WatchlistStatus.APPROVED
        out[dep_id].append((wl_id, str(status), model, approved_at,
                            int(count) if usable else 0, int(total) if usable else 0,
                            top if usable else None))
    return {k: tuple(v) for k, v in out.items()}


def desired_gallery(session: Session, keyring: Keyring, deployment_id: int
                    ) -> tuple[Gallery, dict[str, str]]:
    """The gallery a running deployment searches: the unexpired subjects of the approved
    watchlists attached to it (of its model), decrypted in memory; empty if there are none."""
    from openlfr.governance.watchlists import deployment_gallery

    dep = session.get(Deployment, deployment_id)
    if dep is None:
        raise NotFound(f"deployment {deployment_id} does not exist")
    ids = [wl.id for wl in dep.watchlists
           if wl.status == WatchlistStatus.APPROVED and wl.model_id == dep.model_id]
    if ids:
        return deployment_gallery(session, keyring, ids)
    return empty_gallery(session, dep.model_id), {}


def empty_gallery(session: Session, model_id: str) -> Gallery:
    from openlfr.governance.models import template_dim

    return Gallery(model_id, template_dim(session, model_id))


def _reason(before: Fingerprint, after: Fingerprint) -> str:
    """What changed, in words (watchlist ids and counts only)."""
    old = {row[0]: row for row in before}
    new = {row[0]: row for row in after}
    parts = []
    for wl_id in sorted(set(old) - set(new)):
        parts.append(f"watchlist {wl_id} taken off the deployment")
    for wl_id in sorted(set(new) - set(old)):
        parts.append(f"watchlist {wl_id} attached")
    for wl_id in sorted(set(old) & set(new)):
        a, b = old[wl_id], new[wl_id]
        if a[1] != b[1]:
            parts.append(f"watchlist {wl_id} {a[1]} → {b[1]}")
        elif a[3] != b[3]:
            parts.append(f"watchlist {wl_id} approved again")
        elif a[4] > b[4]:
            parts.append(f"watchlist {wl_id}: subjects removed or expired")
        elif a[4:] != b[4:]:
            parts.append(f"watchlist {wl_id}: subjects changed")
    return "; ".join(parts) or "watchlists changed"


# -- the reconciler ----------------------------------------------------------------------------

@dataclass
class _Owned:
    handle: RunHandle
    fingerprint: Any
    stopping: bool = False


@dataclass
class TickReport:
    """What one tick did (deployment ids)."""

    started: list[int] = field(default_factory=list)
    stopped: list[int] = field(default_factory=list)
    reloaded: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.started or self.stopped or self.reloaded or self.failed)


@dataclass(frozen=True)
class Reload:
    """One gallery reload, as audited (counts only)."""

    deployment_id: int
    subjects_before: int
    subjects_after: int
    templates_before: int
    templates_after: int
    reason: str
    at: float  # time.monotonic() when the new gallery was in place


class DatabaseSource:
    """The desired state in the database (see the module): running deployments inside their
    window (``only``: just these), their approved watchlists' galleries decrypted in memory;
    urgent uses past their deadline ended before each tick; each reload audited."""

    def __init__(self, system: System, only: Iterable[int] | None = None) -> None:
        self.system = system
        self.only = None if only is None else frozenset(int(i) for i in only)

    def _desired(self, session: Session, now: datetime) -> list[int]:
        from openlfr.governance.urgent import not_overdue_clause

        query = select(Deployment.id).where(
            Deployment.status == DeploymentStatus.RUNNING,
            Deployment.planned_start <= now, Deployment.planned_end > now,
            not_overdue_clause(now))
        if self.only is not None:
            query = query.where(Deployment.id.in_(sorted(self.only)))
        return list(session.scalars(query.order_by(Deployment.id)))

    def wanted(self, now: datetime) -> dict[int, Any]:
        with self.system.db.reading() as s:
            desired = self._desired(s, now)
            prints = fingerprints(s, desired, now)
        return {dep_id: prints.get(dep_id, ()) for dep_id in desired}

    def gallery(self, deployment_id: int, now: datetime
                ) -> tuple[Gallery, dict[str, str], Any]:
        with self.system.db.reading() as s:
            fingerprint = fingerprints(s, [deployment_id], now).get(deployment_id, ())
            gallery, names = desired_gallery(s, self.system.keyring, deployment_id)
        return gallery, names, fingerprint

    def empty_gallery(self, deployment_id: int) -> Gallery | None:
        with self.system.db.reading() as s:
            dep = s.get(Deployment, deployment_id)
            model_id = dep.model_id if dep is not None else None
            if model_id is None:
                return None
            return empty_gallery(s, model_id)

    def reason(self, before: Any, after: Any) -> str:
        return _reason(before, after)

    def before_tick(self, now: datetime) -> None:
        """Stop and delete the results of every urgent use not authorised by its deadline
        (:func:`openlfr.governance.urgent.expire_overdue`): the deadline is enforced on every
        tick, by whichever process reconciles."""
        from openlfr.governance.urgent import expire_overdue

        expired = expire_overdue(self.system, now)
        if expired:
            log.warning("urgent use(s) not authorised within 24 h stopped, results deleted: %s",
                        expired)

    def reloaded(self, event: Reload) -> None:
        with self.system.db.session() as s:
            audit_log.record(s, SYSTEM_ACTOR.name, "deployment.gallery_reload",
                             "deployment", event.deployment_id, {
                                 "subjects_before": event.subjects_before,
                                 "subjects_after": event.subjects_after,
                                 "templates_before": event.templates_before,
                                 "templates_after": event.templates_after,
                                 "reason": event.reason})


class Reconciler:
    """Makes the runs it owns match the desired state (see the module): the database's
    (``system``, and ``only``: the deployments this reconciler may run, as ``openlfr watch
    --deployment`` runs one; ``None``: all), or any other ``source``.
    Thread-safe: :meth:`tick` and :meth:`stop_all` may be called from different threads."""

    def __init__(self, system: System | None, launcher: Launcher, *,
                 only: Iterable[int] | None = None, clock: Clock = utcnow,
                 retry_after: float = 5.0, retry_max: float = 60.0,
                 on_reload: Callable[[Reload], None] | None = None,
                 source: DesiredSource | None = None) -> None:
        if source is None:
            if system is None:
                raise ValueError("a reconciler needs a system or a source")
            source = DatabaseSource(system, only)
        self.system = system
        self.source = source
        self.launcher = launcher
        self.only = None if only is None else frozenset(int(i) for i in only)
        self.clock = clock
        self.retry_after = retry_after
        self.retry_max = retry_max
        self.on_reload = on_reload
        self._runs: dict[int, _Owned] = {}
        self._retry: dict[int, tuple[float, float]] = {}  # id → (not before, next delay)
        self._lock = threading.Lock()
        self._closed = False
        #: The last error of each deployment whose run could not start or reload.
        self.errors: dict[int, str] = {}

    # -- reading -------------------------------------------------------------------------------

    @property
    def runs(self) -> dict[int, RunHandle]:
        """The runs owned now (including those still stopping)."""
        with self._lock:
            return {k: v.handle for k, v in self._runs.items()}

    # -- one tick ------------------------------------------------------------------------------

    def tick(self) -> TickReport:
        """Compare, then stop, reload and start, in that order (see the module). Never raises
        for one deployment's failure: it is logged, reported and retried."""
        report = TickReport()
        self._before_tick()
        with self._lock:
            if self._closed:
                return report
            now = self.clock()
            prints = self.source.wanted(now)
            desired = list(prints)
            # finished runs leave; a run that ended while still wanted is retried later
            for dep_id in [d for d, o in self._runs.items() if not o.handle.running]:
                owned = self._runs.pop(dep_id)
                if not owned.stopping and dep_id in prints:
                    self._backoff(dep_id)
            for dep_id, owned in self._runs.items():
                if dep_id not in prints and not owned.stopping:
                    owned.stopping = True
                    try:
                        owned.handle.stop()
                    except Exception:
                        log.exception("deployment %d: stopping its run", dep_id)
                    report.stopped.append(dep_id)
            for dep_id in desired:
                current = self._runs.get(dep_id)
                if (current is not None and not current.stopping
                        and current.fingerprint != prints[dep_id]):
                    self._reload(dep_id, current, report)
            mono = time.monotonic()
            for dep_id in desired:
                if dep_id not in self._runs:
                    not_before = self._retry.get(dep_id, (0.0, 0.0))[0]
                    if mono >= not_before:
                        self._launch(dep_id, report)
            for dep_id in [d for d in self._retry if d not in prints]:
                del self._retry[dep_id]
        return report

    def _before_tick(self) -> None:
        if self._closed:
            return
        try:
            self.source.before_tick(self.clock())
        except Exception:
            log.exception("before the tick (expiring urgent uses past their deadline)")

    def _backoff(self, dep_id: int) -> None:
        delay = self._retry.get(dep_id, (0.0, self.retry_after))[1]
        jitter = delay * random.uniform(0.0, 0.2)
        self._retry[dep_id] = (time.monotonic() + delay + jitter,
                               min(delay * 2, self.retry_max))

    def _launch(self, dep_id: int, report: TickReport) -> None:
        try:
            gallery, names, fingerprint = self.source.gallery(dep_id, self.clock())
            handle = self.launcher.launch(dep_id, gallery, names)
        except Exception as exc:
            log.error("deployment %d: its run could not start: %s", dep_id, exc)
            self.errors[dep_id] = str(exc)
            self._backoff(dep_id)
            report.failed.append(dep_id)
            return
        self._runs[dep_id] = _Owned(handle, fingerprint)
        report.started.append(dep_id)

    def _reload(self, dep_id: int, owned: _Owned, report: TickReport) -> None:
        try:
            gallery, names, fingerprint = self.source.gallery(dep_id, self.clock())
            reason = self.source.reason(owned.fingerprint, fingerprint)
        except Exception as exc:
            # What cannot be loaded must not be searched any longer: an empty gallery until it
            # can (the fingerprint stays old, so the next tick tries again).
            log.error("deployment %d: its gallery could not be loaded: %s", dep_id, exc)
            self.errors[dep_id] = str(exc)
            report.failed.append(dep_id)
            try:
                if owned.handle.gallery_size() == (0, 0):
                    return
                empty = self.source.empty_gallery(dep_id)
                if empty is None:
                    return
                gallery, names = empty, {}
                fingerprint = owned.fingerprint
                reason = "the watchlists could not be loaded"
            except Exception:
                log.exception("deployment %d: emptying its gallery", dep_id)
                return
        subjects_before, templates_before = owned.handle.reload_gallery(gallery, names)
        at = time.monotonic()
        owned.fingerprint = fingerprint
        event = Reload(dep_id, subjects_before, len(gallery.subjects()), templates_before,
                       len(gallery), reason, at)
        try:
            self.source.reloaded(event)
        except Exception:
            log.exception("deployment %d: the gallery reload was not audited", dep_id)
        report.reloaded.append(dep_id)
        if self.on_reload is not None:
            try:
                self.on_reload(event)
            except Exception:
                log.exception("reload callback failed")

    # -- shutting down -------------------------------------------------------------------------

    def reopen(self) -> None:
        """Reconcile again after :meth:`stop_all` (a server started again)."""
        with self._lock:
            self._closed = False

    def stop_all(self, why: str) -> list[RunHandle]:
        """Stop every owned run (they pause their deployments with ``why``) and stop
        reconciling; returns the runs, for the caller to wait on."""
        with self._lock:
            self._closed = True
            owned = list(self._runs.items())
        for dep_id, o in owned:
            try:
                o.handle.stop(why=why)
            except Exception:
                log.exception("deployment %d: stopping its run", dep_id)
        return [o.handle for _, o in owned]
