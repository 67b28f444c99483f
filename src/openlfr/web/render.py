"""Rendering pages: the Jinja2 environment, its filters, and the CSRF cookie and token; and
JSON-lines and CSV downloads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates

from openlfr.governance.authz import Actor
from openlfr.governance.views import label
from openlfr.transparency import shared
from openlfr.web import security
from openlfr.web.deps import csrf_cookie, is_https, session_cookie, web

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")


def _date(value: datetime | None, with_time: bool = True) -> str:
    if value is None:
        return "—"
    return value.strftime("%d %b %Y %H:%M UTC" if with_time else "%d %b %Y")


def _span(start: datetime | None, end: datetime | None) -> str:
    """``24 Nov 2026, 15:48–20:48 UTC`` on one day, else both dates in full."""
    if start is None:
        return "—"
    if end is None:
        return f"{_date(start)} – now"
    if start.date() == end.date():
        return f"{start:%d %b %Y}, {start:%H:%M}–{end:%H:%M} UTC"
    return f"{start:%d %b %Y %H:%M} – {end:%d %b %Y %H:%M} UTC"


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


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES))
    env = templates.env
    env.autoescape = True
    env.filters.update(date=_date, num=_num, rate=_rate, pct=_pct, sentence=_sentence,
                       plural=_plural, noun=_noun)
    env.filters.setdefault("label", label)
    env.globals["span"] = _span
    env.globals["shared_words"] = {"what": shared.WHAT_WORDS, "purpose": shared.PURPOSE_WORDS,
                                   "recipient": shared.RECIPIENT_WORDS}
    return templates


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
