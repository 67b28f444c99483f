"""People: accounts with argon2 password hashes and one role each; signing in; the account
lifecycle (one-time passwords, changing a password, resets, role changes, deactivation) and an
optional TOTP second factor.

Rules:

* A **one-time** password (the first admin's from ``openlfr init``/``serve``, an admin's reset,
  or a new account an admin marks so) must be changed before the account may do anything else
  (:func:`pending_step`).
* Deactivating an account, changing its role or resetting its password **ends** its browser
  sessions (rows deleted) and revokes its API tokens: reactivating it later revives neither.
* A password has at least :data:`MIN_PASSWORD` characters and must not be easy to guess
  (``zxcvbn`` score at least :data:`MIN_STRENGTH`: common passwords, names, keyboard walks and
  the user's own name are refused).
* A TOTP secret is stored sealed (AES-256-GCM) under a key derived from the master key and bound
  to its account's row; a code is accepted once (its time step is remembered). Admins may
  require the second factor per role (:func:`set_totp_required`).
* A failed sign-in is audited with the name when it is an account's, else with a keyed hash
  (HMAC-SHA256 under a key derived from the master key) of what was typed, which may have been
  a password.

Every change writes an audit entry in its own transaction; no password, one-time password, TOTP
secret or code is ever written to it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from openlfr import errors
from openlfr.audit import log as audit_log
from openlfr.governance.authz import (
    SYSTEM_ACTOR,
    Actor,
    Conflict,
    NotFound,
    Perm,
    RuleError,
    require,
)
from openlfr.governance.system import System
from openlfr.governance.views import UserView
from openlfr.store.crypto import CryptoError, open_sealed, seal
from openlfr.store.db import Database, affected
from openlfr.store.enums import Role, choices
from openlfr.store.models import ApiToken, RolePolicy, User, WebSession, utcnow

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{1,63}$")
#: Actor names the program writes into the audit log itself (the program, a resident sending a
#: question, a sign-in with an unusable name): no account may take one, in any letter case, or
#: its entries could not be told apart from theirs.
RESERVED_NAMES = frozenset({audit_log.SYSTEM, "public", "unknown"})
MIN_PASSWORD = 12
#: The lowest ``zxcvbn`` score (0–4) a new password may have: 3 is "safely unguessable:
#: moderate protection from an offline slow-hash scenario".
MIN_STRENGTH = 3
_STRENGTH_CHARS = 72  # zxcvbn's own limit; the first 72 characters decide
TOTP_ISSUER = "openlfr"
TOTP_STEP = 30
TOTP_DIGITS = 6
_hasher = PasswordHasher()

#: What :func:`pending_step` returns.
PENDING_PASSWORD = "password"
PENDING_TOTP = "totp"


class AuthError(errors.Unauthenticated):
    """Wrong user name or password (the message never says which)."""


class SecondFactorNeeded(AuthError):
    """The password was right, but the account uses a TOTP second factor and no code came."""


def parse_role(value: str) -> Role:
    try:
        return Role(value.strip().lower().replace("-", "_").replace(" ", "_"))
    except ValueError:
        raise RuleError(f"unknown role {value!r}: choose {choices(Role)}",
                        field="role") from None


def check_password(password: str, name: str = "") -> None:
    """Refuse a password that breaks the policy, with a message naming the rule."""
    if len(password) < MIN_PASSWORD:
        raise RuleError(f"a password needs at least {MIN_PASSWORD} characters")
    if password.strip() != password:
        raise RuleError("a password may not start or end with spaces")
    from zxcvbn import zxcvbn

    result = zxcvbn(password[:_STRENGTH_CHARS], user_inputs=[name, TOTP_ISSUER] if name
                    else [TOTP_ISSUER])
    if int(result["score"]) < MIN_STRENGTH:
        warning = str(result.get("feedback", {}).get("warning") or "").rstrip(".")
        why = f" ({warning[:1].lower() + warning[1:]})" if warning else ""
        raise RuleError(f"this password is too easy to guess{why}: a password must not be a "
                        "common password, a name or a pattern; use a few unrelated words")


def check_name(name: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise RuleError(f"user name {name!r}: 2–64 letters, digits, '.', '_', '@' or '-', "
                        "starting with a letter or digit")
    if name.casefold() in RESERVED_NAMES:
        raise RuleError(f"{name!r} is reserved for the program's own audit entries")


def new_one_time_password() -> str:
    """A random one-time password (about 144 bits)."""
    return secrets.token_urlsafe(18)


def count_users(db: Database) -> int:
    with db.reading() as s:
        return int(s.scalar(select(func.count()).select_from(User)) or 0)


def create_first_admin(db: Database, name: str, password: str, *,
                       one_time: bool = False) -> Actor:
    """The first account, an admin; refused once any account exists. ``openlfr init`` and
    ``serve`` make its password ``one_time``: it must be changed at the first sign-in."""
    check_name(name)
    check_password(password, name)
    with db.session() as s:
        if s.scalar(select(func.count()).select_from(User)):
            raise RuleError("the first admin already exists; add users with `openlfr user add`")
        s.add(User(name=name, role=Role.ADMIN, password_hash=_hasher.hash(password),
                   created_by=SYSTEM_ACTOR.name, must_change_password=one_time))
        audit_log.record(s, SYSTEM_ACTOR.name, "user.create", "user", name,
                         {"role": Role.ADMIN.value, "first_admin": True, "one_time": one_time})
    return Actor(name, Role.ADMIN)


def add_user(db: Database, actor: Actor, name: str, role: Role, password: str, *,
             one_time: bool = False) -> Actor:
    """A new account. A ``one_time`` password must be changed at the first sign-in (the
    admin who chose it knows it)."""
    require(db, actor, Perm.USER_MANAGE, "user", name)
    check_name(name)
    check_password(password, name)
    with db.session() as s:
        if s.scalar(select(User).where(User.name == name)) is not None:
            raise RuleError(f"user {name!r} already exists")
        s.add(User(name=name, role=role, password_hash=_hasher.hash(password),
                   created_by=actor.name, must_change_password=one_time))
        audit_log.record(s, actor.name, "user.create", "user", name,
                         {"role": role.value, "one_time": one_time})
    return Actor(name, role)


def _user(s: Session, name: str) -> User:
    user = s.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"no user {name!r}")
    return user


def end_credentials(s: Session, user: User, keep_session: int | None = None) -> dict[str, int]:
    """End every browser session of ``user`` (but ``keep_session``) and revoke every API token
    it still has, in the caller's transaction; returns the counts for the audit entry."""
    query = delete(WebSession).where(WebSession.user_id == user.id)
    if keep_session is not None:
        query = query.where(WebSession.id != keep_session)
    ended = affected(s.execute(query))
    revoked = affected(s.execute(
        update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())))
    return {"sessions_ended": int(ended), "tokens_revoked": int(revoked)}


def set_active(db: Database, actor: Actor, name: str, active: bool) -> None:
    """Deactivate (its sessions and tokens end for good) or reactivate an account."""
    require(db, actor, Perm.USER_MANAGE, "user", name)
    with db.session() as s:
        user = s.scalar(select(User).where(User.name == name))
        if user is None:
            raise RuleError(f"no user {name!r}")
        if user.name == actor.name and not active:
            raise RuleError("you cannot deactivate your own account")
        user.active = active
        details = {} if active else end_credentials(s, user)
        audit_log.record(s, actor.name, "user.activate" if active else "user.deactivate",
                         "user", name, details)


def set_role(db: Database, actor: Actor, name: str, role: Role) -> None:
    """Give an account another role (admins); its sessions and tokens end, so that nothing
    keeps acting with the old role."""
    require(db, actor, Perm.USER_MANAGE, "user", name)
    with db.session() as s:
        user = _user(s, name)
        if user.name == actor.name:
            raise RuleError("you cannot change your own role: another admin must")
        if user.role == role:
            raise RuleError(f"{name} already has the role {role.value}")
        before = user.role
        user.role = role
        ended = end_credentials(s, user)
        audit_log.record(s, actor.name, "user.role", "user", name,
                         {"from": before.value, "to": role.value, **ended})


def reset_password(db: Database, actor: Actor, name: str, *, remove_totp: bool = False) -> str:
    """A new one-time password for another account (admins), returned to be handed over once;
    its sessions and tokens end. ``remove_totp`` also removes its second factor (a lost
    phone): it then enrols again if its role requires one."""
    require(db, actor, Perm.USER_MANAGE, "user", name)
    password = new_one_time_password()
    with db.session() as s:
        user = _user(s, name)
        if user.name == actor.name:
            raise RuleError("use `openlfr user passwd` (or Account in the console) to change "
                            "your own password")
        user.password_hash = _hasher.hash(password)
        user.must_change_password = True
        user.password_changed_at = utcnow()
        details: dict[str, object] = dict(end_credentials(s, user))
        if remove_totp:
            details["totp_removed"] = user.totp_secret is not None
            _clear_totp(user)
        audit_log.record(s, actor.name, "user.reset", "user", name, details)
    return password


def user_view(user: User) -> UserView:
    """An account as it is shown: never its password hash or second-factor secret."""
    return UserView(name=user.name, role=user.role, active=user.active,
                    created_at=user.created_at, created_by=user.created_by,
                    one_time_password=user.must_change_password, totp=user.totp_enabled)


def list_users(db: Database, actor: Actor) -> list[UserView]:
    require(db, actor, Perm.USER_MANAGE)
    with db.reading() as s:
        return [user_view(u) for u in s.scalars(select(User).order_by(User.name))]


# -- signing in -------------------------------------------------------------------------------

def name_digest(system: System, name: str) -> str:
    """The keyed hash written for a name that is no account's: lets an auditor see repeated
    attempts with the same text without the log holding the text (a mistyped password)."""
    key = system.keyring.derive("audit/sign-in-name")
    return "hmac:" + hmac.new(key, name.encode("utf-8", "replace"),
                              hashlib.sha256).hexdigest()[:32]


def _verify(stored_hash: str | None, password: str) -> bool:
    if stored_hash is None:
        _hasher.hash(password)  # same cost whether or not the name exists
        return False
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _failed(system: System, name: str, exists: bool, **details: object) -> None:
    """Audit a failed sign-in: the name of an account, or the keyed hash of what was typed."""
    with system.db.session() as s:
        if exists:
            audit_log.record(s, name, "auth.failed", "user", name, details or None)
        else:
            audit_log.record(s, "unknown", "auth.failed", "user", name_digest(system, name),
                             details or None)


def authenticate(system: System, name: str, password: str, code: str | None = None) -> Actor:
    """The actor for a correct name and password of an active account (and, when the account
    uses a second factor, a correct TOTP ``code`` not used before). A failure is audited
    (``auth.failed``) and raised as :class:`AuthError`; a missing code as
    :class:`SecondFactorNeeded` (not audited: nothing was wrong yet)."""
    db = system.db
    with db.reading() as s:
        user = s.scalar(select(User).where(User.name == name))
        stored = ((user.id, user.password_hash, user.role, user.active, user.totp_enabled)
                  if user else None)
    ok = _verify(stored[1] if stored else None, password)
    if not ok or stored is None or not stored[3]:
        _failed(system, name, stored is not None)
        raise AuthError("wrong user name or password, or the account is inactive")
    if stored[4]:
        if not code or not code.strip():
            raise SecondFactorNeeded("this account uses a second factor: enter the 6-digit "
                                     "code from its authenticator app")
        if not _use_totp_code(system, stored[0], code, confirmed=True):
            _failed(system, name, True, factor="totp")
            raise AuthError("wrong or already used authenticator code")
    return Actor(name, stored[2])


def check_current_password(system: System, name: str, password: str) -> None:
    """Raise :class:`AuthError` (audited) unless ``password`` is ``name``'s current one."""
    with system.db.reading() as s:
        stored = s.scalar(select(User.password_hash).where(User.name == name))
    if not _verify(stored, password):
        _failed(system, name, stored is not None, during="password change")
        raise AuthError("the current password is wrong")


def change_password(system: System, actor: Actor, current: str, new: str, *,
                    keep_session: int | None = None) -> None:
    """``actor`` changes their own password (the current one is needed). Their other browser
    sessions end; ``keep_session`` (the one making the change) goes on."""
    check_current_password(system, actor.name, current)
    if new == current:
        raise RuleError("the new password must differ from the current one")
    check_password(new, actor.name)
    with system.db.session() as s:
        user = _user(s, actor.name)
        forced = user.must_change_password
        user.password_hash = _hasher.hash(new)
        user.must_change_password = False
        user.password_changed_at = utcnow()
        others = delete(WebSession).where(WebSession.user_id == user.id)
        if keep_session is not None:
            others = others.where(WebSession.id != keep_session)
        ended = affected(s.execute(others))
        audit_log.record(s, actor.name, "user.password", "user", actor.name,
                         {"was_one_time": forced, "sessions_ended": int(ended or 0)})


# -- what an account must do first -------------------------------------------------------------

def totp_required(db: Database, role: Role) -> bool:
    with db.reading() as s:
        return bool(s.scalar(select(RolePolicy.totp_required).where(RolePolicy.role == role)))


def pending_step(db: Database, name: str) -> str | None:
    """What the account must do before anything else: :data:`PENDING_PASSWORD` (change a
    one-time password), :data:`PENDING_TOTP` (enrol a second factor its role requires), or
    None."""
    with db.reading() as s:
        row = s.execute(select(User.must_change_password, User.totp_enabled,
                               RolePolicy.totp_required)
                        .outerjoin(RolePolicy, RolePolicy.role == User.role)
                        .where(User.name == name)).first()
    return pending_of(*row) if row else None


def pending_of(must_change: bool, totp_enabled: bool, totp_needed: bool | None) -> str | None:
    if must_change:
        return PENDING_PASSWORD
    if totp_needed and not totp_enabled:
        return PENDING_TOTP
    return None


# -- TOTP second factor -----------------------------------------------------------------------

@dataclass(frozen=True)
class TotpEnrolment:
    secret: str  # base32, shown once
    uri: str  # otpauth://totp/…, for a QR code or an app's "enter a setup key"


def _totp_key(system: System) -> bytes:
    return system.keyring.derive("user/totp")


def _aad(user_id: int) -> bytes:
    return f"user-totp:{user_id}".encode()


def _clear_totp(user: User) -> None:
    user.totp_secret = None
    user.totp_enabled = False
    user.totp_last_step = None


def totp_state(db: Database, name: str) -> tuple[bool, bool]:
    """Whether ``name``'s second factor is in force, and whether a set-up was started."""
    with db.reading() as s:
        row = s.execute(select(User.totp_enabled, User.totp_secret.is_not(None))
                        .where(User.name == name)).first()
    return (bool(row[0]), bool(row[1])) if row else (False, False)


def totp_begin(system: System, actor: Actor) -> TotpEnrolment:
    """Start enrolling ``actor``'s authenticator app: a new secret, stored sealed and not yet
    in force until :func:`totp_confirm` sees a first code. Refused while one is in force."""
    secret = pyotp.random_base32()
    with system.db.session() as s:
        user = _user(s, actor.name)
        if user.totp_enabled:
            raise Conflict("a second factor is already set up for this account; an admin "
                           "removes it (a password reset that removes the second factor) "
                           "before a new one")
        user.totp_secret = seal(_totp_key(system), secret.encode(), _aad(user.id))
        user.totp_last_step = None
        audit_log.record(s, actor.name, "user.totp.begin", "user", actor.name)
    uri = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP).provisioning_uri(
        name=actor.name, issuer_name=TOTP_ISSUER)
    return TotpEnrolment(secret, uri)


def totp_confirm(system: System, actor: Actor, code: str) -> None:
    """Put the enrolled second factor in force with a first correct code."""
    with system.db.reading() as s:
        user = _user(s, actor.name)
        uid, pending, enabled = user.id, user.totp_secret is not None, user.totp_enabled
    if enabled:
        raise RuleError("the second factor is already in force")
    if not pending:
        raise RuleError("start the set-up first (it shows the secret for the app)")
    if not _use_totp_code(system, uid, code, confirmed=False):
        _failed(system, actor.name, True, factor="totp", during="totp set-up")
        raise AuthError("wrong authenticator code: check the app's clock and the secret")
    with system.db.session() as s:
        user = _user(s, actor.name)
        user.totp_enabled = True
        audit_log.record(s, actor.name, "user.totp.enable", "user", actor.name)


def totp_remove(system: System, actor: Actor, name: str) -> None:
    """Remove another account's second factor (admins; e.g. a lost phone)."""
    require(system.db, actor, Perm.USER_MANAGE, "user", name)
    with system.db.session() as s:
        user = _user(s, name)
        if user.totp_secret is None:
            raise RuleError(f"{name} has no second factor")
        _clear_totp(user)
        audit_log.record(s, actor.name, "user.totp.remove", "user", name)


def _clean_code(code: str) -> str | None:
    code = code.strip().replace(" ", "")
    return code if len(code) == TOTP_DIGITS and code.isascii() and code.isdigit() else None


def _use_totp_code(system: System, user_id: int, code: str, *, confirmed: bool) -> bool:
    """Whether ``code`` is right for the account's secret in the current time step or one
    either side, and newer than the last code accepted; the step is then recorded with a
    conditional update, so the same code (or an older one) cannot be used twice, even by two
    requests at once."""
    clean = _clean_code(code)
    if clean is None:
        return False
    with system.db.reading() as s:
        row = s.execute(select(User.totp_secret, User.totp_enabled, User.totp_last_step)
                        .where(User.id == user_id)).first()
    if row is None or row[0] is None or bool(row[1]) != confirmed:
        return False
    try:
        secret = open_sealed(_totp_key(system), row[0], _aad(user_id)).decode()
    except CryptoError:
        return False
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP)
    now_step = int(time.time()) // TOTP_STEP
    last = row[2] if row[2] is not None else -1
    for step in (now_step - 1, now_step, now_step + 1):
        if step > last and hmac.compare_digest(totp.at(step * TOTP_STEP), clean):
            with system.db.session() as s:
                done = affected(s.execute(update(User).where(
                    User.id == user_id,
                    (User.totp_last_step.is_(None)) | (User.totp_last_step < step))
                    .values(totp_last_step=step)))
            return bool(done)
    return False


def set_totp_required(db: Database, actor: Actor, role: Role, required: bool) -> None:
    """Whether accounts of ``role`` must use a second factor (admins; audited). Accounts of
    the role without one are asked to enrol at their next request."""
    require(db, actor, Perm.SETTINGS, "role", role.value)
    with db.session() as s:
        policy = s.get(RolePolicy, role)
        before = bool(policy.totp_required) if policy else False
        if policy is None:
            policy = RolePolicy(role=role, totp_required=required, changed_by=actor.name)
            s.add(policy)
        policy.totp_required = required
        policy.changed_by = actor.name
        policy.changed_at = utcnow()
        audit_log.record(s, actor.name, "role.totp_required", "role", role.value,
                         {"from": before, "to": required})


def totp_policies(db: Database, actor: Actor) -> dict[str, bool]:
    """Whether each role requires a second factor (admins)."""
    require(db, actor, Perm.USER_MANAGE, "role", "totp")
    with db.reading() as s:
        set_ = {p.role.value: bool(p.totp_required) for p in s.scalars(select(RolePolicy))}
    return {r.value: set_.get(r.value, False) for r in Role}
