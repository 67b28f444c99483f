"""Who is calling: one function from a request to an :class:`~openlfr.governance.authz.Actor`.

A caller is identified by a bearer token (``Authorization: Bearer olfr_…``, for integrations)
or by the browser session cookie. Routes take ``actor: Actor = Depends(current_actor)`` (401 for
an anonymous caller) and hand the actor to the governance services, whose
:func:`~openlfr.governance.authz.require` decides and audits refusals (403). A request
authenticated by the session cookie that changes something must also carry the CSRF token
(bound to that session) and come from this site (``Origin``).

A session whose account must first change a one-time password or enrol a second factor
(``Caller.pending``) may do only that: pages redirect to the account page, the API answers 403
with the step to take (:func:`account_caller` is the dependency of the routes that do it).
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
    session_id: int | None = None
    pending: str | None = None  # users.PENDING_PASSWORD / PENDING_TOTP, or None


class StepFirst(Exception):
    """A page was asked for by a session that must first change its password or enrol a
    second factor: answered with a redirect to the account page."""

    def __init__(self, pending: str) -> None:
        super().__init__(pending)
        self.pending = pending


class LoginRequired(Exception):
    """A page (not the API) needs a signed-in user: answered with a redirect to /login."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def web(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


def known_actor(request: Request) -> Actor | None:
    """The signed-in actor this request was already found to come from (for an error page, so
    that it shows who is signed in and the console's navigation), else None."""
    actor = getattr(request.state, "actor", None)
    return actor if isinstance(actor, Actor) else None


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def session_cookie(request: Request) -> str:
    """The session cookie's name for this request (``__Host-`` prefixed over HTTPS)."""
    return sessions.cookie_name(sessions.SESSION_COOKIE, is_https(request))


def csrf_cookie(request: Request) -> str:
    return sessions.cookie_name(security.CSRF_COOKIE, is_https(request))


def own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


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
    cookie = request.cookies.get(session_cookie(request))
    if cookie:
        info = sessions.resolve_session(st.db, cookie)
        if info is not None:
            return Caller(info.actor, "session", cookie, info.id, info.pending)
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
    """Refuse (403) a state-changing request from another site (``Origin``/``Referer``) or
    without the right CSRF token for its session."""
    if request.method in security.SAFE_METHODS:
        return
    if not security.same_origin(own_origin(request), request.headers.get("origin"),
                                request.headers.get("referer")):
        raise HTTPException(403, "cross-site request refused: it does not come from a page of "
                                 "this site")
    nonce = request.cookies.get(csrf_cookie(request))
    session = request.cookies.get(session_cookie(request)) or ""
    if not security.csrf_valid(web(request).secret, nonce, await submitted_csrf(request),
                               session):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again "
                                 "(API clients: send the X-CSRF-Token header, or use a token)")


async def optional_caller(request: Request) -> Caller | None:
    caller: Caller | None = await run_in_threadpool(resolve_caller, request)
    if caller is not None and caller.pending is None:
        request.state.actor = caller.actor  # for an error page: who is signed in
    if caller is not None and caller.via == "session":
        await require_csrf(request)
    return caller


PENDING_API = {
    "password": "your password is a one-time password: change it first (POST "
                "/api/v1/auth/password with current_password and new_password, or the console's "
                "page /account/password); nothing else is allowed until then",
    "totp": "your role requires a second factor: set up an authenticator app first (POST "
            "/api/v1/auth/totp/begin, then /api/v1/auth/totp/confirm with a code, or the "
            "console's page /account/totp); nothing else is allowed until then",
}


async def account_caller(request: Request) -> Caller:
    """The signed-in caller, even one that must first change its password or enrol a second
    factor (for the routes that do just that); 401 when anonymous."""
    caller = await optional_caller(request)
    if caller is None:
        raise HTTPException(401, "sign in first (a session cookie or an API token)",
                            headers={"WWW-Authenticate": "Bearer"})
    return caller


async def current_caller(request: Request) -> Caller:
    caller = await account_caller(request)
    if caller.pending is not None:
        raise HTTPException(403, PENDING_API[caller.pending])
    return caller


async def current_actor(request: Request) -> Actor:
    """The signed-in actor of an API request; 401 when anonymous."""
    return (await current_caller(request)).actor


async def page_actor(request: Request) -> Actor:
    """The signed-in actor of a console page; anonymous callers are sent to the login page."""
    caller = await optional_caller(request)
    if caller is None:
        path = request.url.path
        if request.url.query:
            path += "?" + request.url.query
        raise LoginRequired(path)
    if caller.pending is not None:
        raise StepFirst(caller.pending)
    return caller.actor


#: Parameter types for routes: ``def route(actor: CurrentActor) -> ...``.
CurrentActor = Annotated[Actor, Depends(current_actor)]
CurrentCaller = Annotated[Caller, Depends(current_caller)]
AccountCaller = Annotated[Caller, Depends(account_caller)]
OptionalCaller = Annotated[Caller | None, Depends(optional_caller)]
PageActor = Annotated[Actor, Depends(page_actor)]
