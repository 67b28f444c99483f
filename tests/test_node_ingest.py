"""The centre's side of its nodes against a real ``nats-server`` (tests/natsfix.py), on SQLite
and PostgreSQL (``gov``): alerts from the nodes' stream stored once through the recorder, with
their crops opened and the audit chain whole; forged, misrouted, disabled and out-of-date
messages refused and audited; a centre stopped mid-burst loses and doubles nothing; leases; and
heartbeats that say who is online and add up in the public camera counts."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import pytest
from sqlalchemy import select, update

from openlfr.errors import Forbidden
from openlfr.governance import auditing, ingest, leases, nodes
from openlfr.governance import deployments as deps
from openlfr.governance.alerts import AlertRecorder, _crop
from openlfr.governance.ingest import CentreLink, Ingest
from openlfr.governance.watchlists import remove_subject
from openlfr.nodes import broker, protocol
from openlfr.nodes.keys import NodeKeys, b64, box_public, seal
from openlfr.store.models import Alert, CameraStats, Deployment, NodeHealth, Subject
from tests.govfix import Gov, audit_records, authorise
from tests.natsfix import NatsServer
from tests.test_gov_deployments import approved_watchlist, plan


class World:
    """A running deployment whose camera ``gate`` runs on the enrolled node ``van-1``."""

    def __init__(self, gov: Gov, settings: Any, face: Path) -> None:
        self.gov, self.settings = gov, settings
        nodes.add_site(gov.db, gov.actors["admin"], "high-street")
        issued = nodes.add_node(gov.db, gov.actors["admin"], "high-street", "van-1")
        self.keys = NodeKeys.generate()
        self.enrolment = nodes.enrol(gov.db, settings, issued.token,
                                     b64(self.keys.signing_public), b64(self.keys.box_public))
        self.node = self.enrolment.node_id
        wid = approved_watchlist(gov, face)
        cams = (deps.CameraSpec("gate", "/nonexistent/gate.avi", node="van-1"),)
        self.dep = deps.create(gov.db, gov.actors["op1"], plan((wid,), cameras=cams),
                               keyring=gov.system.keyring)
        authorise(gov.db, gov.system.keyring, gov.actors["ao1"], self.dep)
        deps.start(gov.db, gov.actors["op1"], self.dep)
        with gov.db.reading() as s:
            self.subject = s.scalars(select(Subject.id)).one()
            d = s.get(Deployment, self.dep)
            assert d is not None
            self.threshold, self.model = d.threshold, d.model_id
        self.box = box_public(nodes.centre_box(settings))
        self.jpeg = cv2.imencode(".jpg", cv2.imread(str(face)))[1].tobytes()

    def alert(self, alert_id: str, *, revision: int = 0, keys: NodeKeys | None = None,
              node: int | None = None, camera: str = "gate", score: float | None = None
              ) -> bytes:
        body = protocol.alert_body(
            alert_id=alert_id, deployment_id=self.dep, camera=camera,
            subject_id=str(self.subject), reference_id="", score=score or
            min(1.0, self.threshold + 0.1), threshold=self.threshold, model_id=self.model,
            seen_at=datetime.now(UTC), track_id=1, frame=3, t=0.1, box=(1, 2, 30, 40),
            revision=revision, latency=0.2, in_view=0.5,
            sealed_crop=seal(self.jpeg, self.box, protocol.crop_context(alert_id)))
        return protocol.seal_envelope((keys or self.keys).signing, "alert",
                                      node or self.node, alert_id, body)

    def alerts(self) -> list[Alert]:
        with self.gov.db.reading() as s:
            return list(s.scalars(select(Alert).order_by(Alert.id)))


async def _publish(url: str, seed: str, msgs: list[tuple[str, bytes, str]],
                   inbox: str | None = None) -> None:
    nc = await broker.connect(url, seed, inbox=inbox)
    try:
        js = nc.jetstream()
        for subject, data, msg_id in msgs:
            await js.publish(subject, data, headers={"Nats-Msg-Id": msg_id})
    finally:
        await nc.close()


def as_node(w: World, url: str, msgs: list[tuple[str, bytes, str]]) -> None:
    asyncio.run(_publish(url, w.keys.seed, msgs, broker.inbox_prefix(w.node)))


def as_centre(w: World, url: str, msgs: list[tuple[str, bytes, str]]) -> None:
    asyncio.run(_publish(url, broker.seed_nkey(nodes.centre_signing(w.settings)), msgs))


def drain(link: CentreLink, expect: int, timeout: float = 20.0) -> None:
    """Run until ``expect`` messages were handled and nothing is left in the stream."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        handled = sum(link.ingest.counts.values())
        if handled >= expect and link.broker.pending() == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"not drained: {link.ingest.counts}, {link.broker.pending()} pending")


@pytest.fixture()
def world(gov: Gov, nats_server: NatsServer, face_images: dict[str, Path]) -> World:
    return World(gov, nats_server.centre(gov.settings), face_images["obama"])


def _link(w: World, shown: list[int] | None = None) -> CentreLink:
    link = CentreLink(w.gov.system, settings=w.settings,
                      on_alert=(lambda row, _a: shown.append(row)) if shown is not None
                      else None)
    link.start()
    assert link.connected.wait(10)
    return link


def test_an_alert_is_stored_once_with_its_crop_and_pushed(world: World,
                                                          nats_server: NatsServer) -> None:
    w = world
    shown: list[int] = []
    link = _link(w, shown)
    try:
        first = w.alert("a-1")
        subject = protocol.alert_subject(w.node)
        # twice with the same Nats-Msg-Id (the stream keeps one), then again as if after the
        # de-duplication window (another message id: the centre keeps one)
        as_node(w, nats_server.url, [(subject, first, "a-1"), (subject, first, "a-1"),
                                     (subject, first, "a-1-again")])
        drain(link, 2)
    finally:
        link.stop()
    rows = w.alerts()
    assert len(rows) == 1 and rows[0].node_alert_id == f"{w.node}:a-1"
    assert rows[0].camera == "gate" and rows[0].subject_id == w.subject
    assert shown == [rows[0].id]
    with w.gov.db.reading() as s:
        assert _crop(w.gov.system, s, rows[0].id)[1] == w.jpeg
    assert link.ingest.counts == {"ack": 2, "term": 0, "retry": 0}
    created = audit_records(w.gov, "alert.create")
    assert len(created) == 1 and f'"node_alert":"{w.node}:a-1"' in created[0].details
    assert auditing.verify(w.gov.db, w.gov.actors["au1"]).as_dict()["ok"] is True
    # nothing readable on the broker: the crop is sealed to the centre
    raw = b"".join(link.broker.raw_messages(protocol.NODES_STREAM))
    assert w.jpeg[:200] not in raw


def test_a_later_revision_updates_and_an_event_is_audited_once(world: World,
                                                               nats_server: NatsServer) -> None:
    w = world
    link = _link(w)
    try:
        event = protocol.seal_envelope(w.keys.signing, "event", w.node, "ev-1",
                                       {"event": "run_started", "deployment": w.dep,
                                        "cameras": 1})
        as_node(w, nats_server.url, [
            (protocol.alert_subject(w.node), w.alert("a-2"), "a-2.0"),
            (protocol.alert_subject(w.node), w.alert("a-2", revision=1, score=0.99), "a-2.1"),
            (protocol.event_subject(w.node), event, "ev-1"),
            (protocol.event_subject(w.node), event, "ev-1-again")])
        drain(link, 4)
    finally:
        link.stop()
    rows = w.alerts()
    assert len(rows) == 1 and rows[0].revision == 1 and rows[0].score == pytest.approx(0.99)
    started = audit_records(w.gov, "node.run_started")
    assert len(started) == 1 and started[0].actor == "node:van-1"


def test_forged_misrouted_disabled_and_removed_are_refused_and_audited(
        world: World, nats_server: NatsServer) -> None:
    w = world
    gov = w.gov
    other_issued = nodes.add_node(gov.db, gov.actors["admin"], "high-street", "van-2")
    other = NodeKeys.generate()
    second = nodes.enrol(gov.db, w.settings, other_issued.token, b64(other.signing_public),
                         b64(other.box_public))

    # a node may not publish on another node's subject: the broker refuses it
    async def misrouted_by_a_node() -> None:
        async with broker.NodeClient(nats_server.url, second.node_id, other.seed) as c:
            with contextlib.suppress(Forbidden):
                await c.publish(protocol.alert_subject(w.node), w.alert("x-0"))
    asyncio.run(misrouted_by_a_node())
    deadline = time.monotonic() + 5
    while "Publish Violation" not in nats_server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "Publish Violation" in nats_server.log()
    assert protocol.alert_subject(w.node) in nats_server.log()

    link = _link(w)
    try:
        forged = w.alert("x-1", keys=other)  # claims van-1, signed with another key
        misrouted = w.alert("x-2")  # van-1's message put on van-2's subject
        wrong_camera = w.alert("x-3", camera="hall")
        as_centre(w, nats_server.url, [
            (protocol.alert_subject(w.node), forged, "x-1"),
            (protocol.alert_subject(second.node_id), misrouted, "x-2"),
            (protocol.alert_subject(w.node), wrong_camera, "x-3")])
        drain(link, 3)
        # a removed subject's alert is refused
        remove_subject(gov.db, gov.actors["op1"], w.subject, "no longer wanted")
        as_node(w, nats_server.url, [(protocol.alert_subject(w.node), w.alert("x-4"), "x-4")])
        drain(link, 4)
        # a disabled node's message (published by whoever can) is refused
        late = w.alert("x-5")
        nodes.disable(gov.db, w.settings, gov.actors["admin"], "van-1", "the van was stolen")
        as_centre(w, nats_server.url, [(protocol.alert_subject(w.node), late, "x-5")])
        drain(link, 5)
    finally:
        link.stop()
    assert w.alerts() == []
    assert link.ingest.counts == {"ack": 0, "term": 5, "retry": 0}
    refused = audit_records(gov, "node.message_refused")
    reasons = [r.details for r in refused]
    assert len(refused) == 5, reasons
    assert "signature does not verify" in reasons[0]
    assert "misrouted" in reasons[1]
    assert "not one of deployment" in reasons[2]
    assert "no longer on an approved watchlist" in reasons[3]
    assert "not enrolled, or is disabled" in reasons[4]
    assert all("crop" not in r.details or "sealed" not in r.details for r in refused)
    assert all(w.jpeg[:50].hex() not in r.details for r in refused)
    assert auditing.verify(gov.db, gov.actors["au1"]).as_dict()["ok"] is True


def test_the_centre_stopped_mid_burst_loses_and_doubles_nothing(
        world: World, nats_server: NatsServer) -> None:
    w = world
    n = 150  # more than two of the centre's batches (64): it stops between two
    as_node(w, nats_server.url, [(protocol.alert_subject(w.node), w.alert(f"b-{i}"), f"b-{i}")
                                 for i in range(n)])
    link = _link(w)
    deadline = time.monotonic() + 20
    while link.ingest.counts["ack"] < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    link.stop()  # mid-burst: what was fetched and not stored is given back
    assert 5 <= link.ingest.counts["ack"] < n
    again = _link(w)
    try:
        drain(again, n - link.ingest.counts["ack"])
    finally:
        again.stop()
    rows = w.alerts()
    assert sorted(r.node_alert_id for r in rows) == sorted(f"{w.node}:b-{i}" for i in range(n))
    assert len(audit_records(w.gov, "alert.create")) == n


def test_a_database_failure_leaves_the_message_for_later(world: World) -> None:
    w = world
    ing = Ingest(w.gov.system, nodes.centre_box(w.settings))
    real = ing._recorder

    def broken(dep_id: int) -> Any:
        raise ConnectionError("database down")
    ing._recorder = broken  # type: ignore[method-assign]
    data = w.alert("c-1")
    assert ing.message(protocol.alert_subject(w.node), data) == ingest.RETRY
    ing._recorder = real  # type: ignore[method-assign]
    assert ing.message(protocol.alert_subject(w.node), data) == ingest.ACK
    assert len(w.alerts()) == 1


def test_leases_for_running_deployments_on_enrolled_nodes_only(
        world: World, nats_server: NatsServer) -> None:
    w = world
    gov = w.gov
    with gov.db.session() as s:
        s.execute(update(Deployment).where(Deployment.id == w.dep).values(lease_seconds=45))
    key = nodes.centre_signing(w.settings)
    subject, inbox = protocol.lease_subject(w.node), f"{broker.inbox_prefix(w.node)}.x"
    # the node's desired state is not in the broker yet: no lease (it could match on an old one)
    assert leases.answer(gov.db, key, subject, inbox) is None
    nodes.sync_desired(gov.db, gov.system.keyring, w.settings)
    link = _link(w)
    try:
        async def ask() -> bytes:
            async with broker.NodeClient(nats_server.url, w.node, w.keys.seed) as c:
                assert c.nc is not None
                msg = await c.nc.request(protocol.lease_subject(w.node), b"", timeout=5)
                return bytes(msg.data)
        t0 = datetime.now(UTC)
        lease = protocol.open_lease(asyncio.run(ask()), bytes.fromhex(
            nodes.centre_signing(w.settings).public_key().public_bytes_raw().hex()), w.node)
    finally:
        link.stop()
    expires = lease.expires(w.dep)
    assert expires is not None
    assert t0 + timedelta(seconds=44) <= expires <= datetime.now(UTC) + timedelta(seconds=45)
    # an answer is sent only to the node's own inbox
    assert leases.answer(gov.db, key, subject, "_INBOX.node.99.x") is None
    assert leases.answer(gov.db, key, subject, None) is None
    # a stopped deployment: a signed lease naming none
    deps.stop(gov.db, gov.actors["op1"], w.dep, "the operation is over")
    assert leases.answer(gov.db, key, subject, inbox) is None  # until the stop is written
    nodes.sync_desired(gov.db, gov.system.keyring, w.settings)
    empty = leases.answer(gov.db, key, subject, inbox)
    assert empty is not None
    assert protocol.open_lease(empty, key.public_key().public_bytes_raw(),
                               w.node).deployments == {}
    nodes.disable(gov.db, w.settings, gov.actors["admin"], "van-1", "retired")
    assert leases.answer(gov.db, key, subject, inbox) is None
    assert leases.answer(gov.db, key, protocol.lease_subject(999), "_INBOX.node.999.x") is None


def _beat(w: World, run: str, frames: int, keys: NodeKeys | None = None,
          node: int | None = None) -> bytes:
    return protocol.seal_envelope((keys or w.keys).signing, "health", node or w.node,
                                  f"h-{run}-{frames}", {
                                      "interval": 5, "run": run, "cpu": 12.5,
                                      "lease": {str(w.dep): "2030-01-01T00:00:00+00:00"},
                                      "cameras": [{"deployment": w.dep, "camera": "gate",
                                                   "connected": True, "state": "running",
                                                   "fps_in": 25.0, "fps_analysed": 15.0,
                                                   "frames": frames, "faces_seen": frames // 10,
                                                   "tracks": 1, "dropped": 0,
                                                   "reconnects": 0, "seconds": frames / 25}]})


def test_heartbeats_say_who_is_online_and_counts_add_up(world: World) -> None:
    w = world
    ing = Ingest(w.gov.system, nodes.centre_box(w.settings))
    subject = protocol.health_subject(w.node)
    t0 = datetime.now(UTC)
    assert ing.health(subject, _beat(w, "r1", 100), now=t0)
    assert ing.health(subject, _beat(w, "r1", 100), now=t0)  # the same again: nothing added
    assert ing.health(subject, _beat(w, "r1", 250), now=t0)
    assert ing.health(subject, _beat(w, "r2", 40), now=t0)  # the node restarted: from zero
    assert not ing.health(subject, _beat(w, "r2", 99, keys=NodeKeys.generate()), now=t0)
    with w.gov.db.reading() as s:
        stats = s.scalars(select(CameraStats).where(CameraStats.deployment_id == w.dep)).one()
        assert (stats.frames, stats.faces_seen, stats.state) == (290, 29, "running")
        health = s.get(NodeHealth, w.node)
        assert ingest.online(health, t0 + timedelta(seconds=14))
        assert not ingest.online(health, t0 + timedelta(seconds=16))
    view = nodes.show_node(w.gov.db, w.gov.actors["au1"], "van-1")
    assert view.online is not None
    assert [c.frames for c in view.camera_health] == [40]
    assert len(audit_records(w.gov, "node.message_refused")) == 1


def test_a_batch_stores_the_good_alerts_and_refuses_the_bad_alone(world: World) -> None:
    w = world
    ing = Ingest(w.gov.system, nodes.centre_box(w.settings))
    subject = protocol.alert_subject(w.node)
    batch = [(subject, w.alert("g-1")), (subject, w.alert("g-2", camera="not-mine")),
             (subject, w.alert("g-3")), (subject, b"not json"), (subject, w.alert("g-4"))]
    assert ing.messages(batch) == [ingest.ACK, ingest.TERM, ingest.ACK, ingest.TERM,
                                   ingest.ACK]
    assert [r.node_alert_id for r in w.alerts()] == [f"{w.node}:g-{i}" for i in (1, 3, 4)]
    # a store that fails for one alert: the batch is tried again one by one, the others kept
    real = AlertRecorder._store

    def failing(self: AlertRecorder, s: Any, alert: Any, *rest: Any) -> Any:
        if alert.alert_id == "g-6":
            raise ConnectionError("database down")
        return real(self, s, alert, *rest)
    AlertRecorder._store = failing  # type: ignore[method-assign]
    try:
        verdicts = ing.messages([(subject, w.alert(f"g-{i}")) for i in (5, 6, 7)])
    finally:
        AlertRecorder._store = real  # type: ignore[method-assign]
    assert verdicts == [ingest.ACK, ingest.RETRY, ingest.ACK]
    assert ing.messages([(subject, w.alert("g-6"))]) == [ingest.ACK]  # delivered again
    assert len(w.alerts()) == 6 and len(audit_records(w.gov, "alert.create")) == 6


def test_heartbeats_queued_behind_a_slow_store_are_coalesced(
        world: World, nats_server: NatsServer) -> None:
    w = world
    calls: list[int] = []
    link = CentreLink(w.gov.system, settings=w.settings)
    real = link.ingest.healths

    def slow(items: Any, now: Any = None) -> list[bool]:
        calls.append(len(items))
        if len(calls) == 1:
            time.sleep(1.5)  # the database is slow: heartbeats arrive meanwhile
        return real(items, now)
    link.ingest.healths = slow  # type: ignore[method-assign]
    link.start()
    assert link.connected.wait(10)
    try:
        async def beats() -> None:
            nc = await broker.connect(nats_server.url, w.keys.seed,
                                      inbox=broker.inbox_prefix(w.node))
            try:
                for frames in range(100, 3100, 100):  # 30 heartbeats, counts growing
                    await nc.publish(protocol.health_subject(w.node), _beat(w, "r1", frames))
                    await asyncio.sleep(0.02)
                await nc.flush()
            finally:
                await nc.close()
        asyncio.run(beats())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with w.gov.db.reading() as s:
                stats = s.scalars(select(CameraStats).where(
                    CameraStats.deployment_id == w.dep)).first()
                if stats is not None and stats.frames == 3000:
                    break
            time.sleep(0.1)
    finally:
        link.stop()
    assert stats is not None and stats.frames == 3000  # the newest counts: nothing lost
    assert len(calls) < 10, calls  # 30 heartbeats, kept in a few goes


def test_a_plan_sets_its_lease(gov: Gov) -> None:
    from dataclasses import replace

    from openlfr.governance.authz import RuleError

    with pytest.raises(RuleError, match="lease lasts 10 to 3600 seconds"):
        deps.create(gov.db, gov.actors["op1"], replace(plan(), lease_seconds=5),
                    keyring=gov.system.keyring)
    dep_id = deps.create(gov.db, gov.actors["op1"], replace(plan(), lease_seconds=30),
                         keyring=gov.system.keyring)
    assert deps.show(gov.db, gov.actors["op1"], dep_id).lease_seconds == 30
    assert deps.edit(gov.db, gov.actors["op1"], dep_id, keyring=gov.system.keyring,
                     lease_seconds=120) == ["lease_seconds"]


def test_serve_without_a_broker_is_unchanged(gov: Gov) -> None:
    from openlfr.web.jobs import BackgroundJobs

    jobs = BackgroundJobs(gov.system)
    assert jobs.nodes is None
    jobs.step()  # reconciles, and tries no broker


def test_the_centre_opens_no_camera_of_a_node(world: World) -> None:
    from openlfr.governance.live import runs_on_nodes_only
    from openlfr.web.jobs import BackgroundJobs, OnNodes

    w = world
    assert runs_on_nodes_only(w.gov.db, w.dep)
    jobs = BackgroundJobs(w.gov.system)
    try:
        jobs.reconcile()
        run = jobs.runs[w.dep]
        assert isinstance(run, OnNodes) and run.running
    finally:
        jobs.stop()
    assert not run.running
    with w.gov.db.reading() as s:  # nothing was opened: no camera state was written
        assert s.scalars(select(CameraStats)).all() == []


def test_a_link_stops_cleanly(world: World) -> None:
    link = _link(world)
    t0 = time.monotonic()
    link.stop()
    assert not link.running and time.monotonic() - t0 < 3
    assert threading.active_count() < 50


def test_migration_0018_matches_the_models(gov: Gov) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from openlfr.store.models import Base

    with gov.db.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    ours = [d for d in diffs if any(t in repr(d) for t in (
        "node_health", "node_cameras", "node_alert_id", "lease_seconds"))]
    assert not ours, ours


def test_serve_with_a_broker_runs_the_link_and_pushes_node_alerts(
        world: World, nats_server: NatsServer) -> None:
    from dataclasses import replace

    from openlfr.web.jobs import BackgroundJobs

    w = world
    system = replace(w.gov.system, settings=w.settings)
    jobs = BackgroundJobs(system, reconcile_every=0.2)
    shown: list[int] = []
    jobs.add_alert_listener(lambda row, _alert: shown.append(row))
    assert jobs.nodes is not None
    jobs.start()
    try:
        assert jobs.nodes.connected.wait(10)
        as_node(w, nats_server.url, [(protocol.alert_subject(w.node), w.alert("s-1"), "s-1")])
        deadline = time.monotonic() + 15
        while not shown and time.monotonic() < deadline:
            time.sleep(0.05)
        # a reconcile tick writes the node's desired state (its deployment, its camera); the
        # alert may have come before the first tick did
        document = jobs.nodes.broker.get_desired(w.node)
        while document is None and time.monotonic() < deadline + 15:
            time.sleep(0.1)
            document = jobs.nodes.broker.get_desired(w.node)
        assert document is not None and b'"gate"' in document
    finally:
        t0 = time.monotonic()
        jobs.stop()
    assert time.monotonic() - t0 < 5 and not jobs.nodes.running
    assert shown == [r.id for r in w.alerts()] and len(shown) == 1


def test_a_mixed_deployment_opens_only_the_centres_cameras(
        gov: Gov, face_images: dict[str, Path]) -> None:
    from openlfr.governance.authz import SYSTEM_ACTOR
    from openlfr.governance.live import DeploymentRun, runs_on_nodes_only

    nodes.add_site(gov.db, gov.actors["admin"], "high-street")
    nodes.add_node(gov.db, gov.actors["admin"], "high-street", "van-1")
    wid = approved_watchlist(gov, face_images["obama"])
    dep = deps.create(gov.db, gov.actors["op1"], plan((wid,), cameras=(
        deps.CameraSpec("gate", "/nonexistent/gate.avi", node="van-1"),
        deps.CameraSpec("hall", "/nonexistent/hall.avi"))), keyring=gov.system.keyring)
    authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep)
    deps.start(gov.db, gov.actors["op1"], dep)
    assert not runs_on_nodes_only(gov.db, dep)
    _model, sources, *_rest = DeploymentRun(gov.system, dep, SYSTEM_ACTOR)._check()
    assert [name for name, _source in sources] == ["hall"]
