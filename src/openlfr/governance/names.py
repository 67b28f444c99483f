"""Characters refused in what people type: one check for every service.

* In **names** (watchlist names, subject references, deployment names, sites, locations and
  assessment references, token names): NUL and the bidirectional controls that reorder what a
  reader sees (U+202A–U+202E embeddings and overrides, U+2066–U+2069 isolates) — a name shown
  in a list or the audit log must read as it is stored.
* In **free text** (purposes, reasons, legal bases): NUL, which PostgreSQL refuses anyway, so
  SQLite installations refuse it too.
"""

from __future__ import annotations

from openlfr.governance.authz import RuleError

NUL = "\x00"
BIDI_CONTROLS = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))
NAME_REFUSED = BIDI_CONTROLS | {NUL}


def _refuse(value: str, what: str, refused: frozenset[str] | set[str]) -> str:
    bad = sorted({c for c in value if c in refused})
    if bad:
        codes = ", ".join(f"U+{ord(c):04X}" for c in bad)
        kind = ("a NUL character" if bad == [NUL] else
                "a character that reorders text" if len(bad) == 1 else
                "characters that reorder text or NUL")
        raise RuleError(f"{what} contains {kind} ({codes}): not allowed")
    return value


def check_name(value: str, what: str) -> str:
    """``value`` unchanged, or a :class:`RuleError` for NUL or a bidirectional control."""
    return _refuse(value, what, NAME_REFUSED)


def check_text(value: str, what: str) -> str:
    """``value`` unchanged, or a :class:`RuleError` for a NUL character."""
    return _refuse(value, what, {NUL})
