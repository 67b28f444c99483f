"""The ``openlfr`` command: thin Typer commands that parse, call a service and print."""

from __future__ import annotations

import sys

import typer

from openlfr.cli import (
    admin,
    alerts,
    audit,
    calibrate,
    deployments,
    evaluate,
    fieldtests,
    models,
    nodes,
    recognise,
    report,
    retention,
    serve,
    stats,
    watch,
    watchlists,
)
from openlfr.cli.common import CommandGroup, is_a

app = typer.Typer(
    name="openlfr",
    cls=CommandGroup,
    help="Open, accountable live facial recognition.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(models.app, name="models")
app.add_typer(evaluate.app, name="eval")
app.add_typer(watchlists.app, name="watchlist")
app.add_typer(alerts.app, name="alerts")
app.add_typer(deployments.app, name="deployment")
app.add_typer(fieldtests.app, name="fieldtest")
recognise.register(app)
watch.register(app)
calibrate.register(app)
admin.register(app)
audit.register(app)
retention.register(app)
report.register(app)
stats.register(app)
serve.register(app)
nodes.register(app)


def main() -> None:
    """The console script: like ``app()``, but a usage error (a missing or mistyped option, a
    value out of range) is one line on stderr, exit code 2, as every other bad input is. (The
    errors of the commands themselves are mapped by :class:`~openlfr.cli.common.CommandGroup`,
    the one place for them.)"""
    try:
        code = app(standalone_mode=False, prog_name="openlfr")
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except Exception as exc:  # Click's exceptions (Typer may bring its own copy of Click)
        if not is_a(exc, "ClickException"):
            raise
        if is_a(exc, "NoArgsIsHelpError"):
            exc.show()  # type: ignore[attr-defined]  # the help text, as without this wrapper
        else:
            ctx = getattr(exc, "ctx", None)
            hint = (f" (see `{ctx.command_path} --help`)"
                    if is_a(exc, "UsageError") and ctx is not None else "")
            message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
            message = message.rstrip(".") if hint else message
            typer.echo(f"error: {message}{hint}", err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)
