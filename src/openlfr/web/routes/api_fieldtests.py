"""Field tests (blue list) over JSON: ``/api/v1/field-tests`` — plan one for a deployment, add
consenting volunteers (``multipart/form-data``, the photo checked as any watchlist image), read
the test view of its alerts, end it (its report stored, the volunteers' data destroyed).

Every route calls :mod:`openlfr.governance.fieldtests`, which checks the caller's role and every
rule: bad input 400 naming the field, a state that does not allow it 409.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from openlfr.governance import fieldtests as ft
from openlfr.governance.authz import Perm, require
from openlfr.governance.times import parse_time
from openlfr.web.deps import CurrentActor, web
from openlfr.web.routes.api_watchlists import UploadProblem, read_image_upload, upload_label

router = APIRouter(prefix="/api/v1", tags=["field tests"])


def as_json(value: Any) -> Any:
    """A service's frozen dataclass as JSON (times as ISO 8601)."""
    return json.loads(json.dumps(asdict(value), default=lambda v: v.isoformat()
                                 if hasattr(v, "isoformat") else str(v)))


class PlanIn(BaseModel):
    purpose: str | None = Field(default=None, max_length=4000,
                                description="Why the test is run (a default is written).")


@router.post("/deployments/{deployment_id}/field-tests", status_code=201)
def plan(request: Request, deployment_id: int, actor: CurrentActor,
         body: PlanIn | None = None) -> dict[str, Any]:
    """Plan a field test of a draft or authorised deployment (it goes back to draft): its test
    watchlist is attached to the plan, to be approved like any watchlist."""
    view = ft.plan_field_test(web(request).system, actor, deployment_id,
                              body.purpose if body else None)
    out: dict[str, Any] = as_json(view)
    return out


@router.get("/field-tests")
def list_tests(request: Request, actor: CurrentActor,
               deployment: Annotated[int | None, Query(ge=1)] = None) -> list[Any]:
    return [as_json(v) for v in ft.list_field_tests(web(request).db, actor, deployment)]


@router.get("/field-tests/{test_id}")
def show(request: Request, test_id: int, actor: CurrentActor) -> dict[str, Any]:
    """A field test with its volunteers, their consent records and passes, and its report."""
    out: dict[str, Any] = as_json(ft.show_field_test(web(request).db, actor, test_id))
    return out


@router.post("/field-tests/{test_id}/volunteers", status_code=201)
async def add_volunteer(
    request: Request, test_id: int, actor: CurrentActor,
    label: Annotated[str, Form(max_length=200, description="A pseudonym.")],
    image: Annotated[UploadFile, File(description="The volunteer's reference photo.")],
    source: Annotated[str, Form(max_length=500, description="Where the photo came from.")],
    consent_by: Annotated[str, Form(max_length=200)],
    consent_at: Annotated[str, Form(max_length=60, description="ISO time with its zone.")],
    consent_reference: Annotated[str, Form(max_length=200)],
    passes: Annotated[list[str], Form(description="CAMERA=START/END, one per pass.")],
    age_band: Annotated[str | None, Form(max_length=20)] = None,
    sex: Annotated[str | None, Form(max_length=20)] = None,
    ethnicity: Annotated[str | None, Form(max_length=60)] = None,
) -> dict[str, Any]:
    """Enrol one consenting volunteer (multipart); nothing is stored unless all is valid.
    Who may is checked before the image is read (a refusal costs no decoding)."""
    await run_in_threadpool(require, web(request).db, actor, Perm.DEPLOYMENT_EDIT, "field_test",
                            str(test_id))
    try:
        data = await read_image_upload(image, upload_label(1, image))
    except UploadProblem as exc:
        raise HTTPException(exc.status, str(exc)) from None
    specs = [ft.parse_pass(p) for p in passes]
    when = parse_time(consent_at, "consent_at")
    view = await run_in_threadpool(
        lambda: ft.add_volunteer(web(request).system, actor, test_id, label, data, source,
                                 consent_by, when, consent_reference, specs, age_band=age_band,
                                 sex=sex, ethnicity=ethnicity))
    out: dict[str, Any] = as_json(view)
    return out


@router.get("/field-tests/{test_id}/alerts")
def alerts(request: Request, test_id: int, actor: CurrentActor) -> list[Any]:
    """The test view: the test's alerts, never in the operational queue."""
    return [as_json(a) for a in ft.test_alerts(web(request).db, actor, test_id)]


@router.post("/field-tests/{test_id}/end")
def end(request: Request, test_id: int, actor: CurrentActor) -> dict[str, Any]:
    """End the test: the report is stored with the deployment, the test alerts' crops purged
    and the volunteers' images and templates destroyed."""
    done = ft.end_field_test(web(request).system, actor, test_id)
    return {"field_test": done.field_test_id, "crops_purged": done.crops_purged,
            "watchlist_destroyed": done.watchlist_destroyed,
            "purge_pending": done.purge_pending, "report": done.report.as_json(),
            "markdown": done.report.markdown()}
