"""The store and the audit table: schema, append-only triggers, tamper detection, checkpoints,
refusals audited; on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from openlfr.audit import load_or_create_signing_key, sign_checkpoint
from openlfr.audit import log as audit_log
from openlfr.governance import users
from openlfr.governance.authz import Forbidden, RuleError
from openlfr.governance.users import AuthError
from openlfr.store.enums import Role
from tests.govfix import PASSWORD, Gov


def _disable_triggers(gov: Gov) -> None:
    with gov.db.engine.begin() as conn:
        if gov.kind == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_log_no_update")
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_log_no_delete")
        else:
            conn.exec_driver_sql("ALTER TABLE audit_log DISABLE TRIGGER USER")


def _tamper(gov: Gov, sql: str) -> None:
    _disable_triggers(gov)
    with gov.db.engine.begin() as conn:
        conn.execute(text(sql))


def _verify(gov: Gov, checkpoint=None):
    with gov.db.reading() as s:
        return audit_log.verify(s, checkpoint)


def test_fresh_installation_has_a_valid_chain(gov: Gov) -> None:
    result = _verify(gov)
    assert result.ok, result.problem
    # first admin + six users, each audited
    assert result.entries == len(["admin", "ao1", "ao2", "op1", "op2", "sv1", "au1"])
    with gov.db.reading() as s:
        actions = [e.action for e in audit_log.entries(s)]
    assert actions == ["user.create"] * 7


@pytest.mark.parametrize("sql", ["UPDATE audit_log SET actor = 'mallory' WHERE seq = 2",
                                 "DELETE FROM audit_log WHERE seq = 2"])
def test_triggers_refuse_update_and_delete(gov: Gov, sql: str) -> None:
    with pytest.raises(DBAPIError, match="append-only"), gov.db.engine.begin() as conn:
        conn.execute(text(sql))
    assert _verify(gov).ok


def test_an_edit_is_detected_at_its_entry(gov: Gov) -> None:
    _tamper(gov, "UPDATE audit_log SET details = '{\"role\":\"admin\"}' WHERE seq = 3")
    result = _verify(gov)
    assert not result.ok
    assert result.first_bad_seq == 3


def test_a_deletion_is_detected(gov: Gov) -> None:
    _tamper(gov, "DELETE FROM audit_log WHERE seq = 4")
    result = _verify(gov)
    assert not result.ok
    assert result.first_bad_seq == 4  # the 4th entry read is the old 5th


def test_an_insertion_is_detected(gov: Gov) -> None:
    _tamper(gov, "UPDATE audit_log SET seq = seq + 100 WHERE seq >= 5")
    _tamper(gov, "UPDATE audit_log SET seq = seq - 99 WHERE seq >= 105")
    with gov.db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO audit_log (seq, time, actor, action, object_type, object_id, details,"
            " prev_hash, hash) SELECT 5, time, 'mallory', 'user.create', 'user', 'mallory',"
            " '{}', prev_hash, hash FROM audit_log WHERE seq = 4"))
    result = _verify(gov)
    assert not result.ok
    assert result.first_bad_seq == 5


def test_reordering_is_detected(gov: Gov) -> None:
    _tamper(gov, "UPDATE audit_log SET seq = 1000 WHERE seq = 2")
    _tamper(gov, "UPDATE audit_log SET seq = 2 WHERE seq = 3")
    _tamper(gov, "UPDATE audit_log SET seq = 3 WHERE seq = 1000")
    result = _verify(gov)
    assert not result.ok
    assert result.first_bad_seq == 2


def test_truncation_is_detected_against_a_checkpoint(gov: Gov) -> None:
    key = load_or_create_signing_key(gov.settings.signing_key_path)
    with gov.db.reading() as s:
        head = audit_log.head(s)
    assert head is not None
    checkpoint = sign_checkpoint(key, head.seq, head.hash)
    assert _verify(gov, checkpoint).ok
    _tamper(gov, f"DELETE FROM audit_log WHERE seq >= {head.seq - 1}")
    assert _verify(gov).ok  # a clean cut is invisible without the checkpoint ...
    result = _verify(gov, checkpoint)
    assert not result.ok  # ... and found with it
    assert "truncated" in (result.problem or "")


def test_refusal_is_audited(gov: Gov) -> None:
    with pytest.raises(Forbidden, match="only an administrator may manage user accounts"):
        users.add_user(gov.db, gov.actors["op1"], "eve", Role.ADMIN, PASSWORD)
    with gov.db.reading() as s:
        last = audit_log.head(s)
    assert last is not None
    assert (last.actor, last.action, last.details["attempted"]) == (
        "op1", "access.refused", "user.manage")
    assert _verify(gov).ok


def test_failed_sign_in_is_audited_and_says_nothing_about_which_part(gov: Gov) -> None:
    with pytest.raises(AuthError) as wrong_password:
        users.authenticate(gov.system, "op1", "not the password at all")
    with pytest.raises(AuthError) as no_user:
        users.authenticate(gov.system, "nobody", PASSWORD)
    assert str(wrong_password.value) == str(no_user.value)
    assert users.authenticate(gov.system, "op1", PASSWORD).role == Role.OPERATOR
    with gov.db.reading() as s:
        failed = [e for e in audit_log.entries(s) if e.action == "auth.failed"]
    # a name that is no account's is written only as a keyed hash (it may be a password)
    assert [(e.actor, e.object_id) for e in failed] == [
        ("op1", "op1"), ("unknown", users.name_digest(gov.system, "nobody"))]


@pytest.mark.parametrize("name", ["system", "System", "SYSTEM", "public", "Public", "unknown"])
def test_the_program_s_actor_names_cannot_be_taken(gov: Gov, name: str) -> None:
    with pytest.raises(RuleError, match="reserved"):
        users.add_user(gov.db, gov.actors["admin"], name, Role.ADMIN, PASSWORD)
    with pytest.raises(RuleError, match="reserved"):
        users.check_name(name)


def test_a_failed_sign_in_as_system_is_not_signed_system(gov: Gov) -> None:
    with pytest.raises(AuthError):
        users.authenticate(gov.system, "system", PASSWORD)
    with gov.db.reading() as s:
        last = audit_log.head(s)
    assert last is not None
    assert (last.actor, last.action, last.object_id) == (
        "unknown", "auth.failed", users.name_digest(gov.system, "system"))


def test_postgresql_writers_are_serialised_from_their_first_statement(gov: Gov) -> None:
    if gov.kind != "postgresql":
        pytest.skip("SQLite serialises writers with BEGIN IMMEDIATE")
    held = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND pid = pg_backend_pid() AND objid = :k")
    entered = threading.Event()

    def second_writer() -> None:
        with gov.db.session():
            entered.set()

    with gov.db.session() as s:
        # Held before the transaction reads anything, not only once it appends to the log.
        assert s.scalar(held, {"k": audit_log.ADVISORY_LOCK}) == 1
        other = threading.Thread(target=second_writer)
        other.start()
        assert not entered.wait(0.5)
    other.join(10)
    assert entered.is_set()


def test_sqlite_file_settings(sqlite_gov: Gov) -> None:
    path = sqlite_gov.data_dir / "openlfr.db"
    assert path.exists()
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        con.close()
    with sqlite_gov.db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
    assert (sqlite_gov.settings.master_key_path.stat().st_mode & 0o777) == 0o600
    assert (sqlite_gov.data_dir.stat().st_mode & 0o777) == 0o700


def test_a_transaction_reads_the_head_once_and_the_next_one_afresh(gov: Gov) -> None:
    from sqlalchemy.orm import Session

    with gov.db.session() as s:
        first = audit_log.record(s, "system", "test.one", "test", 1)
        second = audit_log.record(s, "system", "test.two", "test", 2)
    assert (second.seq, second.prev_hash) == (first.seq + 1, first.hash)
    # one session, two transactions, another writer in between: the second reads the new head
    with Session(gov.db.engine) as s:
        with s.begin():
            mine = audit_log.record(s, "system", "test.three", "test", 3)
        with gov.db.session() as other:
            theirs = audit_log.record(other, "system", "test.four", "test", 4)
        with s.begin():
            after = audit_log.record(s, "system", "test.five", "test", 5)
    assert theirs.prev_hash == mine.hash and after.prev_hash == theirs.hash
    assert _verify(gov).ok
