"""Helpers shared by the commands: the one mapping of errors to exit codes, and JSON output.

Exit codes (:data:`EXIT_CODES`, from the :mod:`openlfr.errors` tree): 0 done; 1 an internal
error (a bug: one line, the traceback only with ``OPENLFR_DEBUG=1``); 2 bad input or a broken
rule (and a usage error: a missing or mistyped option); 3 refused for the user's role; 4 sign-in
failed; 5 no such object; 6 the object's state does not allow it (a conflict); 7 an integrity
failure (altered or undecryptable stored data); 8 unavailable for now (busy, a model or the
database cannot be used).

Tables (:func:`print_table`, the one way a command prints one): on a terminal, drawn by Rich at
the terminal's real width; otherwise (output piped or redirected) tab-separated values on
standard output, one header line and one line per row, never wrapped, and the table's title and
caption on standard error.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console, RenderableType
from rich.errors import MarkupError
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from openlfr import errors
from openlfr.vision.engine import FaceEngine, get_engine, model_id_backend
from openlfr.vision.thresholds import check_threshold
from openlfr.watchlist.store import Watchlist

console = Console()
err_console = Console(stderr=True)
log = logging.getLogger("openlfr.cli")

EXIT_INTERNAL = 1
EXIT_INVALID = 2
EXIT_REFUSED = 3
EXIT_AUTH = 4
EXIT_NOT_FOUND = 5
EXIT_CONFLICT = 6
EXIT_INTEGRITY = 7
EXIT_UNAVAILABLE = 8

#: The exit code of each kind of :mod:`openlfr.errors` (the one mapping of the command line).
EXIT_CODES: dict[type[errors.OpenLFRError], int] = {
    errors.InvalidInput: EXIT_INVALID,
    errors.Forbidden: EXIT_REFUSED,
    errors.Unauthenticated: EXIT_AUTH,
    errors.NotFound: EXIT_NOT_FOUND,
    errors.Conflict: EXIT_CONFLICT,
    errors.IntegrityFailure: EXIT_INTEGRITY,
    errors.Unavailable: EXIT_UNAVAILABLE,
}
#: Set to 1 to see the traceback of an internal error.
DEBUG_ENV = "OPENLFR_DEBUG"


def fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def fail_with(exc: BaseException) -> NoReturn:
    """Exit with ``exc``'s message on one line and the exit code of its kind; anything that is
    not an :mod:`openlfr.errors` kind is a bug (exit 1, ``internal error``)."""
    kind = errors.kind(exc)
    if kind is None:
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        fail(f"internal error ({type(exc).__name__}); set {DEBUG_ENV}=1 to see where",
             EXIT_INTERNAL)
    message = errors.message(exc)
    if kind is errors.Forbidden:
        message = f"refused: {message}"
    elif kind is errors.IntegrityFailure:
        log.error("integrity failure: %s: %s", type(exc).__name__, message)
        message = f"integrity failure: {message}"
    fail(message, EXIT_CODES[kind])


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the :mod:`openlfr.errors` tree into one line and its exit code (the one place that
    does it: :class:`CommandGroup` wraps every command in it; a command needs it only where it
    must exit before doing more). A file the user named that does not exist is bad input
    too."""
    try:
        yield
    except errors.OpenLFRError as exc:
        fail_with(exc)
    except FileNotFoundError as exc:  # the system's own, or one raised with a message
        fail(f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc))


def is_a(exc: BaseException, class_name: str) -> bool:
    """Whether ``exc`` is of a class named ``class_name`` (Click's exceptions: Typer may bring
    its own copy of Click, so they are known by name)."""
    return any(cls.__name__ == class_name for cls in type(exc).__mro__)


class CommandGroup(TyperGroup):
    """The root command group: whatever a command lets through is mapped here, by
    :func:`fail_with` (so no command needs its own ``try``/``except``); Click's own exits,
    aborts and usage errors pass on to Click."""

    def invoke(self, ctx: Any) -> Any:
        try:
            with user_errors():
                return super().invoke(ctx)
        except Exception as exc:
            if any(is_a(exc, name) for name in ("Exit", "Abort", "ClickException")):
                raise
            fail_with(exc)


def open_watchlist(path: Path, threshold: float | None) -> tuple[Watchlist, FaceEngine, float]:
    """Load a watchlist file, the engine of its model, and the threshold to use (the model's
    default unless given). Call inside :func:`user_errors`."""
    if not path.exists():
        fail(f"{path}: no such watchlist file")
    watchlist = Watchlist.load(path)
    engine = get_engine(model_id_backend(watchlist.model_id))
    if engine.model_id != watchlist.model_id:
        fail(f"{path} holds {watchlist.model_id!r} templates; this openlfr makes "
             f"{engine.model_id!r}, and scores of different models are not comparable")
    thr = check_threshold(engine.default_threshold if threshold is None else threshold,
                          "--threshold")  # the command line names its option
    return watchlist, engine, thr


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


#: How a tab-separated cell writes the characters that would break its line or its columns.
TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _plain(cell: RenderableType | None) -> str:
    """A cell's text without its markup or styles (what the drawn table shows)."""
    if cell is None:
        return ""
    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        try:
            return Text.from_markup(cell).plain
        except MarkupError:  # not markup after all: the text as it is
            return cell
    out = io.StringIO()
    Console(file=out, width=10_000, color_system=None).print(cell, soft_wrap=True)
    return out.getvalue().rstrip("\n")


def tsv_cell(cell: RenderableType | None) -> str:
    """A cell as one tab-separated field: backslash, tab, newline and carriage return written
    ``\\\\``, ``\\t``, ``\\n`` and ``\\r``."""
    return _plain(cell).translate(TSV_ESCAPES)


def print_table(table: Table) -> None:
    """Print ``table``: on a terminal, drawn at the terminal's width; otherwise as tab-separated
    values (see the module's text). Rich's ``TTY_COMPATIBLE=1`` treats any output as a
    terminal (and ``COLUMNS`` sets its width)."""
    out = Console()  # the terminal's width now (and COLUMNS), not when this module was loaded
    if out.is_terminal:
        out.print(table)
        return
    if table.title:
        err_console.print(table.title, highlight=False, soft_wrap=True)
    lines = ["\t".join(tsv_cell(c.header) for c in table.columns)]
    lines += ["\t".join(tsv_cell(cell) for cell in row)
              for row in zip(*(list(c.cells) for c in table.columns), strict=True)]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    if table.caption:
        err_console.print(table.caption, highlight=False, soft_wrap=True)
