"""Opening an installation from the command line: a bad ``OPENLFR_*`` setting or a database
that cannot be reached is one line on stderr and exit code 2, never a traceback or a
multi-line dump."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openlfr.cli import app


def _one_line_error(args: list[str], env: dict[str, str], code: int = 2) -> str:
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(("name", "value", "message"), [
    ("OPENLFR_RETENTION_DAYS", "abc", "valid integer"),
    ("OPENLFR_RETENTION_DAYS", "0", "greater than or equal to 1"),
    ("OPENLFR_WATCHLIST_DESTROY_HOURS", "99", "less than or equal to 24"),
])
def test_a_bad_setting_names_the_variable_on_one_line(tmp_path: Path, name: str, value: str,
                                                      message: str) -> None:
    for args in (["stats"], ["init"]):
        line = _one_line_error(args, {"OPENLFR_DATA_DIR": str(tmp_path / "data"), name: value})
        assert f"{name}='{value}'" in line and message in line
    assert not (tmp_path / "data").exists()  # nothing was created


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    line = _one_line_error(["stats"], {
        "OPENLFR_DATA_DIR": str(tmp_path),
        "OPENLFR_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/db?connect_timeout=5"},
        code=8)  # the database is unavailable
    assert "cannot open the database" in line


def test_a_data_dir_never_initialised(tmp_path: Path) -> None:
    line = _one_line_error(["audit", "show", "--user", "chief"], {
        "OPENLFR_DATA_DIR": str(tmp_path / "never"), "OPENLFR_PASSWORD": "x"}, code=8)
    assert "no openlfr database here" in line and "openlfr init" in line
    assert not (tmp_path / "never").exists()


def test_init_checks_its_input_before_creating_anything(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    line = _one_line_error(["init", "--data-dir", str(a_file)], {})
    assert line == f"error: {a_file}: exists and is not a directory"
    line = _one_line_error(["init", "--data-dir", str(tmp_path / "data"),
                            "--admin-password-file", str(tmp_path / "nope.pw")], {})
    assert "--admin-password-file" in line and "no such file" in line
    assert not (tmp_path / "data").exists()  # no key, no database, no folder left behind


def _console_script(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``openlfr ARGS`` through the console script's ``main()``, as a user runs it."""
    return subprocess.run([sys.executable, "-c", "from openlfr.cli import main; main()", *args],
                          env={**os.environ, "OPENLFR_DATA_DIR": str(data_dir), **env},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize(("args", "message"), [
    (["alerts", "list", "--limit", "-1", "--user", "x"],
     "error: Invalid value for '--limit': Input should be greater than or equal to 1 "
     "(see `openlfr alerts list --help`)"),
    (["alerts", "bogus"], "error: No such command 'bogus' (see `openlfr alerts --help`)"),
    (["--bogus"], "error: No such option: --bogus (see `openlfr --help`)"),
    (["identify", "--watchlist", "w.watchlist"],
     "error: Missing argument 'image' (see `openlfr identify --help`)"),
    (["alerts", "outcome", "1", "--action", "none", "--user", "x"],
     "error: say whether the person was engaged: --engaged or --not-engaged"),
])
def test_a_usage_error_is_one_line_from_the_console_script(tmp_path: Path, args: list[str],
                                                           message: str) -> None:
    result = _console_script(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == message
    assert result.stdout == ""


def test_the_console_script_keeps_help_and_exit_codes(tmp_path: Path) -> None:
    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return _console_script(tmp_path, *args, **env)

    assert run("--help").returncode == 0
    bare = run("alerts")  # no sub-command: the help, as before
    assert bare.returncode == 2 and "Usage: openlfr alerts" in bare.stdout + bare.stderr
    assert run("init").returncode == 0  # a command that succeeds exits 0
    assert run("stats", "--json").returncode == 0
    refused = run("audit", "show", "--user", "nobody", OPENLFR_PASSWORD="wrong")
    assert refused.returncode == 4, refused.stderr  # a failed sign-in keeps its own code
    assert refused.stderr.strip() == ("error: wrong user name or password, or the account is "
                                      "inactive")


def test_init_creates_the_first_admin_once(tmp_path: Path) -> None:
    pw = tmp_path / "admin.pw"
    pw.write_text("a long admin password\n")
    first = _console_script(tmp_path / "a", "init", "--admin-user", "chief",
                            "--admin-password-file", str(pw))
    assert first.returncode == 0, first.stderr
    assert "created the first admin 'chief'" in first.stderr
    assert "one-time password for" not in first.stdout + first.stderr
    # the password from the file is one-time too: it serves only to choose a new one
    refused = _console_script(tmp_path / "a", "audit", "verify", "--user", "chief",
                              OPENLFR_PASSWORD="a long admin password")
    assert refused.returncode == 3, refused.stderr
    assert refused.stderr.strip() == (
        "error: the password of chief is a one-time password: change it first with "
        "`openlfr user passwd --user chief`")
    changed = _console_script(tmp_path / "a", "user", "passwd", "--user", "chief",
                              OPENLFR_PASSWORD="a long admin password",
                              OPENLFR_NEW_PASSWORD="my own chosen passphrase here")
    assert changed.returncode == 0, changed.stderr
    signed_in = _console_script(tmp_path / "a", "audit", "verify", "--user", "chief",
                                OPENLFR_PASSWORD="my own chosen passphrase here")
    assert signed_in.returncode == 0, signed_in.stderr
    again = _console_script(tmp_path / "a", "init", "--admin-password-file", str(pw))
    assert again.returncode == 0 and "--admin-password-file ignored" in again.stderr
    assert "created the first admin" not in again.stderr

    generated = _console_script(tmp_path / "b", "init")
    assert generated.returncode == 0, generated.stderr
    assert generated.stdout.count("one-time password for admin:") == 1
    password = generated.stdout.split("one-time password for admin:")[1].split()[0]
    assert _console_script(tmp_path / "b", "audit", "verify", "--user", "admin",
                           OPENLFR_PASSWORD=password).returncode == 3
    assert _console_script(tmp_path / "b", "user", "passwd", "--user", "admin",
                           OPENLFR_PASSWORD=password,
                           OPENLFR_NEW_PASSWORD="my own chosen passphrase here").returncode == 0
    assert _console_script(tmp_path / "b", "audit", "verify", "--user", "admin",
                           OPENLFR_PASSWORD="my own chosen passphrase here").returncode == 0
