"""The urgent-use path (``eu-ai-act`` profile): a deployment started without prior
authorisation, authorised within 24 hours or stopped and its results deleted.

The EU AI Act lets a real-time remote biometric identification system be used, in a duly
justified situation of urgency, before its authorisation, provided authorisation is requested
without undue delay and at the latest within 24 hours; if it is refused, the use stops at once
and its results are deleted. Here:

* **start** (``urgent.start``; :func:`start_urgent`): only under the ``eu-ai-act`` profile
  (under ``uk-app`` a deployment runs only once authorised: a clear refusal). A *draft* whose
  plan is otherwise complete (watchlists approved, threshold at the floor or overridden,
  cameras) and inside its window is set ``running`` by a person who may run deployments, with a
  recorded **justification** (at least :data:`JUSTIFICATION_CHARS` characters and
  :data:`JUSTIFICATION_WORDS` words: who started it and when are recorded with it). Its data
  key is made (alert crops are encrypted under it) and a **24-hour clock** starts
  (:data:`URGENT_HOURS`). The live run starts as for any running deployment (the reconciler).
* **authorise** (``urgent.authorise``; :func:`authorise_urgent`): an authorising officer who
  neither started, created nor changed it, before the deadline, the plan's rules checked again.
  It is then an ordinary authorised running deployment (one stopped by a person before the
  deadline may still be authorised: its results are then kept).
* **refuse** (``urgent.refuse``; :func:`refuse_urgent`): an authorising officer, with a reason;
  or **expiry** (``urgent.expire``; :func:`expire_overdue`, by the program) when no
  authorisation is recorded by the deadline. Either way, in one transaction: the deployment
  ends (``deployment.end``), so the reconciler stops its run within a tick, and every result of
  the use is deleted (``urgent.results_delete``): its alerts with their probe crops, decisions,
  outcomes and view records, and its data key is destroyed (crypto-shredding, completed by
  :func:`openlfr.governance.purge.finish`). What stays: the counts the public figures need
  (alerts by status, outcomes, people engaged: ``deleted_counts``), and the cameras' counters
  (frames, faces seen, people passing). The audit log keeps its entries (it is append-only):
  they hold no image, template or name, only record numbers, cameras and scores as text.

``openlfr serve`` calls :func:`expire_overdue` every half second (its reconcile tick), so a
run whose deadline passes stops within a second, without anyone acting; the reconciler also
refuses to run an urgent use past its deadline (:func:`overdue_ids`), and every retention run
calls :func:`expire_overdue` too.

:func:`urgent_uses` lists the urgent uses of a period (frozen :class:`UrgentUseRecord`), for
the annual report.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from openlfr.audit import log as audit_log
from openlfr.governance import deployments as deps
from openlfr.governance import purge
from openlfr.governance.authz import (
    SYSTEM_ACTOR,
    Actor,
    Conflict,
    NotFound,
    Perm,
    RuleError,
    allowed,
    refuse,
    require,
)
from openlfr.governance.names import check_text
from openlfr.governance.profiles import Profile, active_profile
from openlfr.governance.system import System
from openlfr.governance.times import to_utc
from openlfr.governance.views import UrgentUseView
from openlfr.store.crypto import Keyring
from openlfr.store.db import Database
from openlfr.store.enums import DeploymentStatus
from openlfr.store.models import (
    Adjudication,
    Alert,
    AlertViewRecord,
    Deployment,
    Outcome,
    UrgentUse,
)

log = logging.getLogger("openlfr.governance.urgent")

#: How long an urgent use may run without authorisation.
URGENT_HOURS = 24
#: A justification is substantial text: at least this many characters and words.
JUSTIFICATION_CHARS = 40
JUSTIFICATION_WORDS = 6
#: A refusal's reason: at least a sentence.
REFUSAL_CHARS = 20
REFUSAL_WORDS = 3
JUSTIFICATION_MAX = 8000

#: How an urgent use ended (``UrgentUse.outcome``; None: waiting).
AUTHORISED, REFUSED, EXPIRED = "authorised", "refused", "expired"
WAITING = "waiting"

#: The end reasons recorded on the deployment.
REFUSED_REASON = "urgent use refused by {who}: {why}"
EXPIRED_REASON = (f"urgent use not authorised within {URGENT_HOURS} hours: stopped and its "
                  "results deleted")

UK_REFUSAL = ("the urgent-use path exists only under the eu-ai-act profile: under {profile} "
              "(the jurisdiction profile in force) a deployment runs only once an authorising "
              "officer has authorised it")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _text(value: str | None, what: str, chars: int, words: int, field: str) -> str:
    text = " ".join((value or "").split())
    if not text:
        raise RuleError(f"{what} is required", field=field)
    check_text(text, what)
    if len(text) > JUSTIFICATION_MAX:
        raise RuleError(f"{what} may have at most {JUSTIFICATION_MAX} characters (it has "
                        f"{len(text)})", field=field)
    if len(text) < chars or len(text.split()) < words:
        raise RuleError(f"{what} must be substantial: at least {chars} characters and {words} "
                        f"words (this one has {len(text)} and {len(text.split())})",
                        field=field)
    return text


def check_justification(value: str | None) -> str:
    """An urgency justification, tidied: substantial text (module doc)."""
    return _text(value, "the urgency justification", JUSTIFICATION_CHARS, JUSTIFICATION_WORDS,
                 "justification")


def check_refusal(value: str | None) -> str:
    return _text(value, "the reason for refusing the urgent use", REFUSAL_CHARS,
                 REFUSAL_WORDS, "reason")


def _dt(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _row(s: Session, deployment_id: int) -> UrgentUse | None:
    return s.scalars(select(UrgentUse).where(UrgentUse.deployment_id == deployment_id)).first()


def _pending(s: Session, deployment_id: int) -> UrgentUse:
    row = _row(s, deployment_id)
    if row is None:
        deps._load(s, deployment_id)  # NotFound first
        raise Conflict(f"deployment {deployment_id} is not an urgent use")
    if row.outcome is not None:
        raise Conflict(f"the urgent use of deployment {deployment_id} is already "
                       f"{_state_words(row.outcome)}")
    return row


def _state_words(outcome: str) -> str:
    return {AUTHORISED: "authorised", REFUSED: "refused",
            EXPIRED: f"over: it was not authorised within {URGENT_HOURS} hours"}[outcome]


def _counts(row: UrgentUse) -> dict[str, int]:
    if not row.deleted_counts:
        return {}
    data = json.loads(row.deleted_counts)
    return {str(k): int(v) for k, v in data.items()}


def _view(row: UrgentUse, dep: Deployment, now: datetime | None = None) -> UrgentUseView:
    now = now or utcnow()
    state = row.outcome or WAITING
    left = (max(0, int((row.deadline - now).total_seconds())) if state == WAITING else None)
    return UrgentUseView(
        deployment_id=dep.id, deployment_name=dep.name, deployment_status=dep.status.value,
        started_by=row.started_by, started_at=row.started_at,
        justification=row.justification, deadline=row.deadline, state=state,
        seconds_left=left, decided_by=row.decided_by, decided_at=row.decided_at,
        refusal_reason=row.refusal_reason, results_deleted_at=row.results_deleted_at,
        deleted_counts=_counts(row))


# -- start -------------------------------------------------------------------------------------

def start_urgent(db: Database, keyring: Keyring, actor: Actor, deployment_id: int,
                 justification: str, now: datetime | None = None) -> UrgentUseView:
    """Start a draft without prior authorisation (module doc; ``urgent.start``)."""
    require(db, actor, Perm.DEPLOYMENT_RUN, "deployment", str(deployment_id))
    text = check_justification(justification)
    now = to_utc(now, "now") if now is not None else utcnow()
    with db.session() as s:
        profile = active_profile(s)
        if profile is not Profile.EU_AI_ACT:
            raise Conflict(UK_REFUSAL.format(profile=profile.value))
        dep = deps._load(s, deployment_id)
        if _row(s, deployment_id) is not None:
            raise Conflict(f"deployment {deployment_id} has already been used urgently once")
        if dep.status != DeploymentStatus.DRAFT:
            hint = (": start it the ordinary way" if dep.status == DeploymentStatus.AUTHORISED
                    else "")
            raise Conflict(f"deployment {deployment_id} is {dep.status.value}: only a draft "
                           f"(not yet authorised) can start as an urgent use{hint}")
        if not dep.urgency_reason:  # the recorded reason why no notice was given ahead
            dep.urgency_reason = text
        problems = deps._runnable_problems(s, dep, starting=True)
        # no use on a model's default floor, urgent or not: a fitting recorded calibration
        # (its attestation comes with the authorisation that must follow)
        problems += [p for p in deps._calibration_problems(
            deps.calibration_of(s, dep), dep, deps.Decision(representative=True))
            if p not in problems]
        window = deps.window_problem(dep, now)
        if window:
            problems.insert(0, window)
        if problems:
            raise Conflict(f"deployment {deployment_id} cannot start as an urgent use: "
                           + "; ".join(problems))
        new_key = dep.data_key_id is None
        if new_key:
            dep.data_key_id = keyring.new_key(s, "deployment").id
        dep.status = DeploymentStatus.RUNNING
        dep.pause_reason = None
        dep.started_at = dep.started_at or now
        deadline = now + timedelta(hours=URGENT_HOURS)
        row = UrgentUse(deployment_id=dep.id, started_by=actor.name, started_at=now,
                        justification=text, deadline=deadline)
        s.add(row)
        s.flush()
        audit_log.record(s, actor.name, "urgent.start", "deployment", dep.id, {
            "justification": text, "at": _dt(now), "deadline": _dt(deadline),
            "profile": profile.value, "planned_end": _dt(dep.planned_end),
            "watchlists": [wl.id for wl in dep.watchlists],
            "cameras": [c.name for c in dep.cameras],
            "threshold": audit_log.fmt_float(dep.threshold), "model_id": dep.model_id,
            "data_key": dep.data_key_id, "data_key_created": new_key})
        deps.notify_use(s, dep, actor, now)  # the authorities are notified of each use
        return _view(row, dep, now)


# -- authorise ---------------------------------------------------------------------------------

def authorise_urgent(db: Database, actor: Actor, deployment_id: int,
                     now: datetime | None = None,
                     decision: deps.Decision | None = None) -> UrgentUseView:
    """Authorise an urgent use before its deadline (``urgent.authorise``): by an authorising
    officer who neither started, created nor changed it; the plan's rules and the profile's
    (:func:`openlfr.governance.deployments.profile_problems`: the independent authority's
    decision, the references, a fitting calibration attested representative) are checked as
    for an authorisation, and ``decision`` is recorded the same way. The deployment is then an
    ordinary authorised one, still running."""
    decision = decision or deps.Decision()
    require(db, actor, Perm.DEPLOYMENT_AUTHORISE, "deployment", str(deployment_id))
    now = to_utc(now, "now") if now is not None else utcnow()
    with db.reading() as s:
        row = _pending(s, deployment_id)
        involved = deps.authors(s, deployment_id) | {row.started_by}
    if actor.name in involved:
        raise refuse(db, actor, "urgent.authorise",
                     f"{actor.name} started, created or changed deployment {deployment_id}: "
                     "another authorising officer must authorise its urgent use",
                     "deployment", str(deployment_id))
    with db.session() as s:
        row = _pending(s, deployment_id)
        dep = deps._load(s, deployment_id)
        if now >= row.deadline:
            raise Conflict(f"the urgent use of deployment {deployment_id} was not authorised "
                           f"by its deadline {_dt(row.deadline)}: it is stopped and its results "
                           "deleted")
        problems = deps._runnable_problems(s, dep)
        profile = active_profile(s)
        cal = deps.calibration_of(s, dep)
        problems += [p for p in deps.profile_problems(s, dep, profile, decision, cal)
                     if p not in problems]
        if problems:
            raise Conflict(f"the urgent use of deployment {deployment_id} cannot be "
                           "authorised: " + "; ".join(problems))
        recorded = deps._record_decision(s, dep, profile, decision, cal)
        dep.authorised_by = actor.name
        dep.authorised_at = now
        row.outcome = AUTHORISED
        row.decided_by = actor.name
        row.decided_at = now
        details = deps._plan_details(dep)
        details.update(urgent_use={"started_by": row.started_by,
                                   "started_at": _dt(row.started_at),
                                   "deadline": _dt(row.deadline)},
                       at=_dt(now), data_key=dep.data_key_id)
        details.update(recorded)
        audit_log.record_split(s, actor.name, "urgent.authorise", "deployment", dep.id,
                               details, "cameras")
        return _view(row, dep, now)


# -- refuse, expire: stop and delete -------------------------------------------------------------

def refuse_urgent(system: System, actor: Actor, deployment_id: int, reason: str,
                  now: datetime | None = None) -> UrgentUseView:
    """Refuse an urgent use (``urgent.refuse``; an authorising officer, with a reason): the
    deployment ends at once and its results are deleted (:func:`_stop_and_delete`)."""
    db = system.db
    require(db, actor, Perm.DEPLOYMENT_AUTHORISE, "deployment", str(deployment_id))
    text = check_refusal(reason)
    now = to_utc(now, "now") if now is not None else utcnow()
    with db.reading() as s:
        _pending(s, deployment_id)
    return _stop_and_delete(system, actor, deployment_id, REFUSED, now, text)


def overdue_ids(s: Session, now: datetime) -> list[int]:
    """Deployments whose urgent use is still waiting for authorisation past its deadline."""
    return list(s.scalars(select(UrgentUse.deployment_id).where(
        UrgentUse.outcome.is_(None), UrgentUse.deadline <= now)
        .order_by(UrgentUse.deployment_id)))


def expire_overdue(system: System, now: datetime | None = None) -> list[int]:
    """Stop, as ``system``, every urgent use not authorised by its deadline and delete its
    results (``urgent.expire``); also delete any alert a run stored after a deletion. Returns
    the deployments expired. Cheap when there is nothing to do (one or two small queries): run
    on every tick of ``openlfr serve``."""
    now = to_utc(now, "now") if now is not None else utcnow()
    with system.db.reading() as s:
        ids = overdue_ids(s, now)
        late = _late_results(s)
    done = []
    for dep_id in ids:
        try:
            _stop_and_delete(system, SYSTEM_ACTOR, dep_id, EXPIRED, now, None)
            done.append(dep_id)
        except Conflict:  # decided meanwhile (authorised just in time, or refused)
            continue
    for dep_id in late:
        _stop_and_delete(system, SYSTEM_ACTOR, dep_id, None, now, None)
    return done


def _late_results(s: Session) -> list[int]:
    """Urgent uses whose results were deleted but that hold an alert again (one a run was
    storing while the deletion committed)."""
    return list(s.scalars(select(UrgentUse.deployment_id).where(
        UrgentUse.results_deleted_at.is_not(None),
        select(Alert.id).where(Alert.deployment_id == UrgentUse.deployment_id).exists())))


def _stop_and_delete(system: System, actor: Actor, deployment_id: int, outcome: str | None,
                     now: datetime, reason: str | None) -> UrgentUseView:
    """In one transaction: record the outcome (``outcome`` None: a late sweep), end the
    deployment, delete every alert of it (with crops, decisions, outcomes, view records) keeping
    counts, destroy its data key; then complete the purge (key file, SQLite's log)."""
    db = system.db
    with db.session() as s:
        dep = s.scalars(select(Deployment).where(Deployment.id == deployment_id)
                        .with_for_update()).first()
        if dep is None:
            raise NotFound(f"deployment {deployment_id} does not exist")
        row = _pending(s, deployment_id) if outcome is not None else _row(s, deployment_id)
        assert row is not None
        if outcome is not None:
            if outcome == EXPIRED and now < row.deadline:
                raise Conflict(f"the urgent use of deployment {deployment_id} has until "
                               f"{_dt(row.deadline)}")
            row.outcome = outcome
            row.decided_by = actor.name
            row.decided_at = now
            row.refusal_reason = reason
            action = "urgent.refuse" if outcome == REFUSED else "urgent.expire"
            audit_log.record(s, actor.name, action, "deployment", dep.id, {
                "reason": reason if outcome == REFUSED else
                f"no authorisation recorded within {URGENT_HOURS} hours",
                "at": _dt(now), "started_by": row.started_by,
                "started_at": _dt(row.started_at), "deadline": _dt(row.deadline)})
            if dep.status != DeploymentStatus.ENDED:
                end = (REFUSED_REASON.format(who=actor.name, why=reason)
                       if outcome == REFUSED else EXPIRED_REASON)
                deps._end(s, dep, actor, end, now, None)
        counts, details, key_id = _delete_results(system, s, dep)
        merged = Counter(_counts(row))
        merged.update(counts)
        row.deleted_counts = json.dumps(dict(sorted(merged.items())), sort_keys=True)
        row.results_deleted_at = now
        details.update(at=_dt(now), late=outcome is None)
        audit_log.record(s, SYSTEM_ACTOR.name, "urgent.results_delete", "deployment", dep.id,
                         details)
        view = _view(row, dep, now)
    outcome_ = purge.finish(db, system.keyring, "urgent.results_delete", "deployment",
                            deployment_id, [key_id] if key_id is not None else [])
    if outcome_.pending:
        log.warning("deployment %d: the deletion of its urgent use's results is pending "
                    "(a reader holds the database)", deployment_id)
    return view


def _delete_results(system: System, s: Session, dep: Deployment
                    ) -> tuple[Counter[str], dict[str, Any], int | None]:
    """Delete every alert of ``dep`` and what hangs on it; destroy its data key. Returns the
    counts kept (by status, outcomes, engaged), the audit details (counts and the deleted
    alerts' record numbers only) and the destroyed key's id."""
    alerts = list(s.execute(select(Alert.id, Alert.status, Alert.crop_ct.is_not(None))
                            .where(Alert.deployment_id == dep.id).order_by(Alert.id)))
    ids = [a for a, _, _ in alerts]
    kept: Counter[str] = Counter()
    kept["alerts"] += len(ids)
    for _, status, _ in alerts:
        kept[f"status_{status.value}"] += 1
    details: dict[str, Any] = {"alerts_deleted": len(ids),
                               "crops_deleted": sum(1 for _, _, c in alerts if c)}
    adjudications = outcomes = viewed = 0
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for action, engaged in s.execute(select(Outcome.action, Outcome.engaged)
                                         .where(Outcome.alert_id.in_(chunk))):
            kept[f"outcome_{action.value}"] += 1
            kept["engaged"] += int(bool(engaged))
        adjudications += _count(s, Adjudication, chunk)
        outcomes += _count(s, Outcome, chunk)
        viewed += _count(s, AlertViewRecord, chunk)
        s.execute(delete(Adjudication).where(Adjudication.alert_id.in_(chunk)))
        s.execute(delete(Outcome).where(Outcome.alert_id.in_(chunk)))
        s.execute(delete(AlertViewRecord).where(AlertViewRecord.alert_id.in_(chunk)))
        s.execute(delete(Alert).where(Alert.id.in_(chunk)))
    details.update(adjudications_deleted=adjudications, outcomes_deleted=outcomes,
                   alert_views_deleted=viewed,
                   alert_ids=[str(i) for i in ids])  # record numbers, as text (no vector)
    key_id = dep.data_key_id
    destroyed = False
    if key_id is not None:
        dep.data_key_id = None
        s.flush()
        destroyed = system.keyring.destroy(s, key_id)
    details["data_key_destroyed"] = destroyed
    return kept, details, key_id if destroyed else None


def _count(s: Session, table: Any, ids: Sequence[int]) -> int:
    return int(s.scalar(select(func.count()).select_from(table)
                        .where(table.alert_id.in_(ids))) or 0)


# -- reading -----------------------------------------------------------------------------------

def urgent_use(db: Database, actor: Actor, deployment_id: int,
               now: datetime | None = None) -> UrgentUseView | None:
    """The urgent use of a deployment, or None."""
    require(db, actor, Perm.DEPLOYMENT_READ, "deployment", str(deployment_id))
    with db.reading() as s:
        row = _row(s, deployment_id)
        if row is None:
            return None
        dep = deps._load(s, deployment_id)
        return _view(row, dep, now)


def waiting(db: Database, actor: Actor, now: datetime | None = None) -> list[UrgentUseView]:
    """The urgent uses waiting for authorisation (soonest deadline first): the console's
    banner."""
    require(db, actor, Perm.DEPLOYMENT_READ, "deployment", "list")
    with db.reading() as s:
        rows = s.execute(select(UrgentUse, Deployment)
                         .join(Deployment, Deployment.id == UrgentUse.deployment_id)
                         .where(UrgentUse.outcome.is_(None))
                         .order_by(UrgentUse.deadline)).all()
        return [_view(r, d, now) for r, d in rows]


def may_start(db: Database, actor: Actor) -> bool:
    """Whether the urgent-use form is shown to ``actor``: the profile allows it and their role
    may run deployments (the service checks everything again)."""
    if not allowed(actor, Perm.DEPLOYMENT_RUN):
        return False
    with db.reading() as s:
        return active_profile(s) is Profile.EU_AI_ACT


def deleted_counts(s: Session, ids: Sequence[int] | None = None) -> dict[int, dict[str, int]]:
    """Per deployment, the counts kept of an urgent use's deleted results (for the public
    figures)."""
    query = select(UrgentUse).where(UrgentUse.deleted_counts.is_not(None))
    if ids is not None:
        query = query.where(UrgentUse.deployment_id.in_(list(ids)))
    return {r.deployment_id: _counts(r) for r in s.scalars(query)}


def deleted_alert_ids(s: Session) -> set[int]:
    """The record numbers of alerts deleted with an urgent use's results (from the audit
    log), which the check of the figures against the log expects to be gone."""
    out: set[int] = set()
    for entry in audit_log.entries(s):
        if entry.action == "urgent.results_delete":
            ids = entry.details.get("alert_ids")
            if isinstance(ids, list):
                out.update(int(str(i)) for i in ids if str(i).isdigit())
    return out


@dataclass(frozen=True, slots=True)
class UrgentUseRecord:
    """One urgent use, for the annual report: when and by whom it started, the justification,
    how it ended (``authorised``, ``refused``, ``expired`` or ``waiting``), by whom and when,
    and when its results were deleted (None: kept, because it was authorised)."""

    deployment_id: int
    deployment_name: str
    started_at: datetime
    started_by: str
    justification: str
    deadline: datetime
    outcome: str
    decided_at: datetime | None
    decided_by: str | None
    refusal_reason: str | None
    results_deleted_at: datetime | None
    alerts_deleted: int


def urgent_uses(session: Session, start: datetime, end: datetime) -> list[UrgentUseRecord]:
    """Every urgent use started in ``[start, end)`` (aware times), oldest first."""
    start, end = to_utc(start, "start"), to_utc(end, "end")
    rows = session.execute(select(UrgentUse, Deployment.name)
                           .join(Deployment, Deployment.id == UrgentUse.deployment_id)
                           .where(UrgentUse.started_at >= start, UrgentUse.started_at < end)
                           .order_by(UrgentUse.started_at, UrgentUse.id)).all()
    return [UrgentUseRecord(
        deployment_id=r.deployment_id, deployment_name=name, started_at=r.started_at,
        started_by=r.started_by, justification=r.justification, deadline=r.deadline,
        outcome=r.outcome or WAITING, decided_at=r.decided_at, decided_by=r.decided_by,
        refusal_reason=r.refusal_reason, results_deleted_at=r.results_deleted_at,
        alerts_deleted=_counts(r).get("alerts", 0)) for r, name in rows]


def not_overdue_clause(now: datetime) -> Any:
    """A condition on ``Deployment.id``: not an urgent use waiting past its deadline (the
    reconciler's desired state)."""
    overdue = select(UrgentUse.deployment_id).where(UrgentUse.outcome.is_(None),
                                                    UrgentUse.deadline <= now)
    return Deployment.id.not_in(overdue)
