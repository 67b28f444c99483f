"""The urgent-use path in the console (``eu-ai-act``; :mod:`openlfr.governance.urgent`): the
forms of a deployment's page that start a draft urgently (with a justification), authorise the
urgent use, or refuse it. Starting and refusing are irreversible: they use the confirm pattern
of the governance pages (a dialog with JavaScript, a page of its own without,
:func:`openlfr.web.routes.console_governance.confirm_first`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from openlfr.governance import urgent
from openlfr.web.deps import PageActor, web
from openlfr.web.routes.console_governance import (
    EXPECTED,
    Confirm,
    _deployment_error,
    authorisation_decision,
    confirm_first,
)

router = APIRouter(prefix="/console", include_in_schema=False)

Text = Annotated[str, Form(max_length=20000)]


def _back(deployment_id: int, done: str) -> RedirectResponse:
    return RedirectResponse(f"/console/deployments/{deployment_id}?done={done}",
                            status_code=303)


@router.post("/deployments/{deployment_id}/urgent-start")
def urgent_start(request: Request, deployment_id: int, actor: PageActor,
                 justification: Text = "", confirm: Confirm = "") -> Response:
    ask = confirm_first(
        request, actor, confirm, button="Start without authorisation",
        question=f"Start deployment #{deployment_id} now as an urgent use, without prior "
                 f"authorisation? If it is not authorised within {urgent.URGENT_HOURS} hours, "
                 "or is refused, it stops and every result of it is deleted.",
        back=f"/console/deployments/{deployment_id}",
        fields={"justification": justification})
    if ask is not None:
        return ask
    st = web(request)
    try:
        urgent.start_urgent(st.db, st.system.keyring, actor, deployment_id, justification)
    except EXPECTED as exc:
        return _deployment_error(request, actor, deployment_id, exc, "urgent")
    return _back(deployment_id, "urgent_started")


@router.post("/deployments/{deployment_id}/urgent-authorise")
async def urgent_authorise(request: Request, deployment_id: int, actor: PageActor) -> Response:
    form = await request.form()  # parsed (and CSRF-checked) by page_actor already
    try:
        decision = authorisation_decision(form)
        await run_in_threadpool(urgent.authorise_urgent, web(request).db, actor, deployment_id,
                                None, decision)
    except EXPECTED as exc:
        return _deployment_error(request, actor, deployment_id, exc, "urgent")
    return _back(deployment_id, "urgent_authorised")


@router.post("/deployments/{deployment_id}/urgent-refuse")
def urgent_refuse(request: Request, deployment_id: int, actor: PageActor,
                  reason: Text = "", confirm: Confirm = "") -> Response:
    ask = confirm_first(
        request, actor, confirm, button="Refuse and delete its results",
        question=f"Refuse the urgent use of deployment #{deployment_id}? It stops at once and "
                 "every result of it (alerts, probe images, decisions, outcomes) is deleted.",
        back=f"/console/deployments/{deployment_id}", fields={"reason": reason})
    if ask is not None:
        return ask
    try:
        urgent.refuse_urgent(web(request).system, actor, deployment_id, reason)
    except EXPECTED as exc:
        return _deployment_error(request, actor, deployment_id, exc, "urgent")
    return _back(deployment_id, "urgent_refused")
