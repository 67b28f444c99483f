"""Alerts in the JSON API: ``/api/v1/alerts``.

Reading needs ``alert.read`` (operators, supervisors, authorising officers, auditors);
deciding and outcomes ``alert.adjudicate`` (operators, supervisors); holds ``alert.hold``
(supervisors, authorising officers). The governance services decide and audit every refusal
(403). A request that breaks a rule is answered 400; one that conflicts with the alert's state
(already decided, already has an outcome, not confirmed, already held, purged) 409: the service
says which (:class:`~openlfr.governance.authz.Conflict`), the app maps it.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from openlfr.governance import alerts as svc
from openlfr.governance.views import AlertView
from openlfr.web.deps import CurrentActor, web
from openlfr.web.routes.console_alerts import image_response, reference_image

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad input, or a broken rule (the detail says which)"},
    401: {"description": "Not signed in"},
    403: {"description": "Refused for the caller's role (audited)"},
    404: {"description": "No such alert"},
}


class AdjudicationIn(BaseModel):
    decision: str = Field(description="confirm, reject or no_action", max_length=20)
    reason: str | None = Field(default=None, max_length=svc.MAX_TEXT,
                               description="needed for reject and no_action")


class OutcomeIn(BaseModel):
    engaged: bool
    action: str = Field(description="none, advice, arrest or other", max_length=20)
    notes: str | None = Field(default=None, max_length=svc.MAX_TEXT)
    not_subject: bool = Field(default=False, description=(
        "a confirmed alert's engaged person turned out not to be the subject (a false alert)"))
    stopped: bool | None = Field(default=None, description=(
        "after a false alert (rejected, or not_subject): whether the person was stopped; "
        "required then, refused otherwise"))
    stop_minutes: int | None = Field(default=None, ge=1, le=svc.MAX_STOP_MINUTES,
                                     description="how long the stop lasted, if stopped")
    perceived_ethnicity: str | None = Field(default=None, max_length=60, description=(
        "optional, an officer's perception (census 2021 groups: asian, black, mixed, white, "
        "other_ethnic_group, not_recorded), for the public sector equality duty"))
    perceived_sex: str | None = Field(default=None, max_length=20,
                                      description="optional: female, male or not_recorded")


class HoldIn(BaseModel):
    reason: str = Field(max_length=svc.MAX_TEXT, description="why it is kept")


@router.get("", responses=ERRORS)
def list_alerts(request: Request, response: Response, actor: CurrentActor,
                deployment_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
                camera: Annotated[str | None, Query(max_length=100)] = None,
                status: Annotated[str | None, Query(max_length=20, description=(
                    "pending, decided (any but pending), confirmed, rejected, no_action or "
                    "all (the default)"))] = None,
                since: Annotated[str | None, Query(max_length=80, description=(
                    "seen at or after this time (2026-05-01T08:00Z, 2h, 90d: the one time "
                    "format)"))] = None,
                until: Annotated[str | None, Query(max_length=80, description=(
                    "seen before this time"))] = None,
                min_score: Annotated[float | None, Query(ge=-1, le=1)] = None,
                max_score: Annotated[float | None, Query(ge=-1, le=1)] = None,
                before: Annotated[int | None, Query(ge=1, le=2**62, description=(
                    "the older page: alerts numbered below this (the Link header's "
                    "rel=next)"))] = None,
                after: Annotated[int | None, Query(ge=0, le=2**62, description=(
                    "the newer page: alerts numbered above this (rel=prev)"))] = None,
                limit: Annotated[int, Query(ge=1, le=svc.MAX_PAGE)] = 100) -> list[AlertView]:
    """Alerts matching the filters, newest first, one page of ``limit``. The total is in the
    ``X-Total-Count`` header; the ``Link`` header gives the older (``rel="next"``) and newer
    (``rel="prev"``) pages, with the same filters."""
    where = svc.alert_filter(deployment=deployment_id, camera=camera, status=status,
                             since=since, until=until, min_score=min_score,
                             max_score=max_score)
    page = svc.search_alerts(web(request).db, actor, where, before=before, after=after,
                             limit=limit)
    response.headers["X-Total-Count"] = str(page.total)
    kept = [(k, v) for k, v in request.query_params.multi_items()
            if k not in ("before", "after")]
    links = []
    for rel, key, cursor in (("next", "before", page.older), ("prev", "after", page.newer)):
        if cursor is not None:
            links.append(f'<{request.url.path}?{urlencode([*kept, (key, str(cursor))])}>; '
                         f'rel="{rel}"')
    if links:
        response.headers["Link"] = ", ".join(links)
    return list(page.items)


@router.get("/{alert_id}", responses=ERRORS)
def get_alert(request: Request, alert_id: int, actor: CurrentActor) -> AlertView:
    return svc.get_alert(web(request).db, actor, alert_id)


@router.get("/{alert_id}/crop", responses={
    **ERRORS, 200: {"content": {"image/jpeg": {}}, "description": "the probe crop"},
    409: {"description": "The alert was purged"}},
    response_class=Response)
def get_crop(request: Request, alert_id: int, actor: CurrentActor) -> Response:
    """The probe crop (JPEG), decrypted now; audited ``alert.view_crop``; not cached."""
    return image_response(svc.alert_crop(web(request).system, actor, alert_id))


@router.get("/{alert_id}/reference", responses={
    **ERRORS, 200: {"content": {"image/jpeg": {}, "image/png": {}},
                    "description": "the watchlist reference image"}},
    response_class=Response)
def get_reference(request: Request, alert_id: int, actor: CurrentActor) -> Response:
    """The watchlist reference image the alert was matched to (audited
    ``subject_image.view``); not cached."""
    return image_response(reference_image(request, actor, alert_id))


@router.post("/{alert_id}/adjudications", status_code=201, responses={
    **ERRORS, 409: {"description": "The alert is already decided, or purged"}})
def adjudicate(request: Request, alert_id: int, body: AdjudicationIn,
               actor: CurrentActor) -> AlertView:
    """Confirm, reject (a false alert) or take no action; reject and no_action need a reason.
    Under the two-person rule a confirmation verifies the alert only as the second, by a
    different person (the same person twice: 403)."""
    decision = svc.parse_decision(body.decision)  # unknown: 400
    return svc.adjudicate(web(request).db, actor, alert_id, decision, body.reason)


@router.post("/{alert_id}/outcome", status_code=201, responses={
    **ERRORS, 409: {"description": "Neither confirmed nor rejected, or the outcome is "
                    "already recorded"}})
def outcome(request: Request, alert_id: int, body: OutcomeIn,
            actor: CurrentActor) -> AlertView:
    """What happened after a confirmed or a false alert (once); after a false alert, whether
    the person was stopped, for how long, and optionally their perceived ethnicity and sex."""
    action = svc.parse_action(body.action)  # unknown: 400
    stop = None
    if (body.stopped is not None or body.stop_minutes is not None
            or body.perceived_ethnicity or body.perceived_sex):
        if body.stopped is None:
            raise svc.RuleError("say whether the person was stopped", field="stopped")
        stop = svc.FalseAlertStop(body.stopped, body.stop_minutes,
                                  svc.parse_ethnicity(body.perceived_ethnicity),
                                  svc.parse_sex(body.perceived_sex))
    return svc.record_outcome(web(request).db, actor, alert_id, body.engaged, action,
                              body.notes, not_subject=body.not_subject, stop=stop)


@router.post("/{alert_id}/hold", responses={
    **ERRORS, 409: {"description": "Already held, or purged"}})
def hold(request: Request, alert_id: int, body: HoldIn, actor: CurrentActor) -> AlertView:
    """Keep the alert past the retention period, with a reason."""
    return svc.hold_alert(web(request).db, actor, alert_id, body.reason)
