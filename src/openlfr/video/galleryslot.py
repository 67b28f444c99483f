"""The gallery a live run searches, shared by all its cameras.

A run (the centre's :class:`openlfr.governance.live.DeploymentRun`, a node's
:class:`openlfr.nodes.noderun.NodeRun`) holds one :class:`GallerySlot`: its camera pipelines
are made from what the slot holds, a new gallery (a subject added or removed while the run goes
on) replaces it in every pipeline under one lock, and the templates it held are overwritten in
memory as soon as no pipeline searches them; when the run ends the slot is emptied the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from openlfr.video.pipeline import CameraPipeline
from openlfr.watchlist.gallery import Gallery

Held = tuple[Gallery, dict[str, str]]
P = TypeVar("P")


class GallerySlot:
    """A run's gallery and display names (see the module). Thread-safe."""

    def __init__(self, gallery: Gallery | None = None,
                 names: dict[str, str] | None = None) -> None:
        self._lock = threading.Lock()
        self._held: Held | None = None if gallery is None else (gallery, dict(names or {}))
        self._pipelines: list[CameraPipeline] = []

    def held(self) -> Held | None:
        with self._lock:
            return self._held

    def size(self) -> tuple[int, int]:
        """(subjects, templates) of the gallery searched now; (0, 0) when empty."""
        current = self.held()
        return (0, 0) if current is None else (len(current[0].subjects()), len(current[0]))

    def fill(self, load: Callable[[], Held]) -> Held:
        """What the slot holds; ``load()`` when it holds nothing yet."""
        with self._lock:
            if self._held is None:
                gallery, names = load()
                self._held = (gallery, dict(names))
            return self._held

    def attach(self, make: Callable[[Gallery, dict[str, str]], list[tuple[P, CameraPipeline]]]
               ) -> list[tuple[P, CameraPipeline]]:
        """The run's pipelines, made by ``make(gallery, names)`` from what the slot holds, and
        given every later :meth:`replace` (made under the lock: none misses a swap)."""
        with self._lock:
            if self._held is None:
                raise RuntimeError("the run has no gallery to search")
            made = make(*self._held)
            self._pipelines = [p for _, p in made]
            return made

    def replace(self, gallery: Gallery, names: dict[str, str]) -> tuple[int, int]:
        """Search ``gallery`` from now on, in every camera (atomically per camera; see
        :meth:`openlfr.video.pipeline.CameraPipeline.replace_gallery`); the old gallery's
        templates are then overwritten in memory. Returns the old (subjects, templates)."""
        with self._lock:
            old = self._held
            self._held = (gallery, dict(names))
            for pipeline in self._pipelines:
                pipeline.replace_gallery(gallery, names)
        if old is None:
            return (0, 0)
        before = (len(old[0].subjects()), len(old[0]))
        if old[0] is not gallery:
            old[0].clear()
        return before

    def empty(self) -> None:
        """The run is over: no pipeline is given anything more, and the templates leave
        memory."""
        with self._lock:
            current, self._held = self._held, None
            self._pipelines = []
        if current is not None:
            current[0].clear()
