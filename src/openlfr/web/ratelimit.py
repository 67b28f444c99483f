"""A per-address limit on the public routes (``/public…`` and ``/api/v1/public/…``): anyone
may read them without an account, so one address must not be able to keep the server busy.

Each client address (:func:`openlfr.web.deps.client_ip`: the proxy's own ``X-Forwarded-For``
entry when ``trust_proxy`` is set) has a token bucket of :data:`BURST` requests, refilled at
:data:`RATE` per second. An empty bucket is answered ``429 Too Many Requests`` with a
``Retry-After`` (whole seconds), before any route runs.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

#: Requests one address may make at once, and per second over time (a page and its chart are
#: two requests; a reader browsing never comes near).
BURST = 60
RATE = 1.0
#: The paths the limit applies to.
PUBLIC_PREFIXES = ("/public", "/api/v1/public")
MAX_KEYS = 100_000


class TokenBucket:
    """Per key, at most ``burst`` events at once, refilled at ``rate`` per second."""

    def __init__(self, burst: int = BURST, rate: float = RATE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if burst < 1 or rate <= 0:
            raise ValueError("a token bucket needs burst >= 1 and rate > 0")
        self.burst, self.rate, self.clock = burst, rate, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, when)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take a token: 0.0 when allowed, else the seconds until one is available."""
        with self._lock:
            now = self.clock()
            tokens, when = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - when) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > MAX_KEYS:
                self._forget_full(now)
            return 0.0

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled (they would start full anyway)."""
        full = [k for k, (t, w) in self._buckets.items()
                if t + (now - w) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]


def is_public(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") or path.startswith(p + ".")
               for p in PUBLIC_PREFIXES)


class PublicRateLimitMiddleware:
    """Answer 429 (with ``Retry-After``) to an address over its public-route budget."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_public(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        from openlfr.web.deps import client_ip, web

        request = Request(scope)
        wait = web(request).public_limit.take(client_ip(request))
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        retry = max(1, math.ceil(wait))
        body = json.dumps({"detail": "too many requests from your address: try again in "
                                     f"{retry} s"}).encode()
        await send({"type": "http.response.start", "status": 429, "headers": [
            (b"content-type", b"application/json"), (b"retry-after", str(retry).encode()),
            (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
