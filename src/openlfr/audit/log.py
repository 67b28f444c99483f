"""The audit log in the database: append in the caller's transaction, read back, verify.

:func:`record` is called by every service that changes state, inside the same session as the
change, so the change and its entry commit or roll back together (DESIGN.md, invariant 2).
Writers are serialised: SQLite sessions begin with ``BEGIN IMMEDIATE``
(:mod:`openlfr.store.db`); on PostgreSQL a transaction-scoped advisory lock is taken before the
head is read. ``seq`` is the primary key, so a writer that still raced would fail, not fork.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from openlfr.audit.checkpoint import Checkpoint
from openlfr.audit.entry import MAX_DETAILS_BYTES, AuditChain, AuditEntry
from openlfr.audit.verify import VerifyResult, verify_chain
from openlfr.store.db import LOCKED, WRITE_LOCK
from openlfr.store.models import AuditRecord

#: Arbitrary, fixed key of the PostgreSQL advisory lock that serialises audit writers (the
#: same lock every writing session of :class:`openlfr.store.db.Database` takes at its start).
ADVISORY_LOCK = WRITE_LOCK  # 0x6F6C6672, "olfr"

#: Where a session keeps the last entry it wrote (its next entry's head).
_HEAD = "openlfr.audit_head"

SYSTEM = "system"
"""The actor of changes the program makes by itself (retention, a deployment reaching its end)."""


def _lock(session: Session) -> None:
    if session.info.get(LOCKED):
        return  # a writing session of the database: it took the lock at its start
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK})


def to_entry(row: AuditRecord) -> AuditEntry:
    try:
        details = json.loads(row.details)
    except json.JSONDecodeError:
        details = {"__unreadable__": row.details}
    return AuditEntry(seq=row.seq, time=row.time, actor=row.actor, action=row.action,
                      object_type=row.object_type, object_id=row.object_id, details=details,
                      prev_hash=row.prev_hash, hash=row.hash)


def head(session: Session) -> AuditEntry | None:
    row = session.scalars(select(AuditRecord).order_by(AuditRecord.seq.desc()).limit(1)).first()
    return None if row is None else to_entry(row)


def record(session: Session, actor: str, action: str, object_type: str, object_id: object,
           details: Mapping[str, Any] | None = None) -> AuditEntry:
    """Append one entry in ``session``'s transaction. ``details`` follow the audit rules (no
    floats, no biometric data; :func:`openlfr.audit.entry.build_entry`)."""
    _lock(session)
    # the head is read once a transaction: the entries this transaction adds follow it (the
    # write lock keeps every other writer out until the commit)
    txn, cached = session.info.get(_HEAD, (None, None))
    last = cached if txn is not None and txn is session.get_transaction() else head(session)
    entry = AuditChain.from_head(last).append(
        actor, action, object_type, str(object_id), details)
    session.add(AuditRecord(
        seq=entry.seq, time=entry.time, actor=entry.actor, action=entry.action,
        object_type=entry.object_type, object_id=entry.object_id,
        details=json.dumps(entry.details, sort_keys=True, ensure_ascii=False,
                           separators=(",", ":")),
        prev_hash=entry.prev_hash, hash=entry.hash))
    session.flush()
    session.info[_HEAD] = (session.get_transaction(), entry)
    return entry


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


#: What one continuation entry of :func:`record_split` may carry of the long part (bytes), the
#: rest of :data:`MAX_DETAILS_BYTES` left for its own fields.
PART_BYTES = MAX_DETAILS_BYTES - 1024


def record_split(session: Session, actor: str, action: str, object_type: str,
                 object_id: object, details: Mapping[str, Any], key: str) -> AuditEntry:
    """:func:`record`, for details whose ``key`` (a list, or a mapping) can outgrow one entry
    (:data:`MAX_DETAILS_BYTES`: a plan of a few hundred cameras). When everything fits, this
    is :func:`record`. Otherwise the entry keeps every other detail and, as ``key``,
    ``{"count": n, "parts": p, "sha256": …}`` (the SHA-256 of the whole value's canonical
    JSON), and the value follows, in order and whole, in ``p`` entries ``<action>.part`` of
    the same object in the same transaction: ``{"entry": <seq of the first>, "part": i,
    "parts": p, key: <a slice>}``. Nothing is left out of the log."""
    value = details.get(key)
    if value is None or _size(dict(details)) <= MAX_DETAILS_BYTES:
        return record(session, actor, action, object_type, object_id, details)
    if isinstance(value, Mapping):
        items: list[Any] = list(value.items())
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValueError(f"{key!r} is neither a list nor a mapping: it cannot be split")
    parts: list[list[Any]] = [[]]
    used = 0
    for item in items:
        size = _size(item) + 1
        if size > PART_BYTES:
            raise ValueError(f"one item of {key!r} encodes to {size} bytes, more than an "
                             "entry holds")
        if parts[-1] and used + size > PART_BYTES:
            parts.append([])
            used = 0
        parts[-1].append(item)
        used += size
    canonical = json.dumps(dict(items) if isinstance(value, Mapping) else items,
                           ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    head_details = {**details, key: {"count": len(items), "parts": len(parts), "sha256":
                                     hashlib.sha256(canonical.encode("utf-8")).hexdigest()}}
    first = record(session, actor, action, object_type, object_id, head_details)
    for i, part in enumerate(parts, start=1):
        record(session, actor, f"{action}.part", object_type, object_id,
               {"entry": first.seq, "part": i, "parts": len(parts),
                key: dict(part) if isinstance(value, Mapping) else part})
    return first


def entries(session: Session, batch: int = 5000) -> Iterator[AuditEntry]:
    """Every entry in storage order (by ``seq``), streamed in batches."""
    last = 0
    while True:
        rows = session.scalars(select(AuditRecord).where(AuditRecord.seq > last)
                               .order_by(AuditRecord.seq).limit(batch)).all()
        if not rows:
            return
        for row in rows:
            yield to_entry(row)
        last = rows[-1].seq


def count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(AuditRecord)) or 0)


def verify(session: Session, checkpoint: Checkpoint | None = None,
           public_key: str | None = None) -> VerifyResult:
    """Recompute the stored chain (and compare its head with a signed checkpoint)."""
    return verify_chain(entries(session), checkpoint, expected_public_key=public_key)


def fmt_float(value: float, digits: int = 4) -> str:
    """A float as the decimal string the audit log stores (it refuses floats)."""
    return f"{value:.{digits}f}"
