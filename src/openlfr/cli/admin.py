"""``openlfr init`` and ``openlfr user ...``: setting up an installation and its people."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from openlfr.cli.common import console, err_console, fail, print_json, print_table
from openlfr.cli.context import (
    EXIT_REFUSED,
    DataDirOpt,
    UserOpt,
    acting,
    governance_errors,
    opened,
    pending_message,
    read_password,
    read_password_file,
    sign_in,
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
        help="File holding the first admin's one-time password (default: one is generated "
             "and printed once). Either way it must be changed at the first sign-in.")] = None,
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
    once. Either way it is a one-time password: the admin must change it at the first
    sign-in. Returns the open installation; the caller closes it."""
    first_password = (read_password_file(admin_password_file, "--admin-password-file")
                      if admin_password_file is not None else None)
    with governance_errors():
        system, done = initialise(load_settings(data_dir))
    try:
        for line in done:
            err_console.print(f"[green]✓[/] {line}", highlight=False)
        if users.count_users(system.db) == 0:
            password = first_password or users.new_one_time_password()
            users.create_first_admin(system.db, admin_user, password, one_time=True)
            err_console.print(f"[green]✓[/] created the first admin {admin_user!r} (the "
                              "password must be changed at the first sign-in: `openlfr user "
                              f"passwd --user {admin_user}`, or the console)", highlight=False)
            if first_password is None:
                console.print(f"one-time password for {admin_user}: [bold]{password}[/]\n"
                              "It is shown only now and works only to choose a new one.",
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
    user: UserOpt,
    password_file: Annotated[Path | None, typer.Option(
        "--password-file",
        help="File holding the new user's password (default: a one-time password is "
             "generated and printed once).")] = None,
    one_time: Annotated[bool, typer.Option(
        "--one-time", help="The password from --password-file must be changed at the first "
                           "sign-in (a generated one always must).")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Add a user with a role (admins only)."""
    chosen = read_password_file(password_file) if password_file is not None else None
    password = chosen or users.new_one_time_password()
    with acting(data_dir, user) as ctx:
        new = users.add_user(ctx.db, ctx.actor, name, users.parse_role(role), password,
                             one_time=one_time or chosen is None)
    err_console.print(f"[green]✓[/] added {new.name} ({new.role})", highlight=False)
    if chosen is None:
        _show_one_time(new.name, password)


def _show_one_time(name: str, password: str) -> None:
    console.print(f"one-time password for {name}: [bold]{password}[/]\n"
                  "It is shown only now and works only to choose a new one.", highlight=False)


@app.command("list")
def list_(
    user: UserOpt,
    data_dir: DataDirOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the users and their roles (admins only)."""
    with acting(data_dir, user) as ctx:
        rows = users.list_users(ctx.db, ctx.actor)
    data = [u.model_dump(mode="json") for u in rows]
    if json_out:
        print_json(data)
        return
    table = Table("name", "role", "active", "created", "by")
    for d in data:
        table.add_row(d["name"], d["role"], "yes" if d["active"] else "no",
                      d["created_at"][:16], d["created_by"])
    print_table(table)


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


def _new_password(path: Path | None) -> str:
    """The new password from ``--new-password-file``, ``OPENLFR_NEW_PASSWORD``, or asked
    twice in a terminal."""
    if path is not None:
        return read_password_file(path, "--new-password-file")
    from_env = os.environ.get("OPENLFR_NEW_PASSWORD")
    if from_env:
        return from_env
    if not sys.stdin.isatty():
        fail("no new password: give --new-password-file, set OPENLFR_NEW_PASSWORD, or run "
             "the command in a terminal to be asked")
    first = str(typer.prompt("New password", hide_input=True))
    if str(typer.prompt("New password again", hide_input=True)) != first:
        fail("the new password and its repetition differ")
    return first


@app.command("passwd")
def passwd(
    user: UserOpt,
    new_password_file: Annotated[Path | None, typer.Option(
        "--new-password-file",
        help="File holding the new password (default: OPENLFR_NEW_PASSWORD, or asked in a "
             "terminal).")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Change your own password (the current one from OPENLFR_PASSWORD or a prompt). The way
    out of a one-time password; your browser sessions end."""
    new = _new_password(new_password_file)
    with opened(data_dir) as system:
        current = read_password(f"Current password for {user}")
        users.change_password(system, sign_in(system, user, current), current, new)
    err_console.print(f"[green]✓[/] changed the password of {user}", highlight=False)


@app.command("reset")
def reset(
    name: Annotated[str, typer.Argument(help="Whose password to reset.")],
    user: UserOpt,
    remove_totp: Annotated[bool, typer.Option(
        "--remove-totp", help="Also remove the second factor (a lost phone).")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Give someone a new one-time password (admins only), printed once; their sessions and
    API tokens end, and they choose their own password at the next sign-in."""
    with acting(data_dir, user) as ctx:
        password = users.reset_password(ctx.db, ctx.actor, name, remove_totp=remove_totp)
    err_console.print(f"[green]✓[/] reset the password of {name}; their sessions and API "
                      "tokens have ended", highlight=False)
    _show_one_time(name, password)


@app.command("role")
def role_(
    name: Annotated[str, typer.Argument(help="Whose role to change.")],
    role: Annotated[str, typer.Option(
        "--role", help="admin, authorising_officer, operator, supervisor or auditor.")],
    user: UserOpt,
    data_dir: DataDirOpt = None,
) -> None:
    """Give someone another role (admins only); their sessions and API tokens end."""
    new_role = users.parse_role(role)  # a bad one: exit 2 (the one mapping, cli.common)
    with acting(data_dir, user) as ctx:
        users.set_role(ctx.db, ctx.actor, name, new_role)
    err_console.print(f"[green]✓[/] {name} is now {new_role.value}; their sessions and API "
                      "tokens have ended", highlight=False)


totp_app = typer.Typer(help="The TOTP second factor (an authenticator app).",
                       no_args_is_help=True)


@totp_app.command("enrol")
def totp_enrol(user: UserOpt, data_dir: DataDirOpt = None) -> None:
    """Start setting up your authenticator app: prints the secret once (and an otpauth://
    link); then run `openlfr user totp confirm CODE`."""
    with acting(data_dir, user, allow_pending=True) as ctx:
        if users.pending_step(ctx.db, user) == users.PENDING_PASSWORD:
            fail(pending_message(user, users.PENDING_PASSWORD), EXIT_REFUSED)
        enrolment = users.totp_begin(ctx.system, ctx.actor)
    console.print(f"setup key for {user}: [bold]{enrolment.secret}[/]\n{enrolment.uri}\n"
                  "Shown only now. Add it to the app, then run `openlfr user totp confirm "
                  f"CODE --user {user}` with the code it shows.", highlight=False)


@totp_app.command("confirm")
def totp_confirm(
    code: Annotated[str, typer.Argument(help="The 6-digit code the app shows now.")],
    user: UserOpt,
    data_dir: DataDirOpt = None,
) -> None:
    """Put your second factor in force with a first code from the app."""
    with acting(data_dir, user, allow_pending=True) as ctx:
        if users.pending_step(ctx.db, user) == users.PENDING_PASSWORD:
            fail(pending_message(user, users.PENDING_PASSWORD), EXIT_REFUSED)
        users.totp_confirm(ctx.system, ctx.actor, code)
    err_console.print(f"[green]✓[/] the second factor of {user} is in force: sign-ins now "
                      "ask for the app's code (OPENLFR_TOTP for commands)", highlight=False)


@totp_app.command("remove")
def totp_remove(
    name: Annotated[str, typer.Argument(help="Whose second factor to remove.")],
    user: UserOpt,
    data_dir: DataDirOpt = None,
) -> None:
    """Remove someone's second factor (admins only; e.g. a lost phone)."""
    with acting(data_dir, user) as ctx:
        users.totp_remove(ctx.system, ctx.actor, name)
    err_console.print(f"[green]✓[/] removed the second factor of {name}", highlight=False)


@totp_app.command("require")
def totp_require(
    role: Annotated[str, typer.Argument(help="The role whose accounts must use one.")],
    user: UserOpt,
    off: Annotated[bool, typer.Option("--off", help="Stop requiring it.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Require a second factor for every account of a role (admins only; audited)."""
    target = users.parse_role(role)
    with acting(data_dir, user) as ctx:
        users.set_totp_required(ctx.db, ctx.actor, target, not off)
    err_console.print(f"[green]✓[/] second factor {'optional' if off else 'required'} for "
                      f"{target.value}", highlight=False)


app.add_typer(totp_app, name="totp")


settings_app = typer.Typer(help="Installation-wide settings (administrators).",
                           no_args_is_help=True)


@settings_app.command("profile")
def profile_cmd(
    name: Annotated[str | None, typer.Argument(
        help="The profile to put in force: uk-app or eu-ai-act (omit to show the one in "
             "force).", show_default=False)] = None,
    user: Annotated[str | None, typer.Option(
        "--user", "-u", help="Your user name (needed to change the profile: administrators "
                             "only).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Show the jurisdiction profile in force and its rules, or put NAME in force (audited as
    a profile change)."""
    from openlfr.governance import profiles

    changed = False
    if name is not None:
        if not user:
            fail("--user NAME is required to change the profile (administrators only)")
        with governance_errors():
            chosen = profiles.parse_profile(name)
        assert user is not None
        with acting(data_dir, user) as ctx:
            changed = profiles.set_profile(ctx.db, ctx.actor, chosen)
    with opened(data_dir) as system, system.db.reading() as s:
        active = profiles.active_profile(s)
    rules = [*profiles.RULES[active], *profiles.COMMON_RULES]
    if json_out:
        print_json({"profile": active.value, "default": profiles.DEFAULT_PROFILE.value,
                    "changed": changed, "rules": rules})
        return
    if name is not None:
        err_console.print(f"[green]✓[/] profile {active.value} put in force" if changed
                          else f"profile {active.value} is already in force", highlight=False)
    console.print(f"jurisdiction profile: {active.value}"
                  + (" (the default)" if active == profiles.DEFAULT_PROFILE else ""),
                  highlight=False)
    for rule in rules:
        console.print(f"  - {rule}", highlight=False)


def register(root: typer.Typer) -> None:
    root.command("init")(init)
    root.add_typer(app, name="user")
    root.add_typer(settings_app, name="admin")



