"""Rendering pages: the Jinja2 environment, its filters, and the CSRF cookie and token; and
JSON-lines and CSV downloads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates

from openlfr.governance.alerts import MAX_STOP_MINUTES
from openlfr.governance.authz import Actor
from openlfr.governance.times import zone_label
from openlfr.governance.views import ETHNICITY_WORDS, PERM_WORDS, label, with_article, words
from openlfr.transparency import shared
from openlfr.web import security
from openlfr.web.deps import csrf_cookie, is_https, session_cookie, web

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")


def _stamp(when: datetime, zone: tzinfo) -> datetime:
    """``when`` (aware; a naive value is UTC, as stored) in ``zone``."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return when.astimezone(zone)
    except OverflowError:  # the edge of the calendar: shown in UTC, labelled so
        return when.astimezone(UTC)


def _label(local: datetime) -> str:
    """The zone beside a time: ``UTC``, or the abbreviation (it tells summer from winter
    time) and the IANA name: ``BST (Europe/London)``."""
    name = zone_label(local.tzinfo or UTC)
    abbr = local.tzname() or name
    return name if abbr == name else f"{abbr} ({name})"


def _as_time(value: datetime | str | None) -> datetime | None:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return value


def format_date(value: datetime | str | None, zone: tzinfo = UTC,
                with_time: bool = True, seconds: bool = False) -> str:
    """A time as people read it, in the zone of people and labelled with it:
    ``24 Nov 2026 14:05 UTC``, ``24 Nov 2026 14:05 GMT (Europe/London)``; the date alone
    (in that zone) with ``with_time=False``; ``seconds`` adds them (the audit log). Also takes
    an ISO string (a service's export)."""
    when = _as_time(value)
    if when is None:
        return "—" if not value else str(value)
    local = _stamp(when, zone)
    if not with_time:
        return local.strftime("%d %b %Y")
    shown = local.strftime("%d %b %Y %H:%M:%S" if seconds else "%d %b %Y %H:%M")
    return f"{shown} {_label(local)}"


def format_clock(value: datetime | str | None, zone: tzinfo = UTC) -> str:
    """The time of day with seconds: ``14:05:09 BST (Europe/London)``."""
    when = _as_time(value)
    if when is None:
        return "—"
    local = _stamp(when, zone)
    return f"{local:%H:%M:%S} {_label(local)}"


def format_span(start: datetime | None, end: datetime | None, zone: tzinfo = UTC) -> str:
    """``24 Nov 2026, 15:48–20:48 UTC`` on one day (in the zone of people), else both ends
    in full: ``24 Nov 2026 22:00 – 25 Nov 2026 04:00 GMT (Europe/London)``."""
    if start is None:
        return "—"
    if end is None:
        return f"{format_date(start, zone)} – now"
    a, b = _stamp(start, zone), _stamp(end, zone)
    if a.date() == b.date() and _label(a) == _label(b):
        return f"{a:%d %b %Y}, {a:%H:%M}–{b:%H:%M} {_label(b)}"
    if _label(a) == _label(b):
        return f"{a:%d %b %Y %H:%M} – {b:%d %b %Y %H:%M} {_label(b)}"
    return f"{a:%d %b %Y %H:%M} {a.tzname()} – {b:%d %b %Y %H:%M} {_label(b)}"


def _sentence(value: str | None) -> str:
    return "" if not value else value[:1].upper() + value[1:]


def _num(value: float | int | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def _rate(value: float | None) -> str:
    """A small rate in words the public can read: ``1 in 12,000`` (and ``0``)."""
    if value is None:
        return "—"
    if value <= 0:
        return "0"
    return f"1 in {round(1 / value):,}"


#: Plurals that do not just add an "s".
IRREGULAR = {"person": "people", "entry": "entries", "reply": "replies", "match": "matches",
             "this": "these"}


def _noun(value: float | int | None, singular: str, plural: str | None = None) -> str:
    """The noun alone in the number ``value`` asks for: ``person`` for 1, else ``people``
    (for a count shown apart, e.g. in a large figure)."""
    if value == 1:
        return singular
    return plural or IRREGULAR.get(singular, singular + "s")


def _plural(value: float | int | None, singular: str, plural: str | None = None) -> str:
    """A count with its noun in the right number: ``1 person``, ``2 people``, ``0 alerts``,
    ``1,200 deployments`` (the count formatted as by ``num``)."""
    return f"{_num(value)} {_noun(value, singular, plural)}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def make_templates(zone: tzinfo = UTC) -> Jinja2Templates:
    """The pages' templates; every time on them is shown in ``zone`` (the setting
    ``OPENLFR_TIME_ZONE``) through the ``date`` filter and the ``span`` and ``clock``
    functions, and ``zone_name`` names it (for form labels)."""
    templates = Jinja2Templates(directory=str(TEMPLATES))
    env = templates.env
    env.autoescape = True

    def date(value: datetime | str | None, with_time: bool = True,
             seconds: bool = False) -> str:
        return format_date(value, zone, with_time, seconds)

    def span(start: datetime | None, end: datetime | None) -> str:
        return format_span(start, end, zone)

    def clock(value: datetime | str | None) -> str:
        return format_clock(value, zone)

    env.filters.update(date=date, num=_num, rate=_rate, pct=_pct, sentence=_sentence,
                       plural=_plural, noun=_noun, words=words, article=with_article)
    env.filters["label"] = label
    env.filters["may_do"] = lambda perm: PERM_WORDS.get(str(getattr(perm, "value", perm)),
                                                        words(perm))
    env.globals.update(span=span, clock=clock, zone_name=zone_label(zone),
                       ethnicity_choices=[(str(k), v) for k, v in ETHNICITY_WORDS.items()],
                       max_stop_minutes=MAX_STOP_MINUTES)
    env.globals["shared_words"] = {"what": shared.WHAT_WORDS, "purpose": shared.PURPOSE_WORDS,
                                   "recipient": shared.RECIPIENT_WORDS}
    return templates


def people_zone(request: Request) -> tzinfo:
    """The zone in which people enter and read times (``OPENLFR_TIME_ZONE``)."""
    return web(request).system.settings.zone


def safe_next(value: str | None, default: str = "/console") -> str:
    """A redirect target on this site only (no ``//host``, no scheme, no backslash)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(c in value for c in "\r\n\t"):
        return default
    return value


def csrf_nonce(request: Request) -> tuple[str, bool]:
    """This request's CSRF nonce and whether it is new (and must be set as a cookie)."""
    fresh = getattr(request.state, "csrf_nonce", None)
    if fresh:
        return fresh, True
    nonce = request.cookies.get(csrf_cookie(request))
    if nonce and 20 <= len(nonce) <= 100:
        return nonce, False
    request.state.csrf_nonce = security.new_nonce()
    return request.state.csrf_nonce, True


def rotate_csrf(request: Request) -> str:
    """A new nonce (after sign-in), so a token seen before cannot be replayed."""
    request.state.csrf_nonce = security.new_nonce()
    return str(request.state.csrf_nonce)


def bound_session(request: Request) -> str:
    """The session the CSRF token is bound to: one started by this very request, else the
    session cookie the request came with (empty when signed out)."""
    fresh = getattr(request.state, "session_cookie", None)
    if fresh is not None:
        return str(fresh)
    return request.cookies.get(session_cookie(request)) or ""


def set_csrf_cookie(request: Request, response: Response) -> str:
    nonce, fresh = csrf_nonce(request)
    if fresh:
        response.set_cookie(csrf_cookie(request), nonce, httponly=True, samesite="strict",
                            secure=is_https(request), path="/")
    return security.csrf_token(web(request).secret, nonce, bound_session(request))


def current_csrf_token(request: Request) -> str:
    nonce, _ = csrf_nonce(request)
    return security.csrf_token(web(request).secret, nonce, bound_session(request))


def render(request: Request, name: str, context: dict[str, Any] | None = None, *,
           status: int = 200, actor: Actor | None = None) -> HTMLResponse:
    ctx: dict[str, Any] = dict(context or {})
    ctx.setdefault("actor", actor)
    ctx["csrf_token"] = current_csrf_token(request)
    response = web(request).templates.TemplateResponse(request, name, ctx, status_code=status)
    set_csrf_cookie(request, response)
    return response


def jsonl_download(lines: Iterator[str], filename: str) -> StreamingResponse:
    """Lines streamed as a JSON-lines file to save (never cached)."""
    return StreamingResponse(lines, media_type="application/x-ndjson",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                      "Cache-Control": "no-store"})


def csv_download(lines: Iterator[str], filename: str) -> StreamingResponse:
    """Lines streamed as a CSV file to save (never cached)."""
    return StreamingResponse(lines, media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                      "Cache-Control": "no-store"})
