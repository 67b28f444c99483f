"""The account lifecycle in the services, on SQLite and PostgreSQL: deactivation, role changes
and resets end sessions and tokens for good; one-time passwords; changing a password; the
password policy; the TOTP second factor (sealed at rest, no replay) and its per-role rule; and
no secret in the audit log."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import select, text

from openlfr.audit import log as audit_log
from openlfr.governance import users
from openlfr.governance.authz import Forbidden, RuleError
from openlfr.store.enums import Role
from openlfr.store.models import AuditRecord, User
from openlfr.web import sessions, tokens
from tests.govfix import PASSWORD, Gov, database_at

NEW = "plum orchard lantern velvet"


def _audit_text(gov: Gov) -> str:
    with gov.db.reading() as s:
        return "\n".join(f"{r.actor} {r.action} {r.object_id} {r.details}"
                         for r in s.scalars(select(AuditRecord).order_by(AuditRecord.seq)))


def _last(gov: Gov, action: str) -> audit_log.AuditEntry:
    with gov.db.reading() as s:
        found = [e for e in audit_log.entries(s) if e.action == action]
    assert found, action
    return found[-1]


def _credentials(gov: Gov, name: str) -> tuple[str, str]:
    """A browser session and an API token of ``name``."""
    cookie = sessions.create_session(gov.db, gov.actors[name])
    _, secret = tokens.create_token(gov.db, gov.actors["admin"], name, "integration")
    assert sessions.resolve_session(gov.db, cookie) is not None
    assert tokens.resolve_token(gov.db, secret) is not None
    return cookie, secret


def test_reactivation_does_not_revive_sessions_or_tokens(gov: Gov) -> None:
    cookie, secret = _credentials(gov, "op1")
    users.set_active(gov.db, gov.actors["admin"], "op1", False)
    assert _last(gov, "user.deactivate").details == {"sessions_ended": 1, "tokens_revoked": 1}
    users.set_active(gov.db, gov.actors["admin"], "op1", True)
    assert sessions.resolve_session(gov.db, cookie) is None
    assert tokens.resolve_token(gov.db, secret) is None
    # the account itself signs in again, with a new session
    assert users.authenticate(gov.system, "op1", PASSWORD).name == "op1"


def test_role_change_is_audited_and_ends_sessions_and_tokens(gov: Gov) -> None:
    cookie, secret = _credentials(gov, "op1")
    with pytest.raises(Forbidden):
        users.set_role(gov.db, gov.actors["sv1"], "op1", Role.SUPERVISOR)
    with pytest.raises(RuleError, match="your own role"):
        users.set_role(gov.db, gov.actors["admin"], "admin", Role.AUDITOR)
    with pytest.raises(RuleError, match="already has the role operator"):
        users.set_role(gov.db, gov.actors["admin"], "op1", Role.OPERATOR)
    users.set_role(gov.db, gov.actors["admin"], "op1", Role.SUPERVISOR)
    entry = _last(gov, "user.role")
    assert (entry.actor, entry.object_id) == ("admin", "op1")
    assert entry.details == {"from": "operator", "to": "supervisor", "sessions_ended": 1,
                             "tokens_revoked": 1}
    assert sessions.resolve_session(gov.db, cookie) is None
    assert tokens.resolve_token(gov.db, secret) is None
    assert users.authenticate(gov.system, "op1", PASSWORD).role == Role.SUPERVISOR


def test_reset_issues_a_one_time_password_that_must_be_changed(gov: Gov) -> None:
    cookie, secret = _credentials(gov, "op1")
    with pytest.raises(Forbidden):
        users.reset_password(gov.db, gov.actors["ao1"], "op1")
    with pytest.raises(RuleError, match="your own password"):
        users.reset_password(gov.db, gov.actors["admin"], "admin")
    one_time = users.reset_password(gov.db, gov.actors["admin"], "op1")
    assert len(one_time) >= 20
    assert sessions.resolve_session(gov.db, cookie) is None
    assert tokens.resolve_token(gov.db, secret) is None
    with pytest.raises(users.AuthError):
        users.authenticate(gov.system, "op1", PASSWORD)  # the old password is gone
    actor = users.authenticate(gov.system, "op1", one_time)
    assert users.pending_step(gov.db, "op1") == users.PENDING_PASSWORD
    # a session started now knows it may only change the password
    info = sessions.resolve_session(gov.db, sessions.create_session(gov.db, actor))
    assert info is not None and info.pending == users.PENDING_PASSWORD

    with pytest.raises(users.AuthError, match="current password is wrong"):
        users.change_password(gov.system, actor, "not it at all", NEW)
    assert _last(gov, "auth.failed").details == {"during": "password change"}
    with pytest.raises(RuleError, match="must differ"):
        users.change_password(gov.system, actor, one_time, one_time)
    users.change_password(gov.system, actor, one_time, NEW)
    assert users.pending_step(gov.db, "op1") is None
    assert _last(gov, "user.password").details == {"was_one_time": True, "sessions_ended": 1}
    assert users.authenticate(gov.system, "op1", NEW).name == "op1"
    text = _audit_text(gov)
    assert one_time not in text and NEW not in text and PASSWORD not in text


def test_first_admin_one_time_only_when_asked(gov: Gov) -> None:
    # the fixture's admin chose their password: not one-time
    assert users.pending_step(gov.db, "admin") is None
    with gov.db.reading() as s:
        first = s.scalar(select(AuditRecord).where(AuditRecord.action == "user.create")
                         .order_by(AuditRecord.seq))
    assert first is not None and '"one_time":false' in first.details
    users.add_user(gov.db, gov.actors["admin"], "newop", Role.OPERATOR, NEW, one_time=True)
    assert users.pending_step(gov.db, "newop") == users.PENDING_PASSWORD


@pytest.mark.parametrize(("password", "message"), [
    ("short pass", "at least 12 characters"),
    (" leading space here", "start or end with spaces"),
    ("password1234", "too easy to guess (this is a very common password)"),
    ("qwertyuiop123", "too easy to guess"),
    ("aaaaaaaaaaaaaaaa", "too easy to guess"),
    ("newop12345678", "too easy to guess"),  # a name and a run of digits
])
def test_password_policy_names_the_rule(gov: Gov, password: str, message: str) -> None:
    with pytest.raises(RuleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        users.add_user(gov.db, gov.actors["admin"], "newop", Role.OPERATOR, password)
    with pytest.raises(RuleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        users.change_password(gov.system, gov.actors["op1"], PASSWORD, password)


def _enrol(gov: Gov, name: str) -> pyotp.TOTP:
    enrolment = users.totp_begin(gov.system, gov.actors[name])
    assert enrolment.uri.startswith(f"otpauth://totp/openlfr:{name}?secret=")
    totp = pyotp.TOTP(enrolment.secret)
    users.totp_confirm(gov.system, gov.actors[name], totp.now())
    return totp


def test_totp_is_sealed_verified_and_not_replayed(gov: Gov) -> None:
    enrolment = users.totp_begin(gov.system, gov.actors["op1"])
    with gov.db.reading() as s:
        row = s.scalar(select(User).where(User.name == "op1"))
        assert row is not None and row.totp_secret is not None and not row.totp_enabled
        sealed = bytes(row.totp_secret)
    assert enrolment.secret.encode() not in sealed  # never plaintext in the database
    # not in force until confirmed: signing in still needs no code
    assert users.authenticate(gov.system, "op1", PASSWORD).name == "op1"
    totp = pyotp.TOTP(enrolment.secret)
    wrong = f"{(int(totp.now()) + 1) % 1_000_000:06d}"
    with pytest.raises(users.AuthError):
        users.totp_confirm(gov.system, gov.actors["op1"], wrong)
    code = totp.now()
    users.totp_confirm(gov.system, gov.actors["op1"], code)
    assert users.totp_state(gov.db, "op1") == (True, True)
    with pytest.raises(RuleError, match="already set up"):
        users.totp_begin(gov.system, gov.actors["op1"])

    with pytest.raises(users.SecondFactorNeeded):
        users.authenticate(gov.system, "op1", PASSWORD)
    with pytest.raises(users.AuthError, match="already used"):
        users.authenticate(gov.system, "op1", PASSWORD, code)  # the confirming code, again
    assert _last(gov, "auth.failed").details == {"factor": "totp"}
    nxt = totp.at(time.time() + users.TOTP_STEP)  # the next step's code is within the window
    assert users.authenticate(gov.system, "op1", PASSWORD, nxt).name == "op1"
    with pytest.raises(users.AuthError):
        users.authenticate(gov.system, "op1", PASSWORD, nxt)  # replayed
    with pytest.raises(users.AuthError):  # a right code with a wrong password is no sign-in
        users.authenticate(gov.system, "op1", "not the password",
                           totp.at(time.time() + 2 * users.TOTP_STEP))
    text = _audit_text(gov)
    assert enrolment.secret not in text and code not in text.replace("op1", "")
    assert [e.action for e in _entries(gov, "user.totp.")] == ["user.totp.begin",
                                                                "user.totp.enable"]

    # an admin removes it (a lost phone); the account signs in with its password alone
    with pytest.raises(Forbidden):
        users.totp_remove(gov.system, gov.actors["op2"], "op1")
    users.totp_remove(gov.system, gov.actors["admin"], "op1")
    assert users.authenticate(gov.system, "op1", PASSWORD).name == "op1"


def _entries(gov: Gov, prefix: str) -> list[audit_log.AuditEntry]:
    with gov.db.reading() as s:
        return [e for e in audit_log.entries(s) if e.action.startswith(prefix)]


def test_reset_can_remove_the_second_factor(gov: Gov) -> None:
    _enrol(gov, "sv1")
    users.reset_password(gov.db, gov.actors["admin"], "sv1", remove_totp=True)
    assert users.totp_state(gov.db, "sv1") == (False, False)
    assert _last(gov, "user.reset").details == {"sessions_ended": 0, "tokens_revoked": 0,
                                                "totp_removed": True}


def test_admins_require_totp_per_role(gov: Gov) -> None:
    with pytest.raises(Forbidden):
        users.set_totp_required(gov.db, gov.actors["ao1"], Role.OPERATOR, True)
    users.set_totp_required(gov.db, gov.actors["admin"], Role.OPERATOR, True)
    entry = _last(gov, "role.totp_required")
    assert (entry.actor, entry.object_id, entry.details) == (
        "admin", "operator", {"from": False, "to": True})
    assert users.totp_policies(gov.db, gov.actors["admin"])["operator"] is True
    assert users.pending_step(gov.db, "op1") == users.PENDING_TOTP
    assert users.pending_step(gov.db, "sv1") is None
    _enrol(gov, "op1")
    assert users.pending_step(gov.db, "op1") is None
    # a one-time password comes first
    users.reset_password(gov.db, gov.actors["admin"], "op2")
    assert users.pending_step(gov.db, "op2") == users.PENDING_PASSWORD
    users.set_totp_required(gov.db, gov.actors["admin"], Role.OPERATOR, False)
    assert users.totp_policies(gov.db, gov.actors["admin"])["operator"] is False


def test_a_failed_sign_in_keeps_a_typed_password_out_of_the_log(gov: Gov) -> None:
    typed = "Tr0ub4dor&3-in-the-name-field"
    with pytest.raises(users.AuthError):
        users.authenticate(gov.system, typed, PASSWORD)
    with pytest.raises(users.AuthError):
        users.authenticate(gov.system, typed, PASSWORD)
    text = _audit_text(gov)
    assert typed not in text and typed[:20] not in text
    failed = _entries(gov, "auth.failed")
    # the same text gives the same keyed hash: repeated attempts can still be told apart
    assert failed[-1].object_id == failed[-2].object_id == users.name_digest(gov.system, typed)
    assert failed[-1].actor == "unknown"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_accounts_migration_keeps_tokens_and_sessions(kind: str, tmp_path: Path) -> None:
    """Adding the account columns must not recreate ``users``: on SQLite a "copy and move"
    drops the table, and the foreign keys' ON DELETE CASCADE takes every API token and session
    with it."""
    with database_at(kind, tmp_path, "0002") as db:
        when = datetime(2026, 11, 1, tzinfo=UTC).replace(tzinfo=None)
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO users (id, name, role, password_hash, active, "
                              "created_at, created_by) VALUES (1, 'op1', 'operator', 'x', "
                              ":yes, :t, 'system')"), {"yes": True, "t": when})
            conn.execute(text("INSERT INTO api_tokens (user_id, name, role, token_hash, "
                              "created_at, created_by) VALUES (1, 'n', 'operator', :h, :t, "
                              "'admin')"), {"h": "a" * 64, "t": when})
            conn.execute(text("INSERT INTO web_sessions (token_hash, user_id, created_at, "
                              "last_seen_at, expires_at) VALUES (:h, 1, :t, :t, :t)"),
                         {"h": "b" * 64, "t": when})
        db.upgrade()
        with db.engine.connect() as conn:
            counts = [conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                      for t in ("users", "api_tokens", "web_sessions")]
        assert counts == [1, 1, 1]
        assert users.pending_step(db, "op1") is None  # existing accounts are not one-time
