"""Audit entries as JSON lines: one entry per line, every field including ``hash``.

Each line is ``json.dumps(entry.to_dict(), sort_keys=True, separators=(",", ":"),
ensure_ascii=False)``; the file is UTF-8 with ``\\n`` line ends. Removing ``hash`` from a line
and re-encoding it the same way gives exactly the bytes that were hashed, so an exported file
can be verified by anyone (see :mod:`openlfr.audit.verify`).

:func:`read_jsonl` streams (one line in memory at a time) and raises :class:`AuditFormatError`
with the line number for a line that is not one valid entry: not JSON, a duplicate key, a
missing or unknown field, a wrong type, a float, NaN, an empty line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from openlfr import errors
from openlfr.audit.entry import AuditEntry
from openlfr.privatefile import open_private


class AuditFormatError(errors.InvalidInput):
    """A JSON-lines audit file holds a line that is not a valid entry."""

    def __init__(self, line: int, message: str, source: str = "") -> None:
        where = f"{source}:{line}" if source else f"line {line}"
        super().__init__(f"{where}: {message}")
        self.line = line


def entry_to_line(entry: AuditEntry) -> str:
    """One entry as one JSON line (without the newline)."""
    return json.dumps(
        entry.to_dict(),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def entry_from_line(line: str) -> AuditEntry:
    """Parse one JSON line into an entry; :class:`ValueError` if it is not a valid entry."""
    data = json.loads(line, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    return AuditEntry.from_dict(data)


def write_jsonl(entries: Iterable[AuditEntry], target: str | os.PathLike[str] | IO[str]) -> int:
    """Write entries to a path (created or replaced) or an open text stream; returns the count."""
    if isinstance(target, str | os.PathLike):
        with open_private(target) as handle:
            return write_jsonl(entries, handle)
    count = 0
    for entry in entries:
        target.write(entry_to_line(entry) + "\n")
        count += 1
    return count


def read_jsonl(source: str | os.PathLike[str] | IO[str]) -> Iterator[AuditEntry]:
    """Yield the entries of a JSON-lines file (path or open text stream), one at a time."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        with path.open("r", encoding="utf-8", newline="") as handle:
            yield from _read(handle, str(path))
    else:
        yield from _read(source, getattr(source, "name", "") or "")


def _read(handle: IO[str], name: str) -> Iterator[AuditEntry]:
    number = 0
    while True:
        try:
            line = handle.readline()
        except UnicodeDecodeError as exc:
            raise AuditFormatError(number + 1, f"not valid UTF-8: {exc}", name) from None
        if not line:
            return
        number += 1
        text = line[:-1] if line.endswith("\n") else line
        if text.endswith("\r"):
            text = text[:-1]
        if not text.strip():
            raise AuditFormatError(number, "empty line", name)
        try:
            yield entry_from_line(text)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            raise AuditFormatError(number, str(exc), name) from None
