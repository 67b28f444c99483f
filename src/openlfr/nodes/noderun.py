"""A deployment's run on a node: the video pipeline under the rules the desired state document
carries (no database here).

:func:`parse_deployments` reads a node's desired state document (:mod:`openlfr.nodes.desired`)
into :class:`DeploymentEntry` values and checks the node's own rules (:func:`refusal`): a
deployment past its ``planned_end`` never runs, nor one whose threshold is below its model's
floor as the model registry declares it (:func:`openlfr.vision.registry.spec_for_model_id`).

:class:`NodeRun` runs :class:`openlfr.video.runner.Runner` over the deployment's cameras in a
background thread, with its gallery in memory only, until it is stopped, its window ends, or
``allowed()`` (the node's lease) stops holding. Its alert sink hands every alert on only while
``allowed()`` holds: a match made a moment after a lease lapsed is dropped, not sent.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from openlfr.errors import IntegrityFailure
from openlfr.redact import redact_text
from openlfr.video.bestshot import ShotPolicy
from openlfr.video.galleryslot import GallerySlot
from openlfr.video.pipeline import CameraPipeline, PipelineConfig
from openlfr.video.runner import Runner, close_quietly
from openlfr.video.sources import CaptureSource, open_sources
from openlfr.video.stats import CameraFigures
from openlfr.video.types import Alert
from openlfr.video.zones import CameraZones
from openlfr.vision import registry
from openlfr.watchlist.gallery import Gallery

log = logging.getLogger("openlfr.nodes.noderun")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CameraEntry:
    name: str
    source: str  # sealed to the node (URL-safe base64)
    zones: tuple[tuple[tuple[float, float], ...], ...]
    masks: tuple[tuple[tuple[float, float], ...], ...]


@dataclass(frozen=True)
class DeploymentEntry:
    """One deployment of the desired state document."""

    id: int
    name: str
    threshold: float
    model_id: str
    planned_end: datetime
    gallery_object: str
    fingerprint: str
    cameras: tuple[CameraEntry, ...]


def _polygons(value: Any) -> tuple[tuple[tuple[float, float], ...], ...]:
    return tuple(tuple((float(x), float(y)) for x, y in poly) for poly in value or ())


def parse_deployments(document: dict[str, Any]) -> dict[int, DeploymentEntry]:
    """The deployments of a parsed document, by id; :class:`IntegrityFailure` if malformed."""
    out: dict[int, DeploymentEntry] = {}
    try:
        for d in document.get("deployments", []):
            end = datetime.fromisoformat(str(d["planned_end"]))
            if end.tzinfo is None:
                end = end.replace(tzinfo=UTC)
            entry = DeploymentEntry(
                id=int(d["id"]), name=str(d.get("name", "")), threshold=float(d["threshold"]),
                model_id=str(d["model_id"]), planned_end=end,
                gallery_object=str(d["gallery"]["object"]),
                fingerprint=str(d["gallery"]["fingerprint"]),
                cameras=tuple(CameraEntry(str(c["name"]), str(c["source"]),
                                          _polygons(c.get("zones")), _polygons(c.get("masks")))
                              for c in d.get("cameras", [])))
            out[entry.id] = entry
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityFailure(f"the desired state is malformed: {type(exc).__name__}"
                               ) from None
    return out


def model_floor(model_id: str) -> float | None:
    """The floor of a built-in model (None: unknown here, or it must be calibrated first)."""
    try:
        return registry.spec_for_model_id(model_id).default_floor
    except registry.ModelError:
        return None


def refusal(entry: DeploymentEntry, now: datetime) -> str | None:
    """Why this node will not run ``entry`` now (None: it may)."""
    if now >= entry.planned_end:
        return "its window has ended"
    if not entry.cameras:
        return "it has no camera on this node"
    floor = model_floor(entry.model_id)
    if floor is None:
        return f"model {entry.model_id!r} is not one this node can check the floor of"
    if entry.threshold < floor:
        return (f"its threshold {entry.threshold:.2f} is below the model's floor "
                f"{floor:.2f}")
    return None


@dataclass(frozen=True)
class NodeRunOptions:
    """How a node reads and analyses its cameras."""

    realtime: bool = False
    loop: bool = False
    detect_fps: float = 15.0
    workers: int | None = None
    max_embeddings: int = 3


AlertOut = Callable[["NodeRun", Alert], None]


class _Sink:
    def __init__(self, run: NodeRun) -> None:
        self.run = run

    def publish(self, alert: Alert) -> None:
        run = self.run
        if run.stopping or not run.allowed():
            run.dropped_alerts += 1  # no lease (or stopping): never handed on
            return
        run.send(run, alert)


class NodeRun:
    """One run of one deployment on the node (see the module)."""

    def __init__(self, entry: DeploymentEntry, sources: list[tuple[str, str]],
                 gallery: Gallery, names: dict[str, str], *, send: AlertOut,
                 allowed: Callable[[], bool], options: NodeRunOptions | None = None,
                 clock: Clock = utcnow,
                 on_end: Callable[[NodeRun], None] | None = None) -> None:
        self.entry = entry
        self.deployment_id = entry.id
        self.token = uuid.uuid4().hex[:12]  # this run's part of its alerts' ids
        self.options = options or NodeRunOptions()
        self.send = send
        self.allowed = allowed
        self.clock = clock
        self.on_end = on_end
        self._sources_text = sources
        self._gallery = GallerySlot(gallery, names)
        self._runner: Runner | None = None
        self._sources: list[CaptureSource] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stopping = False
        self.end_reason: str | None = None
        self.error: str | None = None
        self.dropped_alerts = 0
        self.final: list[CameraFigures] = []

    # -- RunHandle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._background, daemon=True,
                                        name=f"lfr-node-deployment-{self.deployment_id}")
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, reason: str | None = None, actor: Any = None, *,
             why: str | None = None) -> None:
        self.stopping = True
        if self.end_reason is None:
            self.end_reason = reason or why or "no longer in the desired state"
        self._stop.set()
        if self._runner is not None:
            self._runner.stop(interrupted=True)

    def join(self, timeout: float | None = None) -> object:
        if self._thread is not None:
            self._thread.join(timeout)
        return None

    def gallery_size(self) -> tuple[int, int]:
        return self._gallery.size()

    def reload_gallery(self, gallery: Gallery, names: dict[str, str]) -> tuple[int, int]:
        return self._gallery.replace(gallery, names)

    # -- figures -----------------------------------------------------------------------------

    def figures(self) -> list[CameraFigures]:
        runner = self._runner
        return runner.figures() if runner is not None else list(self.final)

    @property
    def elapsed(self) -> float:
        """Seconds this run has analysed its cameras (0 before it started)."""
        runner = self._runner
        return runner.elapsed if runner is not None else 0.0

    # -- the run -----------------------------------------------------------------------------

    def _until(self) -> bool:
        if self._stop.is_set():
            return True
        if self.clock() >= self.entry.planned_end:
            self.end_reason = self.end_reason or "its window has ended"
            return True
        if not self.allowed():
            self.end_reason = self.end_reason or "lease lost"
            self.stopping = True
            return True
        return False

    def _background(self) -> None:
        try:
            self._run()
        except Exception as exc:  # its words go to the log and the centre's audit: no secret
            self.error = redact_text(str(exc))
            log.error("deployment %d: the run failed: %s", self.deployment_id, self.error)
            self.end_reason = self.end_reason or "failed"
        finally:
            self._gallery.empty()  # the templates leave memory with the run
            if self.on_end is not None:
                try:
                    self.on_end(self)
                except Exception:
                    log.exception("deployment %d: end callback", self.deployment_id)

    def _run(self) -> None:
        from openlfr.vision.engine import get_engine

        entry, opt = self.entry, self.options
        engine = get_engine(registry.spec_for_model_id(entry.model_id))
        if engine.model_id != entry.model_id:
            raise ValueError(f"deployment {entry.id} uses model {entry.model_id!r}; this "
                             f"node makes {engine.model_id!r}")
        config = PipelineConfig(threshold=entry.threshold, detect_fps=opt.detect_fps,
                                shots=ShotPolicy(max_embeddings=opt.max_embeddings))
        zones = {c.name: CameraZones(c.zones, c.masks) for c in entry.cameras}
        if self._stop.is_set():
            return
        self._sources = open_sources([f"{name}={source}" for name, source in self._sources_text],
                                     realtime=opt.realtime, loop=opt.loop)
        try:
            sink = _Sink(self)
            pipelines = self._gallery.attach(lambda gallery, names: [
                (src, CameraPipeline(src.name, engine, gallery, config, sink, fps=src.fps,
                                     names=names, zones=zones.get(src.name)))
                for src in self._sources])
            runner = Runner(pipelines, workers=opt.workers)
        except BaseException:
            close_quietly(self._sources)
            raise
        self._runner = runner
        if self._stop.is_set():
            runner.stop(interrupted=True)
        try:
            runner.run(until=self._until, tick_interval=0.25)
        finally:
            self.final = runner.figures()
            if self.end_reason is None:
                self.end_reason = "the camera sources ended"
