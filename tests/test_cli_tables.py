"""How the commands print tables: drawn at the terminal's real width on a terminal, plain
tab-separated values when the output is piped or redirected, JSON with ``--json``."""

from __future__ import annotations

import json
import os
import pty
import re
import struct
import subprocess
import termios
import time
from fcntl import ioctl

import pytest
from rich.table import Table
from rich.text import Text
from typer.testing import CliRunner

from openlfr.cli import app
from openlfr.cli.common import print_table
from tests.govfix import CLI, PEOPLE, Gov
from tests.test_web_public import Demo, populate

#: The box-drawing characters of a table Rich draws (and never in tab-separated output).
BOX = re.compile("[┃━│─┏┓┗┛┡┩└┘┌┐]")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture()
def seeded(sqlite_gov: Gov) -> tuple[Gov, Demo]:
    return sqlite_gov, populate(sqlite_gov.db)


def _cli(gov: Gov, *args: str, **env: str) -> tuple[str, str]:
    result = CliRunner().invoke(app, list(args), env={**gov.env(), **env})
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr


def _tsv(stdout: str) -> list[list[str]]:
    assert not BOX.search(stdout), stdout
    assert stdout.endswith("\n")
    return [line.split("\t") for line in stdout[:-1].split("\n")]


def test_piped_tables_are_tab_separated_with_the_right_columns(seeded: tuple[Gov, Demo]) -> None:
    gov, demo = seeded
    out, err = _cli(gov, "deployment", "list", "--user", "admin")
    header, *rows = _tsv(out)
    assert header == ["id", "name", "status", "site", "planned start", "planned end",
                      "threshold", "watchlists", "cameras"]
    shown = json.loads(_cli(gov, "deployment", "list", "--user", "admin", "--json")[0])
    assert [r[:4] for r in rows] == [[str(d["id"]), d["name"], d["status"], d["site"]]
                                     for d in shown]
    assert all(len(r) == len(header) for r in rows) and len(rows) == 6
    assert "Deployments" in err and "Deployments" not in out  # the title is for people

    header, *rows = _tsv(_cli(gov, "user", "list", "--user", "admin")[0])
    assert header == ["name", "role", "active", "created", "by"]
    assert sorted(r[0] for r in rows) == sorted(PEOPLE)
    assert {r[2] for r in rows} == {"yes"}

    header, *rows = _tsv(_cli(gov, "alerts", "list", "--user", "sv1")[0])
    assert header == ["id", "kind", "seen at", "deployment", "camera", "candidate", "score",
                      "status", "held"]
    assert len(rows) == 4 and {r[3] for r in rows} == {str(demo.ended)}
    assert {r[4] for r in rows} == {"cam-north"} and {r[6] for r in rows} == {"0.610"}
    assert all(len(r) == 9 for r in rows)  # an empty last cell is still a field

    header, *rows = _tsv(_cli(gov, "watchlist", "list", "--user", "sv1")[0])
    assert header[:3] == ["id", "name", "status"] and [r[1] for r in rows] == ["Warrants"]

    header, *rows = _tsv(_cli(gov, "deployment", "show", str(demo.ended), "--user", "admin")[0])
    assert header == ["field", "value"]
    fields = dict(rows)  # one field and one value a line, whatever the value's length
    assert fields["status"] == "ended" and fields["site"] == "High Street"
    assert fields["cameras"].startswith("cam-north=rtsp://")


def test_json_output_is_unchanged_by_the_table_format(seeded: tuple[Gov, Demo]) -> None:
    gov, demo = seeded
    for env in ({}, {"TTY_COMPATIBLE": "1", "COLUMNS": "100"}):
        out, _ = _cli(gov, "alerts", "list", "--user", "sv1", "--json", **env)
        alerts = json.loads(out)
        assert len(alerts) == 4 and {a["deployment_id"] for a in alerts} == {demo.ended}
        assert not BOX.search(out)


@pytest.mark.parametrize("width", [100, 180])
def test_on_a_terminal_the_table_is_drawn_at_its_width(seeded: tuple[Gov, Demo],
                                                       width: int) -> None:
    gov, _ = seeded
    out, _ = _cli(gov, "deployment", "list", "--user", "admin", TTY_COMPATIBLE="1",
                  COLUMNS=str(width))
    text = ANSI.sub("", out)
    lines = text.splitlines()
    assert BOX.search(text) and "\t" not in text
    assert max(len(line) for line in lines) <= width
    # The table uses the room it has: the widest rows are near the width, not at 80.
    assert max(len(line) for line in lines) > 0.8 * width
    assert "Deployments" in text and "Running" in text


def test_a_real_terminal_gives_its_own_width(seeded: tuple[Gov, Demo]) -> None:
    """The command in a pseudo-terminal 150 columns wide, no COLUMNS set: Rich asks the
    terminal, and the table is wider than the 80 columns of its fallback."""
    gov, _ = seeded
    env = {k: v for k, v in gov.env().items() if k not in ("COLUMNS", "LINES", "TTY_COMPATIBLE",
                                                            "FORCE_COLOR")}
    master, slave = pty.openpty()
    ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 150, 0, 0))
    proc = subprocess.Popen([*CLI, "deployment", "list", "--user", "admin"], env=env,
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal's other end closed: the command is done
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
        assert proc.wait(timeout=60) == 0
    text = ANSI.sub("", b"".join(chunks).decode())
    lines = text.splitlines()
    assert BOX.search(text) and "\t" not in text
    assert 80 < max(len(line) for line in lines) <= 150


def test_tab_separated_cells_escape_what_would_break_a_line(capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    table = Table("a", "b", "c", title="T")
    table.add_row("tab\there", "two\nlines", "back\\slash")
    table.add_row("[green]ok[/]", Text("[not markup]"), "\\[escaped]")
    table.add_row("carriage\rreturn", "", "x")  # a control code: dropped, as Rich draws it
    print_table(table)
    out, err = capsys.readouterr()
    assert out.split("\n") == ["a\tb\tc", "tab\\there\ttwo\\nlines\tback\\\\slash",
                               "ok\t[not markup]\t[escaped]", "carriagereturn\t\tx", ""]
    assert err.strip() == "T"
