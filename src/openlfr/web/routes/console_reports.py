"""The annual report in the console (``audit.read``: auditors, admins, authorising officers):
``/console/reports`` — choose a year, download the report as JSON, CSV or a printable HTML
page. Each download makes the report afresh and is audited (``report.annual``). Thin: the
service is :mod:`openlfr.transparency.annual`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from openlfr.transparency import annual
from openlfr.web.deps import PageActor, web
from openlfr.web.render import render
from openlfr.web.routes.console_governance import may

router = APIRouter(prefix="/console/reports", include_in_schema=False)

MEDIA = {"json": "application/json", "csv": "text/csv; charset=utf-8",
         "html": "text/html; charset=utf-8"}


def download(report: annual.AnnualReport, fmt: str) -> Response:
    """The report in ``fmt`` as a file to save (never cached)."""
    return Response(report.render(fmt), media_type=MEDIA[fmt], headers={
        "Content-Disposition": f'attachment; filename="{report.filename(fmt)}"',
        "Cache-Control": "no-store"})


@router.get("")
def reports_page(request: Request, actor: PageActor) -> Response:
    years = annual.report_years(web(request).db, actor)
    return render(request, "console_reports.html", {
        "years": years, "formats": annual.FORMATS, "may": may(actor), "nav": "console",
        "filename": annual.report_filename}, actor=actor)


@router.get("/annual/{year}/{fmt}")
def annual_download(request: Request, actor: PageActor, year: str, fmt: str) -> Response:
    system = web(request).system
    report = annual.make_report(system.db, actor, year, out="web", formats=[fmt],
                                responsible_body=system.settings.responsible_body)
    return download(report, fmt)
