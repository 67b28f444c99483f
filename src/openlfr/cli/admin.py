"""``openlfr init`` and ``openlfr user ...``: setting up an installation and its people."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from openlfr.cli.common import console, err_console, print_json
from openlfr.cli.context import (
    DataDirOpt,
    UserOpt,
    acting,
    governance_errors,
    read_password_file,
)
from openlfr.config import load_settings
from openlfr.governance import users
from openlfr.governance.system import System, initialise

app = typer.Typer(help="People and their roles.", no_args_is_help=True)


def init(
    data_dir: DataDirOpt = None,
    admin_user: Annotated[str, typer.Option(
        "--admin-user", help="Name of the first admin.")] = "admin",
    admin_password_file: Annotated[Path | None, typer.Option(
        "--admin-password-file",
        help="File holding the first admin's password (default: one is generated and "
             "printed once).")] = None,
) -> None:
    """Create the data directory, the database, the master key and the first admin.

    Safe to run again: it creates only what is missing and upgrades the database schema."""
    system = set_up(data_dir, admin_user, admin_password_file)
    err_console.print(f"openlfr is ready in {system.settings.data_dir}", highlight=False)
    system.close()


def set_up(data_dir: Path | None, admin_user: str, admin_password_file: Path | None) -> System:
    """What ``init`` and ``serve`` both do first: create what is missing (data directory,
    keys, database) and, while there is no user, the first admin, whose password comes from
    ``admin_password_file`` (read before anything is created) or is generated and printed
    once. Returns the open installation; the caller closes it."""
    first_password = (read_password_file(admin_password_file, "--admin-password-file")
                      if admin_password_file is not None else None)
    with governance_errors():
        system, done = initialise(load_settings(data_dir))
    try:
        for line in done:
            err_console.print(f"[green]✓[/] {line}", highlight=False)
        if users.count_users(system.db) == 0:
            password = first_password or secrets.token_urlsafe(18)
            with governance_errors():
                users.create_first_admin(system.db, admin_user, password)
            err_console.print(f"[green]✓[/] created the first admin {admin_user!r}",
                              highlight=False)
            if first_password is None:
                console.print(f"one-time password for {admin_user}: [bold]{password}[/]\n"
                              "It is shown only now; the admin should change it.",
                              highlight=False)
        elif first_password is not None:
            err_console.print("[yellow]users exist already: --admin-password-file ignored[/]")
    except BaseException:
        system.close()
        raise
    return system


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The new user's name.")],
    role: Annotated[str, typer.Option(
        "--role", help="admin, authorising_officer, operator, supervisor or auditor.")],
    password_file: Annotated[Path, typer.Option(
        "--password-file", help="File holding the new user's password.")],
    user: UserOpt,
    data_dir: DataDirOpt = None,
) -> None:
    """Add a user with a role (admins only)."""
    password = read_password_file(password_file)
    with acting(data_dir, user) as ctx:
        new = users.add_user(ctx.db, ctx.actor, name, users.parse_role(role), password)
    err_console.print(f"[green]✓[/] added {new.name} ({new.role})", highlight=False)


@app.command("list")
def list_(
    user: UserOpt,
    data_dir: DataDirOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the users and their roles (admins only)."""
    with acting(data_dir, user) as ctx:
        rows = users.list_users(ctx.db, ctx.actor)
    data = [{"name": u.name, "role": u.role.value, "active": u.active,
             "created_at": u.created_at.isoformat(), "created_by": u.created_by}
            for u in rows]
    if json_out:
        print_json(data)
        return
    table = Table("name", "role", "active", "created", "by")
    for d in data:
        table.add_row(d["name"], d["role"], "yes" if d["active"] else "no",
                      d["created_at"][:16], d["created_by"])
    console.print(table)


def _set_active(name: str, user: str, data_dir: Path | None, active: bool) -> None:
    with acting(data_dir, user) as ctx:
        users.set_active(ctx.db, ctx.actor, name, active)
    err_console.print(f"[green]✓[/] {name} {'activated' if active else 'deactivated'}",
                      highlight=False)


@app.command("deactivate")
def deactivate(name: Annotated[str, typer.Argument()], user: UserOpt,
               data_dir: DataDirOpt = None) -> None:
    """Stop an account from signing in (its history stays)."""
    _set_active(name, user, data_dir, False)


@app.command("activate")
def activate(name: Annotated[str, typer.Argument()], user: UserOpt,
             data_dir: DataDirOpt = None) -> None:
    """Let a deactivated account sign in again."""
    _set_active(name, user, data_dir, True)


def register(root: typer.Typer) -> None:
    root.command("init")(init)
    root.add_typer(app, name="user")



