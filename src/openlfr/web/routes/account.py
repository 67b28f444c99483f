"""One's own account: changing the password and setting up a TOTP second factor, as pages
(``/account/…``) and as JSON (``/api/v1/auth/password``, ``/api/v1/auth/totp/…``).

These are the only routes a session may use while its account must first change a one-time
password or enrol a second factor its role requires (``account_caller``). Wrong current
passwords and wrong codes count against the sign-in limit of the account's name, like failed
sign-ins.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field

from openlfr.governance import users
from openlfr.governance.authz import RuleError
from openlfr.web.deps import AccountCaller, Caller, web
from openlfr.web.render import render
from openlfr.web.routes.auth import RateLimited

router = APIRouter()

#: Where a page request goes while the account has a step to take first.
STEP_PAGES = {users.PENDING_PASSWORD: "/account/password", users.PENDING_TOTP: "/account/totp"}


def _limited(request: Request, caller: Caller) -> None:
    """429 while the account's name has used up its failed sign-ins."""
    limiter = web(request).limits.login_name
    key = caller.actor.name.lower()
    if limiter.blocked(key):
        raise RateLimited(limiter.retry_after(key))


def _count_failure(request: Request, caller: Caller) -> None:
    web(request).limits.login_name.hit(caller.actor.name.lower())


def _need_session(caller: Caller) -> None:
    if caller.via != "session":
        raise HTTPException(400, "an API token cannot change a password or a second factor: "
                                 "sign in with the account's password")


def _after(request: Request, caller: Caller) -> str:
    """Where to go once a step is done: the next step, or the console."""
    pending = users.pending_step(web(request).db, caller.actor.name)
    return STEP_PAGES[pending] if pending else "/console?done=account"


def change(request: Request, caller: Caller, current: str, new: str) -> None:
    _need_session(caller)
    _limited(request, caller)
    try:
        users.change_password(web(request).system, caller.actor, current, new,
                              keep_session=caller.session_id)
    except users.AuthError:
        _count_failure(request, caller)
        raise


def confirm(request: Request, caller: Caller, code: str) -> None:
    _need_session(caller)
    _limited(request, caller)
    try:
        users.totp_confirm(web(request).system, caller.actor, code)
    except users.AuthError:
        _count_failure(request, caller)
        raise


# -- pages ----------------------------------------------------------------------------------

def _password_page(request: Request, caller: Caller, status: int = 200,
                   **extra: Any) -> Response:
    return render(request, "account_password.html", {
        "nav": "console", "pending": caller.pending, "min_password": users.MIN_PASSWORD,
        **extra}, actor=caller.actor, status=status)


@router.get("/account/password", include_in_schema=False)
def password_page(request: Request, caller: AccountCaller) -> Response:
    return _password_page(request, caller)


@router.post("/account/password", include_in_schema=False)
def password_submit(request: Request, caller: AccountCaller,
                    current: Annotated[str, Form(max_length=1024)] = "",
                    new: Annotated[str, Form(max_length=1024)] = "",
                    repeat: Annotated[str, Form(max_length=1024)] = "") -> Response:
    try:
        if new != repeat:
            raise RuleError("the new password and its repetition differ")
        change(request, caller, current, new)
    except RateLimited as exc:
        return _password_page(request, caller, 429, error=exc.detail)
    except (users.AuthError, RuleError) as exc:
        return _password_page(request, caller, 401 if isinstance(exc, users.AuthError)
                              else 400, error=str(exc))
    return RedirectResponse(_after(request, caller), status_code=303)


def _totp_page(request: Request, caller: Caller, status: int = 200, **extra: Any) -> Response:
    db = web(request).db
    enabled, started = users.totp_state(db, caller.actor.name)
    return render(request, "account_totp.html", {
        "nav": "console", "pending": caller.pending, "enabled": enabled, "started": started,
        "required": caller.actor.role is not None and users.totp_required(db, caller.actor.role),
        **extra}, actor=caller.actor, status=status)


@router.get("/account/totp", include_in_schema=False)
def totp_page(request: Request, caller: AccountCaller) -> Response:
    if caller.pending == users.PENDING_PASSWORD:
        return RedirectResponse(STEP_PAGES[caller.pending], status_code=303)
    return _totp_page(request, caller)


@router.post("/account/totp/begin", include_in_schema=False)
def totp_begin_submit(request: Request, caller: AccountCaller) -> Response:
    if caller.pending == users.PENDING_PASSWORD:
        return RedirectResponse(STEP_PAGES[caller.pending], status_code=303)
    try:
        _need_session(caller)
        enrolment = users.totp_begin(web(request).system, caller.actor)
    except RuleError as exc:
        return _totp_page(request, caller, 400, error=str(exc))
    return _totp_page(request, caller, enrolment=enrolment)


@router.post("/account/totp/confirm", include_in_schema=False)
def totp_confirm_submit(request: Request, caller: AccountCaller,
                        code: Annotated[str, Form(max_length=20)] = "") -> Response:
    if caller.pending == users.PENDING_PASSWORD:
        return RedirectResponse(STEP_PAGES[caller.pending], status_code=303)
    try:
        confirm(request, caller, code)
    except RateLimited as exc:
        return _totp_page(request, caller, 429, error=exc.detail)
    except (users.AuthError, RuleError) as exc:
        return _totp_page(request, caller, 401 if isinstance(exc, users.AuthError) else 400,
                          error=str(exc))
    return RedirectResponse(_after(request, caller), status_code=303)


# -- API ------------------------------------------------------------------------------------

class PasswordIn(BaseModel):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


class CodeIn(BaseModel):
    code: str = Field(max_length=20, description="The 6-digit code the app shows now.")


@router.post("/api/v1/auth/password", tags=["auth"])
def api_password(request: Request, body: PasswordIn, caller: AccountCaller) -> dict[str, object]:
    """Change one's own password (the current one is needed); the account's other sessions
    end. The way out of a one-time password."""
    change(request, caller, body.current_password, body.new_password)
    return {"name": caller.actor.name, "changed": True,
            "must": users.pending_step(web(request).db, caller.actor.name)}


@router.post("/api/v1/auth/totp/begin", tags=["auth"])
def api_totp_begin(request: Request, caller: AccountCaller) -> dict[str, object]:
    """Start setting up a second factor: the answer holds the secret (``secret``, and
    ``uri`` for a QR code), shown only this once; it is in force after a first code
    (``/api/v1/auth/totp/confirm``)."""
    if caller.pending == users.PENDING_PASSWORD:
        raise HTTPException(403, "change your one-time password first")
    _need_session(caller)
    enrolment = users.totp_begin(web(request).system, caller.actor)
    return {"secret": enrolment.secret, "uri": enrolment.uri}


@router.post("/api/v1/auth/totp/confirm", tags=["auth"])
def api_totp_confirm(request: Request, body: CodeIn, caller: AccountCaller) -> dict[str, object]:
    """Put the second factor in force with the code the app shows now."""
    if caller.pending == users.PENDING_PASSWORD:
        raise HTTPException(403, "change your one-time password first")
    confirm(request, caller, body.code)
    return {"name": caller.actor.name, "totp": True,
            "must": users.pending_step(web(request).db, caller.actor.name)}
