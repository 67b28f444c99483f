"""Residents' questions and objections about a deployment, and the overseers' answers.

Anyone may send one from a deployment's public page (no account; spam is limited by the
route: per-address rate limit, size limit, a honeypot field, CSRF). Authorising officers,
supervisors and admins read, answer and close them; auditors read them. Receiving, answering and
closing are audited (the audit entry holds the SHA-256 of an answer, not its text, since a
question or an answer may name people). The public sees only counts.

Permissions are ``question.read`` and ``question.answer`` of
:mod:`openlfr.governance.authz`, refusals audited like every other.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from openlfr.audit import log as audit_log
from openlfr.governance.authz import Actor, NotFound, Perm, RuleError, allowed, require
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


@dataclass(frozen=True)
class QuestionView:
    id: int
    deployment_id: int
    deployment_name: str
    kind: str
    text: str
    contact: str | None
    created_at: datetime
    status: str
    answer: str | None
    answered_by: str | None
    answered_at: datetime | None
    closed_by: str | None
    closed_at: datetime | None

    def as_json(self) -> dict[str, object]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v)
                for k, v in self.__dict__.items()}


def _view(q: PublicQuestion, name: str) -> QuestionView:
    return QuestionView(q.id, q.deployment_id, name, q.kind.value, q.text, q.contact,
                        q.created_at, q.status.value, q.answer, q.answered_by, q.answered_at,
                        q.closed_by, q.closed_at)


def submit_question(db: Database, deployment_id: int, kind: str, text: str,
                    contact: str | None) -> int:
    """Store a resident's question (audited as ``question.received`` by ``public``)."""
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
        q = PublicQuestion(deployment_id=d.id, kind=qkind, text=text, contact=contact,
                           status=QuestionStatus.OPEN)
        s.add(q)
        s.flush()
        audit_log.record(s, PUBLIC_ACTOR, "question.received", "question", q.id,
                         {"deployment": d.id, "kind": qkind.value,
                          "with_contact": contact is not None})
        return q.id


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
        row = s.execute(select(PublicQuestion, Deployment.name)
                        .join(Deployment, Deployment.id == PublicQuestion.deployment_id)
                        .where(PublicQuestion.id == question_id)).first()
        if row is None:
            raise NotFound(f"no question {question_id}")
        q, name = row
        if q.status == QuestionStatus.CLOSED:
            raise RuleError(f"question {question_id} is closed")
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
        row = s.execute(select(PublicQuestion, Deployment.name)
                        .join(Deployment, Deployment.id == PublicQuestion.deployment_id)
                        .where(PublicQuestion.id == question_id)).first()
        if row is None:
            raise NotFound(f"no question {question_id}")
        q, name = row
        if q.status == QuestionStatus.CLOSED:
            raise RuleError(f"question {question_id} is already closed")
        q.status, q.closed_by, q.closed_at = QuestionStatus.CLOSED, actor.name, utcnow()
        audit_log.record(s, actor.name, "question.close", "question", q.id,
                         {"deployment": q.deployment_id, "answered": q.answer is not None})
        return _view(q, name)
