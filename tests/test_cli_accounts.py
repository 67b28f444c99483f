"""``openlfr user ...`` for the account lifecycle, through the console script as a user runs
it: resets print a one-time password once and other commands then refuse in one line until
``user passwd``; the password policy; role changes; ``user add`` without a password file; the
TOTP second factor at sign-in."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pyotp

from openlfr.governance import users
from tests.govfix import PASSWORD, Gov
from tests.govfix import run_cli as run

NEW = "plum orchard lantern velvet"


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_reset_then_forced_change(sqlite_gov: Gov, tmp_path: Path) -> None:
    gov = sqlite_gov
    refused = run(gov, "user", "reset", "op2", "--user", "op1")
    assert refused.returncode == 3
    assert "only an administrator may manage user accounts" in " ".join(refused.stderr.split())
    done = run(gov, "user", "reset", "op2", "--user", "admin")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("one-time password for op2:") == 1
    one_time = done.stdout.split("one-time password for op2:")[1].split()[0]

    blocked = run(gov, "deployment", "list", "--user", "op2", OPENLFR_PASSWORD=one_time)
    assert blocked.returncode == 3
    assert one_line(blocked) == ("error: the password of op2 is a one-time password: change "
                                 "it first with `openlfr user passwd --user op2`")
    weak = tmp_path / "weak.pw"
    weak.write_text("password1234\n")
    r = run(gov, "user", "passwd", "--user", "op2", "--new-password-file", str(weak),
            OPENLFR_PASSWORD=one_time)
    assert r.returncode == 2 and "too easy to guess" in one_line(r)
    r = run(gov, "user", "passwd", "--user", "op2", OPENLFR_PASSWORD="wrong password!!")
    assert r.returncode == 2 and "no new password" in one_line(r)
    r = run(gov, "user", "passwd", "--user", "op2", OPENLFR_PASSWORD=one_time,
            OPENLFR_NEW_PASSWORD=NEW)
    assert r.returncode == 0, r.stderr
    assert run(gov, "deployment", "list", "--user", "op2",
               OPENLFR_PASSWORD=NEW).returncode == 0
    assert run(gov, "deployment", "list", "--user", "op2",
               OPENLFR_PASSWORD=one_time).returncode == 4
    assert users.pending_step(gov.db, "op2") is None


def test_role_change_and_add_without_a_password_file(sqlite_gov: Gov) -> None:
    gov = sqlite_gov
    r = run(gov, "user", "role", "op2", "--role", "auditor", "--user", "admin")
    assert r.returncode == 0, r.stderr
    assert "op2 is now auditor" in r.stderr
    r = run(gov, "user", "role", "op2", "--role", "boss", "--user", "admin")
    assert r.returncode == 2 and "unknown role 'boss'" in one_line(r)
    r = run(gov, "user", "add", "dawn", "--role", "operator", "--user", "admin")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("one-time password for dawn:") == 1
    assert users.pending_step(gov.db, "dawn") == users.PENDING_PASSWORD


def test_totp_at_the_command_line(sqlite_gov: Gov) -> None:
    gov = sqlite_gov
    r = run(gov, "user", "totp", "enrol", "--user", "sv1")
    assert r.returncode == 0, r.stderr
    secret = r.stdout.split("setup key for sv1:")[1].split()[0]
    totp = pyotp.TOTP(secret)
    r = run(gov, "user", "totp", "confirm", totp.now(), "--user", "sv1")
    assert r.returncode == 0, r.stderr
    r = run(gov, "alerts", "list", "--user", "sv1")
    assert r.returncode == 4
    assert one_line(r).startswith("error: this account uses a second factor")
    nxt = totp.at(time.time() + users.TOTP_STEP)
    r = run(gov, "alerts", "list", "--user", "sv1", OPENLFR_TOTP=nxt)
    assert r.returncode == 0, r.stderr
    r = run(gov, "alerts", "list", "--user", "sv1", OPENLFR_TOTP=nxt)  # replayed
    assert r.returncode == 4 and "already used" in one_line(r)

    r = run(gov, "user", "totp", "require", "operator", "--user", "admin")
    assert r.returncode == 0, r.stderr
    r = run(gov, "alerts", "list", "--user", "op1")
    assert r.returncode == 3
    assert one_line(r) == ("error: the role of op1 requires a second factor: set one up "
                           "first with `openlfr user totp enrol --user op1`")
    r = run(gov, "user", "totp", "remove", "sv1", "--user", "admin")
    assert r.returncode == 0, r.stderr
    assert run(gov, "alerts", "list", "--user", "sv1").returncode == 0
    assert PASSWORD  # the fixture's password signs the others in
