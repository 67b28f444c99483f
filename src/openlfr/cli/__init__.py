"""The ``openlfr`` command: thin Typer commands that parse, call a service and print."""

from __future__ import annotations

import typer

from openlfr.cli import (
    admin,
    alerts,
    audit,
    calibrate,
    deployments,
    evaluate,
    models,
    recognise,
    retention,
    serve,
    stats,
    watch,
    watchlists,
)

app = typer.Typer(
    name="openlfr",
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
recognise.register(app)
watch.register(app)
calibrate.register(app)
admin.register(app)
audit.register(app)
retention.register(app)
stats.register(app)
serve.register(app)


def main() -> None:
    app()
