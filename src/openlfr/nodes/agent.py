"""The node agent (``openlfr node run``): a node of a centre, running its cameras as the
centre's desired state says, only while it holds the centre's lease.

**Desired state.** The agent signs in to the broker with the node's nkey and reconnects by
itself whenever the link drops. It reads its desired state document at start, after every
reconnection and whenever the centre writes it (a key-value watch), fetches the galleries that
changed from its object store and opens them with its own X25519 key (templates only in
memory), opens the camera sources sealed to it the same way, and reconciles with the same
:class:`openlfr.governance.reconcile.Reconciler` as the centre (a :class:`DocumentSource`
instead of the database): start, stop, reload a gallery (a removed subject is no longer
searched), within a tick of the change. The node enforces the window (``planned_end``) and its
model's threshold floor itself (:func:`openlfr.nodes.noderun.refusal`).

**Leases.** A deployment runs only while the node holds an unexpired lease for it, signed by
the centre (:func:`openlfr.nodes.protocol.open_lease`, checked against ``centre_signing_key``
in ``node.json``), by the node's own clock. The agent asks on
:func:`~openlfr.nodes.protocol.lease_subject` at start, when a deployment appears, every third
of the shortest lease, and every second while one is missing. When a lease runs out the run
is stopped (detection too), the alert sink drops anything matched after the expiry, the
health says ``lease lost`` and a ``lease_lost`` event is published. When a lease comes back
after it was lost, the agent first re-reads the desired state and applies it (stops and
gallery reloads) and only then starts matching again: a watchlist destroyed while the node
could not hear is never searched again.

**Alerts and events, exactly once in effect.** Each alert (and each update of one) becomes a
signed envelope (:func:`~openlfr.nodes.protocol.seal_envelope`, kind ``alert``) whose crop is
sealed to the centre's ``centre_box_key``; it is written to the node's outbox (one file per
message, 0600, in ``outbox/`` of the node's folder: nothing readable, the crop is sealed)
*before* it is published to JetStream with ``Nats-Msg-Id`` = the alert id (``<id>.<revision>``
for an update), and deleted only after the stream's acknowledgement. Whatever is left (a
broker away, a ``kill -9``) is published again at start and after every reconnection; the
stream's de-duplication and the centre's recorder (idempotent on the alert id) keep it once.
Node events (``run_started``, ``run_stopped``, ``gallery_reloaded``, ``lease_lost``,
``lease_regained``) travel the same way (kind ``event``).

**Health.** Every ``health_every`` seconds a signed ``health`` envelope (core NATS, not kept):
the node's state, each deployment's state and lease expiry, each camera's state and figures.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from openlfr.errors import Forbidden, IntegrityFailure, InvalidInput, Unavailable
from openlfr.governance.reconcile import Reconciler, Reload
from openlfr.nodes import desired, protocol
from openlfr.nodes.broker import NodeClient
from openlfr.nodes.enrol import enrolment
from openlfr.nodes.keys import NodeKeys, open_sealed, seal, unb64
from openlfr.nodes.noderun import (
    DeploymentEntry,
    NodeRun,
    NodeRunOptions,
    parse_deployments,
    refusal,
)
from openlfr.video.types import Alert
from openlfr.vision import registry
from openlfr.watchlist.gallery import Gallery

log = logging.getLogger("openlfr.nodes.agent")

Clock = Callable[[], datetime]
OUTBOX_DIRNAME = "outbox"


def utcnow() -> datetime:
    return datetime.now(UTC)


async def _wait(event: asyncio.Event, timeout: float) -> None:
    """Until ``event`` is set or ``timeout`` s pass (never swallowing a cancellation, which
    ``asyncio.wait_for`` may do on Python 3.11 when both happen at once)."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()


# -- the outbox ----------------------------------------------------------------------------------

class Outbox:
    """Messages not yet acknowledged by the stream: one file each (0600), written atomically
    (a new file renamed into place, synced), deleted after the stream's acknowledgement."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        self._n = 0

    def put(self, subject: str, msg_id: str, data: bytes) -> Path:
        with self._lock:
            self._n += 1
            stem = f"{time.time_ns():020d}-{os.getpid()}-{self._n:06d}"
        text = json.dumps({"subject": subject, "msg_id": msg_id,
                           "data": base64.b64encode(data).decode()})
        tmp = self.folder / f".{stem}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        path = self.folder / f"{stem}.msg"
        os.replace(tmp, path)
        dir_fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return path

    def pending(self) -> list[Path]:
        return sorted(self.folder.glob("*.msg"))

    @staticmethod
    def read(path: Path) -> tuple[str, str, bytes]:
        doc = json.loads(path.read_text())
        return str(doc["subject"]), str(doc["msg_id"]), base64.b64decode(doc["data"])

    @staticmethod
    def done(path: Path) -> None:
        path.unlink(missing_ok=True)


# -- the desired state, as the reconciler sees it ---------------------------------------------

class DocumentSource:
    """The node's desired state for :class:`Reconciler`: the deployments of the centre's
    document that the node's own rules allow and whose lease holds, and their opened
    galleries (packed, in memory only; a new :class:`Gallery` for each run or reload)."""

    def __init__(self, on_reload: Callable[[Reload], None] | None = None) -> None:
        self._lock = threading.Lock()
        self.entries: dict[int, DeploymentEntry] = {}
        self._galleries: dict[int, tuple[str, bytes]] = {}  # id → (fingerprint, packed)
        self.lease: protocol.Lease | None = None
        #: Deployments whose lease was lost: not run until the desired state was re-applied.
        self.suspended: set[int] = set()
        self.refused: dict[int, str] = {}
        self._on_reload = on_reload

    def install(self, entries: dict[int, DeploymentEntry],
                galleries: dict[int, tuple[str, bytes]]) -> None:
        with self._lock:
            self.entries = dict(entries)
            self._galleries = {k: v for k, v in galleries.items() if k in entries}

    def cached(self) -> dict[int, tuple[str, bytes]]:
        with self._lock:
            return dict(self._galleries)

    def lease_holds(self, deployment_id: int, now: datetime) -> bool:
        lease = self.lease
        return lease is not None and lease.holds(deployment_id, now)

    def holds(self, deployment_id: int, now: datetime) -> bool:
        """May this deployment match now (its lease holds and it is not suspended)?"""
        return deployment_id not in self.suspended and self.lease_holds(deployment_id, now)

    # -- DesiredSource -----------------------------------------------------------------------

    def wanted(self, now: datetime) -> dict[int, Any]:
        with self._lock:
            entries = dict(self.entries)
        out: dict[int, Any] = {}
        refused: dict[int, str] = {}
        for dep_id in sorted(entries):
            entry = entries[dep_id]
            why = refusal(entry, now)
            if why is not None:
                refused[dep_id] = why
                continue
            if self.holds(dep_id, now):
                out[dep_id] = entry.fingerprint
        self.refused = refused
        return out

    def gallery(self, deployment_id: int, now: datetime
                ) -> tuple[Gallery, dict[str, str], Any]:
        with self._lock:
            entry = self.entries.get(deployment_id)
            cached = self._galleries.get(deployment_id)
        if entry is None:
            raise Unavailable(f"deployment {deployment_id} is not in the desired state")
        if cached is None or cached[0] != entry.fingerprint:
            raise Unavailable(f"deployment {deployment_id}: its gallery has not arrived")
        gallery, names = desired.unpack_gallery(cached[1])
        if gallery.model_id != entry.model_id:
            gallery.clear()
            raise IntegrityFailure(f"deployment {deployment_id}: its gallery holds "
                                   f"{gallery.model_id!r} templates, not {entry.model_id!r}")
        return gallery, names, cached[0]

    def empty_gallery(self, deployment_id: int) -> Gallery | None:
        with self._lock:
            entry = self.entries.get(deployment_id)
        if entry is None:
            return None
        from openlfr.vision.engine import get_engine

        try:
            spec = registry.spec_for_model_id(entry.model_id)
        except registry.ModelError:
            return None
        return Gallery(entry.model_id, get_engine(spec).embedder.dim)

    def reason(self, before: Any, after: Any) -> str:
        return "the centre sent another gallery"

    def before_tick(self, now: datetime) -> None:
        return None

    def reloaded(self, event: Reload) -> None:
        if self._on_reload is not None:
            self._on_reload(event)


# -- the agent -------------------------------------------------------------------------------

@dataclass(frozen=True)
class AgentOptions:
    health_every: float = 5.0
    tick_every: float = 0.5
    lease_retry: float = 1.0
    request_timeout: float = 2.0
    #: The centre's JetStream domain when the node signs in to its site's leaf broker.
    state_domain: str | None = None
    run: NodeRunOptions = field(default_factory=NodeRunOptions)


def _unb64_any(text: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError, TypeError):
        raise IntegrityFailure(f"{what} is not base64") from None


class NodeAgent:
    """``openlfr node run`` (see the module). :meth:`run` until :meth:`shutdown`."""

    def __init__(self, folder: Path, *, options: AgentOptions | None = None,
                 url: str | None = None, ca_file: Path | None = None,
                 clock: Clock = utcnow) -> None:
        self.folder = folder
        self.keys = NodeKeys.load(folder)
        info = enrolment(folder)
        try:
            self.node_id = int(info["node_id"])
        except (KeyError, TypeError, ValueError):
            raise InvalidInput(f"{folder}/node.json names no node id", field="node_dir"
                               ) from None
        self.url = url or info.get("broker_url")
        if not self.url:
            raise InvalidInput("the centre named no broker when this node enrolled: give "
                               "--broker nats://HOST:4222", field="broker")
        for key in ("centre_signing_key", "centre_box_key"):
            if not isinstance(info.get(key), str):
                raise InvalidInput(f"{folder}/node.json has no {key} (enrolled with an older "
                                   "centre: enroll again)", field="node_dir")
        self.centre_signing = unb64(info["centre_signing_key"], "centre_signing_key")
        self.centre_box = unb64(info["centre_box_key"], "centre_box_key")
        ca = ca_file or (Path(info["ca_file"]) if isinstance(info.get("ca_file"), str)
                         else None)
        self.options = options or AgentOptions()
        self.clock = clock
        self.outbox = Outbox(folder / OUTBOX_DIRNAME)
        self.client = NodeClient(self.url, self.node_id, self.keys.seed, ca_file=ca,
                                 state_domain=self.options.state_domain)
        self.source = DocumentSource(on_reload=self._reloaded)
        self.reconciler = Reconciler(None, self, source=self.source, clock=clock,
                                     retry_after=1.0, retry_max=10.0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._flush_wake: asyncio.Event | None = None
        self._lease_wake: asyncio.Event | None = None
        self._tick_lock: asyncio.Lock | None = None
        self._held: set[int] = set()  # deployments that held a lease (to notice its loss)
        self._lost: set[int] = set()
        self._runs: dict[int, NodeRun] = {}
        self._totals: dict[tuple[int, str], dict[str, float]] = {}
        #: This process's run of the node: the centre counts the cumulative figures of each
        #: run once (a restarted node starts its counts again under a new id).
        self.run_id = secrets.token_hex(8)
        self._state_lock = threading.Lock()
        self.revision: int | None = None
        self.lease_error: str | None = None
        self.published = 0
        self.state = "starting"

    # -- from other threads ------------------------------------------------------------------

    def shutdown(self) -> None:
        """Ask :meth:`run` to end (any thread)."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)

    def _wake(self, event: asyncio.Event | None) -> None:
        loop = self._loop
        if loop is not None and event is not None and not loop.is_closed():
            # (a loop that has just closed: the outbox is picked up at the next start)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    def _out(self, kind: str, subject: str, msg_id: str, body: dict[str, Any]) -> None:
        data = protocol.seal_envelope(self.keys.signing, kind, self.node_id, msg_id, body)
        self.outbox.put(subject, msg_id, data)
        self._wake(self._flush_wake)

    def event(self, name: str, **body: Any) -> None:
        """Publish a node event (through the outbox)."""
        self._out("event", protocol.event_subject(self.node_id), uuid.uuid4().hex,
                  {"event": name, **body})

    # -- the launcher (called by the reconciler) --------------------------------------------

    def launch(self, deployment_id: int, gallery: Gallery, names: dict[str, str]) -> NodeRun:
        entry = self.source.entries[deployment_id]
        sources = []
        for cam in entry.cameras:
            context = desired.seal_context(self.node_id, f"camera/{entry.id}/{cam.name}")
            raw = open_sealed(_unb64_any(cam.source, "a camera source"), self.keys.box,
                              context)
            sources.append((cam.name, raw.decode()))
        run = NodeRun(entry, sources, gallery, names, send=self._alert,
                      allowed=lambda: self.source.holds(deployment_id, self.clock()),
                      options=self.options.run, clock=self.clock, on_end=self._ended)
        with self._state_lock:
            self._runs[deployment_id] = run
        run.start()
        self.event("run_started", deployment=deployment_id,
                   cameras=[c.name for c in entry.cameras], subjects=len(gallery.subjects()),
                   templates=len(gallery), threshold=entry.threshold, model_id=entry.model_id)
        return run

    def _ended(self, run: NodeRun) -> None:
        figures = run.final
        with self._state_lock:
            for f in figures:
                t = self._totals.setdefault((run.deployment_id, f.camera), {})
                for k, v in (("frames", f.frames), ("faces", f.faces), ("tracks", f.tracks),
                             ("dropped", f.dropped), ("reconnects", f.reconnects),
                             ("alerts", f.alerts)):
                    t[k] = t.get(k, 0) + int(v)
                t["seconds"] = t.get("seconds", 0) + run.elapsed
            if self._runs.get(run.deployment_id) is run:
                del self._runs[run.deployment_id]
        self.event("run_stopped", deployment=run.deployment_id, reason=run.end_reason,
                   error=run.error, alerts_dropped=run.dropped_alerts,
                   cameras={f.camera: {"frames": f.frames, "faces": f.faces,
                                       "tracks": f.tracks} for f in figures})
        self._wake(self._lease_wake)

    def _reloaded(self, event: Reload) -> None:
        self.event("gallery_reloaded", deployment=event.deployment_id,
                   subjects_before=event.subjects_before, subjects_after=event.subjects_after,
                   templates_before=event.templates_before,
                   templates_after=event.templates_after, reason=event.reason)

    def _alert(self, run: NodeRun, alert: Alert) -> None:
        import cv2

        alert_id = f"{run.token}-{hashlib.sha256(alert.alert_id.encode()).hexdigest()[:16]}"
        msg_id = alert_id if alert.revision == 0 else f"{alert_id}.{alert.revision}"
        ok, jpeg = cv2.imencode(".jpg", alert.probe_crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            log.error("deployment %d: an alert's crop could not be encoded", run.deployment_id)
            return
        sealed = seal(jpeg.tobytes(), self.centre_box, protocol.crop_context(alert_id))
        body = protocol.alert_body(
            alert_id=alert_id, deployment_id=run.deployment_id, camera=alert.camera,
            subject_id=alert.subject_id, reference_id=alert.reference_id, score=alert.score,
            threshold=alert.threshold, model_id=alert.model_id,
            seen_at=datetime.fromtimestamp(alert.frame_wall, UTC), track_id=alert.track_id,
            frame=alert.frame, t=alert.t, box=alert.box, revision=alert.revision,
            latency=alert.latency, in_view=alert.in_view, sealed_crop=sealed)
        self._out("alert", protocol.alert_subject(self.node_id), msg_id, body)

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until :meth:`shutdown`: connect (retrying forever), then follow the desired
        state, keep the lease, publish the outbox and the health."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._flush_wake = asyncio.Event()
        self._lease_wake = asyncio.Event()
        self._tick_lock = asyncio.Lock()
        tasks: list[asyncio.Task[None]] = []
        try:
            if not await self._connect():
                return
            tasks = [asyncio.create_task(c) for c in (
                self._follow(), self._flush_loop(), self._lease_loop(), self._tick_loop(),
                self._health_loop())]
            await self._stop.wait()
        finally:
            self._stop.set()
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=5.0)
            handles = self.reconciler.stop_all("the node stopped")
            await asyncio.to_thread(lambda: [h.join(10) for h in handles])
            if self.client.connected:
                # what is not acknowledged stays in the outbox for the next start
                with contextlib.suppress(Unavailable, TimeoutError):
                    await asyncio.wait_for(self._flush_once(), 5.0)
            await self.client.close()
            self.state = "stopped"

    async def _connect(self) -> bool:
        assert self._stop is not None
        delay = 0.5
        while not self._stop.is_set():
            try:
                await self.client.open()
                return True
            except Forbidden:
                raise
            except Unavailable as exc:
                self.state = "disconnected"
                log.warning("%s; trying again in %.0f s", exc, delay)
            await _wait(self._stop, delay)
            delay = min(delay * 2, 10.0)
        return False

    async def _tick(self) -> None:
        assert self._tick_lock is not None
        async with self._tick_lock:
            await asyncio.to_thread(self._tick_now)

    def _tick_now(self) -> None:
        now = self.clock()
        for dep_id in list(self.source.entries):
            holds = self.source.lease_holds(dep_id, now)
            if holds and dep_id not in self.source.suspended:
                self._held.add(dep_id)
            elif not holds and dep_id in self._held:
                self._held.discard(dep_id)
                self._lost.add(dep_id)
                self.source.suspended.add(dep_id)
                lease = self.source.lease
                expired = lease.expires(dep_id) if lease is not None else None
                log.warning("deployment %d: lease lost (expired %s): matching stopped",
                            dep_id, expired)
                self.event("lease_lost", deployment=dep_id,
                           expired_at=None if expired is None else protocol.iso(expired))
                self._wake(self._lease_wake)
        for dep_id in [d for d in self._held if d not in self.source.entries]:
            self._held.discard(dep_id)
        self._lost &= set(self.source.entries)
        self.source.suspended &= set(self.source.entries)
        self.reconciler.tick()

    async def _tick_loop(self) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            try:
                await self._tick()
            except Exception:
                log.exception("reconciling")
            await asyncio.sleep(self.options.tick_every)

    async def refresh(self, data: bytes | None = None, revision: int | None = None) -> None:
        """Read the desired state (``data``: as the watch delivered it), fetch and open the
        galleries that changed, and install them."""
        if data is None:
            data = await self.client.desired()
        if data is None:
            entries: dict[int, DeploymentEntry] = {}
        else:
            entries = parse_deployments(desired.parse_document(data))
        cached = self.source.cached()
        galleries: dict[int, tuple[str, bytes]] = {}
        for dep_id, entry in entries.items():
            have = cached.get(dep_id)
            if have is not None and have[0] == entry.fingerprint:
                galleries[dep_id] = have
                continue
            try:
                sealed = await self.client.gallery(entry.gallery_object)
                plain = open_sealed(sealed, self.keys.box,
                                    desired.seal_context(self.node_id, entry.gallery_object))
            except Exception as exc:  # not searched until it arrives (the reconciler
                log.error("deployment %d: its gallery could not be read: %s", dep_id, exc)
                continue  # empties a running gallery meanwhile)
            galleries[dep_id] = (entry.fingerprint, plain)
        self.source.install(entries, galleries)
        if revision is not None:
            self.revision = revision
        lease = self.source.lease
        if any(lease is None or lease.expires(d) is None for d in entries):
            self._wake(self._lease_wake)

    async def _follow(self) -> None:
        """Watch the desired state key; re-read everything after each reconnection."""
        watcher: Any = None
        connected = False
        assert self._stop is not None
        while not self._stop.is_set():
            if not self.client.connected:
                if connected:
                    log.warning("the broker is unreachable: reconnecting")
                if watcher is not None:
                    with contextlib.suppress(Exception):
                        await watcher.stop()
                connected, watcher = False, None
                self.state = "disconnected"
                await asyncio.sleep(0.1)
                continue
            if watcher is None:
                try:
                    await self.refresh()
                    watcher = await self.client.watch_desired()
                except Exception as exc:
                    log.warning("reading the desired state: %s", exc)
                    watcher = None
                    await asyncio.sleep(1.0)
                    continue
                if not connected:
                    connected = True
                    assert self._flush_wake is not None and self._lease_wake is not None
                    self._flush_wake.set()  # the outbox goes again after a reconnection
                    self._lease_wake.set()
                await self._tick()
            try:
                entry = await watcher.updates(timeout=1.0)
            except TimeoutError:
                continue
            except Exception as exc:
                log.warning("watching the desired state: %s", exc)
                watcher = None
                continue
            if entry is None or entry.value is None:
                continue
            try:
                await self.refresh(bytes(entry.value), entry.revision)
            except IntegrityFailure as exc:
                log.error("the desired state was refused: %s", exc)
                continue
            await self._tick()

    async def _flush_once(self) -> None:
        for path in self.outbox.pending():
            try:
                subject, msg_id, data = self.outbox.read(path)
            except (OSError, ValueError, KeyError) as exc:
                log.error("outbox %s unreadable (%s): set aside", path.name, exc)
                path.rename(path.with_suffix(".bad"))
                continue
            await self.client.publish_durable(subject, data, msg_id)
            self.outbox.done(path)
            self.published += 1

    async def _flush_loop(self) -> None:
        assert self._flush_wake is not None and self._stop is not None
        while not self._stop.is_set():
            await _wait(self._flush_wake, 1.0)
            self._flush_wake.clear()
            if not self.client.connected:
                continue
            try:
                await self._flush_once()
            except Unavailable as exc:
                log.info("outbox kept for later: %s", exc)

    def _renew_in(self, now: datetime) -> float:
        lease = self.source.lease
        deps = list(self.source.entries)
        if not deps:
            return 30.0
        if lease is None or self._lost or any(not lease.holds(d, now) for d in deps):
            return self.options.lease_retry
        spans = [(lease.deployments[d] - lease.issued_at).total_seconds() for d in deps
                 if d in lease.deployments]
        return max(0.2, min(spans or [protocol.DEFAULT_LEASE_S]) / 3)

    async def _lease_loop(self) -> None:
        assert self._lease_wake is not None and self._stop is not None
        while not self._stop.is_set():
            await _wait(self._lease_wake, self._renew_in(self.clock()))
            self._lease_wake.clear()
            if not self.source.entries or not self.client.connected:
                continue
            body = protocol.canonical({"node": self.node_id,
                                       "deployments": sorted(self.source.entries),
                                       "at": protocol.iso(self.clock())})
            try:
                answer = await self.client.request(protocol.lease_subject(self.node_id), body,
                                                   timeout=self.options.request_timeout)
                lease = protocol.open_lease(answer, self.centre_signing, self.node_id)
            except (Unavailable, IntegrityFailure) as exc:
                self.lease_error = str(exc)
                log.info("no lease: %s", exc)
                await asyncio.sleep(min(self.options.lease_retry, 1.0))
                continue
            self.lease_error = None
            await self._apply_lease(lease)

    async def _apply_lease(self, lease: protocol.Lease) -> None:
        now = self.clock()
        regained = {d for d in self._lost if lease.holds(d, now)}
        self.source.lease = lease
        if not regained:
            await self._tick()
            return
        # Revocations first: what the centre says now is applied (stops, gallery reloads)
        # while the regained deployments are still suspended; only then do they match again.
        try:
            await self.refresh()
        except Exception as exc:
            log.warning("re-reading the desired state before matching again: %s", exc)
            return  # still suspended: tried again at the next lease
        await self._tick()
        assert self._tick_lock is not None
        async with self._tick_lock:
            for dep_id in regained:
                self._lost.discard(dep_id)
                self.source.suspended.discard(dep_id)
        for dep_id in regained:
            expires = lease.expires(dep_id)
            self.event("lease_regained", deployment=dep_id,
                       expires_at=None if expires is None else protocol.iso(expires))
        await self._tick()

    # -- health ------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The node's health now (what the ``health`` envelope carries)."""
        now = self.clock()
        lease = self.source.lease
        with self._state_lock:
            runs = dict(self._runs)
            totals = {k: dict(v) for k, v in self._totals.items()}
        deployments: dict[str, Any] = {}
        cameras: list[dict[str, Any]] = []
        for dep_id, entry in sorted(self.source.entries.items()):
            run = runs.get(dep_id)
            expires = lease.expires(dep_id) if lease is not None else None
            if dep_id in self.source.refused:
                state = f"refused: {self.source.refused[dep_id]}"
            elif dep_id in self._lost:
                state = "lease lost"
            elif not self.source.lease_holds(dep_id, now):
                state = "waiting for a lease"
            elif run is not None and run.running:
                state = "running"
            elif dep_id in self.reconciler.errors:
                state = f"failed: {self.reconciler.errors[dep_id]}"
            else:
                state = "starting"
            deployments[str(dep_id)] = {
                "state": state, "lease_expires": None if expires is None
                else protocol.iso(expires)}
            live = {f.camera: f for f in run.figures()} if run is not None else {}
            for cam in entry.cameras:
                f = live.get(cam.name)
                base = totals.get((dep_id, cam.name), {})
                cameras.append({
                    "deployment": dep_id, "camera": cam.name,
                    "state": f.state if f is not None and run is not None and run.running
                    else "stopped",
                    "connected": bool(f is not None and f.state == "running"
                                      and run is not None and run.running),
                    "fps_in": round(f.fps_in, 2) if f is not None else 0.0,
                    "fps_analysed": round(f.fps_processed, 2) if f is not None else 0.0,
                    "dropped": base.get("dropped", 0) + (f.dropped if f else 0),
                    "reconnects": base.get("reconnects", 0) + (f.reconnects if f else 0),
                    "frames": base.get("frames", 0) + (f.frames if f else 0),
                    "faces_seen": base.get("faces", 0) + (f.faces if f else 0),
                    "tracks": base.get("tracks", 0) + (f.tracks if f else 0),
                    "seconds": round(base.get("seconds", 0) + (
                        run.elapsed if run is not None and f is not None else 0.0), 3),
                    "error": f.error if f is not None else ""})
        states = {d["state"] for d in deployments.values()}
        node_state = ("disconnected" if not self.client.connected else
                      "lease lost" if "lease lost" in states else
                      "running" if "running" in states else "idle")
        self.state = node_state
        return {"state": node_state, "connected": self.client.connected,
                "run": self.run_id, "interval": self.options.health_every,
                "desired_revision": self.revision, "lease_error": self.lease_error,
                "lease": {k: d["lease_expires"] for k, d in deployments.items()},
                "deployments": deployments, "cameras": cameras,
                "outbox": len(self.outbox.pending()),
                "cpu": round(time.process_time(), 3)}

    async def _health_loop(self) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            await asyncio.sleep(self.options.health_every)
            if not self.client.connected:
                continue
            try:
                data = protocol.seal_envelope(self.keys.signing, "health", self.node_id,
                                              uuid.uuid4().hex, self.health())
                await self.client.publish_now(protocol.health_subject(self.node_id), data)
            except Exception as exc:
                log.info("health not sent: %s", exc)


def run_node(folder: Path, *, options: AgentOptions | None = None, url: str | None = None,
             ca_file: Path | None = None) -> None:
    """``openlfr node run``: the agent in this thread until SIGINT or SIGTERM."""
    import signal

    agent = NodeAgent(folder, options=options, url=url, ca_file=ca_file)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, agent.shutdown)
        await agent.run()

    asyncio.run(main())
