"""Live alerts for the operator console: Server-Sent Events, pushed, never polled.

:class:`AlertBroker` is thread-safe. The background jobs' alert listener (a camera thread,
after the alert has been stored, encrypted and audited) calls :meth:`AlertBroker.publish`;
each open ``/console/alerts/stream`` connection has its own bounded asyncio queue, fed with
``loop.call_soon_threadsafe``. A subscriber receives only alerts it may read
(``Perm.ALERT_READ``) and, when it watches one deployment, only that deployment's.

**Events carry no biometric data**: ids, camera name, score, threshold, status and times only.
The page then fetches the alert's card and its images by URL, through routes that check the
permission and audit each view of a crop.

The stream also carries ``health`` events (camera state, frames per second, drops of the
running deployments), pushed by the server every few seconds, and keep-alive comments. It ends
when the client goes away, when the viewer's session ends (re-checked every
:data:`SESSION_RECHECK` seconds), or when the server shuts down (:func:`shutdown_streams`,
called by ``openlfr serve`` as soon as it is asked to stop, so no stream holds up a graceful
shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from openlfr.governance.authz import Actor, Perm, allowed
from openlfr.store.db import Database

log = logging.getLogger("openlfr.web.events")

#: Events waiting for a slow client before it is told to reload (``resync``).
QUEUE_SIZE = 100
#: Seconds between keep-alive comments and between health events.
KEEPALIVE = 15.0
HEALTH_EVERY = 2.0
SESSION_RECHECK = 30.0
#: The client's reconnection delay (milliseconds), sent in the stream's first line.
RETRY_MS = 3000

_CLOSE = object()
_RESYNC = object()
_BROKERS: weakref.WeakSet[AlertBroker] = weakref.WeakSet()


@dataclass(eq=False)
class Subscription:
    actor: Actor
    deployment_id: int | None
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Any] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    overflowed: bool = False

    def wants(self, event: dict[str, Any]) -> bool:
        if not allowed(self.actor, Perm.ALERT_READ):
            return False
        return self.deployment_id is None or event.get("deployment_id") == self.deployment_id

    def _put(self, item: Any) -> None:  # on the subscriber's loop
        if item is _CLOSE:
            while not self.queue.empty():  # make room: closing wins over pending events
                self.queue.get_nowait()
            self.queue.put_nowait(item)
            return
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(_RESYNC)

    def offer(self, item: Any) -> None:
        """Hand ``item`` to this subscriber from any thread."""
        with contextlib.suppress(RuntimeError):  # a closed loop: the connection is gone
            self.loop.call_soon_threadsafe(self._put, item)


def alert_event(db: Database, row_id: int) -> dict[str, Any] | None:
    """What the stream says about a stored alert: no pixels, no template, no subject."""
    from openlfr.store.models import Alert, Deployment

    with db.reading() as s:
        row = s.get(Alert, row_id)
        if row is None:
            return None
        dep = s.get(Deployment, row.deployment_id)
        return {
            "type": "alert", "id": row.id, "label": "possible match",
            "deployment_id": row.deployment_id,
            "deployment": dep.name if dep is not None else "",
            "camera": row.camera, "score": round(float(row.score), 4),
            "threshold": round(float(row.threshold), 4), "revision": int(row.revision),
            "status": row.status.value, "seen_at": row.seen_at.isoformat(),
            "url": f"/console/alerts/{row.id}",
            "card_url": f"/console/alerts/{row.id}/card",
            "crop_url": f"/console/alerts/{row.id}/crop.jpg?r={int(row.revision)}",
        }


class AlertBroker:
    """Fans stored alerts out to the open streams (see the module)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self.closed = False
        _BROKERS.add(self)

    # -- subscribers (the event loop) ---------------------------------------------------------

    def subscribe(self, actor: Actor, deployment_id: int | None = None) -> Subscription:
        sub = Subscription(actor, deployment_id, asyncio.get_running_loop())
        with self._lock:
            if self.closed:
                sub.queue.put_nowait(_CLOSE)
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)

    # -- publishers (any thread) --------------------------------------------------------------

    def on_alert(self, row_id: int, _alert: Any = None) -> None:
        """The background jobs' alert listener: ``(row id, pipeline alert)``."""
        try:
            event = alert_event(self.db, row_id)
        except Exception:
            log.exception("reading alert %s for the live stream", row_id)
            return
        if event is not None:
            self.publish(event)

    def publish(self, event: dict[str, Any]) -> int:
        """Send ``event`` (JSON-ready, no biometric data) to every subscriber allowed to see
        it; returns how many."""
        with self._lock:
            subs = [s for s in self._subs if s.wants(event)]
        for sub in subs:
            sub.offer(dict(event))
        return len(subs)

    def close(self) -> None:
        """End every stream (server shutdown); later subscribers end at once."""
        with self._lock:
            self.closed = True
            subs = list(self._subs)
        for sub in subs:
            sub.offer(_CLOSE)


_SHUTDOWN = threading.Event()


def shutdown_streams() -> None:
    """End the live streams of every broker in this process (graceful server shutdown); other
    long answers (the camera preview) watch :func:`shutting_down`."""
    _SHUTDOWN.set()
    for broker in list(_BROKERS):
        broker.close()


def shutting_down() -> bool:
    return _SHUTDOWN.is_set()


def sse(event: str, data: dict[str, Any] | list[Any], event_id: int | None = None) -> str:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


async def stream(broker: AlertBroker, sub: Subscription,
                 health: Callable[[], list[dict[str, Any]]] | None = None,
                 still_signed_in: Callable[[], bool] | None = None,
                 ) -> AsyncIterator[str]:
    """The text of one ``text/event-stream`` connection."""
    loop = asyncio.get_running_loop()
    try:
        yield f"retry: {RETRY_MS}\n: connected\n\n"
        if health is not None:
            yield sse("health", await run_in_threadpool(health))
        next_health = loop.time() + HEALTH_EVERY
        next_ping = loop.time() + KEEPALIVE
        next_check = loop.time() + SESSION_RECHECK
        while True:
            now = loop.time()
            wait = min(next_ping, next_check, next_health if health else next_ping) - now
            try:
                item = await asyncio.wait_for(sub.queue.get(), timeout=max(wait, 0.01))
            except TimeoutError:
                item = None
            if item is _CLOSE:
                yield sse("bye", {"reason": "the server is stopping"})
                return
            if item is _RESYNC:
                yield sse("resync", {"reason": "too many alerts at once: reload the page"})
                sub.overflowed = False
                continue
            if isinstance(item, dict):
                yield sse(str(item.get("type", "message")), item, item.get("id"))
            now = loop.time()
            # checked after events too: a steady flow of alerts must not keep a stream open
            # after its viewer has signed out
            if still_signed_in is not None and now >= next_check:
                next_check = now + SESSION_RECHECK
                if not await run_in_threadpool(still_signed_in):
                    yield sse("bye", {"reason": "signed out"})
                    return
            if health is not None and now >= next_health:
                next_health = now + HEALTH_EVERY
                yield sse("health", await run_in_threadpool(health))
            elif now >= next_ping:
                next_ping = now + KEEPALIVE
                yield ": keep-alive\n\n"
    finally:
        broker.unsubscribe(sub)
