"""``openlfr eval ...``: accuracy evaluation commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="Measure accuracy on labelled data.", no_args_is_help=True)
