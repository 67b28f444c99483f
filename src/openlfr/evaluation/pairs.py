"""Verification pairs files: the standard LFW ``pairs.txt`` format and a simple CSV format.

LFW format::

    10\t300                      # folds, pairs of each kind per fold
    Abel_Pacheco\t1\t4           # n matched lines: name, image i, image j
    ...
    Abdel_Madi_Shabneh\t1\tDean_Barker\t1   # n mismatched lines: name1, i, name2, j
    ...                          # repeated for every fold

Images are ``DIR/<name>/<name>_NNNN.jpg`` (four-digit, zero-padded, 1-based). A header with a
single number ``n`` (as in ``pairsDevTrain.txt``), or ``1\tn``, means one fold; since a threshold
must be chosen on other folds, such a file is dealt into folds like a CSV (below).

CSV format: a header naming at least the columns ``file_x``, ``file_y`` and ``decision`` (paths
relative to DIR; decision yes/no, true/false, 1/0, in any case). Its pairs are put into up to
:data:`CSV_FOLDS` folds, deterministically: matched and mismatched pairs are each shuffled with a
fixed seed and dealt round-robin, so every fold gets a similar share of both kinds.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openlfr import errors

#: Number of folds given to a CSV pairs file (fewer if it has fewer pairs).
CSV_FOLDS = 10
#: Seed of the shuffle that deals CSV pairs into folds.
CSV_FOLD_SEED = 20240607

CSV_COLUMNS = ("file_x", "file_y", "decision")
_TRUE = {"yes", "true", "1", "y", "t", "same", "match"}
_FALSE = {"no", "false", "0", "n", "f", "different", "mismatch"}
#: A number in a pairs file (at most 18 digits: int() refuses thousands of them).
_INT = re.compile(r"^[0-9]{1,18}$")


class PairsError(errors.InvalidInput):
    """A pairs file cannot be parsed; the message names the file and, if known, the line."""


@dataclass(frozen=True)
class Pair:
    """Two images (paths relative to the dataset directory), whether they show the same person,
    the fold the pair belongs to (1-based) and the line of the pairs file it came from."""

    left: str
    right: str
    same: bool
    fold: int
    line: int = 0


def lfw_image_path(name: str, index: int) -> str:
    """Relative path of image ``index`` (1-based) of identity ``name`` in an LFW directory."""
    return f"{name}/{name}_{index:04d}.jpg"


def _error(path: Path, line: int | None, message: str) -> PairsError:
    where = f"{path}:{line}" if line else str(path)
    return PairsError(f"pairs file {where}: {message}")


def _read_text(path: Path) -> str:
    if not path.exists():
        raise FileNotFoundError(f"pairs file {path}: no such file")
    if not path.is_file():
        raise _error(path, None, "not a file")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _error(path, None, f"not a UTF-8 text file ({exc.reason})") from exc
    except OSError as exc:
        raise _error(path, None, f"cannot read ({exc.strerror or exc})") from exc


def _header_numbers(line: str) -> list[int] | None:
    fields = line.split()
    if 1 <= len(fields) <= 2 and all(_INT.match(f) for f in fields):
        return [int(f) for f in fields]
    return None


def read_pairs(path: Path) -> list[Pair]:
    """Parse a pairs file in either format (detected from its first non-empty line).

    Raises :class:`FileNotFoundError` if it is missing and :class:`PairsError` (a
    ``ValueError``) naming the file and line for anything malformed.
    """
    path = Path(path)
    text = _read_text(path)
    lines = text.splitlines()
    first = next(((i, ln) for i, ln in enumerate(lines, 1) if ln.strip()), None)
    if first is None:
        raise _error(path, None, "empty file")
    lineno, header = first
    if _header_numbers(header) is not None:
        return _parse_lfw(path, lines)
    if "," in header:
        return _parse_csv(path, text)
    raise _error(
        path,
        lineno,
        "unrecognised format: expected an LFW header such as '10<TAB>300' or a CSV header "
        f"with the columns {', '.join(CSV_COLUMNS)}",
    )


def _positive_int(path: Path, lineno: int, value: str, what: str) -> int:
    if not _INT.match(value) or int(value) < 1:
        raise _error(path, lineno, f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _parse_lfw(path: Path, lines: list[str]) -> list[Pair]:
    numbered = [(i, ln.strip()) for i, ln in enumerate(lines, 1) if ln.strip()]
    header_line, header = numbered[0]
    numbers = _header_numbers(header)
    assert numbers is not None
    folds, per_fold = numbers if len(numbers) == 2 else [1, numbers[0]]
    if folds < 1 or per_fold < 1:
        raise _error(path, header_line, f"header {header!r}: folds and pairs must be positive")
    body = numbered[1:]
    expected = folds * 2 * per_fold
    if len(body) != expected:
        if len(body) > expected:
            where, what = body[expected][0], "first line beyond them"
        else:
            where, what = (body[-1][0] if body else header_line), "last line"
        raise _error(
            path,
            where,
            f"header {header!r} announces {folds} folds x (2 x {per_fold}) = {expected} pairs, "
            f"but the file has {len(body)} pair lines ({what} shown)",
        )
    pairs: list[Pair] = []
    for k, (lineno, line) in enumerate(body):
        fold = k // (2 * per_fold) + 1
        matched = (k % (2 * per_fold)) < per_fold
        fields = line.split()
        if matched:
            if len(fields) != 3:
                raise _error(
                    path,
                    lineno,
                    f"expected a matched pair 'name<TAB>i<TAB>j' (line {k % (2 * per_fold) + 1} "
                    f"of fold {fold}), got {len(fields)} fields: {line!r}",
                )
            name, i, j = fields
            left = lfw_image_path(name, _positive_int(path, lineno, i, "image number"))
            right = lfw_image_path(name, _positive_int(path, lineno, j, "image number"))
        else:
            if len(fields) != 4:
                raise _error(
                    path,
                    lineno,
                    "expected a mismatched pair 'name1<TAB>i<TAB>name2<TAB>j' "
                    f"(line {k % (2 * per_fold) + 1} of fold {fold}), "
                    f"got {len(fields)} fields: {line!r}",
                )
            name1, i, name2, j = fields
            left = lfw_image_path(name1, _positive_int(path, lineno, i, "image number"))
            right = lfw_image_path(name2, _positive_int(path, lineno, j, "image number"))
        for name in fields[0::2]:
            if "/" in name or "\\" in name or name in {".", ".."}:
                raise _error(path, lineno, f"invalid identity name {name!r}")
        pairs.append(Pair(left, right, matched, fold, lineno))
    if folds == 1:
        # One fold leaves nothing to choose a threshold on: deal it into folds as for a CSV.
        dealt = assign_folds([p.same for p in pairs], CSV_FOLDS, CSV_FOLD_SEED)
        pairs = [Pair(p.left, p.right, p.same, f, p.line)
                 for p, f in zip(pairs, dealt, strict=True)]
    return pairs


def parse_decision(value: str) -> bool:
    """``yes/no``, ``true/false``, ``1/0`` (any case) → bool; ``ValueError`` otherwise."""
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"decision must be yes/no, true/false or 1/0, got {value!r}")


def _parse_csv(path: Path, text: str) -> list[Pair]:
    reader = csv.reader(io.StringIO(text))
    try:
        rows = [(reader.line_num, row) for row in reader]
    except csv.Error as exc:  # e.g. a field over csv's limit of 131,072 characters
        raise _error(path, reader.line_num or None, f"not a readable CSV ({exc})") from exc
    rows = [(n, r) for n, r in rows if any(c.strip() for c in r)]
    header_line, header = rows[0]
    columns = [c.strip().lower() for c in header]
    missing = [c for c in CSV_COLUMNS if c not in columns]
    if missing:
        raise _error(
            path,
            header_line,
            f"CSV header lacks the column(s) {', '.join(missing)}; found {', '.join(header)}",
        )
    ix, iy, idec = (columns.index(c) for c in CSV_COLUMNS)
    raw: list[tuple[str, str, bool, int]] = []
    for lineno, row in rows[1:]:
        if len(row) != len(header):
            raise _error(
                path, lineno, f"expected {len(header)} fields as in the header, got {len(row)}"
            )
        left, right = row[ix].strip(), row[iy].strip()
        if not left or not right:
            raise _error(path, lineno, "empty file_x or file_y")
        for p in (left, right):
            if Path(p).is_absolute() or ".." in Path(p).parts:
                raise _error(path, lineno, f"image path {p!r} must be relative to the dataset")
        try:
            same = parse_decision(row[idec])
        except ValueError as exc:
            raise _error(path, lineno, str(exc)) from exc
        raw.append((left, right, same, lineno))
    if not raw:
        raise _error(path, header_line, "no pairs after the header")
    folds = assign_folds([r[2] for r in raw], CSV_FOLDS, CSV_FOLD_SEED)
    return [Pair(left, right, same, fold, lineno)
            for (left, right, same, lineno), fold in zip(raw, folds, strict=True)]


def assign_folds(labels: list[bool], n_folds: int, seed: int) -> list[int]:
    """Deal pairs into ``min(n_folds, len(labels))`` folds (1-based), deterministically.

    Matched pairs, then mismatched pairs, each in an order shuffled with ``seed``, are dealt
    round-robin, so fold sizes differ by at most one and each fold has a similar class mix.
    """
    k = max(1, min(n_folds, len(labels)))
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels, dtype=bool)
    order = np.concatenate([
        rng.permutation(np.flatnonzero(labels_arr)),
        rng.permutation(np.flatnonzero(~labels_arr)),
    ])
    folds = np.empty(len(labels), dtype=np.int64)
    folds[order] = np.arange(len(order)) % k + 1
    return [int(f) for f in folds]
