"""Signing in and out: the login page (cookie session) and ``/api/v1/auth`` (JSON).

Failed sign-ins are audited by :func:`openlfr.governance.users.authenticate` and limited per
user name and per client address (:class:`openlfr.web.security.Limits`); while a limit holds,
the password is not even checked (429). An account with a second factor also gives the code
from its authenticator app (``code``); a wrong or reused code counts as a failed sign-in.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from openlfr.governance.authz import PERMISSIONS, Actor
from openlfr.governance.users import (
    AuthError,
    SecondFactorNeeded,
    authenticate,
    pending_step,
)
from openlfr.web import sessions
from openlfr.web.deps import (
    AccountCaller,
    Caller,
    OptionalCaller,
    client_ip,
    is_https,
    require_csrf,
    session_cookie,
    web,
)
from openlfr.web.render import render, rotate_csrf, safe_next, set_csrf_cookie

router = APIRouter()


class RateLimited(HTTPException):
    def __init__(self, seconds: int) -> None:
        minutes = max(1, (seconds + 59) // 60)
        super().__init__(429, f"too many failed sign-ins: try again in {minutes} minute"
                              f"{'s' if minutes != 1 else ''}",
                         headers={"Retry-After": str(seconds)})


def _reserve(request: Request, ip: str, key: str) -> None:
    """Count this attempt against both limits before the password is checked, so that
    requests sent at the same time cannot all get past a limit while the (slow) password
    checks run; 429 when either limit is used up (and then nothing is counted)."""
    limits = web(request).limits
    if not limits.login_ip.hit(ip):
        raise RateLimited(limits.login_ip.retry_after(ip))
    if not limits.login_name.hit(key):
        limits.login_ip.undo(ip)
        raise RateLimited(limits.login_name.retry_after(key))


def sign_in(request: Request, name: str, password: str, code: str | None = None) -> Actor:
    """Check the limits, then the password (and the second factor's code); a failure stays
    counted against both limits."""
    st = web(request)
    ip, key = client_ip(request), name.strip().lower()
    _reserve(request, ip, key)
    try:
        actor = authenticate(st.system, name.strip(), password, code)
    except AuthError:
        raise
    except BaseException:
        st.limits.login_ip.undo(ip)
        st.limits.login_name.undo(key)
        raise
    st.limits.login_ip.undo(ip)
    st.limits.login_name.reset(key)
    return actor


def start_session(request: Request, response: Response, actor: Actor) -> str:
    """Create the session, set its cookie and a fresh CSRF nonce; returns the CSRF token."""
    token = sessions.create_session(web(request).db, actor)
    response.set_cookie(session_cookie(request), token, httponly=True, samesite="strict",
                        secure=is_https(request), path="/",
                        max_age=int(sessions.LIFETIME.total_seconds()))
    request.state.session_cookie = token  # the CSRF token is bound to the new session
    rotate_csrf(request)
    return set_csrf_cookie(request, response)


def _end(request: Request, response: Response, caller: Caller | None) -> None:
    if caller is not None and caller.session_token:
        sessions.end_session(web(request).db, caller.session_token)
    response.delete_cookie(session_cookie(request), path="/", secure=is_https(request),
                           httponly=True, samesite="strict")


# -- pages ----------------------------------------------------------------------------------

@router.get("/login", include_in_schema=False)
async def login_page(request: Request, caller: OptionalCaller,
                     next: str | None = None) -> Response:
    if caller is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "login.html", {"next": safe_next(next), "name": ""})


@router.post("/login", include_in_schema=False, dependencies=[Depends(require_csrf)])
def login_submit(request: Request, name: Annotated[str, Form(max_length=64)] = "",
                 password: Annotated[str, Form(max_length=1024)] = "",
                 code: Annotated[str, Form(max_length=20)] = "",
                 next: Annotated[str, Form(max_length=2000)] = "/console") -> Response:
    target = safe_next(next)
    try:
        actor = sign_in(request, name, password, code or None)
    except AuthError as exc:
        return render(request, "login.html",
                      {"next": target, "name": name, "error": str(exc),
                       "ask_code": isinstance(exc, SecondFactorNeeded) or bool(code)},
                      status=401)
    except RateLimited as exc:
        return render(request, "login.html",
                      {"next": target, "name": name, "error": exc.detail}, status=429)
    response = RedirectResponse(target, status_code=303)
    start_session(request, response, actor)
    return response


@router.post("/logout", include_in_schema=False)
def logout_submit(request: Request,
                  caller: OptionalCaller) -> Response:
    # optional_caller checks the CSRF token for a session; without a session there is
    # nothing to end.
    response = RedirectResponse("/login", status_code=303)
    _end(request, response, caller)
    return response


# -- API ------------------------------------------------------------------------------------

class LoginIn(BaseModel):
    name: str = Field(max_length=64)
    password: str = Field(max_length=1024)
    code: str | None = Field(default=None, max_length=20,
                             description="The authenticator app's code, for an account with a "
                                         "second factor.")


@router.post("/api/v1/auth/login", tags=["auth"])
def api_login(request: Request, response: Response, body: LoginIn) -> dict[str, object]:
    """Sign in with a name and password: sets the session cookie and answers with the CSRF
    token to send as ``X-CSRF-Token`` on every change. (JSON only, so a cross-site form cannot
    post it; integrations use API tokens instead.) ``must`` says what the account has to do
    before anything else (``password``: change a one-time password; ``totp``: set up a second
    factor), or is null."""
    actor = sign_in(request, body.name, body.password, body.code)
    csrf = start_session(request, response, actor)
    return {"name": actor.name, "role": str(actor.role), "csrf_token": csrf,
            "must": pending_step(web(request).db, actor.name)}


@router.post("/api/v1/auth/logout", tags=["auth"])
def api_logout(request: Request, caller: AccountCaller) -> JSONResponse:
    """End the browser session (API tokens are revoked by an admin instead)."""
    if caller.via != "session":
        raise HTTPException(400, "this request used an API token: there is no session to end; "
                                 "an admin revokes tokens")
    response = JSONResponse({"signed_out": caller.actor.name})
    _end(request, response, caller)
    return response


@router.get("/api/v1/auth/me", tags=["auth"])
def api_me(request: Request, response: Response,
           caller: AccountCaller) -> dict[str, object]:
    """Who is signed in, with which role and permissions (and the CSRF token of a session);
    ``must``: what the account has to do first (``password``, ``totp``), or null."""
    actor = caller.actor
    perms = sorted(p.value for p, roles in PERMISSIONS.items() if actor.role in roles)
    return {"name": actor.name, "role": str(actor.role), "via": caller.via,
            "permissions": perms, "must": caller.pending,
            "csrf_token": set_csrf_cookie(request, response) if caller.via == "session"
            else None}
