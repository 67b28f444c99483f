"""The audit log over JSON (``audit.read``: auditors, admins, authorising officers):
``/api/v1/audit`` — paged entries, verification of the hash chain, export as JSON lines (itself
audited, as ``openlfr audit export`` is) and the EU AI Act Art. 12 record of a deployment."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import select

from openlfr.audit import log as audit_log
from openlfr.audit.jsonl import entry_to_line
from openlfr.governance.authz import Actor, NotFound, Perm, require
from openlfr.store.db import Database
from openlfr.store.models import AuditRecord, Deployment
from openlfr.transparency.art12 import art12_records
from openlfr.web.deps import CurrentActor, web

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

PAGE_MAX = 500


class EntryOut(BaseModel):
    seq: int
    time: str
    actor: str
    action: str
    object_type: str
    object_id: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


class EntriesOut(BaseModel):
    entries: list[EntryOut]
    total: int
    next_before: int | None  # pass as ``before`` for the next (older) page


class VerifyOut(BaseModel):
    ok: bool
    entries: int
    head_hash: str
    first_bad_seq: int | None
    problem: str | None


def reader(db: Database, actor: Actor, what: str) -> None:
    require(db, actor, Perm.AUDIT_READ, "audit", what)


def page_of_entries(db: Database, before: int | None, limit: int
                    ) -> tuple[list[audit_log.AuditEntry], int, int | None]:
    """Newest first: up to ``limit`` entries with ``seq < before``; the total; the next
    ``before`` (None on the last page)."""
    with db.reading() as s:
        query = select(AuditRecord).order_by(AuditRecord.seq.desc()).limit(limit)
        if before is not None:
            query = query.where(AuditRecord.seq < before)
        rows = [audit_log.to_entry(r) for r in s.scalars(query).all()]
        total = audit_log.count(s)
    nxt = rows[-1].seq if rows and rows[-1].seq > 1 else None
    return rows, total, nxt


def verify_result(db: Database) -> dict[str, Any]:
    with db.reading() as s:
        r = audit_log.verify(s)
    return {"ok": r.ok, "entries": r.entries, "head_hash": r.head_hash,
            "first_bad_seq": r.first_bad_seq, "problem": r.problem}


def record_export(db: Database, actor: Actor, deployment: int | None, art12: bool) -> None:
    """The export is itself a recorded act (before the data is read, so it covers itself)."""
    if deployment is not None:
        with db.reading() as s:
            if s.get(Deployment, deployment) is None:
                raise NotFound(f"no deployment {deployment}")
    with db.session() as s:
        audit_log.record(s, actor.name, "audit.export", "audit", "art12" if art12 else "log",
                         {"what": "art12" if art12 else "log", "deployment": deployment,
                          "out": "web"})


def export_lines(db: Database, deployment: int | None, art12: bool) -> Iterator[str]:
    with db.reading() as s:
        if art12:
            for record in art12_records(s, deployment):
                yield json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"
        else:
            for entry in audit_log.entries(s):
                yield entry_to_line(entry) + "\n"


def export_response(db: Database, actor: Actor, deployment: int | None,
                    art12: bool) -> StreamingResponse:
    reader(db, actor, "export")
    record_export(db, actor, deployment, art12)
    name = (f"art12-{deployment if deployment is not None else 'all'}.jsonl" if art12
            else "audit-log.jsonl")
    return StreamingResponse(export_lines(db, deployment, art12),
                             media_type="application/x-ndjson",
                             headers={"Content-Disposition": f'attachment; filename="{name}"',
                                      "Cache-Control": "no-store"})


@router.get("/entries", response_model=EntriesOut)
def entries(request: Request, actor: CurrentActor,
            before: Annotated[int | None, Query(ge=1)] = None,
            limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 50) -> dict[str, Any]:
    """Entries, newest first, ``limit`` at a time; page back with ``before``."""
    db = web(request).db
    reader(db, actor, "show")
    rows, total, nxt = page_of_entries(db, before, limit)
    return {"entries": [e.to_dict() for e in rows], "total": total, "next_before": nxt}


@router.get("/verify", response_model=VerifyOut)
def verify(request: Request, actor: CurrentActor) -> dict[str, Any]:
    """Recompute the hash chain; ``ok`` false names the first bad entry."""
    db = web(request).db
    reader(db, actor, "verify")
    return verify_result(db)


@router.post("/export", response_class=StreamingResponse,
             responses={200: {"content": {"application/x-ndjson": {}}}})
def export(request: Request, actor: CurrentActor,
           art12: bool = False, deployment: Annotated[int | None, Query(ge=1)] = None
           ) -> StreamingResponse:
    """The whole log as JSON lines (re-checkable with the standard library), or with
    ``art12=true`` the Art. 12 records (of ``deployment``, or all). Audited."""
    if deployment is not None and not art12:
        raise HTTPException(400, "deployment is only for art12=true")
    return export_response(web(request).db, actor, deployment, art12)


@router.get("/art12/{deployment_id}")
def art12(request: Request, deployment_id: int, actor: CurrentActor) -> dict[str, Any]:
    """The Art. 12 record of one deployment: when it ran, the reference watchlists, every
    matched input and who verified it, and the seq of every audit entry about it."""
    db = web(request).db
    reader(db, actor, "art12")
    with db.reading() as s:
        records = art12_records(s, deployment_id)
    if not records:
        raise NotFound(f"no deployment {deployment_id}")
    return records[0]
