"""Helpers shared by the commands: clean error exits and JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from openlfr.vision.imageio import ImageError
from openlfr.vision.registry import ModelError

console = Console()
err_console = Console(stderr=True)

T = TypeVar("T")

#: Errors that mean "the user gave us something we cannot use": print them, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ImageError, ModelError, FileNotFoundError,
                                               ValueError)


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn expected failures into a one-line message and exit code 2."""
    try:
        yield
    except USER_ERRORS as exc:
        fail(str(exc))


def guarded(fn: Callable[[], T]) -> T:
    with user_errors():
        return fn()
    raise AssertionError("unreachable")  # pragma: no cover


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()
