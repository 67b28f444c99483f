"""Users and API tokens (admins): ``/api/v1/users`` and ``/api/v1/tokens``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from openlfr.governance import profiles, users
from openlfr.governance.views import UserView
from openlfr.web import tokens
from openlfr.web.deps import CurrentActor, web

router = APIRouter(prefix="/api/v1", tags=["users and tokens"])


class UserIn(BaseModel):
    name: str = Field(max_length=64)
    role: str = Field(max_length=40)
    password: str = Field(max_length=1024)
    one_time: bool = Field(default=False, description="The person must change the password "
                                                      "at the first sign-in.")


class RoleIn(BaseModel):
    role: str = Field(max_length=40)


class ResetIn(BaseModel):
    remove_totp: bool = Field(default=False, description="Also remove the second factor (a "
                                                         "lost phone).")


class ProfileIn(BaseModel):
    profile: str = Field(max_length=40, description="uk-app or eu-ai-act")


class ProfileOut(BaseModel):
    profile: str = Field(description="The jurisdiction profile in force.")
    default: str
    rules: list[str] = Field(description="What it enforces, in words.")
    changed: bool = False


def _profile_out(profile: profiles.Profile, changed: bool = False) -> ProfileOut:
    return ProfileOut(profile=profile.value, default=profiles.DEFAULT_PROFILE.value,
                      rules=profiles.rules_of(profile), changed=changed)


@router.get("/settings/profile", response_model=ProfileOut, tags=["settings"])
def get_profile(request: Request, actor: CurrentActor) -> ProfileOut:
    """The jurisdiction profile in force and its rules."""
    return _profile_out(profiles.current(web(request).db))


@router.put("/settings/profile", response_model=ProfileOut, tags=["settings"])
def put_profile(request: Request, body: ProfileIn, actor: CurrentActor) -> ProfileOut:
    """Put a jurisdiction profile in force (administrators; audited as a profile change)."""
    db = web(request).db
    chosen = profiles.parse_profile(body.profile)
    changed = profiles.set_profile(db, actor, chosen)
    return _profile_out(profiles.current(db), changed)


class PolicyIn(BaseModel):
    totp_required: bool


class TokenIn(BaseModel):
    user: str = Field(max_length=64, description="Whose token it is.")
    name: str = Field(max_length=100, description="What it is for.")
    role: str | None = Field(default=None, max_length=40,
                             description="Its role (default the user's); never allowing more "
                                         "than the user's role.")


@router.get("/users", response_model=list[UserView])
def list_users(request: Request, actor: CurrentActor) -> list[UserView]:
    """Every account and its role (never a password hash or a second-factor secret)."""
    return users.list_users(web(request).db, actor)


@router.post("/users", status_code=201)
def add_user(request: Request, body: UserIn,
             actor: CurrentActor) -> dict[str, Any]:
    """Add an account with a role."""
    new = users.add_user(web(request).db, actor, body.name, users.parse_role(body.role),
                         body.password, one_time=body.one_time)
    return {"name": new.name, "role": str(new.role)}


@router.post("/users/{name}/role")
def set_role(request: Request, name: str, body: RoleIn, actor: CurrentActor) -> dict[str, Any]:
    """Give an account another role; its sessions and API tokens end."""
    users.set_role(web(request).db, actor, name, users.parse_role(body.role))
    return {"name": name, "role": users.parse_role(body.role).value}


@router.post("/users/{name}/reset")
def reset_password(request: Request, name: str, body: ResetIn,
                   actor: CurrentActor) -> dict[str, Any]:
    """A new one-time password (``one_time_password``, shown only this once): the person
    must change it at the next sign-in; their sessions and API tokens end."""
    password = users.reset_password(web(request).db, actor, name, remove_totp=body.remove_totp)
    return {"name": name, "one_time_password": password}


@router.post("/users/{name}/totp/remove")
def remove_totp(request: Request, name: str, actor: CurrentActor) -> dict[str, Any]:
    """Remove an account's second factor (it sets one up again if its role requires it)."""
    users.totp_remove(web(request).system, actor, name)
    return {"name": name, "totp": False}


@router.get("/roles/totp")
def totp_policies(request: Request, actor: CurrentActor) -> dict[str, bool]:
    """Which roles must use a second factor."""
    return users.totp_policies(web(request).db, actor)


@router.put("/roles/{role}/totp")
def set_totp_policy(request: Request, role: str, body: PolicyIn,
                    actor: CurrentActor) -> dict[str, Any]:
    """Require (or stop requiring) a second factor for a role's accounts (audited)."""
    r = users.parse_role(role)
    users.set_totp_required(web(request).db, actor, r, body.totp_required)
    return {"role": r.value, "totp_required": body.totp_required}


@router.post("/users/{name}/deactivate")
def deactivate(request: Request, name: str,
               actor: CurrentActor) -> dict[str, Any]:
    """Stop an account from signing in: its sessions end and its tokens are revoked, for
    good (reactivating it revives neither)."""
    users.set_active(web(request).db, actor, name, False)
    return {"name": name, "active": False}


@router.post("/users/{name}/activate")
def activate(request: Request, name: str,
             actor: CurrentActor) -> dict[str, Any]:
    users.set_active(web(request).db, actor, name, True)
    return {"name": name, "active": True}


@router.get("/tokens")
def list_tokens(request: Request,
                actor: CurrentActor) -> list[dict[str, object]]:
    """Every API token (never its secret)."""
    return [t.as_json() for t in tokens.list_tokens(web(request).db, actor)]


@router.post("/tokens", status_code=201)
def create_token(request: Request, body: TokenIn,
                 actor: CurrentActor) -> dict[str, object]:
    """Create a token; the answer holds its secret (``token``), shown only this once."""
    role = users.parse_role(body.role) if body.role else None
    info, secret = tokens.create_token(web(request).db, actor, body.user, body.name, role)
    return {**info.as_json(), "token": secret}


@router.post("/tokens/{token_id}/revoke")
def revoke_token(request: Request, token_id: int,
                 actor: CurrentActor) -> dict[str, object]:
    """Revoke a token: every later request with it is refused."""
    return tokens.revoke_token(web(request).db, actor, token_id).as_json()
