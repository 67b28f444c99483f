"""Times given by people, converted to UTC without surprises.

A time valid where it was written can fall outside the calendar in UTC
(``0001-01-01T00:30+01:00`` is in the year 0, ``9999-12-31T23:30-01:00`` in the year 10000):
Python raises ``OverflowError`` on the conversion, which used to surface as a server error.
:func:`to_utc` makes it a plain :class:`~openlfr.governance.authz.RuleError` naming the value.
"""

from __future__ import annotations

from datetime import UTC, datetime

from openlfr.governance.authz import RuleError


def to_utc(value: datetime, what: str, text: str | None = None) -> datetime:
    """``value`` in UTC (a naive value is returned unchanged: callers refuse it themselves).
    ``text`` is how the person wrote it, for the message."""
    if value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC)
    except OverflowError:
        shown = text if text is not None else value.isoformat()
        if value.year > 5000:
            edge = "too far in the future: after the year 9999"
        else:
            edge = "too far in the past: before the year 1"
        raise RuleError(f"{what} {shown} is {edge} in UTC") from None
