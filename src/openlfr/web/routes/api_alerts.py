"""Alerts in the JSON API: ``/api/v1/alerts``.

Reading needs ``alert.read`` (operators, supervisors, authorising officers, auditors);
deciding and outcomes ``alert.adjudicate`` (operators, supervisors); holds ``alert.hold``
(supervisors, authorising officers). The governance services decide and audit every refusal
(403). A request that breaks a rule is answered 400; one that conflicts with the alert's state
(already decided, already has an outcome, not confirmed, already held, purged) 409: the service
says which (:class:`~openlfr.governance.authz.Conflict`), the app maps it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from openlfr.governance import alerts as svc
from openlfr.web.deps import CurrentActor, web
from openlfr.web.routes.console_alerts import image_response, reference_image

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad input, or a broken rule (the detail says which)"},
    401: {"description": "Not signed in"},
    403: {"description": "Refused for the caller's role (audited)"},
    404: {"description": "No such alert"},
}


class AdjudicationOut(BaseModel):
    user: str
    decision: str
    reason: str | None
    at: datetime


class OutcomeOut(BaseModel):
    engaged: bool
    action: str
    notes: str | None
    recorded_by: str
    at: datetime


class AlertOut(BaseModel):
    """An alert as a reviewer reads it: a *possible match*, never a match. No pixels: the
    probe crop is at ``crop_url``."""

    id: int
    kind: str = Field(description='always "possible match"')
    deployment_id: int
    deployment: str
    two_person_rule: bool
    confirmations: int = Field(description="confirmations recorded so far")
    confirmations_needed: int
    camera: str
    track_id: int
    subject_id: int | None
    subject_reference: str | None
    subject_image_id: int | None
    watchlist_id: int | None
    score: float
    threshold: float
    model_id: str
    revision: int
    seen_at: datetime
    created_at: datetime
    status: str
    decided_at: datetime | None
    held: bool
    held_reason: str | None
    held_by: str | None
    purged_at: datetime | None
    has_crop: bool
    crop_url: str | None
    adjudications: list[AdjudicationOut]
    outcome: OutcomeOut | None

    @classmethod
    def of(cls, a: svc.AlertView) -> AlertOut:
        return cls(
            id=a.id, kind=svc.LABEL, deployment_id=a.deployment_id,
            deployment=a.deployment_name, two_person_rule=a.two_person_rule,
            confirmations=len(a.confirmations), confirmations_needed=2 if a.two_person_rule
            else 1, camera=a.camera, track_id=a.track_id, subject_id=a.subject_id,
            subject_reference=a.subject_reference, subject_image_id=a.subject_image_id,
            watchlist_id=a.watchlist_id, score=round(a.score, 4),
            threshold=round(a.threshold, 4), model_id=a.model_id, revision=a.revision,
            seen_at=a.seen_at, created_at=a.created_at, status=a.status.value,
            decided_at=a.decided_at, held=a.held_reason is not None,
            held_reason=a.held_reason, held_by=a.held_by, purged_at=a.purged_at,
            has_crop=a.has_crop,
            crop_url=f"/api/v1/alerts/{a.id}/crop" if a.has_crop else None,
            adjudications=[AdjudicationOut(user=d.user, decision=d.decision.value,
                                           reason=d.reason, at=d.at)
                           for d in a.adjudications],
            outcome=None if a.outcome is None else OutcomeOut(
                engaged=a.outcome.engaged, action=a.outcome.action.value,
                notes=a.outcome.notes, recorded_by=a.outcome.recorded_by, at=a.outcome.at))


class AdjudicationIn(BaseModel):
    decision: str = Field(description="confirm, reject or no_action", max_length=20)
    reason: str | None = Field(default=None, max_length=svc.MAX_TEXT,
                               description="needed for reject and no_action")


class OutcomeIn(BaseModel):
    engaged: bool
    action: str = Field(description="none, advice, arrest or other", max_length=20)
    notes: str | None = Field(default=None, max_length=svc.MAX_TEXT)


class HoldIn(BaseModel):
    reason: str = Field(max_length=svc.MAX_TEXT, description="why it is kept")


@router.get("", responses=ERRORS)
def list_alerts(request: Request, actor: CurrentActor,
                deployment_id: Annotated[int | None, Query(ge=1)] = None,
                status: Annotated[str | None, Query(max_length=20, description=(
                    "pending, confirmed, rejected or no_action"))] = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[AlertOut]:
    """Alerts, newest first."""
    wanted = svc.parse_status(status) if status else None
    return [AlertOut.of(a) for a in svc.list_alerts(web(request).db, actor, deployment_id,
                                                    wanted, limit)]


@router.get("/{alert_id}", responses=ERRORS)
def get_alert(request: Request, alert_id: int, actor: CurrentActor) -> AlertOut:
    return AlertOut.of(svc.get_alert(web(request).db, actor, alert_id))


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
               actor: CurrentActor) -> AlertOut:
    """Confirm, reject (a false alert) or take no action; reject and no_action need a reason.
    Under the two-person rule a confirmation verifies the alert only as the second, by a
    different person (the same person twice: 403)."""
    decision = svc.parse_decision(body.decision)  # unknown: 400
    view = svc.adjudicate(web(request).db, actor, alert_id, decision, body.reason)
    return AlertOut.of(view)


@router.post("/{alert_id}/outcome", status_code=201, responses={
    **ERRORS, 409: {"description": "Not confirmed, or the outcome is already recorded"}})
def outcome(request: Request, alert_id: int, body: OutcomeIn,
            actor: CurrentActor) -> AlertOut:
    """What happened after a confirmed alert (once)."""
    action = svc.parse_action(body.action)  # unknown: 400
    view = svc.record_outcome(web(request).db, actor, alert_id, body.engaged, action,
                              body.notes)
    return AlertOut.of(view)


@router.post("/{alert_id}/hold", responses={
    **ERRORS, 409: {"description": "Already held, or purged"}})
def hold(request: Request, alert_id: int, body: HoldIn, actor: CurrentActor) -> AlertOut:
    """Keep the alert past the retention period, with a reason."""
    view = svc.hold_alert(web(request).db, actor, alert_id, body.reason)
    return AlertOut.of(view)
