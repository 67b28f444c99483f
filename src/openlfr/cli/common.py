"""Helpers shared by the commands: clean error exits and JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from openlfr.vision.engine import FaceEngine, get_engine, model_id_backend
from openlfr.vision.imageio import ImageBusy, ImageError
from openlfr.vision.registry import ModelError
from openlfr.watchlist.store import Watchlist

console = Console()
err_console = Console(stderr=True)

#: Errors that mean "the user gave us something we cannot use": print them, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ImageError, ImageBusy, ModelError,
                                               FileNotFoundError, ValueError)


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
    thr = engine.default_threshold if threshold is None else threshold
    if not -1.0 <= thr <= 1.0:
        fail(f"--threshold {thr}: a cosine threshold lies between -1 and 1")
    return watchlist, engine, thr


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()
