"""Alerts and human review: a possible match is stored (its probe crop encrypted), shown to a
person, and decided by people — never by the program (DESIGN.md, invariant 4).

* :class:`AlertRecorder` is the live pipeline's :class:`~openlfr.video.sinks.AlertSink` for one
  deployment: it persists each alert (and each better-scored revision of it) in one audited
  transaction, and only after the commit hands the stored row on (``on_stored``) to whatever
  shows it. An alert that could not be stored is logged and the error raised: it is never shown.
* :func:`adjudicate` records who decided what, when and why. Decisions are ``confirm``,
  ``reject`` (a false alert) and ``no_action``; ``reject`` and ``no_action`` need a reason.

**The two-person rule** (``Deployment.two_person_rule``, EU AI Act Art. 14(5)): an alert counts
as verified (``confirmed``) only once two *different* people have confirmed it. After one
confirmation it stays ``pending`` with that confirmation recorded; the same person confirming
again is refused (and the refusal audited). A ``reject`` or ``no_action`` by anyone — the first
confirmer included — decides the alert at once: verification needs two people who agree, so
any dissent ends it, and the alert is then ``rejected`` / ``no_action`` (the earlier
confirmation stays on record). Without the rule, the first decision decides. A decided alert
cannot be adjudicated again. Outcomes (engaged or not, the action taken) are recorded only for
confirmed alerts, once.

Alerts under review keep their evidence: a later, better-scored revision from the pipeline
replaces the crop and score only while nobody has adjudicated the alert yet.

Free text (reasons, notes) is stored with the alert, which retention purges; the audit log,
which is kept for ever, records that a reason was given but not its text.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import cv2
import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from openlfr.audit import log as audit_log
from openlfr.governance.authz import (
    Actor,
    Conflict,
    NotFound,
    Perm,
    RuleError,
    refuse,
    require,
)
from openlfr.governance.disclosures import disclosure_details
from openlfr.governance.system import System
from openlfr.governance.views import LABEL, AdjudicationView, AlertView, OutcomeView
from openlfr.store.db import Database
from openlfr.store.enums import Action, AlertStatus, Decision, WatchlistStatus, choices
from openlfr.store.models import (
    Adjudication,
    Alert,
    Deployment,
    Outcome,
    Subject,
    SubjectImage,
    Watchlist,
    deployment_watchlists,
    utcnow,
)
from openlfr.video import types as vtypes

log = logging.getLogger("openlfr.governance.alerts")

JPEG_QUALITY = 92
MAX_TEXT = 4000

_DECIDED = {Decision.CONFIRM: AlertStatus.CONFIRMED, Decision.REJECT: AlertStatus.REJECTED,
            Decision.NO_ACTION: AlertStatus.NO_ACTION}


def crop_aad(deployment_id: int, alert_id: int) -> bytes:
    """The associated data binding an alert crop's ciphertext to its row."""
    return f"alert:{deployment_id}:{alert_id}:crop".encode()


def parse_decision(value: str) -> Decision:
    try:
        return Decision(value.strip().lower().replace("-", "_").replace(" ", "_"))
    except ValueError:
        raise RuleError(f"unknown decision {value!r}: choose {choices(Decision)}",
                        field="decision") from None


def parse_action(value: str) -> Action:
    try:
        return Action(value.strip().lower())
    except ValueError:
        raise RuleError(f"unknown action {value!r}: choose {choices(Action)}",
                        field="action") from None


def parse_status(value: str) -> AlertStatus:
    try:
        return AlertStatus(value.strip().lower().replace("-", "_").replace(" ", "_"))
    except ValueError:
        raise RuleError(f"unknown status {value!r}: choose {choices(AlertStatus)}",
                        field="status") from None


def _clean_text(value: str | None, what: str, required: bool) -> str | None:
    text = (value or "").strip()
    if not text:
        if required:
            raise RuleError(f"{what} is required")
        return None
    if len(text) > MAX_TEXT:
        raise RuleError(f"{what} is too long ({len(text)} characters; at most {MAX_TEXT})")
    return text


# -- views -------------------------------------------------------------------------------------

def _view(row: Alert) -> AlertView:
    subject = row.subject
    outcome = row.outcome
    two = bool(row.deployment.two_person_rule)
    decisions = tuple(AdjudicationView(user=a.user_name, decision=a.decision, reason=a.reason,
                                       at=a.created_at) for a in row.adjudications)
    has_crop = row.crop_ct is not None
    return AlertView(
        id=row.id, kind=LABEL, deployment_id=row.deployment_id,
        deployment=row.deployment.name, two_person_rule=two,
        confirmations=sum(1 for d in decisions if d.decision == Decision.CONFIRM),
        confirmations_needed=2 if two else 1, camera=row.camera, track_id=row.track_id,
        subject_id=row.subject_id,
        subject_reference=subject.reference if subject is not None else None,
        subject_image_id=row.subject_image_id, watchlist_id=row.watchlist_id,
        score=round(row.score, 4), threshold=round(row.threshold, 4), model_id=row.model_id,
        revision=row.revision, seen_at=row.seen_at, created_at=row.created_at,
        status=row.status, decided_at=row.decided_at, held=row.held_reason is not None,
        held_reason=row.held_reason, held_by=row.held_by, purged_at=row.purged_at,
        has_crop=has_crop, crop_url=f"/api/v1/alerts/{row.id}/crop" if has_crop else None,
        adjudications=decisions,
        outcome=None if outcome is None else OutcomeView(
            engaged=outcome.engaged, action=outcome.action, notes=outcome.notes,
            recorded_by=outcome.recorded_by, at=outcome.created_at))


def _load(session: Session, alert_id: int) -> Alert:
    row = session.scalar(
        select(Alert).where(Alert.id == alert_id).options(
            selectinload(Alert.adjudications), selectinload(Alert.outcome),
            selectinload(Alert.deployment), selectinload(Alert.subject)))
    if row is None:
        raise NotFound(f"no alert {alert_id}")
    return row


# -- recording ---------------------------------------------------------------------------------

def encode_crop(crop: np.ndarray) -> bytes:
    """The probe crop (BGR) as JPEG bytes."""
    if not isinstance(crop, np.ndarray) or crop.ndim not in (2, 3) or crop.size == 0:
        raise ValueError("the alert has no usable probe crop")
    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("the probe crop could not be encoded as JPEG")
    return bytes(buf.tobytes())


def _db_id(value: str) -> int | None:
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if number > 0 else None


class AlertRecorder:
    """The :class:`~openlfr.video.sinks.AlertSink` that persists one deployment's alerts.

    ``publish`` is thread-safe (camera threads call it). Revision 0 of a pipeline alert inserts
    one ``alerts`` row (status ``pending``); later revisions of the same pipeline alert update
    its score, crop and revision while nobody has adjudicated it. Rows are keyed by the
    pipeline's alert id for the life of this recorder (a pipeline's ids restart with its track
    ids, so an id seen in an earlier run is a new alert). Each change is audited
    (``alert.create`` / ``alert.update``) in the same transaction; after the commit
    ``on_stored(row_id, alert)`` is called (in order, under the recorder's lock). A failure to
    store is logged and raised, and ``on_stored`` is then not called.

    In the same transaction that would store it, the recorder checks that the subject is still
    enrolled, unexpired, on an approved watchlist attached to this deployment. If not (removed,
    expired, the watchlist back to draft, destroyed or taken off — even if the match was
    computed a moment before that change committed), nothing is stored or shown: the alert is
    only counted in :attr:`refused`.
    """

    def __init__(self, system: System, deployment_id: int,
                 on_stored: Callable[[int, vtypes.Alert], None] | None = None) -> None:
        self._system = system
        self.deployment_id = deployment_id
        self._on_stored = on_stored
        self._lock = threading.Lock()
        self._rows: dict[str, int] = {}
        #: Alerts not stored because their subject was no longer on the deployment's watchlists.
        self.refused = 0
        with system.db.reading() as s:
            dep = s.get(Deployment, deployment_id)
            if dep is None:
                raise NotFound(f"no deployment {deployment_id}")
            if dep.data_key_id is None:
                raise RuleError(f"deployment {deployment_id} has no data key: its alert crops "
                                "could not be encrypted")

    def publish(self, alert: vtypes.Alert) -> None:
        with self._lock:
            try:
                row_id = self._store(alert)
            except Exception:
                log.exception("alert %s (revision %d) of deployment %d was NOT stored",
                              alert.alert_id, alert.revision, self.deployment_id)
                raise
            if row_id is not None and self._on_stored is not None:
                self._on_stored(row_id, alert)

    def stored_id(self, pipeline_alert_id: str) -> int | None:
        """The row id of a pipeline alert stored by this recorder."""
        with self._lock:
            return self._rows.get(pipeline_alert_id)

    def _store(self, alert: vtypes.Alert) -> int | None:
        crop = encode_crop(alert.probe_crop)
        keyring = self._system.keyring
        with self._system.db.session() as s:
            dep = s.get(Deployment, self.deployment_id)
            if dep is None:
                raise NotFound(f"no deployment {self.deployment_id}")
            if not self._enrolled(s, _db_id(alert.subject_id)):
                self.refused += 1
                log.info("deployment %d: an alert was not stored: its subject is no longer on "
                         "an approved watchlist of the deployment", self.deployment_id)
                return None
            row_id = self._rows.get(alert.alert_id) if alert.revision > 0 else None
            row = s.get(Alert, row_id) if row_id is not None else None
            if row is not None:
                if alert.revision <= row.revision:
                    log.warning("alert %s: revision %d is not newer than the stored %d; "
                                "ignored", alert.alert_id, alert.revision, row.revision)
                    return None
                if row.status != AlertStatus.PENDING or row.purged_at is not None or s.scalar(
                        select(Adjudication.id).where(Adjudication.alert_id == row.id)
                        .limit(1)) is not None:
                    log.info("alert %d is under review: revision %d of %s not applied",
                             row.id, alert.revision, alert.alert_id)
                    return None
                row.score = float(alert.score)
                row.revision = int(alert.revision)
                row.crop_ct = keyring.encrypt(s, dep.data_key_id, crop,
                                              crop_aad(dep.id, row.id))
                audit_log.record(s, audit_log.SYSTEM, "alert.update", "alert", row.id,
                                 self._details(alert, row))
                return row.id
            subject_id = _db_id(alert.subject_id)
            subject = s.get(Subject, subject_id) if subject_id is not None else None
            image_id = _db_id(alert.reference_id)
            image = s.get(SubjectImage, image_id) if image_id is not None else None
            if image is not None and (subject is None or image.subject_id != subject.id):
                image = None
            row = Alert(
                deployment_id=dep.id, camera=alert.camera, track_id=int(alert.track_id),
                pipeline_id=alert.alert_id[:64],
                subject_id=subject.id if subject is not None else None,
                subject_image_id=image.id if image is not None else None,
                watchlist_id=subject.watchlist_id if subject is not None else None,
                score=float(alert.score), threshold=float(alert.threshold),
                model_id=alert.model_id, revision=int(alert.revision),
                seen_at=datetime.fromtimestamp(alert.wall_time, UTC),
                status=AlertStatus.PENDING)
            s.add(row)
            s.flush()
            row.crop_ct = keyring.encrypt(s, dep.data_key_id, crop, crop_aad(dep.id, row.id))
            audit_log.record(s, audit_log.SYSTEM, "alert.create", "alert", row.id,
                             self._details(alert, row))
            new_id = row.id
        self._rows[alert.alert_id] = new_id
        return new_id

    def _enrolled(self, s: Session, subject_id: int | None) -> bool:
        """Whether the subject is, in this transaction, enrolled and unexpired on an approved
        watchlist attached to this deployment."""
        if subject_id is None:
            return False
        dw = deployment_watchlists
        return s.scalar(
            select(Subject.id)
            .join(Watchlist, Watchlist.id == Subject.watchlist_id)
            .join(dw, dw.c.watchlist_id == Watchlist.id)
            .where(Subject.id == subject_id, Subject.expires_at > utcnow(),
                   Watchlist.status == WatchlistStatus.APPROVED,
                   dw.c.deployment_id == self.deployment_id)
            .limit(1)) is not None

    def _details(self, alert: vtypes.Alert, row: Alert) -> dict[str, Any]:
        return {"deployment": self.deployment_id, "camera": alert.camera,
                "track": int(alert.track_id), "subject": str(alert.subject_id),
                "watchlist": row.watchlist_id, "score": audit_log.fmt_float(alert.score),
                "threshold": audit_log.fmt_float(alert.threshold), "model": alert.model_id,
                "revision": int(alert.revision), "pipeline_id": alert.alert_id[:64]}


# -- reading -----------------------------------------------------------------------------------

def list_alerts(db: Database, actor: Actor, deployment_id: int | None = None,
                status: AlertStatus | None = None, limit: int = 100) -> list[AlertView]:
    """The newest alerts first (``Perm.ALERT_READ``)."""
    require(db, actor, Perm.ALERT_READ, "alert")
    if limit < 1:
        raise RuleError("limit must be at least 1", field="limit")
    query = select(Alert).options(
        selectinload(Alert.adjudications), selectinload(Alert.outcome),
        selectinload(Alert.deployment), selectinload(Alert.subject))
    if deployment_id is not None:
        query = query.where(Alert.deployment_id == deployment_id)
    if status is not None:
        query = query.where(Alert.status == status)
    with db.reading() as s:
        return [_view(r) for r in s.scalars(query.order_by(Alert.id.desc()).limit(limit))]


def get_alert(db: Database, actor: Actor, alert_id: int) -> AlertView:
    require(db, actor, Perm.ALERT_READ, "alert", str(alert_id))
    with db.reading() as s:
        return _view(_load(s, alert_id))


def alert_crop(system: System, actor: Actor, alert_id: int, *, out: str | None = None,
               purpose: str | None = None, recipient: str | None = None) -> bytes:
    """The decrypted probe crop (JPEG bytes), for a reviewer; audited ``alert.view_crop``.
    ``out="file"`` when it is written out (an export), with the optional ``purpose`` and
    ``recipient`` category (:mod:`openlfr.governance.disclosures`) in the entry."""
    require(system.db, actor, Perm.ALERT_READ, "alert", str(alert_id))
    shared = disclosure_details(purpose, recipient)
    if out is not None:
        shared = {"out": out, **shared}
    with system.db.session() as s:
        row = s.get(Alert, alert_id)
        if row is None:
            raise NotFound(f"no alert {alert_id}")
        if row.crop_ct is None:
            raise Conflict(f"alert {alert_id} has no crop (purged)")
        dep = s.get(Deployment, row.deployment_id)
        assert dep is not None  # the foreign key cascades
        data = system.keyring.decrypt(s, dep.data_key_id, row.crop_ct,
                                      crop_aad(dep.id, row.id))
        audit_log.record(s, actor.name, "alert.view_crop", "alert", row.id,
                         {"deployment": dep.id, **shared})
    return data


# -- deciding ----------------------------------------------------------------------------------

class _SameConfirmer(Exception):
    pass


def _person(actor: Actor) -> None:
    if actor.is_system:
        raise RuleError("an alert is decided by a person, never by the program")


def adjudicate(db: Database, actor: Actor, alert_id: int, decision: Decision,
               reason: str | None = None) -> AlertView:
    """Record ``actor``'s decision on a pending alert and what it makes of it.

    Under the deployment's two-person rule a ``confirm`` verifies the alert only as the second
    confirmation by a different person (the same person twice is refused and the refusal
    audited); a ``reject`` or ``no_action`` by anyone decides at once. Without the rule the
    first decision decides. ``reject`` and ``no_action`` need a reason; a decided alert is
    refused. Audited ``alert.adjudicate`` in the same transaction.
    """
    require(db, actor, Perm.ALERT_ADJUDICATE, "alert", str(alert_id))
    _person(actor)
    text = _clean_text(reason, f"a reason for {decision.value}",
                       decision in (Decision.REJECT, Decision.NO_ACTION))
    try:
        with db.session() as s:
            row = _load(s, alert_id)
            if row.purged_at is not None:
                raise Conflict(f"alert {alert_id} was purged")
            if row.status != AlertStatus.PENDING:
                by = ", ".join(a.user_name for a in row.adjudications) or "someone"
                raise Conflict(f"alert {alert_id} is already decided ({row.status.value}, "
                               f"by {by})")
            confirmers = {a.user_name for a in row.adjudications
                          if a.decision == Decision.CONFIRM}
            two = bool(row.deployment.two_person_rule)
            if decision == Decision.CONFIRM and actor.name in confirmers:
                raise _SameConfirmer()
            now = utcnow()
            row.adjudications.append(Adjudication(user_name=actor.name, decision=decision,
                                                  reason=text, created_at=now))
            if decision == Decision.CONFIRM and two and len(confirmers) + 1 < 2:
                status = AlertStatus.PENDING
            else:
                status = _DECIDED[decision]
            if status != AlertStatus.PENDING:
                row.status = status
                row.decided_at = now
            s.flush()
            audit_log.record(s, actor.name, "alert.adjudicate", "alert", row.id, {
                "deployment": row.deployment_id, "decision": decision.value,
                "status": status.value, "two_person_rule": two,
                "confirmations": len(confirmers) + (decision == Decision.CONFIRM),
                "reason_given": text is not None})
            return _view(row)
    except _SameConfirmer:
        raise refuse(db, actor, "alert.adjudicate",
                     f"{actor.name} has already confirmed alert {alert_id}: the two-person "
                     "rule needs a second, different person", "alert", str(alert_id)) from None


def record_outcome(db: Database, actor: Actor, alert_id: int, engaged: bool, action: Action,
                   notes: str | None = None) -> AlertView:
    """What happened after a confirmed alert (once per alert): whether the person was engaged
    and the action taken. Audited ``alert.outcome``."""
    require(db, actor, Perm.ALERT_ADJUDICATE, "alert", str(alert_id))
    _person(actor)
    text = _clean_text(notes, "notes", False)
    if not engaged and action in (Action.ADVICE, Action.ARREST):
        raise RuleError(f"action {action.value} means the person was engaged: engaged must be "
                        "true", field="engaged")
    with db.session() as s:
        row = _load(s, alert_id)
        if row.purged_at is not None:  # its notes would outlive the purge, never blanked
            raise Conflict(f"alert {alert_id} was purged")
        if row.status != AlertStatus.CONFIRMED:
            raise Conflict(f"alert {alert_id} is {row.status.value}: outcomes are recorded "
                           "only for confirmed alerts")
        if row.outcome is not None:
            raise Conflict(f"alert {alert_id} already has an outcome (recorded by "
                           f"{row.outcome.recorded_by})")
        row.outcome = Outcome(engaged=engaged, action=action, notes=text,
                              recorded_by=actor.name, created_at=utcnow())
        s.flush()
        audit_log.record(s, actor.name, "alert.outcome", "alert", row.id, {
            "deployment": row.deployment_id, "engaged": engaged, "action": action.value,
            "notes_given": text is not None})
        return _view(row)


def hold_alert(db: Database, actor: Actor, alert_id: int, reason: str) -> AlertView:
    """Keep an alert past the retention period, with a recorded reason (``Perm.ALERT_HOLD``)."""
    require(db, actor, Perm.ALERT_HOLD, "alert", str(alert_id))
    text = _clean_text(reason, "a reason for the hold", True)
    with db.session() as s:
        row = _load(s, alert_id)
        if row.purged_at is not None:
            raise Conflict(f"alert {alert_id} was purged; there is nothing left to hold")
        if row.held_reason is not None:
            raise Conflict(f"alert {alert_id} is already held (by {row.held_by})")
        row.held_reason = text
        row.held_by = actor.name
        audit_log.record(s, actor.name, "alert.hold", "alert", row.id,
                         {"deployment": row.deployment_id, "reason_given": True})
        return _view(row)


def release_hold(db: Database, actor: Actor, alert_id: int) -> AlertView:
    """Let retention purge the alert again (``Perm.ALERT_HOLD``)."""
    require(db, actor, Perm.ALERT_HOLD, "alert", str(alert_id))
    with db.session() as s:
        row = _load(s, alert_id)
        if row.held_reason is None:
            raise Conflict(f"alert {alert_id} is not held")
        held_by = row.held_by
        row.held_reason = None
        row.held_by = None
        audit_log.record(s, actor.name, "alert.release", "alert", row.id,
                         {"deployment": row.deployment_id, "held_by": held_by})
        return _view(row)
