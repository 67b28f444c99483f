"""The console's editor of a camera's analysis zones and privacy masks: a still frame taken
from the camera (held in memory for the plan's life, :mod:`openlfr.governance.stills`), the
polygons drawn over it (plain JavaScript and SVG, ``/static/zones.js``) and, for keyboards and
screen readers, the same polygons as text (JSON) in two fields. Saving edits the plan, so an
authorised deployment goes back to draft and needs authorisation again."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from openlfr.errors import NotFound
from openlfr.governance import deployments as deps
from openlfr.governance import stills
from openlfr.governance.authz import Actor
from openlfr.video.zones import KINDS, check_polygons, polygon_area, to_json
from openlfr.web.deps import PageActor, web
from openlfr.web.routes.console_governance import (
    EXPECTED,
    _message,
    _page,
    _see_other,
    _status_of,
)

router = APIRouter(prefix="/console", include_in_schema=False)

DONE = {"still": "Still taken: it is kept in memory only, for the plan's life.",
        "saved": "Zones and masks saved."}


def _base(deployment_id: int, camera: str) -> str:
    return f"/console/deployments/{deployment_id}/cameras/{quote(camera, safe='')}"


def _ctx(request: Request, actor: Actor, deployment_id: int, camera: str,
         values: dict[str, str] | None = None) -> dict[str, Any]:
    view = deps.show(web(request).db, actor, deployment_id)
    cam = next((c for c in view.cameras if c.name == camera), None)
    if cam is None:
        raise NotFound(f"deployment {deployment_id} has no camera named {camera!r}")
    return {"dep": view, "cam": cam, "base": _base(deployment_id, camera),
            "has_still": camera in stills.held(deployment_id),
            "editable": view.status in ("draft", "authorised"),
            "done": DONE.get(request.query_params.get("done", "")),
            "form": values or {k: to_json(getattr(cam, k)) if getattr(cam, k) else ""
                               for k in KINDS},
            "areas": {k: [100 * polygon_area(p) for p in getattr(cam, k)] for k in KINDS}}


@router.get("/deployments/{deployment_id}/cameras/{camera}/zones")
def zones_page(request: Request, deployment_id: int, camera: str,
               actor: PageActor) -> Response:
    return _page(request, actor, "gov_camera_zones.html",
                 _ctx(request, actor, deployment_id, camera))


@router.get("/deployments/{deployment_id}/cameras/{camera}/still.jpg")
def still_image(request: Request, deployment_id: int, camera: str,
                actor: PageActor) -> Response:
    """The camera's still (in memory only; never cached by the browser)."""
    data = stills.get(web(request).db, actor, deployment_id, camera)
    if data is None:
        raise NotFound(f"no still of camera {camera!r}: take one on its zones page")
    return Response(data, media_type="image/jpeg",
                    headers={"Cache-Control": "no-store, private"})


@router.post("/deployments/{deployment_id}/cameras/{camera}/still")
async def take_still(request: Request, deployment_id: int, camera: str,
                     actor: PageActor) -> Response:
    st = web(request)
    try:
        await run_in_threadpool(stills.take, st.db, st.system.keyring, actor, deployment_id,
                                camera)
    except EXPECTED as exc:
        ctx = await run_in_threadpool(_ctx, request, actor, deployment_id, camera)
        ctx.update(error=_message(exc), done=None)
        return _page(request, actor, "gov_camera_zones.html", ctx, _status_of(exc))
    return _see_other(_base(deployment_id, camera) + "/zones?done=still")


@router.post("/deployments/{deployment_id}/cameras/{camera}/zones")
async def save_zones(request: Request, deployment_id: int, camera: str,
                     actor: PageActor) -> Response:
    form = await request.form()
    values = {k: str(form.get(k) or "")[:200_000] for k in KINDS}
    st = web(request)

    def save() -> list[str]:
        view = deps.show(st.db, actor, deployment_id)
        if camera not in {c.name for c in view.cameras}:
            raise NotFound(f"deployment {deployment_id} has no camera named {camera!r}")
        polygons = {k: check_polygons(values[k], camera, k) for k in KINDS}
        cameras = [deps.CameraSpec(c.name, c.source, *(
            (polygons["zones"], polygons["masks"]) if c.name == camera else (None, None)))
            for c in view.cameras]
        return deps.edit(st.db, actor, deployment_id, keyring=st.system.keyring,
                         cameras=cameras)

    try:
        await run_in_threadpool(save)
    except EXPECTED as exc:
        ctx = await run_in_threadpool(_ctx, request, actor, deployment_id, camera, values)
        ctx.update(error=_message(exc), done=None)
        return _page(request, actor, "gov_camera_zones.html", ctx, _status_of(exc))
    return _see_other(f"/console/deployments/{deployment_id}?done=saved")
