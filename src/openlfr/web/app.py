"""The FastAPI application: :func:`create_app` wires middleware, error handling and routes.

Add an area by writing ``routes/<area>.py`` with an ``APIRouter`` named ``router`` and listing
it in :data:`ROUTERS`. API routes take ``actor: Actor = Depends(current_actor)`` and call the
governance services (which check permissions through ``authz.require``); pages take
``Depends(page_actor)``. Errors from the services become clean answers here, in one handler
of the :mod:`openlfr.errors` tree (statuses: :data:`openlfr.web.problems.STATUS`): JSON
``{"detail": ...}`` under ``/api/``, an error page elsewhere. An integrity failure is logged
and answered 500 without detail; any other exception (a bare ``ValueError`` too) is a bug:
logged with its traceback, 500.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from sqlalchemy.exc import DataError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from openlfr import __version__, errors
from openlfr.governance.system import System
from openlfr.web import sessions
from openlfr.web.deps import LoginRequired, StepFirst, WebState, known_actor
from openlfr.web.problems import INTEGRITY, INTERNAL, http_status
from openlfr.web.ratelimit import PublicRateLimitMiddleware
from openlfr.web.render import STATIC, make_templates, render
from openlfr.web.routes import (
    account,
    api_alerts,
    api_audit,
    api_deployments,
    api_fieldtests,
    api_meta,
    api_nodes,
    api_questions,
    api_reports,
    api_urgent,
    api_users,
    api_watchlists,
    auth,
    console,
    console_alerts,
    console_audit,
    console_fieldtests,
    console_governance,
    console_nodes,
    console_reports,
    console_urgent,
    console_zones,
    public,
)
from openlfr.web.security import BodyLimitMiddleware, SecurityHeadersMiddleware

log = logging.getLogger("openlfr.web")

#: Every router of the app, one line each.
ROUTERS = (
    auth.router,
    account.router,
    public.router,
    api_users.router,
    api_questions.router,
    api_meta.router,
    console.router,
    console_alerts.router,
    api_alerts.router,
    api_watchlists.router,
    api_deployments.router,
    api_fieldtests.router,
    api_urgent.router,
    api_audit.router,
    api_nodes.router,
    console_governance.router,
    console_fieldtests.router,
    console_nodes.router,
    console_zones.router,
    console_urgent.router,
    console_audit.router,
    console_reports.router,
    api_reports.router,
)

#: The /api/v1 routes an anonymous caller may use; every other one answers 401.
ANONYMOUS_API = ("/api/v1/public/", "/api/v1/auth/login",
                 "/api/v1/nodes/enrol")  # a node enrolls with its one-time token


class Problem(BaseModel):
    """Every error answer of the API: ``{"detail": "what was wrong"}``."""

    detail: str


#: The error answers any API operation may give, as the OpenAPI schema documents them (an
#: operation's own descriptions take precedence). 422 replaces FastAPI's default, whose list of
#: errors this API does not send: its detail is one plain sentence too.
API_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": text} for status, text in (
        (400, "Bad input, or a broken rule (the detail says which)"),
        (401, "Not signed in"),
        (403, "Refused for the caller's role (audited)"),
        (404, "No such object"),
        (409, "The object is not in a state that allows this"),
        (413, "The request body is too large"),
        (422, "A parameter or the body does not match the schema"),
        (429, "Too many attempts: wait as long as Retry-After says"),
        (500, "An integrity failure or an internal error (logged; no detail)"),
        (503, "Not possible at the moment: try again (Retry-After, when known)"),
    )
}


def create_app(system: System, runner: Any = None, *, trust_proxy: bool = False) -> FastAPI:
    """The web app on an opened installation. ``runner`` (a
    :class:`~openlfr.web.jobs.BackgroundJobs`, or anything with ``start()``/``stop()``) is
    started with the server and stopped on shutdown."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if runner is not None:
            await run_in_threadpool(runner.start)
        try:
            yield
        finally:
            app.state.web.charts.close()
            if runner is not None:
                await run_in_threadpool(runner.stop)

    app = FastAPI(title="openlfr", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None,
                  description="Open, accountable live facial recognition: the JSON API. "
                              "Authenticate with a bearer token (created by an admin) or a "
                              "browser session plus the X-CSRF-Token header.")
    app.state.web = WebState(system=system,
                             secret=sessions.load_or_create_secret(system.settings.data_dir),
                             templates=make_templates(system.settings.zone), runner=runner,
                             trust_proxy=trust_proxy)
    api_watchlists.keep_uploads_in_memory()
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(PublicRateLimitMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    for router in ROUTERS:
        app.include_router(router, responses=API_ERRORS)
    _error_handlers(app)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/public", status_code=303)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _answer(request: Request, status: int, detail: Any,
            headers: dict[str, str] | None = None, *, page_message: str | None = None
            ) -> Response:
    """JSON ``{"detail": ...}`` for the API and downloads, else the error page (with
    ``page_message`` when given), which knows who is signed in."""
    if _is_api(request) or request.url.path.endswith((".json", ".csv", ".svg")):
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)
    message = page_message or (detail if isinstance(detail, str) else "the request is not valid")
    return render(request, "error.html", {"status": status, "message": message},
                  status=status, actor=known_actor(request))


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        from urllib.parse import quote
        return RedirectResponse(f"/login?next={quote(exc.next_path, safe='/')}",
                                status_code=303)

    @app.exception_handler(StepFirst)
    async def _step_first(request: Request, exc: StepFirst) -> Response:
        return RedirectResponse(account.STEP_PAGES[exc.pending], status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail
        if exc.status_code == 404 and detail == "Not Found":
            detail = "no such page"
        return _answer(request, exc.status_code, detail, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
            problems.append(f"{where}: {err.get('msg', 'invalid')}" if where
                            else str(err.get("msg", "invalid")))
        if _is_api(request):
            return JSONResponse({"detail": "; ".join(problems) or "invalid request"},
                                status_code=422)
        return _answer(request, 400, "; ".join(problems) or "invalid request")

    @app.exception_handler(errors.OpenLFRError)
    async def _known(request: Request, exc: errors.OpenLFRError) -> Response:
        # the one place the error tree becomes HTTP answers (see openlfr.errors)
        k = errors.kind(exc)
        if k is None:  # the bare base class: a bug
            log.error("unexpected error on %s %s", request.method, request.url.path,
                      exc_info=exc)
            return _answer(request, 500, INTERNAL)
        if k is errors.IntegrityFailure:
            log.error("integrity failure on %s %s: %s: %s", request.method, request.url.path,
                      type(exc).__name__, errors.message(exc))
            return _answer(request, 500, INTEGRITY)
        status = http_status(exc)
        detail = page = errors.message(exc)
        if k is errors.Forbidden:
            detail = f"refused: {detail}"  # the page says "Refused" in its heading
        headers = None
        if isinstance(exc, errors.Unavailable) and exc.retry_after is not None:
            headers = {"Retry-After": str(exc.retry_after)}
        return _answer(request, status, detail, headers, page_message=page)

    @app.exception_handler(OverflowError)
    @app.exception_handler(DataError)
    async def _out_of_range(request: Request, exc: Exception) -> Response:
        # a number beyond what the database stores (an id of 20 digits: SQLite raises
        # OverflowError, PostgreSQL "integer out of range"), or text the database refuses
        # (PostgreSQL: a NUL character): bad input, not a server fault
        log.info("refused a value the database cannot hold on %s %s: %s", request.method,
                 request.url.path, type(exc).__name__)
        return _answer(request, 400, "a value in the request is out of range or contains a "
                                     "character that is not allowed")

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _answer(request, 500, INTERNAL)
