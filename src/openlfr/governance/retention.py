"""Retention and forgetting: what the program deletes by itself, and when.

One run (:func:`run_retention`: ``openlfr retention run``, and every ``retention_every``
seconds in ``openlfr serve``'s background jobs, :mod:`openlfr.web.jobs`) does, in this order,
each step in its own transaction and audited:

1. **Ends overdue deployments**: authorised or running deployments whose planned end has passed
   are stopped (:func:`openlfr.governance.deployments.end_overdue`); so are urgent uses not
   authorised within 24 h, whose results are deleted
   (:func:`openlfr.governance.urgent.expire_overdue`).
2. **Destroys the watchlists of ended deployments** (crypto-shredding: the data key and every
   subject row go; :func:`openlfr.governance.watchlists.destroy_watchlist`). A watchlist is
   destroyed at the first run after its last deployment has ended, which a run at least every
   ``watchlist_destroy_hours`` (24 h) turns into "within 24 h of the end". A watchlist that is
   also used by a deployment that has not ended (a draft, an authorised or a running one) is
   kept until that one ends too; the report lists it with the deployments it waits for.
3. **Expires subjects** whose expiry has passed
   (:func:`openlfr.governance.watchlists.expire_subjects`).
4. **Purges alerts** created more than ``retention_days`` (31; never more than 31 under the
   ``uk-app`` profile: :func:`retention_days`) ago unless a person held them
   with a recorded reason (``Alert.held_reason``). *Purging* means: the encrypted probe crop is
   cleared (``crop_ct = NULL``), the link to the watchlist subject and its reference image is
   cut (``subject_id``, ``subject_image_id``), the free-text reasons of the adjudications and
   the notes of the outcome are blanked, and ``purged_at`` is set. The alert row itself, its
   time, camera, score and threshold, and the *codes* of the decisions (confirmed, rejected, no
   action; engaged, action taken) and who made them stay, so that the published statistics and
   the EU AI Act Art. 12 record stay consistent with the audit log after the purge. Once an
   ended deployment holds no crop any more, its data key is destroyed as well.

Every purge and destruction is audited with **counts only** (how many alerts, per deployment;
how many subjects), never with what was purged. Finally the run **completes pending purges**
(:func:`openlfr.governance.purge.complete_pending`): it deletes the key-store files of destroyed
data keys and folds SQLite's write-ahead log into the database file, so that overwritten pages
do not survive there. A deletion that a concurrent reader kept from finishing (its own or an
earlier one, reported "purge pending") is completed here and audited ``purge.complete``; if a
reader still blocks it, the report says how many purges are still pending.

A person needs :attr:`Perm.RETENTION_RUN` (admin); the scheduled run acts as
:data:`SYSTEM_ACTOR`. The steps themselves are taken by the program (actor ``system``) whoever
starts the run: the rule deletes, not the person; the ``retention.run`` entry names who
started it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from openlfr.audit import log as audit_log
from openlfr.governance import deployments, profiles, purge, watchlists
from openlfr.governance.authz import SYSTEM_ACTOR, Actor, Perm, RuleError, require
from openlfr.governance.system import System
from openlfr.store.db import Database, affected
from openlfr.store.enums import DeploymentStatus, WatchlistStatus
from openlfr.store.models import (
    Adjudication,
    Alert,
    Deployment,
    Outcome,
    Subject,
    Watchlist,
)


@dataclass
class KeptWatchlist:
    """A watchlist of an ended deployment that another, unfinished deployment still uses."""

    watchlist_id: int
    waiting_for: list[int]  # the deployments that have not ended


@dataclass
class RetentionReport:
    """What one retention run did (or, with ``dry_run``, would do). JSON-ready."""

    now: str
    dry_run: bool
    retention_days: int
    watchlist_destroy_hours: int
    purge_cutoff: str
    deployments_ended: list[int] = field(default_factory=list)
    #: urgent uses not authorised within 24 h: ended, their results deleted (governance.urgent)
    urgent_uses_expired: list[int] = field(default_factory=list)
    watchlists_destroyed: list[int] = field(default_factory=list)
    watchlists_late: list[int] = field(default_factory=list)  # destroyed after the deadline
    watchlists_kept: list[KeptWatchlist] = field(default_factory=list)
    subjects_expired: int = 0
    alerts_purged: int = 0
    alerts_purged_by_deployment: dict[str, int] = field(default_factory=dict)
    alerts_held: int = 0  # past the retention period but held by a person
    deployment_keys_destroyed: list[int] = field(default_factory=list)
    purges_completed: int = 0  # pending purges (of this run or earlier) completed
    purges_pending: int = 0  # still pending after the run: a reader blocked SQLite's log

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> list[str]:
        def verb(present: str, past: str) -> str:  # "would end" in a dry run, else "ended"
            return f"would {present}" if self.dry_run else past

        lines = [
            f"{verb('end', 'ended')} {len(self.deployments_ended)} overdue deployment(s)"
            + _ids(self.deployments_ended),
            f"{verb('destroy', 'destroyed')} {len(self.watchlists_destroyed)} watchlist(s)"
            + _ids(self.watchlists_destroyed),
            f"{verb('expire', 'expired')} {self.subjects_expired} subject(s)",
            f"{verb('purge', 'purged')} {self.alerts_purged} alert(s) older than "
            f"{self.retention_days} days (before {self.purge_cutoff}); {self.alerts_held} held "
            "alert(s) kept",
        ]
        if self.urgent_uses_expired:
            lines.append(f"stopped {len(self.urgent_uses_expired)} urgent use(s) not "
                         "authorised within 24 h and deleted their results"
                         + _ids(self.urgent_uses_expired))
        if self.deployment_keys_destroyed:
            lines.append(f"{verb('destroy', 'destroyed')} the data key of "
                         f"{len(self.deployment_keys_destroyed)} "
                         "ended deployment(s) that hold no alert crop any more"
                         + _ids(self.deployment_keys_destroyed))
        if self.purges_completed:
            lines.append(f"{verb('complete', 'completed')} {self.purges_completed} pending "
                         "purge(s)")
        if self.purges_pending:
            lines.append(f"PENDING: {self.purges_pending} purge(s) not complete: another "
                         "connection holds the database open (a backup?); deleted data may "
                         "still be in its files until the next retention run")
        if self.watchlists_late:
            lines.append("LATE: watchlist(s) past the "
                         f"{self.watchlist_destroy_hours} h deadline" + _ids(self.watchlists_late)
                         + " — run retention more often")
        for kept in self.watchlists_kept:
            lines.append(f"kept watchlist {kept.watchlist_id}: still used by deployment(s) "
                         + ", ".join(str(i) for i in kept.waiting_for))
        return lines


def _ids(ids: list[int]) -> str:
    return f" ({', '.join(str(i) for i in ids)})" if ids else ""


def _aware(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise RuleError("the retention time must be timezone-aware")
    return now.astimezone(UTC)


def _overdue(session: Session, now: datetime) -> list[int]:
    return list(session.scalars(
        select(Deployment.id)
        .where(Deployment.status.in_([DeploymentStatus.AUTHORISED, DeploymentStatus.RUNNING]),
               Deployment.planned_end <= now)
        .order_by(Deployment.id)))


def _watchlist_plan(session: Session, now: datetime, hours: int,
                    assume_ended: set[int]) -> tuple[list[int], list[int], list[KeptWatchlist]]:
    """(to destroy, of which late, kept): watchlists not yet destroyed that belong to at least
    one ended deployment. ``assume_ended`` are deployments a dry run would end."""
    destroy: list[int] = []
    late: list[int] = []
    kept: list[KeptWatchlist] = []
    rows = session.scalars(select(Watchlist).where(Watchlist.status != WatchlistStatus.DESTROYED)
                           .order_by(Watchlist.id)).all()
    for wl in rows:
        deps = session.scalars(select(Deployment).where(Deployment.watchlists.contains(wl))
                               .order_by(Deployment.id)).all()
        ended = [d for d in deps
                 if d.status == DeploymentStatus.ENDED or d.id in assume_ended]
        if not ended:
            continue
        open_ = [d.id for d in deps if d not in ended]
        if open_:
            kept.append(KeptWatchlist(wl.id, open_))
            continue
        destroy.append(wl.id)
        last_end = max((d.ended_at or d.planned_end) if d.id not in assume_ended
                       else min(d.planned_end, now) for d in ended)
        if now > last_end + timedelta(hours=hours):
            late.append(wl.id)
    return destroy, late, kept


def _purgeable(session: Session, cutoff: datetime) -> tuple[list[Alert], int]:
    expired = (Alert.created_at < cutoff, Alert.purged_at.is_(None))
    alerts = list(session.scalars(select(Alert).where(*expired, Alert.held_reason.is_(None))
                                  .order_by(Alert.id)))
    held = len(session.scalars(select(Alert.id).where(*expired,
                                                      Alert.held_reason.is_not(None))).all())
    return alerts, held


def _keys_to_destroy(session: Session) -> list[int]:
    """Ended deployments with a data key whose alerts hold no crop any more."""
    ids = []
    for dep in session.scalars(select(Deployment).where(
            Deployment.status == DeploymentStatus.ENDED, Deployment.data_key_id.is_not(None))
            .order_by(Deployment.id)):
        crops = session.scalars(select(Alert.id).where(
            Alert.deployment_id == dep.id, Alert.crop_ct.is_not(None)).limit(1)).first()
        if crops is None:
            ids.append(dep.id)
    return ids


def retention_days(db: Database, setting: int) -> int:
    """The alert retention period in force: ``OPENLFR_RETENTION_DAYS``, but never longer than
    the ``uk-app`` profile's period (:data:`openlfr.governance.profiles.UK_APP_ALERT_DAYS`)
    while that profile is in force."""
    if profiles.current(db) == profiles.Profile.UK_APP:
        return min(setting, profiles.UK_APP_ALERT_DAYS)
    return setting


def run_retention(system: System, actor: Actor = SYSTEM_ACTOR, now: datetime | None = None,
                  dry_run: bool = False) -> RetentionReport:
    """Apply the retention rules once (see the module docstring); ``dry_run`` changes nothing
    and reports what a run would do."""
    db = system.db
    settings = system.settings
    require(db, actor, Perm.RETENTION_RUN, "retention", "run")
    when = _aware(now)
    days = retention_days(db, settings.retention_days)
    cutoff = when - timedelta(days=days)
    report = RetentionReport(now=when.isoformat(), dry_run=dry_run,
                             retention_days=days,
                             watchlist_destroy_hours=settings.watchlist_destroy_hours,
                             purge_cutoff=cutoff.isoformat())
    hours = settings.watchlist_destroy_hours

    # 1. overdue deployments
    with db.reading() as s:
        overdue = _overdue(s, when)
    if dry_run:
        report.deployments_ended = overdue
    else:
        report.deployments_ended = deployments.end_overdue(db, when)
        from openlfr.governance.urgent import expire_overdue

        report.urgent_uses_expired = expire_overdue(system, when)

    # 2. watchlists of ended deployments
    with db.reading() as s:
        destroy, late, kept = _watchlist_plan(
            s, when, hours, set(overdue) if dry_run else set())
    report.watchlists_kept = kept
    report.watchlists_late = late
    if dry_run:
        report.watchlists_destroyed = destroy
    else:
        for wl_id in destroy:
            when_ = (f"later than {hours} h after the end" if wl_id in late
                     else f"within {hours} h of the end")
            watchlists.destroy_watchlist(
                system, SYSTEM_ACTOR, wl_id,
                f"retention: every deployment using it has ended; destroyed {when_} "
                f"(run started by {actor.name})")
            report.watchlists_destroyed.append(wl_id)

    # 3. expired subjects
    if dry_run:
        with db.reading() as s:
            report.subjects_expired = len(s.scalars(select(Subject.id).where(
                Subject.expires_at <= when)).all())
    else:
        report.subjects_expired = watchlists.expire_subjects(db, SYSTEM_ACTOR, when).subjects

    # 4. alerts past the retention period
    if dry_run:
        with db.reading() as s:
            alerts, report.alerts_held = _purgeable(s, cutoff)
            report.alerts_purged = len(alerts)
            report.alerts_purged_by_deployment = {
                str(k): v for k, v in sorted(Counter(a.deployment_id for a in alerts).items())}
        report.purges_pending = purge.pending_count(db)
        return report
    report.alerts_purged, report.alerts_purged_by_deployment, report.alerts_held = \
        _purge_alerts(system, when, cutoff)
    report.deployment_keys_destroyed, spent_keys = _destroy_spent_keys(system)

    with db.session() as s:
        audit_log.record(s, actor.name, "retention.run", "retention", "run", {
            "now": when.isoformat(),
            "retention_days": days,
            "deployments_ended": len(report.deployments_ended),
            "watchlists_destroyed": len(report.watchlists_destroyed),
            "watchlists_late": len(report.watchlists_late),
            "watchlists_kept": len(report.watchlists_kept),
            "subjects_expired": report.subjects_expired,
            "alerts_purged": report.alerts_purged,
            "alerts_held": report.alerts_held,
            "deployment_keys_destroyed": len(report.deployment_keys_destroyed),
        })
    if report.alerts_purged or report.deployment_keys_destroyed:
        # this run's own deletions: pending if a reader blocks them (completed just below
        # if it has gone)
        purge.finish(db, system.keyring, "retention.run", "retention", "run",
                     spent_keys)
    completion = purge.complete_pending(db, system.keyring)
    report.purges_completed = completion.completed
    report.purges_pending = completion.pending
    return report


def _purge_alerts(system: System, now: datetime,
                  cutoff: datetime) -> tuple[int, dict[str, int], int]:
    """Purge every expired, unheld alert; one ``alert.purge`` entry per deployment, with
    counts only. Returns (purged, purged per deployment, held)."""
    with system.db.session() as s:
        alerts, held = _purgeable(s, cutoff)
        per_dep: Counter[int] = Counter(a.deployment_id for a in alerts)
        texts: Counter[int] = Counter()
        for dep_id in per_dep:
            ids = [a.id for a in alerts if a.deployment_id == dep_id]
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                s.execute(update(Alert).where(Alert.id.in_(chunk)).values(
                    crop_ct=None, subject_id=None, subject_image_id=None, purged_at=now))
                blanked = affected(s.execute(update(Adjudication).where(
                    Adjudication.alert_id.in_(chunk), Adjudication.reason.is_not(None))
                    .values(reason=None)))
                blanked += affected(s.execute(update(Outcome).where(
                    Outcome.alert_id.in_(chunk), Outcome.notes.is_not(None))
                    .values(notes=None)))
                texts[dep_id] += int(blanked or 0)
        s.flush()
        for dep_id, n in sorted(per_dep.items()):
            audit_log.record(s, audit_log.SYSTEM, "alert.purge", "deployment", dep_id, {
                "alerts": n,
                "texts_blanked": texts[dep_id],
                "older_than": cutoff.isoformat(),
            })
        return (sum(per_dep.values()), {str(k): v for k, v in sorted(per_dep.items())}, held)


def _destroy_spent_keys(system: System) -> tuple[list[int], list[int]]:
    """Crypto-shred the data key of ended deployments whose alerts hold no crop any more.
    Returns (deployment ids, key ids); the key files go once this has committed."""
    done: list[int] = []
    keys: list[int] = []
    with system.db.session() as s:
        for dep_id in _keys_to_destroy(s):
            dep = s.get(Deployment, dep_id)
            assert dep is not None
            key_id = dep.data_key_id
            dep.data_key_id = None
            s.flush()
            if system.keyring.destroy(s, key_id) and key_id is not None:
                keys.append(key_id)
            audit_log.record(s, audit_log.SYSTEM, "deployment.key_destroy", "deployment",
                             dep_id, {"reason": "ended, and no alert crop left"})
            done.append(dep_id)
    return done, keys
