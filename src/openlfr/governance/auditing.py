"""Reading the audit log, for the people who check it (``audit.read``: auditors, admins,
authorising officers) — one service for the JSON API, the console and ``openlfr audit``.

* :func:`page`: entries newest first, ``limit`` at a time, paged back with ``before``;
  :func:`newest`: the last few, oldest first (``openlfr audit show``).
* :func:`verify`: recompute the hash chain, optionally against a signed checkpoint (a file
  that cannot be read as one fails the check, it is not an input error).
* :func:`make_checkpoint`: sign the head with the installation's Ed25519 key; the
  ``audit.checkpoint`` entry is written first, so the checkpoint covers its own making.
* :func:`export`: the whole log as JSON lines, or the Art. 12 records. The ``audit.export``
  entry is written here, once, before anything is read (so the export covers itself), with the
  same details whichever front end asked: ``what`` (``log`` or ``art12``), ``deployment`` (an
  id or null) and ``out`` (where it went: ``web``, a file name, ``stdout``); and, when the
  person named them, ``purpose`` and ``recipient`` (fixed lists:
  :mod:`openlfr.governance.disclosures`), counted on the public pages.
* :func:`art12_record`: the EU AI Act Art. 12 record of one deployment.

Every function checks the caller's permission (a refusal is audited); a front end only
parses, calls, and prints or streams.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from openlfr.audit import (
    GENESIS,
    AuditEntry,
    Checkpoint,
    CheckpointError,
    VerifyResult,
    load_or_create_signing_key,
    public_key_hex,
    sign_checkpoint,
)
from openlfr.audit import log as audit_log
from openlfr.audit.jsonl import entry_to_line
from openlfr.governance.authz import Actor, NotFound, Perm, RuleError, require
from openlfr.governance.disclosures import disclosure_details
from openlfr.store.db import Database
from openlfr.store.models import AuditRecord, Deployment
from openlfr.transparency.art12 import art12_records

#: The most entries one page may hold.
PAGE_MAX = 500


def _reader(db: Database, actor: Actor, what: str) -> None:
    require(db, actor, Perm.AUDIT_READ, "audit", what)


@dataclass(frozen=True, slots=True)
class EntryPage:
    """Entries newest first; ``next_before`` is the ``before`` of the next (older) page, None
    on the last one; ``total`` counts the whole log."""

    entries: tuple[AuditEntry, ...]
    total: int
    next_before: int | None


def page(db: Database, actor: Actor, before: int | None = None, limit: int = 50) -> EntryPage:
    """Up to ``limit`` entries with ``seq < before`` (all when None), newest first."""
    _reader(db, actor, "show")
    limit = max(1, min(int(limit), PAGE_MAX))
    with db.reading() as s:
        query = select(AuditRecord).order_by(AuditRecord.seq.desc()).limit(limit)
        if before is not None:
            query = query.where(AuditRecord.seq < before)
        rows = tuple(audit_log.to_entry(r) for r in s.scalars(query).all())
        total = audit_log.count(s)
    nxt = rows[-1].seq if rows and rows[-1].seq > 1 else None
    return EntryPage(rows, total, nxt)


def newest(db: Database, actor: Actor, last: int = 20) -> list[AuditEntry]:
    """The ``last`` newest entries, oldest first."""
    _reader(db, actor, "show")
    with db.reading() as s:
        rows = s.scalars(select(AuditRecord).order_by(AuditRecord.seq.desc())
                         .limit(max(1, int(last)))).all()
        return [audit_log.to_entry(r) for r in reversed(rows)]


@dataclass(frozen=True, slots=True)
class Verification:
    """The result of recomputing the chain, and the checkpoint it was held against (None
    without one, or when the checkpoint file could not be read as one)."""

    result: VerifyResult
    checkpoint: Checkpoint | None = None

    def as_dict(self) -> dict[str, Any]:
        r = self.result
        return {"ok": r.ok, "entries": r.entries, "head_hash": r.head_hash,
                "first_bad_seq": r.first_bad_seq, "problem": r.problem}


def verify(db: Database, actor: Actor, checkpoint: Path | Checkpoint | None = None,
           public_key: str | None = None) -> Verification:
    """Recompute the hash chain; with a checkpoint (a file or a read one) also find a
    truncated tail or a rewritten chain, and with ``public_key`` require that signer. A
    checkpoint file that is corrupt or forged makes the check fail."""
    _reader(db, actor, "verify")
    point: Checkpoint | None
    if isinstance(checkpoint, Path):
        try:
            point = Checkpoint.read(checkpoint)
        except CheckpointError as exc:
            return Verification(VerifyResult(False, 0, GENESIS, None, str(exc)))
    else:
        point = checkpoint
    with db.reading() as s:
        return Verification(audit_log.verify(s, point, public_key), point)


def make_checkpoint(db: Database, actor: Actor, key_path: Path, out: str) -> Checkpoint:
    """Sign the head of the chain with the key at ``key_path`` (made on first use). ``out``
    says where the checkpoint goes (a file name, ``stdout``), for the ``audit.checkpoint``
    entry, which is recorded first so the checkpoint covers the record of its own making."""
    _reader(db, actor, "checkpoint")
    key = load_or_create_signing_key(key_path)
    with db.session() as s:
        audit_log.record(s, actor.name, "audit.checkpoint", "audit", "head",
                         {"public_key": public_key_hex(key), "out": out})
        head = audit_log.head(s)
    assert head is not None
    return sign_checkpoint(key, head.seq, head.hash)


def export_filename(deployment: int | None, art12: bool) -> str:
    """The file name a download is offered under."""
    if art12:
        return f"art12-{deployment if deployment is not None else 'all'}.jsonl"
    return "audit-log.jsonl"


def export(db: Database, actor: Actor, *, art12: bool = False, deployment: int | None = None,
           out: str, purpose: str | None = None,
           recipient: str | None = None) -> Iterator[str]:
    """Record the export (``audit.export``) and return its lines (each ending in ``\\n``):
    the log's entries (re-checkable with the standard library) or, with ``art12``, the Art. 12
    record of ``deployment`` (or of every deployment). The permission, the deployment and the
    record are settled before this returns; the lines are read as they are consumed."""
    _reader(db, actor, "export")
    shared = disclosure_details(purpose, recipient)
    if deployment is not None and not art12:
        raise RuleError("a deployment is only for the Art. 12 export")
    if deployment is not None:
        with db.reading() as s:
            if s.get(Deployment, deployment) is None:
                raise NotFound(f"no deployment {deployment}")
    what = "art12" if art12 else "log"
    with db.session() as s:
        audit_log.record(s, actor.name, "audit.export", "audit", what,
                         {"what": what, "deployment": deployment, "out": out, **shared})
    return _lines(db, deployment, art12)


def _lines(db: Database, deployment: int | None, art12: bool) -> Iterator[str]:
    with db.reading() as s:
        if art12:
            for record in art12_records(s, deployment):
                yield json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"
        else:
            for entry in audit_log.entries(s):
                yield entry_to_line(entry) + "\n"


def art12_record(db: Database, actor: Actor, deployment_id: int) -> dict[str, Any]:
    """The Art. 12 record of one deployment (:mod:`openlfr.transparency.art12`)."""
    _reader(db, actor, "art12")
    with db.reading() as s:
        records = art12_records(s, deployment_id)
    if not records:
        raise NotFound(f"no deployment {deployment_id}")
    return records[0]
