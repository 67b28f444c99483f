"""The audit log in the console (``audit.read``: auditors, admins, authorising officers):
``/console/audit`` — the entries filtered (actor, action, object, deployment, time range),
paged both ways, each entry's details in words with its raw JSON beside; verification of the
chain; export of the whole log, of exactly the selection on screen (JSON lines or CSV) and of
the Art. 12 records; the Art. 12 record of a deployment on screen. Thin: the service is
:mod:`openlfr.governance.auditing`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from openlfr.governance import auditing
from openlfr.governance import deployments as deps
from openlfr.governance.auditing import AuditFilter
from openlfr.governance.authz import Actor
from openlfr.web.deps import PageActor, web
from openlfr.web.problems import SHOWN_ON_FORMS, http_status
from openlfr.web.render import csv_download, jsonl_download, people_zone, render
from openlfr.web.routes.console_governance import may

router = APIRouter(prefix="/console/audit", include_in_schema=False)

#: Entries on one page of the console.
AUDIT_PAGE = 50

#: The filter fields of the page's form, in order.
FILTER_FIELDS = ("actor", "action", "object_type", "object_id", "deployment", "since", "until")


def _page(request: Request, actor: Actor, ctx: dict[str, Any], status: int = 200,
          name: str = "gov_audit.html") -> Response:
    ctx.setdefault("iso", web(request).templates.env.filters["date"])
    ctx.setdefault("may", may(actor))
    ctx.setdefault("nav", "console")
    return render(request, name, ctx, actor=actor, status=status)


def _ctx(request: Request, actor: Actor, values: dict[str, str], before: int | None = None,
         after: int | None = None) -> tuple[dict[str, Any], int]:
    """The page's context, and its status: a filter that cannot be read is shown on the form
    with what was typed (status 400/422), and the log is not filtered by half."""
    db = web(request).db
    ctx: dict[str, Any] = {
        "values": values, "before": before, "after": after,
        "deployments": deps.list_deployments(db, actor),
        "actions": (codes := auditing.actions(db, actor)),
        "families": sorted({code.partition(".")[0] for code in codes}),
        "when": _when(request), "raw": _raw,
        "readable": auditing.readable}
    try:
        selection = AuditFilter.parse(form=True, zone=people_zone(request), **values)
        got = auditing.page(db, actor, before, AUDIT_PAGE, after=after, selection=selection)
    except SHOWN_ON_FORMS as exc:
        field = getattr(exc, "field", None)
        ctx.update(error=str(exc), error_field=field, entries=(), total=0, head=0,
                   next_before=None, next_after=None, filtered=True, query="")
        return ctx, http_status(exc)
    ctx.update(entries=got.entries, total=got.total, head=got.head,
               next_before=got.next_before, next_after=got.next_after,
               filtered=not selection.empty, filters=selection.as_dict(),
               query=urlencode(selection.query()))
    return ctx, 200


def _values(**given: str | None) -> dict[str, str]:
    return {name: (given.get(name) or "").strip() for name in FILTER_FIELDS}


@router.get("")
def audit_page(request: Request, who: PageActor, before: int | None = None,
               after: int | None = None, actor: str | None = None,
               action: str | None = None, object_type: str | None = None,
               object_id: str | None = None, deployment: str | None = None,
               since: str | None = None, until: str | None = None) -> Response:
    values = _values(actor=actor, action=action, object_type=object_type,
                     object_id=object_id, deployment=deployment, since=since, until=until)
    ctx, status = _ctx(request, who, values, before, after)
    return _page(request, who, ctx, status)


@router.post("/verify")
def audit_verify(request: Request, actor: PageActor) -> Response:
    checked = auditing.verify(web(request).db, actor)
    ctx, status = _ctx(request, actor, _values())
    ctx["verify"] = checked.as_dict()
    return _page(request, actor, ctx, status)


@router.post("/export")
def audit_export(request: Request, actor: PageActor,
                 what: Annotated[str, Form(max_length=10)] = "log",
                 fmt: Annotated[str, Form(alias="format", max_length=10)] = "jsonl",
                 deployment: Annotated[str, Form(max_length=12)] = "",
                 upto: Annotated[str, Form(max_length=20)] = "",
                 f_actor: Annotated[str, Form(max_length=80)] = "",
                 f_action: Annotated[str, Form(max_length=80)] = "",
                 f_object_type: Annotated[str, Form(max_length=80)] = "",
                 f_object_id: Annotated[str, Form(max_length=80)] = "",
                 f_deployment: Annotated[str, Form(max_length=80)] = "",
                 f_since: Annotated[str, Form(max_length=80)] = "",
                 f_until: Annotated[str, Form(max_length=80)] = "",
                 purpose: Annotated[str, Form(max_length=40)] = "",
                 recipient: Annotated[str, Form(max_length=40)] = "",
                 ) -> Response:
    """``what``: ``log`` (the whole log), ``selection`` (the ``f_*`` filters as of entry
    ``upto``, the page's head) or ``art12`` (of ``deployment``, or all); ``purpose`` and
    ``recipient``: optional, from the fixed lists (:mod:`openlfr.governance.disclosures`)."""
    db = web(request).db
    art12 = what == "art12"
    dep_id = int(deployment) if art12 and deployment.strip().isdigit() else None
    values = _values(actor=f_actor, action=f_action, object_type=f_object_type,
                     object_id=f_object_id, deployment=f_deployment, since=f_since,
                     until=f_until)
    try:
        selection = (AuditFilter.parse(form=True, zone=people_zone(request), upto=upto,
                                         **values)
                     if what == "selection" else auditing.EVERYTHING)
        lines = auditing.export(db, actor, art12=art12, deployment=dep_id,
                                selection=selection, fmt=fmt, out="web",
                                purpose=purpose or None, recipient=recipient or None)
    except SHOWN_ON_FORMS as exc:
        ctx, _ = _ctx(request, actor, values)
        ctx.update(error=str(exc), error_field=getattr(exc, "field", None))
        return _page(request, actor, ctx, http_status(exc))
    name = auditing.export_filename(dep_id, art12, selection=selection, fmt=fmt)
    return (csv_download if fmt == "csv" else jsonl_download)(lines, name)


@router.get("/art12/{deployment_id}")
def audit_art12(request: Request, deployment_id: int, actor: PageActor) -> Response:
    record = auditing.art12_record(web(request).db, actor, deployment_id)
    return _page(request, actor, {"r": record}, name="gov_art12.html")


def _raw(details: dict[str, Any]) -> str:
    """An entry's details as indented JSON, for the "raw" view."""
    return json.dumps(details, ensure_ascii=False, sort_keys=True, indent=2)


def _when(request: Request) -> Callable[[auditing.AuditEntry], str]:
    """An entry's time as the page shows it: in the zone of people, to the second, labelled."""
    shown = web(request).templates.env.filters["date"]
    return lambda entry: str(shown(entry.time, seconds=True))
