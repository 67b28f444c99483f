"""Security headers, CSRF tokens and rate limits.

* Every response carries a strict Content-Security-Policy (only this origin; no inline script or
  style), ``frame-ancestors 'none'``, ``X-Content-Type-Options: nosniff``, a referrer policy and
  ``Cache-Control: no-store`` (except static assets).
* Over HTTPS (a proxy's ``X-Forwarded-Proto: https`` with ``--behind-proxy``), also
  ``Strict-Transport-Security``: the browser then refuses plain HTTP to this site for a year.
* CSRF: a random nonce lives in an HttpOnly, SameSite=Strict cookie; the token a form or a
  ``fetch`` sends back (field ``csrf_token`` or header ``X-CSRF-Token``) is
  HMAC-SHA256(web secret, nonce and the SHA-256 of the session cookie): bound to the session,
  so a nonce and token pair obtained elsewhere (e.g. a cookie planted by a neighbouring host)
  does not work with someone else's session. A state-changing request whose ``Origin`` (or,
  without one, ``Referer``) is another site is refused before anything else. Over HTTPS both
  cookies carry the ``__Host-`` prefix. Requests authenticated by a bearer token carry no
  ambient credential and need no CSRF token.
* Rate limits: sliding windows in memory, per key (IP address, user name), thread-safe.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

CSRF_COOKIE = "openlfr_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

SECURITY_HEADERS: dict[str, str] = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    # not "no-referrer": under it a browser sends "Origin: null" with a form's POST, and the
    # Origin check could not tell our own forms from a sandboxed attacker's; other sites still
    # get no referrer at all
    "referrer-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
#: Sent only over HTTPS (a browser ignores it over plain HTTP).
HSTS = "max-age=31536000"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class SecurityHeadersMiddleware:
    """Pure ASGI (works with streamed responses such as Server-Sent Events)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                if https and b"strict-transport-security" not in present:
                    headers.append((b"strict-transport-security", HSTS.encode()))
                if b"cache-control" not in present:
                    cache = "public, max-age=3600" if static else "no-store"
                    headers.append((b"cache-control", cache.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


# -- CSRF -------------------------------------------------------------------------------------

def new_nonce() -> str:
    return secrets.token_urlsafe(32)


def csrf_token(secret: bytes, nonce: str, session: str = "") -> str:
    """The token for ``nonce`` within ``session`` (the session cookie's value; empty when
    signed out)."""
    bound = hashlib.sha256(session.encode()).hexdigest()
    return hmac.new(secret, f"csrf:{nonce}:{bound}".encode(), hashlib.sha256).hexdigest()


def csrf_valid(secret: bytes, nonce: str | None, token: str | None, session: str = "") -> bool:
    if not nonce or not token:
        return False
    return hmac.compare_digest(csrf_token(secret, nonce, session), token)


def _origin_parts(value: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https"
                                                          else 80)


def same_origin(own: str, origin: str | None, referer: str | None) -> bool:
    """Whether a state-changing request comes from this site: its ``Origin`` (or, without
    one, its ``Referer``) must be ``own`` (scheme, host and port). A request with neither (a
    script, an old client) passes: the CSRF token still has to be right."""
    claimed = origin if origin is not None else referer
    if claimed is None or claimed == "":
        return origin is None
    theirs = _origin_parts(claimed)  # "null" (a sandboxed frame, a file) is never this site
    return theirs is not None and theirs == _origin_parts(own)


# -- rate limits ------------------------------------------------------------------------------

class RateLimiter:
    """At most ``limit`` events per key in any ``window`` seconds."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic,
                 ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _trim(self, key: str, now: float) -> deque[float]:
        q = self._events.setdefault(key, deque())
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def blocked(self, key: str) -> bool:
        """Whether ``key`` has used up its events (without counting a new one)."""
        with self._lock:
            return len(self._trim(key, self.clock())) >= self.limit

    def hit(self, key: str) -> bool:
        """Count an event; False when it is over the limit (and then it is not counted)."""
        with self._lock:
            now = self.clock()
            q = self._trim(key, now)
            if len(q) >= self.limit:
                return False
            q.append(now)
            if len(self._events) > 100_000:  # bound memory under a flood of keys
                for k in [k for k, v in self._events.items() if not v][:50_000]:
                    del self._events[k]
            return True

    def retry_after(self, key: str) -> int:
        with self._lock:
            q = self._trim(key, self.clock())
            if len(q) < self.limit:
                return 0
            return max(1, int(q[0] + self.window - self.clock()) + 1)

    def reset(self, key: str) -> None:
        with self._lock:
            self._events.pop(key, None)

    def undo(self, key: str) -> None:
        """Take back the newest event of ``key`` (an attempt counted in advance that did not
        fail after all)."""
        with self._lock:
            q = self._events.get(key)
            if q:
                q.pop()


class Limits:
    """The rate limits of one app (fresh per app, so tests do not share state)."""

    def __init__(self) -> None:
        # failed sign-ins: per user name and per client address
        self.login_name = RateLimiter(5, 15 * 60)
        self.login_ip = RateLimiter(20, 15 * 60)
        # residents' questions: per client address
        self.question_ip = RateLimiter(5, 60 * 60)


# -- request size ---------------------------------------------------------------------------

#: Largest request body per path prefix (first match); the public forms are small.
BODY_LIMITS: tuple[tuple[str, int], ...] = (("/public/", 32 * 1024), ("/login", 16 * 1024),
                                            ("/api/v1/auth/", 16 * 1024), ("", 32 * 1024 * 1024))


class BodyLimitMiddleware:
    """Answer 413 to a request body over its limit, before it is read into memory."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        limit = next(n for prefix, n in BODY_LIMITS if path.startswith(prefix))
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = True
                if too_big:
                    await _too_large(send, limit)
                    return
        seen = 0
        over = False  # the body (sent without a length) went over the limit
        started = False

        async def limited() -> Message:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    raise _TooLarge
            return message

        async def answer(message: Message) -> None:
            # The framework may catch the error raised while it reads the body and answer
            # it itself ("error parsing the body", 400): the answer is 413 all the same.
            nonlocal started
            if over:
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _too_large(send, limit)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, answer)
        except _TooLarge:
            if not started:
                await _too_large(send, limit)


class _TooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    body = f'{{"detail":"the request is too large (at most {limit} bytes)"}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
