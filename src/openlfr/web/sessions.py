"""Browser sessions (server-side) and the web secret.

The session cookie (HttpOnly, SameSite=Strict, Secure over HTTPS) holds 32 random bytes; the
``web_sessions`` row holds only their SHA-256. Over HTTPS (behind a proxy that says so) the
cookie is named with the ``__Host-`` prefix, which a browser accepts only from this very host,
over HTTPS, for the whole site. A session ends on sign-out (row deleted), after :data:`IDLE`
without a request, after :data:`LIFETIME` in any case, and when the account is deactivated, its
role changed or its password reset (rows deleted: reactivating the account revives nothing).
The web secret (``web-secret.key`` in the data directory, 0600) keys the CSRF tokens.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, select

from openlfr.audit import log as audit_log
from openlfr.governance.authz import Actor
from openlfr.governance.users import pending_of
from openlfr.store.db import Database
from openlfr.store.enums import Role
from openlfr.store.models import RolePolicy, User, WebSession, utcnow

SESSION_COOKIE = "openlfr_session"
HOST_PREFIX = "__Host-"
SECRET_FILENAME = "web-secret.key"
LIFETIME = timedelta(hours=12)
IDLE = timedelta(hours=2)
TOUCH_EVERY = timedelta(minutes=5)  # last_seen_at is written at most this often


def cookie_name(base: str, https: bool) -> str:
    """``base``, or ``__Host-base`` over HTTPS."""
    return HOST_PREFIX + base if https else base


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load_or_create_secret(data_dir: Path) -> bytes:
    """The web secret from the data directory, created (0600) on first use."""
    path = data_dir / SECRET_FILENAME
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process was first
        return path.read_bytes()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


@dataclass(frozen=True)
class SessionInfo:
    id: int
    actor: Actor
    #: what the account must do before anything else (``users.pending_step``), or None
    pending: str | None = None


def create_session(db: Database, actor: Actor) -> str:
    """A new session for a signed-in actor (audited ``auth.login``); returns the cookie value."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    with db.session() as s:
        user = s.scalar(select(User).where(User.name == actor.name))
        if user is None:
            raise LookupError(actor.name)
        s.execute(delete(WebSession).where(WebSession.user_id == user.id,
                                           WebSession.expires_at < now))
        s.add(WebSession(token_hash=hash_token(token), user_id=user.id, created_at=now,
                         last_seen_at=now, expires_at=now + LIFETIME))
        audit_log.record(s, actor.name, "auth.login", "user", actor.name, {"via": "web"})
    return token


def resolve_session(db: Database, token: str) -> SessionInfo | None:
    """The session's actor, or None for an unknown, expired or idle session or an inactive
    account."""
    if not token or len(token) > 200:
        return None
    now = utcnow()
    with db.reading() as s:
        row = s.execute(
            select(WebSession.id, WebSession.expires_at, WebSession.last_seen_at, User.name,
                   User.role, User.active, User.must_change_password, User.totp_enabled,
                   RolePolicy.totp_required)
            .join(User, User.id == WebSession.user_id)
            .outerjoin(RolePolicy, RolePolicy.role == User.role)
            .where(WebSession.token_hash == hash_token(token))).first()
    if row is None:
        return None
    sid, expires_at, last_seen, name, role, active, must_change, totp_on, totp_needed = row
    if not active or expires_at <= now or last_seen + IDLE <= now:
        return None
    if now - last_seen >= TOUCH_EVERY:
        _touch(db, sid, now)
    return SessionInfo(sid, Actor(name, Role(role)),
                       pending_of(bool(must_change), bool(totp_on), bool(totp_needed)))


def _touch(db: Database, sid: int, now: datetime) -> None:
    with db.session() as s:
        row = s.get(WebSession, sid)
        if row is not None:
            row.last_seen_at = now


def end_session(db: Database, token: str) -> None:
    """Sign out: delete the session (audited ``auth.logout`` when there was one)."""
    with db.session() as s:
        row = s.scalar(select(WebSession).where(WebSession.token_hash == hash_token(token)))
        if row is None:
            return
        name = s.scalar(select(User.name).where(User.id == row.user_id))
        s.delete(row)
        audit_log.record(s, name or "unknown", "auth.logout", "user", name or "unknown",
                         {"via": "web"})
