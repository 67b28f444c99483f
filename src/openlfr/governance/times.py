"""Times given by people: the one parser (:func:`parse_time`), and the conversion to UTC
without surprises (:func:`to_utc`).

**The one time format** of the command line, the API and the console:

* ``now``;
* a duration from now: a number and a unit ``s``, ``m``, ``h``, ``d`` or ``w`` (seconds,
  minutes, hours, days, weeks), with an optional ``+`` and blanks: ``90d``, ``+2h``, ``30m``,
  ``45s``, ``1.5h``;
* an ISO 8601 date and time **with its zone**: ``2026-05-01T08:00Z``,
  ``2026-05-01T08:00+01:00``. A time without a zone is refused with a message naming the
  field: ``08:00`` means different instants in different places.

Where a field allows it (``date_only=True``: a subject's expiry), a date alone
(``2027-01-31``) means the end of that day in UTC, i.e. ``2027-02-01T00:00Z``.

**The zone of people** (``OPENLFR_TIME_ZONE``, an IANA name such as ``Europe/London``;
default ``UTC``): the console's ``datetime-local`` inputs carry no zone; their labels name the
configured zone, and :func:`form_time` (the one place that does it) reads what they send as a
wall-clock time there (:func:`local_to_utc`). A wall-clock time that does not exist (the hour
skipped when clocks go forward) or happens twice (the hour repeated when they go back) is
refused with a message naming the field. :func:`form_value` is the reverse, for filling such an
input. Times are stored, exported and given on the command line in UTC.

A time valid where it was written can fall outside the calendar in UTC
(``0001-01-01T00:30+01:00`` is in the year 0, ``9999-12-31T23:30-01:00`` in the year 10000):
Python raises ``OverflowError`` on the conversion, which used to surface as a server error.
:func:`to_utc` makes it a plain :class:`~openlfr.governance.authz.RuleError` naming the value.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, tzinfo

from openlfr.governance.authz import RuleError

_RELATIVE = re.compile(r"^\+?\s*(\d+(?:\.\d+)?)\s*([smhdw])$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
#: What a browser's ``datetime-local`` input sends: a date and a time, no zone.
_FORM_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?$")
#: No datetime is further away than this many digits of seconds (nor can int() read 5000).
_MAX_DIGITS = 12
EXAMPLES = "e.g. 2026-05-01T08:00Z, 2026-05-01T08:00+01:00, now, 2h or 90d"


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
        raise RuleError(f"{what} {shown} is {edge} in UTC", field=what) from None


def parse_time(text: str, field: str, now: datetime | None = None, *,
               date_only: bool = False) -> datetime:
    """``text`` in the one time format (see the module docstring) as an aware UTC time;
    :class:`~openlfr.governance.authz.RuleError` naming ``field`` (and the text) when it is
    not one. ``date_only`` lets a date alone mean the end of that day, UTC."""
    now = now or datetime.now(UTC)
    raw = text.strip()
    shown = repr(text) if len(text) <= 60 else repr(text[:40]) + "…"
    if not raw:
        raise RuleError(f"{field} is required ({EXAMPLES})", field=field)
    if raw.lower() == "now":
        return now
    rel = _RELATIVE.match(raw)
    if rel:
        number = rel.group(1)
        try:
            if len(number.partition(".")[0]) > _MAX_DIGITS:
                raise OverflowError
            return now + timedelta(**{_UNITS[rel.group(2).lower()]: float(number)})
        except OverflowError:
            raise RuleError(f"{field} {shown}: too far in the future", field=field) from None
    try:
        if date_only and len(raw) == 10:
            day = date.fromisoformat(raw)
            return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        when = datetime.fromisoformat(raw)
    except OverflowError:
        raise RuleError(f"{field} {shown}: too far in the future", field=field) from None
    except ValueError:  # the standard library's "not ISO 8601": the caller's input
        dates = "a date (2027-01-31), " if date_only else ""
        raise RuleError(f"{field} {shown}: not a date and time: give {dates}an ISO time with "
                        "its zone (2026-05-01T08:00Z, 2026-05-01T08:00+01:00), now, or a "
                        "duration such as 90d, 2h or 30m", field=field) from None
    if when.tzinfo is None:
        hint = f"{raw[:19]}Z for UTC" if len(raw) > 10 else "2026-05-01T08:00Z for UTC"
        raise RuleError(f"{field} {shown}: give a timezone (e.g. {hint}, or an offset such "
                        "as +01:00)", field=field)
    return to_utc(when, field, shown)


def zone_label(zone: tzinfo) -> str:
    """The zone's name as people see it beside a time: ``UTC``, ``Europe/London``."""
    return str(getattr(zone, "key", None) or zone.tzname(None) or "UTC")


def local_to_utc(wall: datetime, zone: tzinfo, field: str) -> datetime:
    """The wall-clock time ``wall`` (naive) in ``zone`` as an aware UTC time;
    :class:`~openlfr.governance.authz.RuleError` naming ``field`` when it does not exist there
    (clocks go forward) or happens twice (clocks go back)."""
    shown = wall.strftime("%Y-%m-%d %H:%M")
    name = zone_label(zone)
    first, second = wall.replace(tzinfo=zone, fold=0), wall.replace(tzinfo=zone, fold=1)
    try:
        back = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
        if back != wall:
            raise RuleError(f"{field} {shown} does not exist in {name}: the clocks go "
                            "forward then, skipping it; choose a time outside that hour",
                            field=field)
        if first.utcoffset() != second.utcoffset():
            raise RuleError(f"{field} {shown} happens twice in {name}: the clocks go back "
                            f"then ({first:%Z} and {second:%Z}); choose a time outside that "
                            "hour", field=field)
        return to_utc(first, field, shown)
    except OverflowError:
        raise RuleError(f"{field} {shown}: too far in the past or the future",
                        field=field) from None


def form_time(text: str, field: str, now: datetime | None = None,
              zone: tzinfo = UTC) -> datetime:
    """A time from a console form, whose ``datetime-local`` inputs are labelled with the
    zone of people and send no zone (``2026-12-01T08:00``): such a value is read as a
    wall-clock time in ``zone`` (:func:`local_to_utc`); anything else goes to
    :func:`parse_time` as it is."""
    raw = text.strip()
    if _FORM_TIME.match(raw):
        try:
            wall = datetime.fromisoformat(raw)
        except ValueError:  # 2026-02-30T08:00
            return parse_time(raw + "Z", field, now)
        return local_to_utc(wall, zone, field)
    return parse_time(raw, field, now)


def form_value(when: datetime | None, zone: tzinfo = UTC) -> str:
    """``when`` as the value of a ``datetime-local`` input in ``zone`` (``2026-12-01T08:00``);
    empty for none."""
    if when is None:
        return ""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(zone).strftime("%Y-%m-%dT%H:%M")
