"""Opening the installation and signing in, for the commands that act as a user.

Every state-changing command takes ``--user NAME``; the password comes from
``OPENLFR_PASSWORD`` or, in a terminal, a prompt; for an account with a second factor, the
authenticator code from ``OPENLFR_TOTP`` or a prompt. ``--data-dir`` (or ``OPENLFR_DATA_DIR``)
says which installation. An account that must first change a one-time password (or set up a
second factor its role requires) may run only the command that does it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from openlfr.cli.common import EXIT_AUTH, EXIT_REFUSED, fail, user_errors
from openlfr.config import Settings, load_settings
from openlfr.governance.authz import Actor
from openlfr.governance.system import System, open_system
from openlfr.governance.users import (
    PENDING_PASSWORD,
    SecondFactorNeeded,
    authenticate,
    pending_step,
)
from openlfr.store.db import Database

DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", envvar="OPENLFR_DATA_DIR", show_envvar=True,
    help="Data directory (default: the per-user data folder).")]
UserOpt = Annotated[str, typer.Option(
    "--user", "-u", envvar="OPENLFR_USER", show_envvar=True,
    help="Who is acting (password from OPENLFR_PASSWORD or a prompt).")]


@dataclass
class Context:
    system: System
    actor: Actor

    @property
    def db(self) -> Database:
        return self.system.db

    @property
    def settings(self) -> Settings:
        return self.system.settings


def read_password(prompt: str = "Password") -> str:
    password = os.environ.get("OPENLFR_PASSWORD")
    if password:
        return password
    if not sys.stdin.isatty():
        fail("no password: set OPENLFR_PASSWORD, or run the command in a terminal to be asked")
    return str(typer.prompt(prompt, hide_input=True))


def read_password_file(path: Path, what: str = "--password-file") -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        fail(f"{what} {path}: no such file")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{what} {path}: cannot read it ({exc})")
    password = text.rstrip("\r\n")
    if not password:
        fail(f"{what} {path}: the file is empty")
    return password


@contextmanager
def governance_errors() -> Iterator[None]:
    """Refusals, failed sign-ins, broken rules (the :mod:`openlfr.errors` tree, through
    :func:`~openlfr.cli.common.user_errors`), a bad ``OPENLFR_*`` setting and a data directory
    that cannot be used, as one clear line and an exit code."""
    try:
        with user_errors():
            yield
    except ValidationError as exc:  # a setting from the environment
        fail(settings_problem(exc))
    except OSError as exc:  # e.g. a data directory that is a file, or not writable
        where = f"{exc.filename}: " if exc.filename else ""
        if isinstance(exc, FileExistsError):
            fail(f"{where}exists and is not a directory")
        fail(f"{where}{exc.strerror or exc}")


def settings_problem(exc: ValidationError) -> str:
    """A bad ``OPENLFR_*`` setting as one line naming the variable, the value and the rule."""
    problems = []
    for error in exc.errors(include_url=False):
        field = "_".join(str(part) for part in error.get("loc", ())) or "settings"
        value = error.get("input")
        shown = f"={value!r}" if isinstance(value, str | int | float) else ""
        problems.append(f"OPENLFR_{field.upper()}{shown}: {error.get('msg', 'invalid')}")
    return "; ".join(problems) or str(exc).splitlines()[0]


@contextmanager
def opened(data_dir: Path | None) -> Iterator[System]:
    """The installation, without signing in (for public figures)."""
    with governance_errors():
        system = open_system(load_settings(data_dir))
    try:
        with governance_errors():
            yield system
    finally:
        system.close()


def sign_in(system: System, user: str, password: str | None = None) -> Actor:
    """Check ``user``'s password (read here unless given) and second-factor code (asked for
    only when the account has one)."""
    if password is None:
        password = read_password(f"Password for {user}")
    code = os.environ.get("OPENLFR_TOTP") or None
    try:
        return authenticate(system, user, password, code)
    except SecondFactorNeeded as exc:
        if code is not None or not sys.stdin.isatty():
            fail(f"{exc} (set OPENLFR_TOTP, or run the command in a terminal to be asked)",
                 EXIT_AUTH)
        code = str(typer.prompt("Authenticator code"))
        return authenticate(system, user, password, code)


def pending_message(user: str, pending: str) -> str:
    if pending == PENDING_PASSWORD:
        return (f"the password of {user} is a one-time password: change it first with "
                f"`openlfr user passwd --user {user}`")
    return (f"the role of {user} requires a second factor: set one up first with "
            f"`openlfr user totp enrol --user {user}`")


@contextmanager
def acting(data_dir: Path | None, user: str, *, allow_pending: bool = False
           ) -> Iterator[Context]:
    """The installation and the signed-in ``user``; errors become clean exits. Unless
    ``allow_pending``, an account with a step to take first is refused with one line naming
    the command that takes it."""
    with opened(data_dir) as system, governance_errors():
        actor = sign_in(system, user)
        pending = pending_step(system.db, user)
        if pending is not None and not allow_pending:
            fail(pending_message(user, pending), EXIT_REFUSED)
        yield Context(system, actor)
