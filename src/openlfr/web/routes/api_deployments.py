"""Deployments over JSON: ``/api/v1/deployments`` — create and edit a draft (with its cameras
and watchlists), authorise, override the threshold floor, start, resume and stop.

Start and resume only change the deployment's state: the server's reconciler
(:mod:`openlfr.governance.reconcile`) opens its cameras within a second or two, and
``GET /api/v1/deployments/{id}`` shows each camera's state (``connecting``, ``live``,
``retrying`` since when with the last error, ``ended``).

Consultation: ``POST /{id}/propose`` publishes a draft as proposed (its consultation period
opens); ``POST /{id}/consultation-response`` records the authorising officer's response once
the period has ended. A new plan needs ``alternatives`` (the less intrusive alternatives
considered and why they do not suffice).

The governance service (:mod:`openlfr.governance.deployments`) checks every rule and role. A
rule broken by the deployment's current state (authorising one that is not a draft, starting
outside its window, stopping an ended one) is a :class:`~openlfr.governance.authz.Conflict`,
answered 409; bad input 400 or 422. A create without a threshold takes the model's current
floor (the service applies that default).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from openlfr.governance import deployments as deps
from openlfr.governance import urgent
from openlfr.governance.authz import Actor, Perm, RuleError, require
from openlfr.governance.views import DeploymentView, UrgentUseView
from openlfr.store.crypto import Keyring
from openlfr.store.db import Database
from openlfr.store.enums import DeploymentStatus
from openlfr.vision.registry import default_backend
from openlfr.web.deps import CurrentActor, web

router = APIRouter(prefix="/api/v1/deployments", tags=["deployments"])


class CameraIn(BaseModel):
    name: str = Field(max_length=64, description="Unique within the deployment.")
    source: str = Field(max_length=2000, description="File path, stream URL or webcam index.")
    zones: list[list[tuple[float, float]]] | None = Field(default=None, max_length=16, description=(
        "Analysis zones: polygons of 3 to 64 [x, y] points from 0 to 1 across the frame; faces "
        "are analysed only when their box centre lies in one. [] : the whole frame. Omitted on "
        "an edit: the camera's stored zones are kept."))
    masks: list[list[tuple[float, float]]] | None = Field(default=None, max_length=16, description=(
        "Privacy masks (polygons like zones): blacked out before anything sees the frame, "
        "never analysed. Omitted on an edit: kept."))
    node: str | None = Field(default=None, max_length=100, description=(
        "The node that runs the camera (GET /api/v1/nodes); \"\": the centre itself. "
        "Omitted: the centre for a new camera, the stored camera's node on an edit."))

    def spec(self) -> deps.CameraSpec:
        def polys(v: list[list[tuple[float, float]]] | None) -> Any:
            return None if v is None else tuple(tuple(p) for p in v)

        return deps.CameraSpec(self.name, self.source, polys(self.zones), polys(self.masks),
                               self.node)


class DeploymentIn(BaseModel):
    name: str = Field(max_length=200)
    site: str = Field(max_length=200)
    location: str = Field(max_length=500)
    purpose: str = Field(max_length=5000)
    legal_basis: str = Field(max_length=5000)
    dpia_ref: str = Field(max_length=200)
    equality_ref: str = Field(max_length=200)
    planned_start: datetime = Field(description="ISO 8601 with a timezone.")
    planned_end: datetime = Field(description="ISO 8601 with a timezone.")
    threshold: float | None = Field(default=None, description="Default: the model's floor.")
    backend: str = Field(default_factory=default_backend, max_length=40)
    two_person_rule: bool = False
    signage: bool = False
    public_notice: bool = False
    urgency_reason: str | None = Field(default=None, max_length=5000)
    watchlist_ids: list[int] = Field(default_factory=list)
    cameras: list[CameraIn] = Field(default_factory=list)
    alternatives: str | None = Field(default=None, max_length=5000, description=(
        "Required: the less intrusive alternatives considered and why they do not suffice."))
    consultation_days: int | None = Field(default=None, description=(
        "A public consultation of this many days before it may be authorised (needed when "
        "the deployment is longer than OPENLFR_CONSULTATION_AFTER_DAYS)."))
    notice_at: datetime | None = Field(default=None, description=(
        "When the advance public notice was (or will be) published: before the window starts "
        "(uk-app, unless urgency_reason records a critical-threat reason)."))
    lease_seconds: int = Field(default=deps.DEFAULT_LEASE_S, ge=deps.LEASE_MIN_S,
                               le=deps.LEASE_MAX_S, description=(
        "How long a lease the centre grants a node running its cameras, in seconds."))
    target_fpir: float | None = Field(default=deps.DEFAULT_TARGET_FPIR, gt=0, lt=1, description=(
        "The false-alert rate the plan aims at, per person passing: authorisation needs a "
        "calibration for it."))
    fria_ref: str | None = Field(default=None, max_length=200, description=(
        "The fundamental rights impact assessment reference (eu-ai-act)."))
    eu_db_ref: str | None = Field(default=None, max_length=200, description=(
        "The EU database registration reference (eu-ai-act)."))


class DeploymentPatch(BaseModel):
    """Only the fields given change; ``watchlist_ids`` and ``cameras`` replace the lists."""

    name: str | None = Field(default=None, max_length=200)
    site: str | None = Field(default=None, max_length=200)
    location: str | None = Field(default=None, max_length=500)
    purpose: str | None = Field(default=None, max_length=5000)
    legal_basis: str | None = Field(default=None, max_length=5000)
    dpia_ref: str | None = Field(default=None, max_length=200)
    equality_ref: str | None = Field(default=None, max_length=200)
    planned_start: datetime | None = None
    planned_end: datetime | None = None
    threshold: float | None = None
    two_person_rule: bool | None = None
    signage: bool | None = None
    public_notice: bool | None = None
    urgency_reason: str | None = Field(default=None, max_length=5000)
    watchlist_ids: list[int] | None = None
    cameras: list[CameraIn] | None = None
    alternatives: str | None = Field(default=None, max_length=5000)
    consultation_days: int | None = Field(default=None, description=(
        "null removes the consultation period (a material change: module doc)."))
    notice_at: datetime | None = Field(default=None, description=(
        "When the advance public notice was (or will be) published: before the window starts "
        "(uk-app, unless urgency_reason records a critical-threat reason)."))
    lease_seconds: int | None = Field(default=None, ge=deps.LEASE_MIN_S,
                                      le=deps.LEASE_MAX_S, description=(
        "How long a lease the centre grants a node running its cameras, in seconds."))
    target_fpir: float | None = Field(default=None, gt=0, lt=1, description=(
        "The false-alert rate the plan aims at, per person passing: authorisation needs a "
        "calibration for it."))
    fria_ref: str | None = Field(default=None, max_length=200, description=(
        "The fundamental rights impact assessment reference (eu-ai-act)."))
    eu_db_ref: str | None = Field(default=None, max_length=200, description=(
        "The EU database registration reference (eu-ai-act)."))


class ReasonIn(BaseModel):
    reason: str = Field(min_length=1, max_length=5000)


class ResponseIn(BaseModel):
    response: str = Field(min_length=1, max_length=20000, description=(
        "The response to the comments of the consultation (published)."))


class EditOut(BaseModel):
    changed: list[str]
    deployment: DeploymentView


class StartOut(BaseModel):
    resumed: bool
    deployment: DeploymentView


def model_id_of(db: Database, backend: str) -> str:
    """The backend's model id, from its spec: nothing is loaded."""
    from openlfr.governance.models import model_id_for
    from openlfr.vision.registry import ModelError

    try:
        return model_id_for(db, backend)
    except ModelError as exc:
        raise RuleError(f"backend {backend!r}: {exc}") from None


def create_plan(db: Database, actor: Actor, body: DeploymentIn, keyring: Keyring) -> int:
    """Create the draft (shared with the console's form)."""
    require(db, actor, Perm.DEPLOYMENT_EDIT, "deployment", "new")
    model_id = model_id_of(db, body.backend)
    plan = deps.Plan(
        name=body.name, site=body.site, location=body.location, purpose=body.purpose,
        legal_basis=body.legal_basis, dpia_ref=body.dpia_ref, equality_ref=body.equality_ref,
        planned_start=body.planned_start, planned_end=body.planned_end, threshold=body.threshold,
        model_id=model_id, two_person_rule=body.two_person_rule, signage=body.signage,
        public_notice=body.public_notice, urgency_reason=body.urgency_reason,
        watchlist_ids=tuple(body.watchlist_ids),
        cameras=tuple(c.spec() for c in body.cameras),
        alternatives=body.alternatives, consultation_days=body.consultation_days,
        notice_at=body.notice_at, target_fpir=body.target_fpir, fria_ref=body.fria_ref,
        lease_seconds=body.lease_seconds,
        eu_db_ref=body.eu_db_ref)
    return deps.create(db, actor, plan, keyring)


@router.get("", response_model=list[DeploymentView])
def list_deployments(request: Request, actor: CurrentActor,
                     status: str | None = None) -> list[DeploymentView]:
    """Every deployment (``status``: draft, authorised, running or ended)."""
    wanted = None
    if status:
        try:
            wanted = DeploymentStatus(status)
        except ValueError:
            raise HTTPException(400, f"unknown status {status!r}: draft, authorised, running "
                                     "or ended") from None
    return deps.list_deployments(web(request).db, actor, wanted)


@router.post("", status_code=201, response_model=DeploymentView)
def create(request: Request, body: DeploymentIn, actor: CurrentActor) -> DeploymentView:
    """A draft deployment with its cameras and watchlists."""
    st = web(request)
    return deps.show(st.db, actor, create_plan(st.db, actor, body, st.system.keyring))


class DeploymentShown(DeploymentView):
    """One deployment as ``GET /deployments/{id}`` (and ``openlfr deployment show --json``)
    give it: with its urgent use, if it started as one (eu-ai-act)."""

    urgent_use: UrgentUseView | None = None


@router.get("/{deployment_id}", response_model=DeploymentShown)
def show(request: Request, deployment_id: int, actor: CurrentActor) -> DeploymentShown:
    """One deployment, its floor, watchlists, cameras (no credentials), what it lacks, and its
    urgent use, if any."""
    db = web(request).db
    view = deps.show(db, actor, deployment_id)
    return DeploymentShown(**view.model_dump(), urgent_use=urgent.urgent_use(db, actor,
                                                                           deployment_id))


@router.patch("/{deployment_id}", response_model=EditOut)
def edit(request: Request, deployment_id: int, body: DeploymentPatch,
         actor: CurrentActor) -> dict[str, Any]:
    """Change a draft or authorised deployment (an authorised one goes back to draft)."""
    db = web(request).db
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    if body.cameras is not None:
        changes["cameras"] = tuple(c.spec() for c in body.cameras)
    changes = {k: v for k, v in changes.items()
               if v is not None or k in ("urgency_reason", "consultation_days")}
    changed = deps.edit(db, actor, deployment_id, keyring=web(request).system.keyring,
                        **changes)
    return {"changed": changed, "deployment": deps.show(db, actor, deployment_id)}


class AuthoriseIn(BaseModel):
    """What the authorising officer records with the authorisation, as the jurisdiction
    profile in force asks (README "Jurisdiction profiles")."""

    rank: str | None = Field(default=None, max_length=40, description=(
        "Your police rank (uk-app: superintendent or above)."))
    criteria_approved: bool = Field(default=False, description=(
        "You approve the watchlist criteria for this deployment (uk-app)."))
    representative: bool = Field(default=False, description=(
        "You attest that the calibration's data is representative of the people who will "
        "pass (both profiles)."))
    authority_ref: str | None = Field(default=None, max_length=200)
    authority_name: str | None = Field(default=None, max_length=200)
    authority_date: date | None = Field(default=None, description=(
        "The independent authority's decision: reference, authority, date, scope "
        "(eu-ai-act)."))
    authority_scope: str | None = Field(default=None, max_length=5000)

    def decision(self) -> deps.Decision:
        return deps.Decision(**self.model_dump())


@router.post("/{deployment_id}/authorise", response_model=DeploymentView)
def authorise(request: Request, deployment_id: int, actor: CurrentActor,
              body: AuthoriseIn | None = None) -> DeploymentView:
    """Authorise a draft: an authorising officer who neither created nor edited it, with
    what the profile in force asks (``body``)."""
    st = web(request)
    deps.authorise(st.db, st.system.keyring, actor, deployment_id,
                   consultation_after_days=st.system.settings.consultation_after_days,
                   decision=(body or AuthoriseIn()).decision())
    return deps.show(st.db, actor, deployment_id)


@router.get("/{deployment_id}/notifications")
def notifications(request: Request, deployment_id: int,
                  actor: CurrentActor) -> list[dict[str, Any]]:
    """The use notifications generated at each start under eu-ai-act (their JSON bodies)."""
    return deps.notifications(web(request).db, actor, deployment_id)


@router.post("/{deployment_id}/propose", response_model=DeploymentView)
def propose(request: Request, deployment_id: int, actor: CurrentActor) -> DeploymentView:
    """Publish a draft as proposed: its consultation period opens now (publishing again
    restarts it). It appears on the public pages with the end of the period."""
    return deps.propose(web(request).db, actor, deployment_id)


@router.post("/{deployment_id}/consultation-response", response_model=DeploymentView)
def consultation_response(request: Request, deployment_id: int, body: ResponseIn,
                          actor: CurrentActor) -> DeploymentView:
    """Record the response to the consultation's comments (authorising officers; once the
    period has ended). Published with the deployment."""
    return deps.record_response(web(request).db, actor, deployment_id, body.response)


@router.post("/{deployment_id}/override-threshold", response_model=DeploymentView)
def override_threshold(request: Request, deployment_id: int, body: ReasonIn,
                       actor: CurrentActor) -> DeploymentView:
    """Record why a threshold below the model's floor may be used."""
    db = web(request).db
    deps.override_threshold(db, actor, deployment_id, body.reason)
    return deps.show(db, actor, deployment_id)


@router.post("/{deployment_id}/start", response_model=StartOut)
def start(request: Request, deployment_id: int, actor: CurrentActor) -> dict[str, Any]:
    """Mark an authorised deployment running (inside its window, rules re-checked); on a
    paused one this resumes it (``resumed: true``). The live run follows within seconds."""
    db = web(request).db
    resumed = deps.start(db, actor, deployment_id)
    return {"resumed": resumed, "deployment": deps.show(db, actor, deployment_id)}


@router.post("/{deployment_id}/resume", response_model=DeploymentView)
def resume(request: Request, deployment_id: int, actor: CurrentActor) -> DeploymentView:
    """Run a paused deployment again (rules and window re-checked); 409 if it is not paused."""
    db = web(request).db
    deps.resume(db, actor, deployment_id)
    return deps.show(db, actor, deployment_id)


@router.post("/{deployment_id}/stop", response_model=DeploymentView)
def stop(request: Request, deployment_id: int, body: ReasonIn,
         actor: CurrentActor) -> DeploymentView:
    """End a deployment (final), with a reason."""
    db = web(request).db
    deps.stop(db, actor, deployment_id, body.reason)
    return deps.show(db, actor, deployment_id)
