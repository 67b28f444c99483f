"""The audit log over JSON (``audit.read``: auditors, admins, authorising officers):
``/api/v1/audit`` — entries filtered and paged both ways, verification of the hash chain,
export of the log or of a selection as JSON lines or CSV (itself audited, as ``openlfr audit
export`` is) and the EU AI Act Art. 12 record of a deployment. The filters are the query
parameters of :func:`selection`, the same for the entries and the export. Thin: the service is
:mod:`openlfr.governance.auditing`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from openlfr.governance import auditing
from openlfr.governance.auditing import AuditFilter
from openlfr.governance.authz import RuleError
from openlfr.web.deps import CurrentActor, web
from openlfr.web.render import csv_download, jsonl_download

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
    total: int  # entries in the selection
    next_before: int | None  # pass as ``before`` for the next (older) page
    next_after: int | None  # pass as ``after`` for the next (newer) page
    head: int  # the log's last seq when read: ``upto`` for an export of exactly this


Text = Query(max_length=64)


def selection(actor: Annotated[str | None, Text] = None,
              action: Annotated[str | None, Text] = None,
              object_type: Annotated[str | None, Text] = None,
              object_id: Annotated[str | None, Text] = None,
              deployment: Annotated[int | None, Query(ge=1)] = None,
              since: Annotated[str | None, Text] = None,
              until: Annotated[str | None, Text] = None,
              upto: Annotated[int | None, Query(ge=1)] = None) -> AuditFilter:
    """The filters: ``actor`` (exact), ``action`` (an action, or a family without a dot:
    ``alert``), ``object_type``, ``object_id``, ``deployment`` (entries about it, its cameras
    and its alerts), ``since`` (inclusive) and ``until`` (exclusive) in the one time format
    (``2026-05-01T08:00Z``, ``2h``…), ``upto`` (entries up to this seq)."""
    return AuditFilter.parse(actor=actor, action=action, object_type=object_type,
                             object_id=object_id, deployment=deployment, since=since,
                             until=until, upto=upto)


Selection = Annotated[AuditFilter, Depends(selection)]


class VerifyOut(BaseModel):
    ok: bool
    entries: int
    head_hash: str
    first_bad_seq: int | None
    problem: str | None


@router.get("/entries", response_model=EntriesOut)
def entries(request: Request, who: CurrentActor, chosen: Selection,
            before: Annotated[int | None, Query(ge=1)] = None,
            after: Annotated[int | None, Query(ge=0)] = None,
            limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 50) -> dict[str, Any]:
    """The selected entries, newest first, ``limit`` at a time; older pages with ``before``,
    newer ones with ``after``."""
    got = auditing.page(web(request).db, who, before, limit, after=after, selection=chosen)
    return {"entries": [e.to_dict() for e in got.entries], "total": got.total,
            "next_before": got.next_before, "next_after": got.next_after, "head": got.head}


@router.get("/verify", response_model=VerifyOut)
def verify(request: Request, who: CurrentActor) -> dict[str, Any]:
    """Recompute the hash chain; ``ok`` false names the first bad entry."""
    return auditing.verify(web(request).db, who).as_dict()


@router.post("/export", response_class=StreamingResponse,
             responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}})
def export(request: Request, who: CurrentActor, chosen: Selection, art12: bool = False,
           format: Annotated[str, Query(pattern="^(jsonl|csv)$")] = "jsonl",
           purpose: Annotated[str | None, Query(max_length=40, description=(
               "Why it is exported: audit, investigation, legal_proceedings, "
               "subject_access, complaint or other."))] = None,
           recipient: Annotated[str | None, Query(max_length=40, description=(
               "Who receives it: internal, oversight, prosecution, law_enforcement, "
               "data_subject or other."))] = None,
           ) -> StreamingResponse:
    """The whole log, or the entries the filters select (``upto``: as of that seq), as JSON
    lines (re-checkable with the standard library) or CSV; or with ``art12=true`` the Art. 12
    records (of ``deployment``, or all). Audited, with the optional ``purpose`` and
    ``recipient`` category (counted on the public pages)."""
    deployment = None
    if art12:
        deployment = chosen.deployment
        if not AuditFilter(deployment=deployment) == chosen:
            raise RuleError("art12=true takes deployment alone, no other filter",
                            field="art12")
        chosen = auditing.EVERYTHING
    lines = auditing.export(web(request).db, who, art12=art12, deployment=deployment,
                            selection=chosen, fmt=format, out="web", purpose=purpose,
                            recipient=recipient)
    name = auditing.export_filename(deployment, art12, selection=chosen, fmt=format)
    return (csv_download if format == "csv" else jsonl_download)(lines, name)


@router.get("/art12/{deployment_id}")
def art12(request: Request, deployment_id: int, who: CurrentActor) -> dict[str, Any]:
    """The Art. 12 record of one deployment: when it ran, the reference watchlists, every
    matched input and who verified it, and the seq of every audit entry about it."""
    return auditing.art12_record(web(request).db, who, deployment_id)
