"""The urgent-use path over JSON (``eu-ai-act``; :mod:`openlfr.governance.urgent`):

* ``POST /api/v1/deployments/{id}/urgent`` ``{"justification": ...}``: start a draft without
  prior authorisation (409 under ``uk-app``, saying why; 400 for a justification that is not
  substantial); the 24-hour clock starts.
* ``GET /api/v1/deployments/{id}/urgent``: the urgent use (404 if the deployment has none),
  with ``seconds_left`` while it waits.
* ``POST /api/v1/deployments/{id}/urgent/authorise``: authorise it (another authorising
  officer, before the deadline).
* ``POST /api/v1/deployments/{id}/urgent/refuse`` ``{"reason": ...}``: refuse it: the run stops
  and its results are deleted.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from openlfr.governance import urgent
from openlfr.governance.authz import NotFound
from openlfr.governance.views import UrgentUseView
from openlfr.web.deps import CurrentActor, web
from openlfr.web.routes.api_deployments import AuthoriseIn

router = APIRouter(prefix="/api/v1/deployments", tags=["deployments"])


class JustificationIn(BaseModel):
    justification: str = Field(max_length=20000, description=(
        "Why the use cannot wait for authorisation: substantial text (at least "
        f"{urgent.JUSTIFICATION_WORDS} words)."))


class RefusalIn(BaseModel):
    reason: str = Field(max_length=20000, description="Why the urgent use is refused.")


@router.post("/{deployment_id}/urgent", status_code=201, response_model=UrgentUseView)
def start_urgent(request: Request, deployment_id: int, body: JustificationIn,
                 actor: CurrentActor) -> UrgentUseView:
    """Start a draft as an urgent use, without prior authorisation (``eu-ai-act`` only)."""
    st = web(request)
    return urgent.start_urgent(st.db, st.system.keyring, actor, deployment_id,
                               body.justification)


@router.get("/{deployment_id}/urgent", response_model=UrgentUseView)
def show_urgent(request: Request, deployment_id: int, actor: CurrentActor) -> UrgentUseView:
    """The deployment's urgent use: started by whom, when, why; its deadline and state."""
    view = urgent.urgent_use(web(request).db, actor, deployment_id)
    if view is None:
        raise NotFound(f"deployment {deployment_id} has no urgent use")
    return view


@router.post("/{deployment_id}/urgent/authorise", response_model=UrgentUseView)
def authorise_urgent(request: Request, deployment_id: int, actor: CurrentActor,
                     body: AuthoriseIn | None = None) -> UrgentUseView:
    """Authorise the urgent use (an authorising officer who did not start it), before its
    deadline, with what the profile in force asks (``body``, as for an authorisation): it goes
    on as an authorised deployment."""
    return urgent.authorise_urgent(web(request).db, actor, deployment_id,
                                   decision=(body or AuthoriseIn()).decision())


@router.post("/{deployment_id}/urgent/refuse", response_model=UrgentUseView)
def refuse_urgent(request: Request, deployment_id: int, body: RefusalIn,
                  actor: CurrentActor) -> UrgentUseView:
    """Refuse the urgent use: it stops at once and its results are deleted (counts kept)."""
    return urgent.refuse_urgent(web(request).system, actor, deployment_id, body.reason)
