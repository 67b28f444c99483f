"""About the API itself: ``/api/v1/meta``, the OpenAPI schema and its docs page.

FastAPI's own docs pages load their scripts from a CDN, which the Content-Security-Policy (and
the rule "no CDN") forbid; they are switched off. Signed-in users get the raw schema at
``/api/openapi.json`` and a plain, server-rendered list of the operations at ``/api/docs``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from openlfr import __version__
from openlfr.web.deps import CurrentActor, PageActor, web
from openlfr.web.render import render

router = APIRouter()


@router.get("/api/v1/meta", tags=["meta"])
def meta(request: Request, actor: CurrentActor) -> dict[str, Any]:
    """The server's version and what runs in the background."""
    runner = web(request).runner
    jobs: dict[str, Any] = {"running": bool(runner is not None and
                                            getattr(runner, "running", False))}
    if runner is not None:
        jobs["deployments_running"] = sorted(getattr(runner, "runs", {}))
    return {"version": __version__, "actor": actor.name, "role": str(actor.role),
            "background_jobs": jobs}


@router.get("/api/openapi.json", include_in_schema=False)
def openapi(request: Request, actor: CurrentActor) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/api/docs", include_in_schema=False)
def docs(request: Request, actor: PageActor) -> Response:
    schema = request.app.openapi()
    operations = []
    for path, methods in sorted(schema.get("paths", {}).items()):
        for method, op in methods.items():
            params = [p.get("name", "") for p in op.get("parameters", [])]
            body = "requestBody" in op
            operations.append({"method": method.upper(), "path": path,
                               "summary": op.get("summary", ""),
                               "description": op.get("description", ""),
                               "tag": (op.get("tags") or ["other"])[0],
                               "params": params, "body": body})
    return render(request, "api_docs.html", {"operations": operations}, actor=actor)
