"""Smaller hardening: names refuse NUL and bidirectional controls on SQLite as on PostgreSQL
(one check in the services), and the database, its WAL files and audit exports are created
readable by their owner only (0600)."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openlfr.audit import log as audit_log
from openlfr.audit.jsonl import write_jsonl
from openlfr.cli import app as cli_app
from openlfr.config import Settings
from openlfr.governance import deployments as deps
from openlfr.governance import users
from openlfr.governance import watchlists as wls
from openlfr.governance.authz import RuleError
from openlfr.governance.system import initialise
from openlfr.store.enums import Role
from openlfr.web import tokens
from tests.govfix import PASSWORD, Gov
from tests.test_gov_deployments import plan

RLO = "\u202e"  # right-to-left override: "evil\u202egpj.exe" reads "evilexe.jpg"
LRI = "\u2066"


@pytest.mark.parametrize("bad", ["Wanted\x00list", f"Wanted{RLO}tsil", f"Wanted{LRI}x",
                                 "x\u202ay", "x\u2069y"])
def test_names_refuse_nul_and_bidi_controls(gov: Gov, face_images, bad: str) -> None:
    op1 = gov.actors["op1"]
    with pytest.raises(RuleError, match="not allowed"):
        wls.create_watchlist(gov.system, op1, bad, "Locate people wanted by the courts")
    wl = wls.create_watchlist(gov.system, op1, "ok", "Locate people wanted by the courts")
    with pytest.raises(RuleError, match=r"reference.*contains"):
        wls.add_subject(gov.system, op1, wl.id, bad, "wanted_by_court",
                        "A warrant of the magistrates' court for this case",
                        datetime.now(UTC) + timedelta(days=3),
                        [(face_images["obama"].read_bytes(), "custody record")])
    for field in ("name", "site", "location", "dpia_ref", "equality_ref"):
        with pytest.raises(RuleError, match="not allowed"):
            deps.create(gov.db, op1, replace(plan(cameras=()), **{field: bad}),
                        keyring=gov.system.keyring)
    with pytest.raises(RuleError, match="not allowed"):
        tokens.create_token(gov.db, gov.actors["admin"], "op1", bad)
    with pytest.raises(RuleError):
        users.add_user(gov.db, gov.actors["admin"], bad, Role.OPERATOR, PASSWORD)
    # nothing was stored, and the refusals left the chain whole
    assert [w.name for w in wls.list_watchlists(gov.db, op1)] == ["ok"]
    with gov.db.reading() as s:
        assert audit_log.verify(s).ok


def test_free_text_refuses_nul_but_keeps_right_to_left_writing(gov: Gov) -> None:
    op1 = gov.actors["op1"]
    with pytest.raises(RuleError, match="NUL"):
        wls.create_watchlist(gov.system, op1, "ok", "Locate people wanted\x00 by the courts")
    with pytest.raises(RuleError, match="NUL"):
        deps.create(gov.db, op1, plan(cameras=(deps.CameraSpec("gate", "/dev/x\x00"),)),
                    keyring=gov.system.keyring)
    # Arabic and Hebrew text (no control characters) is fine in names
    wl = wls.create_watchlist(gov.system, op1, "قائمة מבוקשים",
                              "Locate people wanted by the courts")
    assert wl.name == "قائمة מבוקשים"


def test_a_user_name_with_a_trailing_newline_is_refused(gov: Gov) -> None:
    with pytest.raises(RuleError, match="user name"):
        users.add_user(gov.db, gov.actors["admin"], "dawn\n", Role.OPERATOR, PASSWORD)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_database_and_its_wal_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a usual umask: files would be 0644
    try:
        system, _ = initialise(Settings(data_dir=tmp_path / "data"))
        try:
            users.create_first_admin(system.db, "admin", PASSWORD)
            files = sorted((tmp_path / "data").glob("openlfr.db*"))
            assert {f.name for f in files} >= {"openlfr.db", "openlfr.db-wal",
                                               "openlfr.db-shm"}
            assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
        finally:
            system.close()
        # an older installation's wider files are narrowed when opened
        db_file = tmp_path / "data" / "openlfr.db"
        os.chmod(db_file, 0o644)
        system, _ = initialise(Settings(data_dir=tmp_path / "data"))
        system.close()
        assert _mode(db_file) == 0o600
    finally:
        os.umask(old)


def test_audit_exports_are_private(sqlite_gov: Gov, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        out = tmp_path / "log.jsonl"
        out.write_text("old")
        os.chmod(out, 0o644)  # replacing a wider file narrows it
        result = CliRunner().invoke(cli_app, ["audit", "export", "--out", str(out),
                                              "--user", "au1"], env=sqlite_gov.env())
        assert result.exit_code == 0, result.output
        assert _mode(out) == 0o600
        assert all(json.loads(line) for line in out.read_text().splitlines())
        art12 = tmp_path / "art12.jsonl"
        with sqlite_gov.db.reading() as s:
            write_jsonl(audit_log.entries(s), art12)
        assert _mode(art12) == 0o600
    finally:
        os.umask(old)
