"""Residents' questions and objections about a deployment, and the overseers' answers.

Anyone may send one from a deployment's public page (no account; spam is limited by the
route: per-address rate limit, size limit, a honeypot field, CSRF). Authorising officers,
supervisors and admins read, answer and close them; auditors read them. Receiving, answering and
closing are audited (the audit entry holds the SHA-256 of an answer, not its text, since a
question or an answer may name people). The public sees the counts, and the questions whose
answer an overseer published (:func:`publish_answer`): the question as the overseer edited it
and the answer, both passed through :func:`openlfr.redact.redact_personal`, copied at
publication (a later change to the answer is published only when published again). Withdrawing
a publication is :func:`unpublish_answer`. Both are audited with the digests of the texts.

Each question gets a **reference** when it is received (:func:`new_reference`): ``Q-`` and
eight random characters (40 bits, from :mod:`secrets`), shown to the sender, so that they can
find the answer on the public page. It is not a sequence number: one reference says nothing
about another, nor how many questions were sent.

Permissions are ``question.read`` and ``question.answer`` of
:mod:`openlfr.governance.authz`, refusals audited like every other.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from openlfr.audit import log as audit_log
from openlfr.governance.authz import (
    Actor,
    Conflict,
    NotFound,
    Perm,
    RuleError,
    allowed,
    require,
)
from openlfr.governance.views import QuestionView
from openlfr.redact import redact_personal
from openlfr.store.db import Database
from openlfr.store.models import (
    Deployment,
    PublicQuestion,
    QuestionKind,
    QuestionStatus,
    utcnow,
)
from openlfr.transparency.public import is_public

PUBLIC_ACTOR = "public"
MIN_TEXT, MAX_TEXT, MAX_CONTACT, MAX_ANSWER = 10, 4000, 200, 8000

QUESTION_READ = Perm.QUESTION_READ
QUESTION_ANSWER = Perm.QUESTION_ANSWER
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def require_question(db: Database, actor: Actor, perm: Perm, object_id: str = "") -> None:
    require(db, actor, perm, "question", object_id)


def may(actor: Actor, perm: Perm) -> bool:
    """For showing or hiding buttons only; the service still decides."""
    return allowed(actor, perm)


def _clean(value: str) -> str:
    return _CONTROL.sub("", value.replace("\r\n", "\n")).strip()


#: The characters of a reference: Crockford's base 32 (no I, L, O or U to misread).
REFERENCE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
REFERENCE_PATTERN = re.compile(r"Q-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}")


def new_reference() -> str:
    """A fresh random reference, ``Q-XXXX-XXXX`` (module doc)."""
    chars = "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(8))
    return f"Q-{chars[:4]}-{chars[4:]}"


@dataclass(frozen=True)
class Received:
    id: int
    reference: str


def _view(q: PublicQuestion, name: str) -> QuestionView:
    return QuestionView(id=q.id, deployment_id=q.deployment_id, deployment_name=name,
                        kind=q.kind.value, text=q.text, contact=q.contact,
                        created_at=q.created_at, status=q.status.value, answer=q.answer,
                        answered_by=q.answered_by, answered_at=q.answered_at,
                        closed_by=q.closed_by, closed_at=q.closed_at,
                        reference=q.reference, published_by=q.published_by,
                        published_at=q.published_at, public_text=q.public_text,
                        public_answer=q.public_answer)


def submit_question(db: Database, deployment_id: int, kind: str, text: str,
                    contact: str | None) -> int:
    """Store a resident's question (audited as ``question.received`` by ``public``); its id."""
    return receive_question(db, deployment_id, kind, text, contact).id


def receive_question(db: Database, deployment_id: int, kind: str, text: str,
                     contact: str | None) -> Received:
    """Store a resident's question (audited as ``question.received`` by ``public``); its id
    and the reference to give the sender."""
    try:
        qkind = QuestionKind(kind.strip().lower())
    except ValueError:
        raise RuleError("kind: choose whether this is a question or an objection",
                        field="kind") from None
    text = _clean(text)
    contact = _clean(contact or "") or None
    if len(text) < MIN_TEXT:
        raise RuleError(f"please write at least {MIN_TEXT} characters")
    if len(text) > MAX_TEXT:
        raise RuleError(f"please keep it under {MAX_TEXT} characters (it has {len(text)})")
    if contact is not None and len(contact) > MAX_CONTACT:
        raise RuleError(f"the contact may have at most {MAX_CONTACT} characters")
    with db.session() as s:
        d = s.get(Deployment, deployment_id)
        if d is None or not is_public(d):
            raise NotFound(f"no public deployment {deployment_id}")
        reference = new_reference()
        while s.scalar(select(PublicQuestion.id).where(PublicQuestion.reference == reference)):
            reference = new_reference()
        q = PublicQuestion(deployment_id=d.id, kind=qkind, text=text, contact=contact,
                           status=QuestionStatus.OPEN, reference=reference)
        s.add(q)
        s.flush()
        audit_log.record(s, PUBLIC_ACTOR, "question.received", "question", q.id,
                         {"deployment": d.id, "kind": qkind.value,
                          "with_contact": contact is not None})
        return Received(q.id, reference)


def list_questions(db: Database, actor: Actor, status: str | None = None,
                   deployment_id: int | None = None) -> list[QuestionView]:
    require_question(db, actor, QUESTION_READ)
    query = (select(PublicQuestion, Deployment.name)
             .join(Deployment, Deployment.id == PublicQuestion.deployment_id)
             .order_by(PublicQuestion.id.desc()))
    if status:
        try:
            query = query.where(PublicQuestion.status == QuestionStatus(status))
        except ValueError:
            raise RuleError(f"unknown status {status!r}: open, answered or closed",
                            field="status") from None
    if deployment_id is not None:
        query = query.where(PublicQuestion.deployment_id == deployment_id)
    with db.reading() as s:
        return [_view(q, n) for q, n in s.execute(query.limit(1000)).all()]


def get_question(db: Database, actor: Actor, question_id: int) -> QuestionView:
    require_question(db, actor, QUESTION_READ, str(question_id))
    with db.reading() as s:
        row = s.execute(select(PublicQuestion, Deployment.name)
                        .join(Deployment, Deployment.id == PublicQuestion.deployment_id)
                        .where(PublicQuestion.id == question_id)).first()
        if row is None:
            raise NotFound(f"no question {question_id}")
        return _view(row[0], row[1])


def answer_question(db: Database, actor: Actor, question_id: int, answer: str,
                    close: bool = False) -> QuestionView:
    """Record (or replace) the answer; audited ``question.answer``."""
    require_question(db, actor, QUESTION_ANSWER, str(question_id))
    answer = _clean(answer)
    if not answer:
        raise RuleError("the answer is empty")
    if len(answer) > MAX_ANSWER:
        raise RuleError(f"an answer may have at most {MAX_ANSWER} characters")
    with db.session() as s:
        q, name = _load(s, question_id)
        if q.status == QuestionStatus.CLOSED:
            raise Conflict(f"question {question_id} is closed")
        now = utcnow()
        q.answer, q.answered_by, q.answered_at = answer, actor.name, now
        q.status = QuestionStatus.CLOSED if close else QuestionStatus.ANSWERED
        if close:
            q.closed_by, q.closed_at = actor.name, now
        audit_log.record(s, actor.name, "question.answer", "question", q.id,
                         {"deployment": q.deployment_id, "closed": close,
                          "answer_sha256": hashlib.sha256(answer.encode()).hexdigest()})
        return _view(q, name)


def close_question(db: Database, actor: Actor, question_id: int) -> QuestionView:
    """Close without (further) answer, e.g. spam or a duplicate; audited ``question.close``."""
    require_question(db, actor, QUESTION_ANSWER, str(question_id))
    with db.session() as s:
        q, name = _load(s, question_id)
        if q.status == QuestionStatus.CLOSED:
            raise Conflict(f"question {question_id} is already closed")
        q.status, q.closed_by, q.closed_at = QuestionStatus.CLOSED, actor.name, utcnow()
        audit_log.record(s, actor.name, "question.close", "question", q.id,
                         {"deployment": q.deployment_id, "answered": q.answer is not None})
        return _view(q, name)


def _load(s: Session, question_id: int) -> tuple[PublicQuestion, str]:
    """The question and its deployment's name, or :class:`NotFound`."""
    row = s.execute(select(PublicQuestion, Deployment.name)
                    .join(Deployment, Deployment.id == PublicQuestion.deployment_id)
                    .where(PublicQuestion.id == question_id)).first()
    if row is None:
        raise NotFound(f"no question {question_id}")
    return row[0], row[1]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def publish_answer(db: Database, actor: Actor, question_id: int,
                   public_text: str | None = None) -> QuestionView:
    """Publish an answered question on the deployment's public page: ``public_text`` (the
    question as the overseer edited it for publication; default the question as sent) and the
    answer, both redacted (:func:`openlfr.redact.redact_personal`); the contact never. Audited
    ``question.publish`` with the SHA-256 of both published texts. Publishing again replaces
    the published texts (e.g. after a new answer)."""
    require_question(db, actor, QUESTION_ANSWER, str(question_id))
    edited = _clean(public_text or "")
    if len(edited) > MAX_TEXT:
        raise RuleError(f"the published question may have at most {MAX_TEXT} characters")
    with db.session() as s:
        q, name = _load(s, question_id)
        if not q.answer:
            raise Conflict(f"question {question_id} has no answer to publish yet")
        q.public_text = redact_personal(edited or q.text)
        q.public_answer = redact_personal(q.answer)
        q.published_by, q.published_at = actor.name, utcnow()
        audit_log.record(s, actor.name, "question.publish", "question", q.id,
                         {"deployment": q.deployment_id, "edited": bool(edited),
                          "question_sha256": _digest(q.public_text),
                          "answer_sha256": _digest(q.public_answer)})
        return _view(q, name)


def unpublish_answer(db: Database, actor: Actor, question_id: int) -> QuestionView:
    """Take a published question and answer off the public page; audited
    ``question.unpublish``."""
    require_question(db, actor, QUESTION_ANSWER, str(question_id))
    with db.session() as s:
        q, name = _load(s, question_id)
        if q.published_at is None:
            raise Conflict(f"question {question_id} is not published")
        q.public_text = q.public_answer = q.published_by = q.published_at = None
        audit_log.record(s, actor.name, "question.unpublish", "question", q.id,
                         {"deployment": q.deployment_id})
        return _view(q, name)


@dataclass(frozen=True)
class QuestionCounts:
    """The questions (or objections) received in a period, and what became of them by now."""

    kind: str  # question | objection
    received: int
    answered: int  # an answer was recorded (closed or not)
    closed_unanswered: int  # closed without an answer (spam, a duplicate)
    open: int  # neither answered nor closed yet
    published: int  # the answer is on the public page
    #: Median days from receipt to the (latest) answer, of those answered; None if none.
    median_days_to_answer: float | None


def question_counts(s: Session, start: datetime, end: datetime) -> list[QuestionCounts]:
    """Per kind (questions, then objections), the questions received from ``start``
    (inclusive) to ``end`` (exclusive) over every deployment, and what became of them."""
    rows = s.execute(select(PublicQuestion.kind, PublicQuestion.created_at,
                            PublicQuestion.answer.is_not(None), PublicQuestion.answered_at,
                            PublicQuestion.status, PublicQuestion.published_at.is_not(None))
                     .where(PublicQuestion.created_at >= start,
                            PublicQuestion.created_at < end)).all()
    out = []
    for kind in QuestionKind:
        mine = [r for r in rows if r[0] == kind]
        days = sorted((r[3] - r[1]).total_seconds() / 86400.0 for r in mine
                      if r[2] and r[3] is not None)
        median = None
        if days:
            mid = len(days) // 2
            median = days[mid] if len(days) % 2 else (days[mid - 1] + days[mid]) / 2
        out.append(QuestionCounts(
            kind=kind.value, received=len(mine), answered=sum(1 for r in mine if r[2]),
            closed_unanswered=sum(1 for r in mine
                                  if not r[2] and r[4] == QuestionStatus.CLOSED),
            open=sum(1 for r in mine if r[4] == QuestionStatus.OPEN),
            published=sum(1 for r in mine if r[5]),
            median_days_to_answer=None if median is None else round(median, 2)))
    return out
