"""Who is calling: one function from a request to an :class:`~openlfr.governance.authz.Actor`.

A caller is identified by a bearer token (``Authorization: Bearer olfr_…``, for integrations)
or by the browser session cookie. Routes take ``actor: Actor = Depends(current_actor)`` (401 for
an anonymous caller) and hand the actor to the governance services, whose
:func:`~openlfr.governance.authz.require` decides and audits refusals (403). A request
authenticated by the session cookie that changes something must also carry the CSRF token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from openlfr.governance.authz import Actor
from openlfr.governance.system import System
from openlfr.store.db import Database
from openlfr.web import security, sessions, tokens
from openlfr.web.charts import ChartCache
from openlfr.web.ratelimit import TokenBucket
from openlfr.web.security import Limits


@dataclass
class WebState:
    """Everything the routes share, kept on ``app.state.web``."""

    system: System
    secret: bytes
    templates: Jinja2Templates
    limits: Limits = field(default_factory=Limits)
    runner: Any = None  # BackgroundJobs (openlfr serve) or None
    trust_proxy: bool = False  # take the client address from X-Forwarded-For
    public_limit: TokenBucket = field(default_factory=TokenBucket)  # per address, public routes
    charts: ChartCache = field(default_factory=ChartCache)  # the public chart, drawn once

    @property
    def db(self) -> Database:
        return self.system.db


@dataclass(frozen=True)
class Caller:
    actor: Actor
    via: str  # "token" | "session"
    session_token: str | None = None


class LoginRequired(Exception):
    """A page (not the API) needs a signed-in user: answered with a redirect to /login."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def web(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


def client_ip(request: Request) -> str:
    """The client's address for the rate limits. Behind a proxy (``trust_proxy``) it is the
    last ``X-Forwarded-For`` entry, the one the proxy itself added: the entries before it come
    from the client, which could otherwise send a new address with every request."""
    st = web(request)
    if st.trust_proxy:
        forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            return hops[-1][:64]
    return request.client.host if request.client else "unknown"


def bearer_token(request: Request) -> str | None:
    """The secret of an ``Authorization: Bearer`` header, if any."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def resolve_caller(request: Request) -> Caller | None:
    """The caller, or None when anonymous (blocking: call from a thread)."""
    st = web(request)
    bearer = bearer_token(request)
    if bearer is not None:
        actor = tokens.resolve_token(st.db, bearer)
        if actor is None:
            raise HTTPException(401, "invalid, revoked or expired API token",
                                headers={"WWW-Authenticate": "Bearer"})
        return Caller(actor, "token")
    cookie = request.cookies.get(sessions.SESSION_COOKIE)
    if cookie:
        info = sessions.resolve_session(st.db, cookie)
        if info is not None:
            return Caller(info.actor, "session", cookie)
    return None


async def submitted_csrf(request: Request) -> str | None:
    token = request.headers.get(security.CSRF_HEADER)
    if token:
        return token
    ctype = request.headers.get("content-type", "")
    if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()  # cached by Starlette: the route still gets its fields
        value = form.get(security.CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


async def require_csrf(request: Request) -> None:
    """Refuse (403) a state-changing request without the right CSRF token."""
    if request.method in security.SAFE_METHODS:
        return
    nonce = request.cookies.get(security.CSRF_COOKIE)
    if not security.csrf_valid(web(request).secret, nonce, await submitted_csrf(request)):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again "
                                 "(API clients: send the X-CSRF-Token header, or use a token)")


async def optional_caller(request: Request) -> Caller | None:
    caller: Caller | None = await run_in_threadpool(resolve_caller, request)
    if caller is not None and caller.via == "session":
        await require_csrf(request)
    return caller


async def current_caller(request: Request) -> Caller:
    caller = await optional_caller(request)
    if caller is None:
        raise HTTPException(401, "sign in first (a session cookie or an API token)",
                            headers={"WWW-Authenticate": "Bearer"})
    return caller


async def current_actor(request: Request) -> Actor:
    """The signed-in actor of an API request; 401 when anonymous."""
    return (await current_caller(request)).actor


async def optional_actor(request: Request) -> Actor | None:
    caller = await optional_caller(request)
    return None if caller is None else caller.actor


async def page_actor(request: Request) -> Actor:
    """The signed-in actor of a console page; anonymous callers are sent to the login page."""
    caller = await optional_caller(request)
    if caller is None:
        path = request.url.path
        if request.url.query:
            path += "?" + request.url.query
        raise LoginRequired(path)
    return caller.actor


#: Parameter types for routes: ``def route(actor: CurrentActor) -> ...``.
CurrentActor = Annotated[Actor, Depends(current_actor)]
CurrentCaller = Annotated[Caller, Depends(current_caller)]
OptionalCaller = Annotated[Caller | None, Depends(optional_caller)]
PageActor = Annotated[Actor, Depends(page_actor)]
