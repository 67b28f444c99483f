"""The audit log over JSON (``audit.read``: auditors, admins, authorising officers):
``/api/v1/audit`` — paged entries, verification of the hash chain, export as JSON lines (itself
audited, as ``openlfr audit export`` is) and the EU AI Act Art. 12 record of a deployment.
Thin: the service is :mod:`openlfr.governance.auditing`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from openlfr.governance import auditing
from openlfr.web.deps import CurrentActor, web
from openlfr.web.render import jsonl_download

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

PAGE_MAX = auditing.PAGE_MAX


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


@router.get("/entries", response_model=EntriesOut)
def entries(request: Request, actor: CurrentActor,
            before: Annotated[int | None, Query(ge=1)] = None,
            limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 50) -> dict[str, Any]:
    """Entries, newest first, ``limit`` at a time; page back with ``before``."""
    got = auditing.page(web(request).db, actor, before, limit)
    return {"entries": [e.to_dict() for e in got.entries], "total": got.total,
            "next_before": got.next_before}


@router.get("/verify", response_model=VerifyOut)
def verify(request: Request, actor: CurrentActor) -> dict[str, Any]:
    """Recompute the hash chain; ``ok`` false names the first bad entry."""
    return auditing.verify(web(request).db, actor).as_dict()


@router.post("/export", response_class=StreamingResponse,
             responses={200: {"content": {"application/x-ndjson": {}}}})
def export(request: Request, actor: CurrentActor,
           art12: bool = False, deployment: Annotated[int | None, Query(ge=1)] = None,
           purpose: Annotated[str | None, Query(max_length=40, description=(
               "Why it is exported: audit, investigation, legal_proceedings, "
               "subject_access, complaint or other."))] = None,
           recipient: Annotated[str | None, Query(max_length=40, description=(
               "Who receives it: internal, oversight, prosecution, law_enforcement, "
               "data_subject or other."))] = None,
           ) -> StreamingResponse:
    """The whole log as JSON lines (re-checkable with the standard library), or with
    ``art12=true`` the Art. 12 records (of ``deployment``, or all). Audited, with the
    optional ``purpose`` and ``recipient`` category (counted on the public pages)."""
    if deployment is not None and not art12:
        raise HTTPException(400, "deployment is only for art12=true")
    lines = auditing.export(web(request).db, actor, art12=art12, deployment=deployment,
                            out="web", purpose=purpose, recipient=recipient)
    return jsonl_download(lines, auditing.export_filename(deployment, art12))


@router.get("/art12/{deployment_id}")
def art12(request: Request, deployment_id: int, actor: CurrentActor) -> dict[str, Any]:
    """The Art. 12 record of one deployment: when it ran, the reference watchlists, every
    matched input and who verified it, and the seq of every audit entry about it."""
    return auditing.art12_record(web(request).db, actor, deployment_id)
