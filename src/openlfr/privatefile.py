"""Files only their owner may read (mode 0600): the database and its WAL files, exports of
the audit log. Created with that mode from the start (no window in which another user could
open them), and narrowed when an older file was wider."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO

PRIVATE = 0o600


def make_private(path: str | os.PathLike[str]) -> None:
    """Narrow an existing file to 0600 (nothing if it is missing or already private)."""
    try:
        mode = os.stat(path).st_mode & 0o777
        if mode & 0o077:
            os.chmod(path, PRIVATE)
    except FileNotFoundError:
        pass


def create_private(path: str | os.PathLike[str]) -> None:
    """Create an empty file with mode 0600 if there is none (then make it private)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE))
    except FileExistsError:
        make_private(path)


def open_private(path: str | os.PathLike[str]) -> TextIO:
    """Open ``path`` for writing text (created or replaced), mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE)
    try:
        os.fchmod(fd, PRIVATE)  # an existing file keeps its mode through O_CREAT
        return os.fdopen(fd, "w", encoding="utf-8", newline="\n")
    except BaseException:
        os.close(fd)
        raise


def sqlite_files(database: str | os.PathLike[str]) -> list[Path]:
    """A SQLite database file and its write-ahead log and shared-memory files."""
    base = Path(database)
    return [base, base.with_name(base.name + "-wal"), base.with_name(base.name + "-shm")]
