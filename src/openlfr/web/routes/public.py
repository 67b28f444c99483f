"""The public transparency pages (no sign-in): ``/public`` (HTML, CSV, JSON, the chart) and
``/api/v1/public/...`` (JSON). Everything comes from :mod:`openlfr.transparency.public`, which
leaves out anything that could identify a watchlisted person or a passer-by. Residents send
questions and objections from a deployment's page (:mod:`openlfr.governance.questions`)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from openlfr.governance import questions
from openlfr.governance.authz import NotFound, RuleError
from openlfr.store.enums import Action
from openlfr.transparency import public as public_data
from openlfr.transparency.public import PublicDeployment
from openlfr.web.deps import client_ip, require_csrf, web
from openlfr.web.render import render

router = APIRouter()

YearQ = Annotated[int | None, Query(ge=2000, le=2100, description="Calendar year (UTC).")]


def _deployment(request: Request, deployment_id: int) -> PublicDeployment:
    d = public_data.get_public(web(request).db, deployment_id)
    if d is None:
        raise HTTPException(404, f"no public deployment {deployment_id}")
    return d


def _download(body: str | bytes, filename: str, media_type: str) -> Response:
    return Response(body, media_type=media_type,
                    headers={"content-disposition": f'attachment; filename="{filename}"'})


# -- pages ------------------------------------------------------------------------------------

def _deployment_page(request: Request, d: PublicDeployment) -> dict[str, Any]:
    """What every rendering of a deployment's page needs besides the form."""
    return {"d": d, "info": public_data.residents_info(web(request).system.settings),
            "t": public_data.deployment_threshold(web(request).db, d),
            "limits": {"min": questions.MIN_TEXT, "max": questions.MAX_TEXT,
                       "contact": questions.MAX_CONTACT}}


@router.get("/public", include_in_schema=False)
def public_index(request: Request) -> Response:
    st = web(request)
    items = public_data.list_public(st.db)
    summary = public_data.year_summary(st.db, listed=items)
    return render(request, "public_index.html", {
        "current": [d for d in items if d.status != "ended"],
        "past": [d for d in items if d.status == "ended"], "summary": summary,
        "shared": public_data.shared_overall(st.db),
        "info": public_data.residents_info(st.system.settings, summary)})


@router.get("/public/deployments/{deployment_id}", include_in_schema=False)
def public_deployment(request: Request, deployment_id: int, sent: int = 0,
                      ref: Annotated[str, Query(max_length=20)] = "") -> Response:
    d = _deployment(request, deployment_id)
    reference = ref if questions.REFERENCE_PATTERN.fullmatch(ref) else ""
    return render(request, "public_deployment.html", {
        **_deployment_page(request, d), "sent": bool(sent), "reference": reference,
        "form": {"kind": "question", "text": "", "contact": ""}})


@router.post("/public/deployments/{deployment_id}/questions", include_in_schema=False,
             dependencies=[Depends(require_csrf)])
def public_question(request: Request, deployment_id: int,
                    kind: Annotated[str, Form(max_length=20)] = "question",
                    text: Annotated[str, Form(max_length=20000)] = "",
                    contact: Annotated[str, Form(max_length=2000)] = "",
                    website: Annotated[str, Form(max_length=2000)] = "") -> Response:
    d = _deployment(request, deployment_id)
    done = RedirectResponse(f"/public/deployments/{d.id}?sent=1#questions", status_code=303)
    st = web(request)
    if website.strip():  # the honeypot: people do not see this field, robots fill it in
        return done
    ip = client_ip(request)
    # checked and counted in one step (as sign-ins are): parallel posts cannot all pass the
    # check before any is counted. A message refused as invalid is given back.
    if not st.limits.question_ip.hit(ip):
        retry = st.limits.question_ip.retry_after(ip)
        return _form_error(request, d, 429, "Too many messages from your connection: please "
                           f"try again in {max(1, retry // 60)} minutes.", kind, text, contact)
    try:
        received = questions.receive_question(st.db, d.id, kind, text, contact or None)
    except (RuleError, NotFound) as exc:
        st.limits.question_ip.undo(ip)
        return _form_error(request, d, 400, str(exc), kind, text, contact)
    except BaseException:
        st.limits.question_ip.undo(ip)
        raise
    return RedirectResponse(f"/public/deployments/{d.id}?sent=1&ref={received.reference}"
                            "#questions", status_code=303)


def _form_error(request: Request, d: PublicDeployment, status: int, message: str, kind: str,
                text: str, contact: str) -> Response:
    return render(request, "public_deployment.html", {
        **_deployment_page(request, d), "sent": False, "error": message,
        "form": {"kind": kind if kind in ("question", "objection") else "question",
                 "text": text[:questions.MAX_TEXT + 100], "contact": contact[:300]}},
        status=status)


@router.get("/public/summary", include_in_schema=False)
def public_summary(request: Request, year: YearQ = None) -> Response:
    summary = public_data.year_summary(web(request).db, year)
    return render(request, "public_summary.html", {
        "s": summary, "month_names": MONTHS,
        "years": sorted(set(summary.years) | {summary.year}, reverse=True)})


@router.get("/public/summary/chart.svg", include_in_schema=False)
async def public_chart(request: Request, year: YearQ = None) -> Response:
    st = web(request)
    summary = await run_in_threadpool(public_data.year_summary, st.db, year)
    svg = await st.charts.svg(summary)  # drawn once per set of figures, on its own thread
    return Response(svg, media_type="image/svg+xml")


# -- downloads --------------------------------------------------------------------------------

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]

DEPLOYMENT_COLUMNS = [
    "id", "name", "status", "site", "location", "purpose", "legal_basis", "dpia_ref",
    "equality_ref", "planned_start", "planned_end", "started_at", "ended_at", "threshold",
    "model_id", "watchlist_size", "cameras", "two_person_rule", "signage", "public_notice",
    "urgency_reason", "hours", "people_passing", "faces_seen", "alerts", "confirmed",
    "false_alerts", "no_action", "pending", "engaged", *[f"outcome_{a.value}" for a in Action],
    "false_alert_rate", "false_alert_share", "questions_received", "questions_answered"]

FIGURE_COLUMNS = ["hours", "people_passing", "faces_seen", "alerts", "confirmed",
                  "false_alerts", "no_action", "pending", "engaged",
                  *[f"outcome_{a.value}" for a in Action], "false_alert_rate",
                  "false_alert_share"]


def _cell(value: Any) -> str:
    """A CSV cell; text that a spreadsheet would run as a formula is prefixed with '."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def _flat(d: PublicDeployment) -> dict[str, Any]:
    row = d.as_json()
    figures = row.pop("figures") or {}
    outcomes = figures.pop("outcomes", {}) if figures else {}
    row.update(figures)
    for a in Action:
        row[f"outcome_{a.value}"] = outcomes.get(a.value) if figures else None
    return row


def _csv(columns: list[str], rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return out.getvalue()


def _deployments_json(request: Request) -> dict[str, Any]:
    return {"generated_at": datetime.now(UTC).isoformat(),
            "deployments": [d.as_json() for d in public_data.list_public(web(request).db)]}


@router.get("/public/deployments.csv", include_in_schema=False)
def deployments_csv(request: Request) -> Response:
    rows = [_flat(d) for d in public_data.list_public(web(request).db)]
    return _download(_csv(DEPLOYMENT_COLUMNS, rows), "openlfr-deployments.csv",
                     "text/csv; charset=utf-8")


@router.get("/public/deployments.json", include_in_schema=False)
def deployments_json_download(request: Request) -> Response:
    return _download(json.dumps(_deployments_json(request), indent=1, ensure_ascii=False),
                     "openlfr-deployments.json", "application/json")


@router.get("/public/summary.csv", include_in_schema=False)
def summary_csv(request: Request, year: YearQ = None) -> Response:
    s = public_data.year_summary(web(request).db, year)
    rows = []
    for i, m in enumerate([*s.months, s.totals]):
        row = m.as_json()
        for a, n in row.pop("outcomes").items():
            row[f"outcome_{a}"] = n
        row["month"] = MONTHS[i] if i < 12 else "total"
        rows.append(row)
    return _download(_csv(["month", *FIGURE_COLUMNS], rows), f"openlfr-summary-{s.year}.csv",
                     "text/csv; charset=utf-8")


@router.get("/public/equality.csv", include_in_schema=False)
def equality_csv(request: Request, year: YearQ = None) -> Response:
    """The year's false alerts by perceived group, suppressed as on the page."""
    s = public_data.year_summary(web(request).db, year)
    rows: list[dict[str, Any]] = []
    if s.equality is not None:
        for kind, groups in (("perceived ethnic group", s.equality.ethnicity),
                             ("perceived sex", s.equality.sex)):
            rows += [{"breakdown": kind, "group": r.label, "false_alerts": r.false_alerts,
                      "stopped": r.stopped} for r in groups]
        rows += [{"breakdown": "stop length", "group": length, "stopped": n}
                 for length, n in s.equality.stop_lengths]
    return _download(_csv(["breakdown", "group", "false_alerts", "stopped"], rows),
                     f"openlfr-equality-{s.year}.csv", "text/csv; charset=utf-8")


@router.get("/public/summary.json", include_in_schema=False)
def summary_json_download(request: Request, year: YearQ = None) -> Response:
    s = public_data.year_summary(web(request).db, year)
    return _download(json.dumps(s.as_json(), indent=1), f"openlfr-summary-{s.year}.json",
                     "application/json")


# -- JSON API (anonymous) ---------------------------------------------------------------------

@router.get("/api/v1/public/deployments", tags=["public"])
def api_public_deployments(request: Request) -> dict[str, Any]:
    """Planned, running and past deployments with their public figures."""
    return _deployments_json(request)


@router.get("/api/v1/public/deployments/{deployment_id}", tags=["public"])
def api_public_deployment(request: Request, deployment_id: int) -> dict[str, Any]:
    """One public deployment."""
    return _deployment(request, deployment_id).as_json()


@router.get("/api/v1/public/shared", tags=["public"])
def api_public_shared(request: Request) -> dict[str, Any]:
    """What was shared, overall: counts of exports and disclosures by purpose and category of
    recipient, from the audit log (each deployment's own counts are in its ``shared``)."""
    return {"shared": [c.model_dump() for c in public_data.shared_overall(web(request).db)]}


@router.get("/api/v1/public/summary", tags=["public"])
def api_public_summary(request: Request, year: YearQ = None) -> dict[str, Any]:
    """The totals of one year, by month."""
    return public_data.year_summary(web(request).db, year).as_json()
