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
cannot be adjudicated again. Outcomes (engaged or not, the action taken) are recorded once, for
confirmed alerts and for false ones; after a false alert (rejected, or the engaged person was not
the subject) the outcome also records whether the person was stopped, for how long, and
optionally the officer's perception of their ethnicity and sex (equality monitoring).

Alerts under review keep their evidence: a later, better-scored revision from the pipeline
replaces the crop and score only while nobody has adjudicated the alert yet.

Free text (reasons, notes) is stored with the alert, which retention purges; the audit log,
which is kept for ever, records that a reason was given but not its text.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

import cv2
import numpy as np
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, selectinload

from openlfr.audit import log as audit_log
from openlfr.governance import fieldtests, times
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
from openlfr.governance.views import (
    ETHNICITY_WORDS,
    LABEL,
    AdjudicationView,
    AlertPage,
    AlertView,
    AlertViewCount,
    OutcomeView,
)
from openlfr.governance.watchlists import subject_image
from openlfr.store import crypto
from openlfr.store.crypto import CryptoError
from openlfr.store.db import Database, memo
from openlfr.store.enums import (
    Action,
    AlertStatus,
    Decision,
    PerceivedEthnicity,
    PerceivedSex,
    WatchlistStatus,
    choices,
)
from openlfr.store.models import (
    Adjudication,
    Alert,
    AlertViewRecord,
    DataKey,
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


def parse_ethnicity(value: str | None) -> PerceivedEthnicity | None:
    """A perceived ethnic group by its code or its census words; blank: none given."""
    text = (value or "").strip().lower()
    if not text:
        return None
    for group in PerceivedEthnicity:
        if text in (group.value, group.value.replace("_", " "), ETHNICITY_WORDS[group].lower()):
            return group
    raise RuleError(f"unknown perceived ethnicity {value!r}: choose "
                    f"{choices(PerceivedEthnicity)}", field="perceived_ethnicity")


def parse_sex(value: str | None) -> PerceivedSex | None:
    """A perceived sex by its code; blank: none given."""
    text = (value or "").strip().lower().replace(" ", "_")
    if not text:
        return None
    try:
        return PerceivedSex(text)
    except ValueError:
        raise RuleError(f"unknown perceived sex {value!r}: choose {choices(PerceivedSex)}",
                        field="perceived_sex") from None


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
            recorded_by=outcome.recorded_by, at=outcome.created_at,
            false_alert=outcome.stopped is not None, not_subject=outcome.not_subject,
            stopped=outcome.stopped, stop_minutes=outcome.stop_minutes,
            perceived_ethnicity=(None if outcome.perceived_ethnicity is None
                                 else PerceivedEthnicity(outcome.perceived_ethnicity)),
            perceived_sex=(None if outcome.perceived_sex is None
                           else PerceivedSex(outcome.perceived_sex))))


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


#: A check made in the transaction that would store a node's alert: why it may not be stored
#: (None: it may).
Admit = Callable[[Session, Deployment], "str | None"]
#: One alert for :meth:`AlertRecorder.deliver_many`: the alert, its node key, its crop as JPEG
#: and its admission check (see :meth:`AlertRecorder.deliver`).
Delivery = tuple[vtypes.Alert, "str | None", "bytes | None", "Admit | None"]


@dataclass(frozen=True)
class Delivered:
    """What :meth:`AlertRecorder.deliver` did: ``stored`` (a new row), ``updated`` (a later
    revision applied), ``duplicate`` (a node's alert stored already), ``ignored`` (not newer,
    or under review) or ``refused`` (``reason``: the subject left the deployment's
    watchlists, or the ``admit`` check said no)."""

    outcome: str
    row_id: int | None
    reason: str | None = None


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
        #: Rows stored as field-test alerts (against a test watchlist): never handed on.
        self._tests: set[int] = set()
        with system.db.reading() as s:
            dep = s.get(Deployment, deployment_id)
            if dep is None:
                raise NotFound(f"no deployment {deployment_id}")
            if dep.data_key_id is None:
                raise RuleError(f"deployment {deployment_id} has no data key: its alert crops "
                                "could not be encrypted")

    def publish(self, alert: vtypes.Alert) -> None:
        self.deliver(alert)

    def deliver(self, alert: vtypes.Alert, *, key: str | None = None,
                jpeg: bytes | None = None, admit: Admit | None = None) -> Delivered:
        """Store ``alert`` (see the class) and hand it on when stored. A node's alert (through
        :mod:`openlfr.governance.ingest`) comes with ``key``, its unique ``<node>:<alert id>``
        (the row is found by it, so a second delivery of the same revision changes nothing:
        ``duplicate``), its crop already as ``jpeg``, and ``admit``, a check made in the same
        transaction that returns why the alert may not be stored (None: it may)."""
        return self.deliver_many([(alert, key, jpeg, admit)])[0]

    def deliver_many(self, items: Sequence[Delivery]) -> list[Delivered]:
        """:meth:`deliver` for several alerts ``(alert, key, jpeg, admit)`` in one transaction
        (a batch of the nodes' stream: one commit instead of one each). All are stored or, on
        an error (logged and raised), none; each is then handed on, in order."""
        with self._lock:
            try:
                with self._system.db.session() as s:
                    done = [self._store(s, *item) for item in items]
            except Exception:
                first = items[0][0] if items else None
                log.exception("%d alert(s) of deployment %d were NOT stored (the first: %s, "
                              "revision %d)", len(items), self.deployment_id,
                              first.alert_id if first else "-", first.revision if first else 0)
                raise
            out = []
            for (alert, key, _jpeg, _admit), (result, test) in zip(items, done, strict=True):
                if test and result.row_id is not None:
                    self._tests.add(result.row_id)
                if key is None and result.outcome == "stored" and result.row_id is not None:
                    self._rows[alert.alert_id] = result.row_id
                out.append(result)
            for (alert, *_rest), result in zip(items, out, strict=True):
                row_id = result.row_id if result.outcome in ("stored", "updated") else None
                if row_id is not None and row_id in self._tests:
                    continue  # a field-test alert: stored, never shown as an operational alert
                if row_id is not None and self._on_stored is not None:
                    self._on_stored(row_id, alert)
            return out

    def stored_id(self, pipeline_alert_id: str) -> int | None:
        """The row id of a pipeline alert stored by this recorder."""
        with self._lock:
            return self._rows.get(pipeline_alert_id)

    def _store(self, s: Session, alert: vtypes.Alert, key: str | None = None,
               jpeg: bytes | None = None, admit: Admit | None = None
               ) -> tuple[Delivered, bool]:
        """Store one alert in ``s``'s transaction; what was done, and whether the row is a
        field test's."""
        crop = jpeg if jpeg is not None else encode_crop(alert.probe_crop)
        dep = s.get(Deployment, self.deployment_id)
        if dep is None:
            raise NotFound(f"no deployment {self.deployment_id}")
        why = admit(s, dep) if admit is not None else None
        if why is not None:
            return Delivered("refused", None, why), False
        subject_id = _db_id(alert.subject_id)
        if not memo(s, ("enrolled", self.deployment_id, subject_id),
                    lambda: self._enrolled(s, subject_id)):
            self.refused += 1
            log.info("deployment %d: an alert was not stored: its subject is no longer on "
                     "an approved watchlist of the deployment", self.deployment_id)
            return Delivered("refused", None, "the subject is no longer on an approved "
                             "watchlist of the deployment"), False
        if key is not None:
            row = s.scalar(select(Alert).where(Alert.node_alert_id == key))
            if row is not None and row.deployment_id != dep.id:
                return Delivered("refused", None, "the alert id is another deployment's"), False
        else:
            row_id = self._rows.get(alert.alert_id) if alert.revision > 0 else None
            row = s.get(Alert, row_id) if row_id is not None else None
        if row is not None:
            if alert.revision <= row.revision:
                if key is not None:  # the same alert delivered again: stored already
                    return Delivered("duplicate", row.id), False
                log.warning("alert %s: revision %d is not newer than the stored %d; "
                            "ignored", alert.alert_id, alert.revision, row.revision)
                return Delivered("ignored", row.id), False
            if row.status != AlertStatus.PENDING or row.purged_at is not None or s.scalar(
                    select(Adjudication.id).where(Adjudication.alert_id == row.id)
                    .limit(1)) is not None:
                log.info("alert %d is under review: revision %d of %s not applied",
                         row.id, alert.revision, alert.alert_id)
                return Delivered("ignored", row.id), False
            row.score = float(alert.score)
            row.revision = int(alert.revision)
            row.crop_ct = self._seal_crop(s, dep, crop, row.id)
            audit_log.record(s, audit_log.SYSTEM, "alert.update", "alert", row.id,
                             self._details(alert, row))
            return Delivered("updated", row.id), False
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
        row.latency = None if alert.latency is None else float(alert.latency)
        row.in_view = None if alert.in_view is None else float(alert.in_view)
        row.node_alert_id = key
        test = memo(s, ("field_test", row.watchlist_id), lambda: fieldtests.test_of_watchlist(
            s, row.watchlist_id)) is not None and fieldtests.mark_test_alert(s, row)
        s.add(row)
        s.flush()
        row.crop_ct = self._seal_crop(s, dep, crop, row.id)
        details = self._details(alert, row)
        if key is not None:
            details["node_alert"] = key  # sent by a node: which, and its alert id
        if test:
            details["field_test"] = row.field_test_id
        audit_log.record(s, audit_log.SYSTEM, "alert.create", "alert", row.id, details)
        return Delivered("stored", row.id), test

    def _seal_crop(self, s: Session, dep: Deployment, crop: bytes, row_id: int) -> bytes:
        """The crop encrypted under the deployment's data key (unwrapped once a transaction)."""
        key_id = dep.data_key_id
        if key_id is None or (row := s.get(DataKey, key_id)) is None or row.destroyed_at:
            raise CryptoError(f"data key {key_id} does not exist (destroyed?)")
        key = memo(s, ("data_key", key_id), lambda: self._system.keyring.unwrap(s, key_id))
        return crypto.seal(key, crop, crop_aad(dep.id, row_id))

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

#: What a status filter may say: one status, ``decided`` (any but pending) or ``all``.
STATUS_FILTERS = ("pending", "decided", "confirmed", "rejected", "no_action", "all")
#: The most alerts one page holds (there is always a next page, never a silent cut-off).
MAX_PAGE = 200


@dataclass(frozen=True)
class AlertFilter:
    """Which alerts to list: the one filter of the console, the API and the command line.
    Build it with :func:`parse_filter` from what a person typed (each value checked, each
    mistake naming its field). Times are aware UTC; ``since`` and ``until`` bound
    ``seen_at`` (``until`` excluded); the score band includes both ends."""

    deployment_id: int | None = None
    camera: str | None = None
    status: str = "all"
    since: datetime | None = None
    until: datetime | None = None
    min_score: float | None = None
    max_score: float | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        # field-test alerts are never operational alerts: they have their own view
        out: list[ColumnElement[bool]] = [Alert.field_test_id.is_(None)]
        if self.deployment_id is not None:
            out.append(Alert.deployment_id == self.deployment_id)
        if self.camera is not None:
            out.append(Alert.camera == self.camera)
        if self.status == "decided":
            out.append(Alert.status != AlertStatus.PENDING)
        elif self.status != "all":
            out.append(Alert.status == AlertStatus(self.status))
        if self.since is not None:
            out.append(Alert.seen_at >= self.since)
        if self.until is not None:
            out.append(Alert.seen_at < self.until)
        if self.min_score is not None:
            out.append(Alert.score >= self.min_score)
        if self.max_score is not None:
            out.append(Alert.score <= self.max_score)
        return out


def _score(text: str, field: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise RuleError(f"{field} {text[:40]!r} is not a number (a score such as 0.45)",
                        field=field) from None
    if not math.isfinite(value) or not -1.0 <= value <= 1.0:
        raise RuleError(f"{field} {text[:40]!r}: a score is between -1 and 1", field=field)
    return value


def parse_filter(*, deployment: str | int | None = None, camera: str | None = None,
                 status: str | None = None, since: str | None = None,
                 until: str | None = None, min_score: str | float | None = None,
                 max_score: str | float | None = None, default_status: str = "all",
                 form: bool = False, now: datetime | None = None, zone: tzinfo = UTC,
                 ) -> tuple[AlertFilter, list[RuleError]]:
    """An :class:`AlertFilter` from text, and the mistakes found (each a
    :class:`~openlfr.governance.authz.RuleError` naming its field; a wrong value is left out
    of the filter, so a page can still show the rest). Empty values mean "any". Times are in
    the one time format (:func:`~openlfr.governance.times.parse_time`); ``form`` reads a
    console form's zoneless ``datetime-local`` values in the zone of people, ``zone``
    (:func:`~openlfr.governance.times.form_time`)."""
    errors: list[RuleError] = []
    values: dict[str, Any] = {"status": default_status}

    def blank(v: object) -> bool:
        return v is None or (isinstance(v, str) and not v.strip())

    if not blank(deployment):
        number = _db_id(str(deployment))
        if number is None or number > 2**62:
            errors.append(RuleError(f"deployment {str(deployment)[:40]!r} is not a "
                                    "deployment number", field="deployment"))
        else:
            values["deployment_id"] = number
    if not blank(camera):
        assert camera is not None
        if len(camera.strip()) > 100:
            errors.append(RuleError("camera: a camera's name is at most 100 characters",
                                    field="camera"))
        else:
            values["camera"] = camera.strip()
    if not blank(status):
        assert status is not None
        code = status.strip().lower().replace("-", "_").replace(" ", "_")
        if code not in STATUS_FILTERS:
            words = ", ".join(c.replace("_", " ") for c in STATUS_FILTERS)
            errors.append(RuleError(f"status {status[:40]!r} is not one of: {words}",
                                    field="status"))
        else:
            values["status"] = code

    def read(text: str, field: str, now: datetime | None) -> datetime:
        if form:
            return times.form_time(text, field, now, zone=zone)
        return times.parse_time(text, field, now)

    for name in ("since", "until"):
        raw = since if name == "since" else until
        if not blank(raw):
            assert isinstance(raw, str)
            try:
                values[name] = read(raw, name, now)
            except RuleError as exc:
                errors.append(exc)
    for name, raw_score in (("min_score", min_score), ("max_score", max_score)):
        if not blank(raw_score):
            try:
                values[name] = _score(str(raw_score).strip(), name)
            except RuleError as exc:
                errors.append(exc)
    if values.get("since") and values.get("until") and values["since"] >= values["until"]:
        errors.append(RuleError("until must be later than since", field="until"))
        del values["until"]
    low, high = values.get("min_score"), values.get("max_score")
    if low is not None and high is not None and low > high:
        errors.append(RuleError(f"max_score {high} is below min_score {low}",
                                field="max_score"))
        del values["max_score"]
    return AlertFilter(**values), errors


def alert_filter(**given: Any) -> AlertFilter:
    """:func:`parse_filter`, raising its first mistake (the API and the command line)."""
    found, errors = parse_filter(**given)
    if errors:
        raise errors[0]
    return found


def _with_views() -> tuple[Any, ...]:
    return (selectinload(Alert.adjudications), selectinload(Alert.outcome),
            selectinload(Alert.deployment), selectinload(Alert.subject))


def search_alerts(db: Database, actor: Actor, where: AlertFilter | None = None, *,
                  before: int | None = None, after: int | None = None,
                  limit: int = 50) -> AlertPage:
    """One page of the alerts matching ``where``, newest first (``Perm.ALERT_READ``), with
    the total and the cursors of the pages around it (keyset paging on the alert number:
    ``before`` gives the page of older alerts, ``after`` the page of newer ones; alerts
    arriving meanwhile do not shift the pages)."""
    require(db, actor, Perm.ALERT_READ, "alert")
    where = where or AlertFilter()
    if not 1 <= limit <= MAX_PAGE:
        raise RuleError(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    if before is not None and after is not None:
        raise RuleError("give before or after, not both", field="after")
    conds = where.conditions()
    with db.reading() as s:
        total = int(s.scalar(select(func.count()).select_from(Alert).where(*conds)) or 0)
        rows: list[Alert] = []
        if after is not None:
            rows = list(s.scalars(select(Alert).where(*conds, Alert.id > after)
                                  .options(*_with_views()).order_by(Alert.id.asc())
                                  .limit(limit)))[::-1]
        if after is None or len(rows) < limit:  # past the newest end: the newest page
            query = select(Alert).where(*conds)
            if before is not None:
                query = query.where(Alert.id < before)
            rows = list(s.scalars(query.options(*_with_views()).order_by(Alert.id.desc())
                                  .limit(limit)))
        if not rows:
            return AlertPage(items=(), total=total, start=0, newer=None, older=None)
        first, last = rows[0].id, rows[-1].id
        above = int(s.scalar(select(func.count()).select_from(Alert)
                             .where(*conds, Alert.id > first)) or 0)
        below = s.scalar(select(Alert.id).where(*conds, Alert.id < last).limit(1))
        return AlertPage(items=tuple(_view(r) for r in rows), total=total, start=above + 1,
                         newer=first if above else None,
                         older=last if below is not None else None)


def list_alerts(db: Database, actor: Actor, deployment_id: int | None = None,
                status: AlertStatus | None = None, limit: int = 100) -> list[AlertView]:
    """The newest alerts first (``Perm.ALERT_READ``): at most ``limit`` of them, a
    shorthand of :func:`search_alerts` (which pages through all of them)."""
    require(db, actor, Perm.ALERT_READ, "alert")
    if limit < 1:
        raise RuleError("limit must be at least 1", field="limit")
    where = AlertFilter(deployment_id=deployment_id,
                        status=status.value if status is not None else "all")
    with db.reading() as s:
        query = select(Alert).where(*where.conditions()).options(*_with_views())
        return [_view(r) for r in s.scalars(query.order_by(Alert.id.desc()).limit(limit))]


def get_alert(db: Database, actor: Actor, alert_id: int) -> AlertView:
    require(db, actor, Perm.ALERT_READ, "alert", str(alert_id))
    with db.reading() as s:
        return _view(_load(s, alert_id))


def _crop(system: System, s: Session, alert_id: int) -> tuple[Alert, bytes]:
    row = s.get(Alert, alert_id)
    if row is None:
        raise NotFound(f"no alert {alert_id}")
    if row.crop_ct is None:
        raise Conflict(f"alert {alert_id} has no crop (purged)")
    dep = s.get(Deployment, row.deployment_id)
    assert dep is not None  # the foreign key cascades
    return row, system.keyring.decrypt(s, dep.data_key_id, row.crop_ct,
                                       crop_aad(dep.id, row.id))


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
        row, data = _crop(system, s, alert_id)
        audit_log.record(s, actor.name, "alert.view_crop", "alert", row.id,
                         {"deployment": row.deployment_id, **shared})
    return data


# -- views of alerts ---------------------------------------------------------------------------

#: How an image of an alert is asked for: shown on its card (counted with the card's view),
#: enlarged on purpose (audited ``alert.enlarge``), or opened on its own (audited as ever).
IMAGE_USES = ("card", "enlarge", "open")


def session_digest(secret: str) -> str:
    """What :func:`record_views` keeps of a session's secret: a SHA-256 under a label of its
    own, so it neither signs anyone in nor matches the sessions table's digest."""
    return hashlib.sha256(b"openlfr alert view\0" + secret.encode()).hexdigest()


def record_views(db: Database, actor: Actor, shown: Sequence[AlertView], session: str) -> int:
    """Count that ``actor`` was shown these alerts' cards in the sign-in session whose secret
    is ``session``; only the first view of an alert in a session is audited (``alert.view``).
    Returns how many entries were written.

    Race-safe on SQLite and PostgreSQL: one row per (session, person, alert) under a unique
    constraint, inserted or counted up in one statement (``ON CONFLICT DO UPDATE ...
    RETURNING``), whose answer (a count of 1: this request inserted it) decides the audit
    entry; two requests at once count two views and audit one. (Writing transactions are
    also serialised by :meth:`~openlfr.store.db.Database.session`; the constraint holds even
    for a writer that is not.)"""
    if not shown:
        return 0
    digest = session_digest(session)
    now = utcnow()
    first: list[AlertView] = []
    with db.session() as s:
        insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
        t = AlertViewRecord
        for view in sorted({v.id: v for v in shown}.values(), key=lambda v: v.id):
            stmt = insert(t).values(session_digest=digest, user_name=actor.name,
                                    alert_id=view.id, count=1, first_at=now, last_at=now)
            upsert = stmt.on_conflict_do_update(
                index_elements=["session_digest", "user_name", "alert_id"],
                set_={"count": t.count + 1, "last_at": now},
            ).returning(t.count)
            if s.execute(upsert).scalar_one() == 1:
                first.append(view)
        for view in first:
            audit_log.record(s, actor.name, "alert.view", "alert", view.id,
                             {"deployment": view.deployment_id})
    return len(first)


def _shown_in(s: Session, actor: Actor, alert_id: int, session: str | None) -> bool:
    if session is None:
        return False
    return s.scalar(select(AlertViewRecord.id).where(
        AlertViewRecord.session_digest == session_digest(session),
        AlertViewRecord.user_name == actor.name,
        AlertViewRecord.alert_id == alert_id)) is not None


def alert_image(system: System, actor: Actor, alert_id: int, which: str, use: str,
                session: str | None = None) -> bytes:
    """The probe crop (``which="crop"``) or the watchlist reference image (``"reference"``)
    of an alert, decrypted now, for the console:

    * ``use="card"``: shown on the alert's card; not audited again when the card's view was
      counted in this session (:func:`record_views`), else audited as ``"open"``;
    * ``use="enlarge"``: enlarged on purpose, at full resolution: audited ``alert.enlarge``;
    * ``use="open"``: opened on its own: audited ``alert.view_crop`` /
      ``subject_image.view``.
    """
    if which not in ("crop", "reference"):
        raise RuleError(f"no image {which!r}: crop or reference", field="image")
    if use not in IMAGE_USES:
        raise RuleError(f"use {use!r}: {', '.join(IMAGE_USES)}", field="use")
    require(system.db, actor, Perm.ALERT_READ, "alert", str(alert_id))
    with system.db.reading() as s:
        row = s.get(Alert, alert_id)
        if row is None:
            raise NotFound(f"no alert {alert_id}")
        image_id, deployment_id = row.subject_image_id, row.deployment_id
        counted = use == "card" and _shown_in(s, actor, alert_id, session)
    if use == "open" or (use == "card" and not counted):
        if which == "crop":
            return alert_crop(system, actor, alert_id)
        return subject_image(system, actor, _reference_id(alert_id, image_id))
    if which == "reference":
        data = subject_image(system, actor, _reference_id(alert_id, image_id), audit=False)
        if use == "enlarge":
            _audit_enlarge(system.db, actor, alert_id, deployment_id, which)
        return data
    with system.db.session() as s:
        _, data = _crop(system, s, alert_id)
        if use == "enlarge":
            audit_log.record(s, actor.name, "alert.enlarge", "alert", alert_id,
                             {"deployment": deployment_id, "image": which})
    return data


def _reference_id(alert_id: int, image_id: int | None) -> int:
    if image_id is None:
        raise NotFound(f"alert {alert_id} has no reference image (purged, or the subject "
                       "was removed)")
    return image_id


def _audit_enlarge(db: Database, actor: Actor, alert_id: int, deployment_id: int,
                   which: str) -> None:
    with db.session() as s:
        audit_log.record(s, actor.name, "alert.enlarge", "alert", alert_id,
                         {"deployment": deployment_id, "image": which})


def alert_view_counts(db: Database, actor: Actor, alert_id: int) -> tuple[AlertViewCount, ...]:
    """Who was shown the alert's card, in how many sessions, how often (``Perm.AUDIT_READ``:
    it is audit data)."""
    require(db, actor, Perm.AUDIT_READ, "alert", str(alert_id))
    t = AlertViewRecord
    with db.reading() as s:
        rows = s.execute(
            select(t.user_name, func.count(), func.sum(t.count), func.min(t.first_at),
                   func.max(t.last_at))
            .where(t.alert_id == alert_id).group_by(t.user_name)
            .order_by(func.min(t.first_at))).all()
    return tuple(AlertViewCount(user=u, sessions=int(n), views=int(c or 0),
                                first_at=_aware(f), last_at=_aware(last))
                 for u, n, c, f, last in rows)


def _aware(value: datetime) -> datetime:
    """An aggregate's time (SQLite hands back the stored text's naive value) in UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# -- deciding ----------------------------------------------------------------------------------

class _SameConfirmer(Exception):
    pass


def _not_a_test(row: Alert) -> None:
    """A field-test alert is reviewed in its test's view and never decided or acted on."""
    if row.field_test_id is not None:
        raise Conflict(f"alert {row.id} is a field-test alert (field test "
                       f"{row.field_test_id}): it is reviewed in the test's view and can "
                       "never be decided or lead to an outcome")


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
            _not_a_test(row)
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


#: The longest stop after a false alert the form accepts, in minutes (eight hours): a longer
#: figure is a typing error, not a stop.
MAX_STOP_MINUTES = 480


@dataclass(frozen=True)
class FalseAlertStop:
    """What the outcome form records after a false alert (equality monitoring): whether the
    person was stopped, for how many minutes (1 to :data:`MAX_STOP_MINUTES`, only if stopped),
    and optionally the officer's perception of their ethnic group and sex."""

    stopped: bool
    minutes: int | None = None
    ethnicity: PerceivedEthnicity | None = None
    sex: PerceivedSex | None = None


def stop_from_form(stopped: str | None, minutes: str | None, ethnicity: str | None,
                   sex: str | None) -> FalseAlertStop | None:
    """The stop fields as a form or the command line sends them (``stopped`` yes/no, the
    rest text); None when none was filled in."""
    said = (stopped or "").strip().lower()
    text = (minutes or "").strip()
    if not said and not text and not (ethnicity or "").strip() and not (sex or "").strip():
        return None
    if said not in ("yes", "no"):
        raise RuleError("say whether the person was stopped (yes or no)", field="stopped")
    number: int | None = None
    if text:
        try:
            number = int(text)
        except ValueError:
            raise RuleError(f"stop minutes {text!r}: a whole number from 1 to "
                            f"{MAX_STOP_MINUTES}", field="stop_minutes") from None
    return FalseAlertStop(said == "yes", number, parse_ethnicity(ethnicity), parse_sex(sex))


def _check_stop(stop: FalseAlertStop) -> None:
    if stop.stopped:
        if stop.minutes is None:
            raise RuleError("how long the person was stopped (minutes) is required when they "
                            "were stopped", field="stop_minutes")
        if isinstance(stop.minutes, bool) or not 1 <= stop.minutes <= MAX_STOP_MINUTES:
            raise RuleError(f"stop minutes {stop.minutes}: a whole number from 1 to "
                            f"{MAX_STOP_MINUTES}", field="stop_minutes")
    elif stop.minutes is not None:
        raise RuleError("stop minutes are recorded only when the person was stopped",
                        field="stop_minutes")


def record_outcome(db: Database, actor: Actor, alert_id: int, engaged: bool, action: Action,
                   notes: str | None = None, *, not_subject: bool = False,
                   stop: FalseAlertStop | None = None) -> AlertView:
    """What happened after an alert (once per alert): whether the person was engaged and the
    action taken. Audited ``alert.outcome``.

    A confirmed alert's outcome may say the engaged person turned out ``not_subject``; that,
    or a rejected (false) alert, is a *false alert*, and only a false alert's outcome records
    ``stop`` (required then): equality monitoring. The audit entry says whether the person
    was stopped and for how long, and only *whether* a perceived ethnicity or sex was
    recorded, never which (README, "Alerts and outcomes").
    """
    require(db, actor, Perm.ALERT_ADJUDICATE, "alert", str(alert_id))
    _person(actor)
    text = _clean_text(notes, "notes", False)
    if not engaged and action in (Action.ADVICE, Action.ARREST):
        raise RuleError(f"action {action.value} means the person was engaged: engaged must be "
                        "true", field="engaged")
    if not_subject and not engaged:
        raise RuleError("a person turns out not to be the subject only once engaged: engaged "
                        "must be true", field="not_subject")
    if stop is not None:
        _check_stop(stop)
        if stop.stopped and not engaged:
            raise RuleError("a person who was stopped was engaged: engaged must be true",
                            field="engaged")
    with db.session() as s:
        row = _load(s, alert_id)
        _not_a_test(row)
        if row.purged_at is not None:  # its notes would outlive the purge, never blanked
            raise Conflict(f"alert {alert_id} was purged")
        if row.status not in (AlertStatus.CONFIRMED, AlertStatus.REJECTED):
            raise Conflict(f"alert {alert_id} is {row.status.value}: outcomes are recorded "
                           "only for confirmed alerts and false alerts")
        if row.outcome is not None:
            raise Conflict(f"alert {alert_id} already has an outcome (recorded by "
                           f"{row.outcome.recorded_by})")
        rejected = row.status == AlertStatus.REJECTED
        if rejected and not_subject:
            raise RuleError(f"alert {alert_id} was rejected as a false alert: 'not the "
                            "subject' is for confirmed alerts", field="not_subject")
        false_alert = rejected or not_subject
        if false_alert and stop is None:
            raise RuleError("after a false alert the outcome records whether the person was "
                            "stopped", field="stopped")
        if not false_alert and stop is not None:
            raise RuleError("whether the person was stopped, for how long, and the perceived "
                            "ethnicity and sex are recorded only after a false alert (rejected, "
                            "or the person was not the subject)", field="stopped")
        row.outcome = Outcome(engaged=engaged, action=action, notes=text,
                              recorded_by=actor.name, created_at=utcnow(),
                              not_subject=not_subject if not rejected else None)
        details: dict[str, Any] = {
            "deployment": row.deployment_id, "engaged": engaged, "action": action.value,
            "notes_given": text is not None}
        if stop is not None:
            o = row.outcome
            o.stopped, o.stop_minutes = stop.stopped, stop.minutes
            o.perceived_ethnicity = None if stop.ethnicity is None else stop.ethnicity.value
            o.perceived_sex = None if stop.sex is None else stop.sex.value
            details.update(not_subject=not_subject, stopped=stop.stopped,
                           stop_minutes=stop.minutes,
                           equality_recorded=stop.ethnicity is not None or stop.sex is not None)
        s.flush()
        audit_log.record(s, actor.name, "alert.outcome", "alert", row.id, details)
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
