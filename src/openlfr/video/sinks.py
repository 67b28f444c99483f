"""Where alerts go. The pipeline calls an :class:`AlertSink` once for each alert and once for
each update of it; nothing else of a sighting ever leaves the pipeline.

A deployment's live run uses :class:`openlfr.governance.alerts.AlertRecorder`, which stores
each alert (encrypted, audited) and hands it on to the operators' console; ``openlfr watch``
without a deployment prints through a :class:`CallbackSink`; :class:`SerialSink` hands alerts
from several camera threads to sinks one at a time; :class:`MemorySink` keeps them for tests
and benchmarks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from openlfr.video.types import Alert


class AlertSink(Protocol):
    def publish(self, alert: Alert) -> None:
        """Take one alert (``alert.revision == 0``) or an update of it (``revision > 0``)."""
        ...


class MemorySink:
    """Keeps every alert in a list (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.alerts: list[Alert] = []

    def publish(self, alert: Alert) -> None:
        with self._lock:
            self.alerts.append(alert)

    def firsts(self) -> list[Alert]:
        with self._lock:
            return [a for a in self.alerts if a.revision == 0]


class CallbackSink:
    """Calls a function for each alert."""

    def __init__(self, fn: Callable[[Alert], None]) -> None:
        self._fn = fn

    def publish(self, alert: Alert) -> None:
        self._fn(alert)


class SerialSink:
    """Hands alerts from any number of camera threads to sinks one at a time, in order.

    A sink that raises does not stop the others or the camera; the error is reported through
    ``on_error``.
    """

    def __init__(self, sinks: Sequence[AlertSink],
                 on_error: Callable[[AlertSink, Exception], None] | None = None) -> None:
        self._sinks = list(sinks)
        self._lock = threading.Lock()
        self._on_error = on_error

    def publish(self, alert: Alert) -> None:
        with self._lock:
            for sink in self._sinks:
                try:
                    sink.publish(alert)
                except Exception as exc:  # one bad sink must not silence the others
                    if self._on_error is not None:
                        self._on_error(sink, exc)
