"""People: accounts with argon2 password hashes and one role each; signing in."""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select

from openlfr.audit import log as audit_log
from openlfr.governance.authz import SYSTEM_ACTOR, Actor, Perm, RuleError, require
from openlfr.store.db import Database
from openlfr.store.enums import Role, choices
from openlfr.store.models import User

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{1,63}$")
#: Actor names the program writes into the audit log itself (the program, a resident sending a
#: question, a sign-in with an unusable name): no account may take one, in any letter case, or
#: its entries could not be told apart from theirs.
RESERVED_NAMES = frozenset({audit_log.SYSTEM, "public", "unknown"})
MIN_PASSWORD = 12
_hasher = PasswordHasher()


class AuthError(PermissionError):
    """Wrong user name or password (the message never says which)."""


def parse_role(value: str) -> Role:
    try:
        return Role(value.strip().lower().replace("-", "_").replace(" ", "_"))
    except ValueError:
        raise RuleError(f"unknown role {value!r}: choose {choices(Role)}") from None


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise RuleError(f"a password needs at least {MIN_PASSWORD} characters")
    if password.strip() != password:
        raise RuleError("a password may not start or end with spaces")


def check_name(name: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise RuleError(f"user name {name!r}: 2–64 letters, digits, '.', '_', '@' or '-', "
                        "starting with a letter or digit")
    if name.casefold() in RESERVED_NAMES:
        raise RuleError(f"{name!r} is reserved for the program's own audit entries")


def count_users(db: Database) -> int:
    with db.reading() as s:
        return int(s.scalar(select(func.count()).select_from(User)) or 0)


def create_first_admin(db: Database, name: str, password: str) -> Actor:
    """The first account, an admin; refused once any account exists."""
    check_name(name)
    check_password(password)
    with db.session() as s:
        if s.scalar(select(func.count()).select_from(User)):
            raise RuleError("the first admin already exists; add users with `openlfr user add`")
        s.add(User(name=name, role=Role.ADMIN, password_hash=_hasher.hash(password),
                   created_by=SYSTEM_ACTOR.name))
        audit_log.record(s, SYSTEM_ACTOR.name, "user.create", "user", name,
                         {"role": Role.ADMIN.value, "first_admin": True})
    return Actor(name, Role.ADMIN)


def add_user(db: Database, actor: Actor, name: str, role: Role, password: str) -> Actor:
    require(db, actor, Perm.USER_MANAGE, "user", name)
    check_name(name)
    check_password(password)
    with db.session() as s:
        if s.scalar(select(User).where(User.name == name)) is not None:
            raise RuleError(f"user {name!r} already exists")
        s.add(User(name=name, role=role, password_hash=_hasher.hash(password),
                   created_by=actor.name))
        audit_log.record(s, actor.name, "user.create", "user", name, {"role": role.value})
    return Actor(name, role)


def set_active(db: Database, actor: Actor, name: str, active: bool) -> None:
    require(db, actor, Perm.USER_MANAGE, "user", name)
    with db.session() as s:
        user = s.scalar(select(User).where(User.name == name))
        if user is None:
            raise RuleError(f"no user {name!r}")
        if user.name == actor.name and not active:
            raise RuleError("you cannot deactivate your own account")
        user.active = active
        audit_log.record(s, actor.name, "user.activate" if active else "user.deactivate",
                         "user", name)


def list_users(db: Database, actor: Actor) -> list[User]:
    require(db, actor, Perm.USER_MANAGE)
    with db.reading() as s:
        return list(s.scalars(select(User).order_by(User.name)))


def authenticate(db: Database, name: str, password: str) -> Actor:
    """The actor for a correct name and password of an active account; a failure is audited
    (``auth.failed``) and raised as :class:`AuthError`."""
    with db.reading() as s:
        user = s.scalar(select(User).where(User.name == name))
        stored = (user.password_hash, user.role, user.active) if user else None
    ok = False
    if stored is not None:
        try:
            ok = _hasher.verify(stored[0], password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
    else:
        _hasher.hash(password)  # same cost whether or not the name exists
    if not ok or stored is None or not stored[2]:
        # A name no account can have (malformed, or one the program acts under) is not
        # written as the actor: a stranger must not sign entries as ``system``.
        usable = bool(NAME_RE.match(name)) and name.casefold() not in RESERVED_NAMES
        with db.session() as s:
            audit_log.record(s, name if usable else "unknown", "auth.failed",
                             "user", name[:64] if NAME_RE.match(name) else "invalid-name")
        raise AuthError("wrong user name or password, or the account is inactive")
    return Actor(name, stored[1])
