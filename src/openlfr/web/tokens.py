"""API tokens for integrations: created by an admin for a user, scoped to a role whose
permissions the user's own role covers, shown once, stored as SHA-256, revocable.

Every request made with a token looks it up again, so a revocation or a deactivated account
takes effect at once.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from openlfr.audit import log as audit_log
from openlfr.governance.authz import (
    PERMISSIONS,
    Actor,
    NotFound,
    Perm,
    RuleError,
    require,
)
from openlfr.governance.names import check_name
from openlfr.store.db import Database
from openlfr.store.enums import Role
from openlfr.store.models import ApiToken, User, utcnow

PREFIX = "olfr_"
TOUCH_EVERY = timedelta(minutes=1)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def perms_of(role: Role) -> frozenset[Perm]:
    return frozenset(p for p, roles in PERMISSIONS.items() if role in roles)


def role_within(token_role: Role, user_role: Role) -> bool:
    """A token's role may do nothing its user's role may not."""
    return perms_of(token_role) <= perms_of(user_role)


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    user: str
    role: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    last_used_at: datetime | None

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "user": self.user, "role": self.role,
                "created_at": self.created_at.isoformat(), "created_by": self.created_by,
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
                "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None}


def _info(t: ApiToken, user: str) -> TokenInfo:
    return TokenInfo(t.id, t.name, user, t.role.value, t.created_at, t.created_by,
                     t.revoked_at, t.last_used_at)


def create_token(db: Database, actor: Actor, user_name: str, name: str,
                 role: Role | None = None) -> tuple[TokenInfo, str]:
    """A new token (admins only); returns its record and the secret, which is never stored."""
    require(db, actor, Perm.TOKEN_MANAGE, "user", user_name)
    name = check_name(name.strip(), "the token name")
    if not name or len(name) > 100:
        raise RuleError("a token needs a name of 1–100 characters (what it is for)")
    secret = PREFIX + secrets.token_urlsafe(32)
    with db.session() as s:
        user = s.scalar(select(User).where(User.name == user_name))
        if user is None:
            raise NotFound(f"no user {user_name!r}")
        if not user.active:
            raise RuleError(f"user {user_name!r} is inactive")
        role = role or user.role
        if not role_within(role, user.role):
            raise RuleError(f"a token of {user_name} ({user.role.value}) cannot have the role "
                            f"{role.value}: it would allow what the account may not do")
        token = ApiToken(user_id=user.id, name=name, role=role, token_hash=hash_token(secret),
                         created_by=actor.name)
        s.add(token)
        s.flush()
        audit_log.record(s, actor.name, "token.create", "api_token", token.id,
                         {"user": user_name, "role": role.value, "name": name})
        return _info(token, user_name), secret


def list_tokens(db: Database, actor: Actor) -> list[TokenInfo]:
    require(db, actor, Perm.TOKEN_MANAGE)
    with db.reading() as s:
        rows = s.execute(select(ApiToken, User.name).join(User, User.id == ApiToken.user_id)
                         .order_by(ApiToken.id)).all()
        return [_info(t, u) for t, u in rows]


def revoke_token(db: Database, actor: Actor, token_id: int) -> TokenInfo:
    require(db, actor, Perm.TOKEN_MANAGE, "api_token", str(token_id))
    with db.session() as s:
        row = s.execute(select(ApiToken, User.name).join(User, User.id == ApiToken.user_id)
                        .where(ApiToken.id == token_id)).first()
        if row is None:
            raise NotFound(f"no API token {token_id}")
        token, user = row
        if token.revoked_at is not None:
            raise RuleError(f"API token {token_id} is already revoked")
        token.revoked_at = utcnow()
        audit_log.record(s, actor.name, "token.revoke", "api_token", token.id, {"user": user})
        return _info(token, user)


def resolve_token(db: Database, secret: str) -> Actor | None:
    """The actor a bearer token stands for, or None (unknown, revoked, inactive account, or a
    role its account no longer covers)."""
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    with db.reading() as s:
        row = s.execute(select(ApiToken.id, ApiToken.role, ApiToken.revoked_at,
                               ApiToken.last_used_at, User.name, User.role, User.active)
                        .join(User, User.id == ApiToken.user_id)
                        .where(ApiToken.token_hash == hash_token(secret))).first()
    if row is None:
        return None
    tid, role, revoked_at, last_used, user, user_role, active = row
    if revoked_at is not None or not active or not role_within(Role(role), Role(user_role)):
        return None
    now = utcnow()
    if last_used is None or now - last_used >= TOUCH_EVERY:
        with db.session() as s:
            t = s.get(ApiToken, tid)
            if t is not None:
                t.last_used_at = now
    return Actor(user, Role(role))
