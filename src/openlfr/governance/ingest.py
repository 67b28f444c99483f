"""What the nodes send the centre: alerts and events (from the stream), and health.

**Alerts and events** arrive in the JetStream stream :data:`~openlfr.nodes.protocol.NODES_STREAM`
and are read by the centre's durable consumer :data:`~openlfr.nodes.protocol.CENTRE_CONSUMER`
(:meth:`openlfr.nodes.broker.Broker.serve`). For each message :meth:`Ingest.message` returns
what to tell the broker:

- ``term`` — refused, never stored: the envelope does not open
  (:func:`openlfr.nodes.protocol.open_envelope`: a bad signature, an unknown or disabled node,
  a message naming another node than its subject), the alert is malformed, its crop does not
  open with the centre's box key, its deployment is not running, its camera is not one of that
  deployment's cameras on that node, its score is below the deployment's threshold or its
  model not the deployment's, or its subject is no longer enrolled on an approved watchlist of
  the deployment. Each refusal is audited ``node.message_refused`` (the node, the reason;
  never the payload).
- ``ack`` — stored, or stored already. An alert is stored through
  :meth:`openlfr.governance.alerts.AlertRecorder.deliver`, the recorder of the centre's own
  runs (crop encrypted under the deployment's data key, ``alert.create`` audited, committed),
  keyed by ``<node id>:<alert id>`` so that the same alert delivered twice is stored once; it
  is then handed to ``on_alert`` (the console's live alert queue), and only then acknowledged.
  A later revision updates the alert as a local one does (not once anybody has reviewed it).
  Events (``run_started``, ``run_stopped``, ``gallery_reloaded``, ``lease_lost``) are audited
  ``node.<event>`` by ``node:<name>``, once per message id.
- ``retry`` — the database could not store it: the broker keeps it and delivers it again.

**Health** (core NATS, ``openlfr.node.<id>.health``; :meth:`Ingest.health`): the verified
heartbeat is kept in ``node_health`` (last seen; a node not heard for three of its intervals is
offline) and each camera's figures in ``node_cameras``. The cumulative counts of a node's run
are added to ``camera_stats`` (the public figures) as differences from the last heartbeat of
the same run, so that repeated heartbeats add nothing and a new run starts from zero: the
public counts add up across nodes and runs.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import cv2
import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from openlfr.audit import log as audit_log
from openlfr.config import Settings
from openlfr.errors import IntegrityFailure, NotFound, OpenLFRError
from openlfr.governance.alerts import AlertRecorder, Delivered, Delivery
from openlfr.governance.system import System
from openlfr.nodes import protocol
from openlfr.nodes.keys import open_sealed, unb64
from openlfr.redact import redact_text
from openlfr.store.db import memo
from openlfr.store.enums import DeploymentStatus, NodeStatus
from openlfr.store.models import (
    AuditRecord,
    Camera,
    CameraStats,
    Deployment,
    Node,
    NodeCamera,
    NodeHealth,
)
from openlfr.video import types as vtypes

log = logging.getLogger("openlfr.governance.ingest")

ACK, TERM, RETRY = "ack", "term", "retry"
#: The node events audited by name (``node.<event>``); any other is audited ``node.event``.
EVENTS = ("run_started", "run_stopped", "gallery_reloaded", "lease_lost")
#: A node is offline when not heard for this many of its heartbeat intervals.
OFFLINE_AFTER = 3
#: The heartbeat interval assumed when a node does not say (seconds).
DEFAULT_INTERVAL = 5.0
#: Refused heartbeats are audited at most once per node in this many seconds.
HEALTH_REFUSAL_EVERY = 60.0
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
OnAlert = Callable[[int, vtypes.Alert], None]


def online(health: NodeHealth | None, now: datetime | None = None) -> bool:
    """Whether a node was heard within :data:`OFFLINE_AFTER` of its heartbeat intervals."""
    if health is None:
        return False
    now = now or datetime.now(UTC)
    seen = health.last_seen if health.last_seen.tzinfo else health.last_seen.replace(
        tzinfo=UTC)
    return now - seen < timedelta(seconds=OFFLINE_AFTER * (health.interval or DEFAULT_INTERVAL))


def _num(value: object, what: str, *, integer: bool = False, minimum: float | None = None
         ) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value) or (integer and not isinstance(value, int)):
        raise protocol.Refused(f"the {what} is not a number")
    if minimum is not None and value < minimum:
        raise protocol.Refused(f"the {what} is below {minimum}")
    return int(value) if integer else float(value)


def _text(value: object, what: str, size: int = 100) -> str:
    if not isinstance(value, str) or not value or len(value) > size:
        raise protocol.Refused(f"the {what} is not text of 1 to {size} characters")
    return value


class Ingest:
    """The centre's handling of what nodes send (see the module). Thread-safe enough for one
    thread per kind (stream, health, leases): each call has its own transaction."""

    def __init__(self, system: System, box: X25519PrivateKey,
                 on_alert: OnAlert | None = None) -> None:
        self.system = system
        self.box = box
        self.on_alert = on_alert
        self._recorders: dict[int, AlertRecorder] = {}
        self._lock = threading.Lock()
        self._refused_health: dict[int | None, float] = {}
        self.counts = {ACK: 0, TERM: 0, RETRY: 0}

    # -- the stream ------------------------------------------------------------------------

    def message(self, subject: str, data: bytes) -> str:
        """Handle one message of the stream; ``ack``, ``term`` or ``retry`` (see the module)."""
        return self.messages([(subject, data)])[0]

    def messages(self, items: Sequence[tuple[str, bytes]]) -> list[str]:
        """Handle messages of the stream in their order, a verdict each (see the module). The
        alerts among them are stored a deployment's at a time in one transaction (one commit
        for a batch instead of one each); if that fails, each is tried again alone, so that
        one bad message holds up no other."""
        verdicts: list[str] = [RETRY] * len(items)
        try:
            known = self._nodes({protocol.peek_node(d) for _s, d in items})
        except Exception:
            log.exception("the nodes' messages were not read: they will be delivered again")
            known = None
        if known is not None:
            group: list[tuple[int, int, str, Delivery]] = []  # alerts waiting to be stored
            for i, (subject, data) in enumerate(items):
                try:
                    verdict = self._one(subject, data, known, i, group)
                except Exception:
                    log.exception("a node's message on %r was not stored: it will be "
                                  "delivered again", subject[:80])
                    verdict = RETRY
                if verdict is None:
                    continue  # an alert, in the group
                self._store_group_safely(group, items, verdicts)  # what came before, first
                verdicts[i] = verdict
            self._store_group_safely(group, items, verdicts)
        for verdict in verdicts:
            self.counts[verdict] += 1
        return verdicts

    def _one(self, subject: str, data: bytes, known: dict[int, tuple[str, bytes]], index: int,
             group: list[tuple[int, int, str, Delivery]]) -> str | None:
        """One message: its verdict, or None when it is an alert added to ``group``."""
        claimed = protocol.peek_node(data)
        try:
            name, key = known.get(claimed, (None, None)) if claimed is not None else (None, None)
            env = protocol.open_envelope(data, subject, key)
            if env.kind == "alert":
                dep_id, delivery = self._alert(env)
                group.append((index, dep_id, str(name), delivery))
                return None
            if env.kind == "event":
                return self._event(env, name)
            raise protocol.Refused(f"a {env.kind} is not kept in the stream", env.node_id)
        except protocol.Refused as refused:
            self._refuse(refused.node_id if refused.node_id is not None else claimed,
                         subject, refused.reason)
            return TERM

    def _store_group_safely(self, group: list[tuple[int, int, str, Delivery]],
                            items: Sequence[tuple[str, bytes]], verdicts: list[str]) -> None:
        try:
            self._store_group(group, items, verdicts)
        except Exception:  # (a refusal could not be audited): what has no verdict comes again
            log.exception("the nodes' alerts were not all handled: they will be delivered "
                          "again")
            group.clear()

    def _store_group(self, group: list[tuple[int, int, str, Delivery]],
                     items: Sequence[tuple[str, bytes]], verdicts: list[str]) -> None:
        """Store the alerts gathered in ``group`` (emptied), a deployment's at a time."""
        by_dep: dict[int, list[tuple[int, str, Delivery]]] = {}
        for index, dep_id, name, delivery in group:
            by_dep.setdefault(dep_id, []).append((index, name, delivery))
        group.clear()
        for dep_id, batch in by_dep.items():
            try:
                recorder = self._recorder(dep_id)
            except (NotFound, OpenLFRError) as exc:
                for index, _name, _d in batch:
                    subject = items[index][0]
                    self._refuse(protocol.subject_node(subject), subject,
                                 f"deployment {dep_id}: {exc}")
                    verdicts[index] = TERM
                continue
            except Exception:
                log.exception("deployment %d: the nodes' alerts were not stored: they will "
                              "be delivered again", dep_id)
                continue
            done: list[Delivered | None]
            try:
                done = list(recorder.deliver_many([d for _i, _n, d in batch]))
            except Exception:  # (logged by the recorder)
                done = []
                for _index, _name, delivery in batch:  # alone: one bad one holds up no other
                    try:
                        done.append(recorder.deliver_many([delivery])[0]
                                    if len(batch) > 1 else None)
                    except Exception:
                        done.append(None)  # delivered again later
            for (index, name, delivery), result in zip(batch, done, strict=True):
                subject = items[index][0]
                if result is None:
                    continue
                if result.outcome == "refused":
                    self._refuse(protocol.subject_node(subject), subject,
                                 f"alert {delivery[0].alert_id} not stored: {result.reason}")
                    verdicts[index] = TERM
                    continue
                log.debug("node %s: alert %s revision %d %s", name, delivery[0].alert_id,
                          delivery[0].revision, result.outcome)
                verdicts[index] = ACK

    def _nodes(self, claimed: set[int | None]) -> dict[int, tuple[str, bytes]]:
        """The enrolled nodes among ``claimed``: their names and signing keys (an unknown,
        pending or disabled node is not there)."""
        ids = {i for i in claimed if i is not None}
        if not ids:
            return {}
        with self.system.db.reading() as s:
            return {n.id: (n.name, unb64(n.signing_key, "signing_key")) for n in s.scalars(
                select(Node).where(Node.id.in_(ids), Node.status == NodeStatus.ENROLLED))
                if n.signing_key}

    def _refuse(self, node_id: int | None, subject: str, reason: str) -> None:
        log.warning("refused a message from node %s: %s", node_id, reason)
        with self.system.db.session() as s:
            audit_log.record(s, audit_log.SYSTEM, "node.message_refused", "node",
                             node_id if node_id is not None else "unknown",
                             {"node": node_id, "subject": subject[:120],
                              "reason": reason[:300]})

    def _recorder(self, deployment_id: int) -> AlertRecorder:
        with self._lock:
            rec = self._recorders.get(deployment_id)
            if rec is None:
                rec = AlertRecorder(self.system, deployment_id, on_stored=self._stored)
                self._recorders[deployment_id] = rec
            return rec

    def _stored(self, row_id: int, alert: vtypes.Alert) -> None:
        if self.on_alert is not None:
            self.on_alert(row_id, alert)

    def _alert(self, env: protocol.Envelope) -> tuple[int, Delivery]:
        """A node's alert, checked and opened: its deployment and what the recorder stores
        (:class:`~openlfr.governance.alerts.Delivery`)."""
        b = env.body
        alert_id = _text(b.get("alert_id"), "alert id", 64)
        dep_id = _num(b.get("deployment"), "deployment", integer=True, minimum=1)
        camera = _text(b.get("camera"), "camera")
        box = b.get("box")
        if not isinstance(box, list) or len(box) != 4:
            raise protocol.Refused("the alert's box is not four numbers", env.node_id)
        try:
            jpeg = open_sealed(protocol.sealed_crop(b), self.box,
                               protocol.crop_context(alert_id))
        except IntegrityFailure as exc:
            raise protocol.Refused(f"the alert's crop does not open: {exc}",
                                   env.node_id) from None
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise protocol.Refused("the alert's crop is not an image", env.node_id)
        seen = protocol.parse_time(b.get("seen_at"), "seen_at").timestamp()
        latency, in_view = b.get("latency"), b.get("in_view")
        alert = vtypes.Alert(
            alert_id=alert_id, camera=camera,
            track_id=_num(b.get("track"), "track", integer=True),
            subject_id=_text(b.get("subject"), "subject", 64), display_name="",
            score=_num(b.get("score"), "score"), threshold=_num(b.get("threshold"), "threshold"),
            reference_id=str(b.get("reference") or "")[:64],
            model_id=_text(b.get("model_id"), "model"),
            frame=_num(b.get("frame"), "frame", integer=True), t=_num(b.get("t"), "time"),
            wall_time=seen, frame_wall=seen,
            box=(_num(box[0], "box"), _num(box[1], "box"), _num(box[2], "box"),
                 _num(box[3], "box")),
            probe_crop=np.asarray(image, dtype=np.uint8),
            revision=_num(b.get("revision"), "revision", integer=True, minimum=0),
            latency=None if latency is None else _num(latency, "latency"),
            in_view=None if in_view is None else _num(in_view, "in_view"))
        node_id = env.node_id

        def admit(s: Session, dep: Deployment) -> str | None:
            if dep.status != DeploymentStatus.RUNNING:
                return f"deployment {dep.id} is {dep.status.value}, not running"
            if memo(s, ("node_camera", dep.id, camera, node_id), lambda: s.scalar(
                    select(Camera.id).where(Camera.deployment_id == dep.id,
                                            Camera.name == camera,
                                            Camera.node_id == node_id))) is None:
                return (f"camera {camera[:100]!r} is not one of deployment {dep.id}'s cameras "
                        f"on node {node_id}")
            if alert.model_id != dep.model_id:
                return f"model {alert.model_id[:100]!r} is not the deployment's"
            if alert.score < dep.threshold:
                return "the score is below the deployment's threshold"
            return None

        return dep_id, (alert, f"{node_id}:{alert_id}", jpeg, admit)

    def _event(self, env: protocol.Envelope, node_name: str | None) -> str:
        event = env.body.get("event")
        if not isinstance(event, str) or not _NAME.match(event):
            raise protocol.Refused("the event has no name", env.node_id)
        action = f"node.{event}" if event in EVENTS else "node.event"
        details: dict[str, Any] = {"message": env.msg_id[:100], "sent_at":
                                   protocol.iso(env.sent_at)}
        if action == "node.event":
            details["event"] = event
        for k, v in list(env.body.items())[:20]:
            if k == "event" or not isinstance(k, str) or not _NAME.match(k):
                continue
            if isinstance(v, bool | int) or v is None:
                details[k] = v
            elif isinstance(v, float) and math.isfinite(v):
                details[k] = audit_log.fmt_float(v)
            elif isinstance(v, str):
                details[k] = v[:200]
        with self.system.db.session() as s:
            mark = f'"message":{json.dumps(env.msg_id[:100])}'
            if s.scalar(select(AuditRecord.seq).where(
                    AuditRecord.object_type == "node",
                    AuditRecord.object_id == str(env.node_id),
                    AuditRecord.action == action,
                    AuditRecord.details.contains(mark)).limit(1)) is not None:
                return ACK  # audited already (delivered again)
            audit_log.record(s, f"node:{node_name}", action, "node", env.node_id, details)
        return ACK

    # -- health ----------------------------------------------------------------------------

    def health(self, subject: str, data: bytes, now: datetime | None = None) -> bool:
        """Keep a node's heartbeat (see the module); False when refused."""
        return self.healths([(subject, data)], now)[0]

    def healths(self, items: Sequence[tuple[str, bytes]], now: datetime | None = None
                ) -> list[bool]:
        """Keep heartbeats (see the module), all in one transaction; for each, False when it
        was refused (or could not be stored: the next one of the node carries the same
        cumulative counts, so nothing is lost)."""
        now = now or datetime.now(UTC)
        kept = [False] * len(items)
        known = self._nodes({protocol.peek_node(d) for _s, d in items})
        beats: list[tuple[int, _Beat]] = []
        for i, (subject, data) in enumerate(items):
            claimed = protocol.peek_node(data)
            try:
                _name, key = known.get(claimed, (None, None)) if claimed is not None \
                    else (None, None)
                env = protocol.open_envelope(data, subject, key)
                if env.kind != "health":
                    raise protocol.Refused(f"a {env.kind} on the health subject", env.node_id)
                beats.append((i, _Beat.read(env)))
            except protocol.Refused as refused:
                mono = time.monotonic()
                if mono - self._refused_health.get(claimed, -1e9) >= HEALTH_REFUSAL_EVERY:
                    self._refused_health[claimed] = mono
                    self._refuse(refused.node_id if refused.node_id is not None else claimed,
                                 subject, refused.reason)
        if beats:
            with self.system.db.session() as s:
                _keep(s, [b for _i, b in beats], now)
            for i, _b in beats:
                kept[i] = True
        return kept


@dataclass(frozen=True)
class _Beat:
    """A verified heartbeat's fields, checked."""

    node_id: int
    interval: float
    run: str
    cpu: float | None
    lease: str | None
    cameras: tuple[dict[str, Any], ...]

    @classmethod
    def read(cls, env: protocol.Envelope) -> _Beat:
        b = env.body
        interval = b.get("interval", DEFAULT_INTERVAL)
        interval = _num(interval, "interval", minimum=0.1) if interval is not None \
            else DEFAULT_INTERVAL
        cpu, lease, cams = b.get("cpu"), b.get("lease"), b.get("cameras") or []
        if not isinstance(cams, list):
            raise protocol.Refused("the heartbeat's cameras are not a list", env.node_id)
        return cls(env.node_id, interval, str(b.get("run") or "")[:64],
                   float(cpu) if isinstance(cpu, int | float) and not isinstance(cpu, bool)
                   and math.isfinite(cpu) else None,
                   json.dumps(lease, sort_keys=True)[:4000] if isinstance(lease, dict | str)
                   else None,
                   tuple(c for c in cams[:1000] if isinstance(c, dict)))


def _keep(s: Session, beats: Sequence[_Beat], now: datetime) -> None:
    """Apply heartbeats in ``s``'s transaction: each node's health, its cameras' figures, and
    the public camera counts (the rows of all the nodes read in a few queries, not per camera).
    """
    ids = {b.node_id for b in beats}
    healths = {h.node_id: h for h in s.scalars(select(NodeHealth).where(
        NodeHealth.node_id.in_(ids)))}
    mine = {(n, d, c) for n, d, c in s.execute(select(
        Camera.node_id, Camera.deployment_id, Camera.name).where(Camera.node_id.in_(ids)))}
    rows = {(r.node_id, r.deployment_id, r.camera): r for r in s.scalars(
        select(NodeCamera).where(NodeCamera.node_id.in_(ids)))}
    dep_ids, names = {d for _n, d, _c in mine}, {c for _n, _d, c in mine}
    stats = {(r.deployment_id, r.camera): r for r in s.scalars(  # these nodes' cameras only
        select(CameraStats).where(CameraStats.deployment_id.in_(dep_ids),
                                  CameraStats.camera.in_(names)))} if dep_ids else {}
    for beat in beats:
        health = healths.get(beat.node_id)
        if health is None:
            health = healths[beat.node_id] = NodeHealth(node_id=beat.node_id, last_seen=now)
            s.add(health)
        health.last_seen, health.interval = now, beat.interval
        health.run_id, health.cpu, health.lease = beat.run or None, beat.cpu, beat.lease
        for cam in beat.cameras:
            key = (beat.node_id, cam.get("deployment"), cam.get("camera"))
            if key not in mine:
                continue  # not (or no longer) one of its cameras: nothing to count
            _camera(s, beat.run or "-", key, cam, now, rows, stats)


def _camera(s: Session, run: str, key: tuple[Any, ...], cam: dict[str, Any], now: datetime,
            rows: dict[tuple[Any, ...], NodeCamera],
            stats_rows: dict[tuple[Any, ...], CameraStats]) -> None:
    node_id, dep_id, camera = key

    def count(name: str, *alt: str) -> float:
        for k in (name, *alt):
            v = cam.get(k)
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                return max(0.0, float(v))
        return 0.0

    new = {"frames": int(count("frames")), "faces_seen": int(count("faces_seen", "faces")),
           "tracks": int(count("tracks")), "dropped": int(count("dropped", "drops")),
           "seconds": count("seconds")}
    row = rows.get(key)
    if row is None:
        row = rows[key] = NodeCamera(node_id=node_id, deployment_id=dep_id, camera=camera,
                                     run_id=run, frames=0, faces_seen=0, tracks=0, dropped=0,
                                     seconds=0.0, reconnects=0, connected=False)
        s.add(row)
        base = dict.fromkeys(new, 0)
    elif row.run_id != run or any(new[k] < getattr(row, k) for k in new):
        base = dict.fromkeys(new, 0)  # a new run of the node: its counts start again
    else:
        base = {k: getattr(row, k) for k in new}
    delta = {k: new[k] - base[k] for k in new}
    stats = stats_rows.get((dep_id, camera))
    if stats is None:
        stats = stats_rows[(dep_id, camera)] = CameraStats(
            deployment_id=dep_id, camera=camera, frames=0, faces_seen=0, tracks=0, dropped=0,
            seconds=0.0)
        s.add(stats)
    stats.frames = (stats.frames or 0) + int(delta["frames"])
    stats.faces_seen = (stats.faces_seen or 0) + int(delta["faces_seen"])
    stats.tracks = (stats.tracks or 0) + int(delta["tracks"])
    stats.dropped = (stats.dropped or 0) + int(delta["dropped"])
    stats.seconds = (stats.seconds or 0.0) + float(delta["seconds"])
    state = cam.get("state")
    connected = bool(cam.get("connected"))
    state = state[:20] if isinstance(state, str) else ("running" if connected else None)
    if state != stats.state:
        stats.state_since = now
    stats.state, stats.updated_at = state, now
    error = cam.get("error")
    stats.last_error = redact_text(error)[:500] if isinstance(error, str) else None
    for k, v in new.items():
        setattr(row, k, v)
    row.run_id, row.state, row.connected, row.updated_at = run, state, connected, now
    row.fps_in = count("fps_in") if "fps_in" in cam else None
    row.fps_analysed = count("fps_analysed") if "fps_analysed" in cam else None
    row.reconnects = int(count("reconnects"))


class CentreLink:
    """The centre's side of its nodes while ``openlfr serve`` runs with a broker: one
    background thread that answers leases, keeps heartbeats and stores the nodes' alerts and
    events (:meth:`openlfr.nodes.broker.Broker.serve`), reconnecting for ever, until
    :meth:`stop`."""

    def __init__(self, system: System, on_alert: OnAlert | None = None,
                 settings: Settings | None = None) -> None:
        from openlfr.governance import nodes

        settings = settings or system.settings
        broker = nodes.broker_of(settings)
        if broker is None:
            raise NotFound("no broker is configured (OPENLFR_NATS_URL)")
        self.broker = broker
        self.system = system
        self.signing = nodes.centre_signing(settings)
        self.ingest = Ingest(system, nodes.centre_box(settings), on_alert)
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _lease(self, subject: str, reply: str | None) -> bytes | None:
        from openlfr.governance import leases

        return leases.answer(self.system.db, self.signing, subject, reply)

    def _serve(self) -> None:
        try:
            self.broker.serve(on_lease=self._lease, on_health=self.ingest.healths,
                              on_messages=self.ingest.messages, stop=self._stop,
                              on_connected=self.connected.set)
        except Exception:  # pragma: no cover - serve only returns when stopped
            log.exception("the centre's link to its nodes stopped")

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="lfr-nodes", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.connected.clear()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
