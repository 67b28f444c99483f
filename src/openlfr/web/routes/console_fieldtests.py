"""The console's field-test pages: plan a test from a deployment's page, add consenting
volunteers with their consent record and planned passes, review the **test view** of the test's
alerts (never in the operational queue), and end the test (its report stored and published,
the volunteers' data destroyed). Forms POST with their CSRF token and redirect (303); a broken
rule shows the page again with the message and the fields kept."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from openlfr.governance import fieldtests as ft
from openlfr.governance.authz import Actor, Perm, RuleError, require
from openlfr.governance.times import form_time
from openlfr.governance.views import ETHNICITY_WORDS
from openlfr.store.enums import PerceivedEthnicity
from openlfr.web.deps import PageActor, web
from openlfr.web.render import people_zone
from openlfr.web.routes.api_watchlists import UploadProblem, read_image_upload
from openlfr.web.routes.console_governance import (
    EXPECTED,
    Confirm,
    _message,
    _page,
    _see_other,
    _status_of,
    confirm_first,
)

router = APIRouter(prefix="/console", include_in_schema=False)

ETHNIC_LABELS = {g.value: ETHNICITY_WORDS[g] for g in PerceivedEthnicity
                 if g != PerceivedEthnicity.NOT_RECORDED}
EMPTY_FORM = {"label": "", "source": "", "consent_by": "", "consent_at": "",
              "consent_reference": "", "passes": "", "age_band": "", "sex": "", "ethnicity": ""}
DONE = {"planned": "Field test planned. Its test watchlist is attached to the deployment, which "
                   "must be authorised again.",
        "added": "Volunteer added. The test watchlist must be approved again.",
        "ended": "Field test ended: its report is stored and published, the volunteers' photos "
                 "and templates and the test alerts' pictures destroyed."}


def _ctx(request: Request, actor: Actor, test_id: int) -> dict[str, Any]:
    db = web(request).db
    return {"test": ft.show_field_test(db, actor, test_id),
            "alerts": ft.test_alerts(db, actor, test_id), "form": dict(EMPTY_FORM),
            "age_bands": ft.AGE_BANDS, "ethnic_labels": ETHNIC_LABELS, "nav": "deployments",
            "done": DONE.get(request.query_params.get("done", ""))}


@router.get("/field-tests/{test_id}")
def field_test_page(request: Request, test_id: int, actor: PageActor) -> Response:
    return _page(request, actor, "gov_fieldtest.html", _ctx(request, actor, test_id))


@router.post("/deployments/{deployment_id}/field-tests")
def field_test_plan(request: Request, deployment_id: int, actor: PageActor) -> Response:
    try:
        view = ft.plan_field_test(web(request).system, actor, deployment_id)
    except EXPECTED as exc:
        return _page(request, actor, "error.html", {"status": _status_of(exc),
                                                    "message": _message(exc)},
                     _status_of(exc))
    return _see_other(f"/console/field-tests/{view.id}?done=planned")


@router.post("/field-tests/{test_id}/volunteers")
async def volunteer_add(request: Request, test_id: int, actor: PageActor) -> Response:
    form = await request.form()  # parsed (and CSRF-checked) by page_actor already
    values = {k: str(form.get(k) or "")[:4000] for k in EMPTY_FORM}
    upload = form.get("image")
    zone = people_zone(request)
    # who may is checked before the photo is read (a refusal costs no decoding)
    await run_in_threadpool(require, web(request).db, actor, Perm.DEPLOYMENT_EDIT, "field_test",
                            str(test_id))
    try:
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise UploadProblem("the volunteer's photo is required")
        data = await read_image_upload(upload, "the volunteer's photo")
        lines = [line for line in values["passes"].splitlines() if line.strip()]
        passes = [ft.parse_pass(line) for line in lines]
        when = form_time(values["consent_at"], "consent_at", zone=zone) \
            if values["consent_at"].strip() else None
        if when is None:
            raise RuleError("when the consent was given is required", field="consent_at")
        await run_in_threadpool(
            ft.add_volunteer, web(request).system, actor, test_id, values["label"], data,
            values["source"], values["consent_by"], when, values["consent_reference"], passes,
            age_band=values["age_band"], sex=values["sex"], ethnicity=values["ethnicity"])
    except EXPECTED as exc:
        ctx = await run_in_threadpool(_ctx, request, actor, test_id)
        ctx.update(form=values, error=_message(exc))
        return _page(request, actor, "gov_fieldtest.html", ctx, _status_of(exc))
    return _see_other(f"/console/field-tests/{test_id}?done=added#volunteers")


@router.post("/field-tests/{test_id}/end")
def field_test_end(request: Request, test_id: int, actor: PageActor,
                   confirm: Confirm = "") -> Response:
    ask = confirm_first(request, actor, confirm, button="End the field test",
                        question=f"End field test #{test_id}? Its report is stored and "
                                 "published; the volunteers' photos and templates are "
                                 "destroyed.", back=f"/console/field-tests/{test_id}")
    if ask is not None:
        return ask
    try:
        ft.end_field_test(web(request).system, actor, test_id)
    except EXPECTED as exc:
        ctx = _ctx(request, actor, test_id)
        ctx.update(error=_message(exc))
        return _page(request, actor, "gov_fieldtest.html", ctx, _status_of(exc))
    return _see_other(f"/console/field-tests/{test_id}?done=ended")
