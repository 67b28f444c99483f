"""``openlfr retention run``: apply the retention rules now (admins; the program itself on a
schedule)."""

from __future__ import annotations

from typing import Annotated

import typer

from openlfr.cli.common import console, print_json
from openlfr.cli.context import DataDirOpt, UserOpt, acting
from openlfr.governance.retention import run_retention

app = typer.Typer(help="Retention and forgetting.", no_args_is_help=True)


@app.command("run")
def run(
    user: UserOpt,
    data_dir: DataDirOpt = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Report what a run would do; change nothing.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """End overdue deployments, destroy the watchlists of ended ones, expire subjects, purge
    alerts past the retention period unless held; every step audited with counts only."""
    with acting(data_dir, user) as ctx:
        report = run_retention(ctx.system, ctx.actor, dry_run=dry_run)
    if json_out:
        print_json(report.to_dict())
        return
    for line in report.summary():
        console.print(line, highlight=False)
    if dry_run:
        console.print("dry run: nothing changed", highlight=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="retention")
