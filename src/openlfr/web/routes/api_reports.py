"""The annual report over the API (``audit.read``): ``GET /api/v1/reports/annual/{year}``,
as JSON (the default), CSV or the printable HTML page; its making is audited
(``report.annual``), as ``openlfr report annual`` is. Thin: the service is
:mod:`openlfr.transparency.annual`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from openlfr.transparency import annual
from openlfr.web.deps import CurrentActor, web
from openlfr.web.routes.console_reports import download

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])


@router.get("/annual/{year}", responses={200: {"content": {
    "application/json": {}, "text/csv": {}, "text/html": {}}}})
def annual_report(request: Request, who: CurrentActor,
                  year: Annotated[str, Path(max_length=12)],
                  format: Annotated[str, Query(max_length=8)] = "json") -> Response:
    """The annual report of ``year`` (UTC): deployments and their authorisation basis, faces
    seen and people passing, alerts, outcomes, field tests, urgent uses, equality figures,
    questions and objections, threshold changes and overrides. ``format``: ``json``, ``csv``
    or ``html`` (a printable page)."""
    system = web(request).system
    report = annual.make_report(system.db, who, year, out="api", formats=[format],
                                responsible_body=system.settings.responsible_body)
    if format == "json":
        body: dict[str, Any] = report.as_json()
        return JSONResponse(body, headers={"Cache-Control": "no-store"})
    return download(report, format)
