"""The node's side of sites and nodes (``openlfr node run``), against a real ``nats-server``
(tests/natsfix.py), real models and real clips: the desired state written by the centre
(``sync_desired`` on a real database) starts a run on the node within 2 s and stops it; a
removed subject's gallery is reloaded; without a lease the run stops and the health says so,
and on regaining it the current state is applied before matching again; a watchlist destroyed
while the node could not hear is never matched after the reconnection; the outbox survives a
``kill -9`` of a real ``openlfr node run`` process and is published once; a node cannot
publish to another node's subjects. The centre's lease responder and the reading of the
stream are stood in for here by the protocol's own functions."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import select

from openlfr.errors import Forbidden, Unavailable
from openlfr.governance import deployments as deps
from openlfr.governance import nodes, watchlists
from openlfr.governance.system import System
from openlfr.nodes import broker, protocol
from openlfr.nodes.agent import AgentOptions, DocumentSource, NodeAgent
from openlfr.nodes.keys import SEAL_MAGIC, NodeKeys, b64, open_sealed, seed_nkey
from openlfr.nodes.noderun import CameraEntry, DeploymentEntry, NodeRunOptions, refusal
from openlfr.store.models import Subject
from tests.govfix import Gov
from tests.natsfix import NatsServer
from tests.nodefix import deployment_on_node, node_process, outbox, restart, wait_for
from tests.test_gov_deployments import approved_watchlist

LEASE_S = 2.0


# -- the centre, stood in for ------------------------------------------------------------------

class Centre:
    """The centre's side as far as a node sees it: its database and broker (``sync_desired``),
    a lease responder signing with the centre's key, the nodes' stream read back, and its
    health messages."""

    def __init__(self, gov: Gov, server: NatsServer) -> None:
        self.gov = gov
        self.server = server
        self.settings = server.centre(gov.settings)
        self.key = broker.load_or_create_seed(server.centre_seed_file)
        self.lease_key = self.key  # what leases are signed with (a forger's, in one test)
        self.box = X25519PrivateKey.generate()
        self.answering = True
        self.lease_s = LEASE_S
        self.health: list[protocol.Envelope] = []
        self.signing: dict[int, bytes] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.nc: Any = self.call(self._connect())

    def call(self, coro: Any, timeout: float = 20.0) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(timeout)

    async def _connect(self) -> Any:
        nc = await broker.connect(self.server.url, seed_nkey(self.key), reconnect=True)

        async def lease(msg: Any) -> None:
            node = protocol.subject_node(msg.subject)
            if not self.answering or node is None:
                return
            wanted = json.loads(msg.data)["deployments"]
            now = datetime.now(UTC)
            await msg.respond(protocol.sign_lease(
                self.lease_key, node, {int(d): now + timedelta(seconds=self.lease_s)
                                 for d in wanted}))

        async def health(msg: Any) -> None:
            node = protocol.subject_node(msg.subject)
            if node is not None and node in self.signing:
                self.health.append(protocol.open_envelope(msg.data, msg.subject,
                                                          self.signing[node]))

        await nc.subscribe("openlfr.node.*.lease", cb=lease)
        await nc.subscribe("openlfr.node.*.health", cb=health)
        return nc

    def close(self) -> None:
        self.call(self.nc.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def make_stream(self) -> None:
        async def go() -> None:
            await self.nc.jetstream().add_stream(
                name=protocol.NODES_STREAM, subjects=list(protocol.NODES_STREAM_SUBJECTS),
                duplicate_window=protocol.DUPLICATE_WINDOW_S)
        self.call(go())

    def drop_stream(self) -> None:
        """No nodes' stream (the centre makes it when a node enrolls): nothing a node
        publishes can be acknowledged."""
        async def go() -> None:
            from nats.js.errors import NotFoundError
            with suppress(NotFoundError):
                await self.nc.jetstream().delete_stream(protocol.NODES_STREAM)
        self.call(go())

    def messages(self) -> list[tuple[str, str, protocol.Envelope]]:
        """Every message of the stream: (subject, Nats-Msg-Id, the verified envelope)."""
        async def go() -> list[tuple[str, str, bytes]]:
            js = self.nc.jetstream()
            info = await js.stream_info(protocol.NODES_STREAM)
            out: list[tuple[str, str, bytes]] = []
            if not info.state.messages:
                return out
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(protocol.NODES_STREAM, seq)
                out.append((msg.subject, (msg.headers or {}).get("Nats-Msg-Id", ""),
                            bytes(msg.data)))
            return out
        return [(subject, msg_id, protocol.open_envelope(
            data, subject, self.signing.get(protocol.subject_node(subject) or -1)))
            for subject, msg_id, data in self.call(go())]

    def alerts(self) -> list[protocol.Envelope]:
        return [e for _, _, e in self.messages() if e.kind == "alert"]

    def events(self, name: str | None = None) -> list[protocol.Envelope]:
        return [e for _, _, e in self.messages()
                if e.kind == "event" and (name is None or e.body["event"] == name)]

    def sync(self) -> list[nodes.Sent]:
        return nodes.sync_desired(self.gov.db, self.gov.system.keyring, self.settings)

    def enrol(self, folder: Path, name: str = "van-1") -> int:
        """A node enrolled (its keys in ``folder``, node.json as the centre answers)."""
        if not nodes.list_sites(self.gov.db, self.gov.actors["admin"]):
            nodes.add_site(self.gov.db, self.gov.actors["admin"], "high-street")
        issued = nodes.add_node(self.gov.db, self.gov.actors["admin"], "high-street", name)
        keys = NodeKeys.generate()
        keys.save(folder)
        answer = nodes.enrol(self.gov.db, self.settings, issued.token,
                             b64(keys.signing_public), b64(keys.box_public))
        info = answer.model_dump(mode="json")
        info["centre_signing_key"] = b64(self.key.public_key().public_bytes_raw())
        info["centre_box_key"] = b64(self.box.public_key().public_bytes_raw())
        (folder / "node.json").write_text(json.dumps(info))
        self.signing[answer.node_id] = keys.signing_public
        return answer.node_id


@pytest.fixture()
def centre(sqlite_gov: Gov, nats_server: NatsServer) -> Iterator[Centre]:
    c = Centre(sqlite_gov, nats_server)
    try:
        yield c
    finally:
        c.close()


OPTIONS = AgentOptions(health_every=0.5, tick_every=0.25, lease_retry=0.5,
                       run=NodeRunOptions(realtime=True, loop=True, workers=1))


@contextmanager
def running(folder: Path, options: AgentOptions = OPTIONS) -> Iterator[NodeAgent]:
    """``openlfr node run`` in this process (a thread of its own)."""
    agent = NodeAgent(folder, options=options)
    thread = threading.Thread(target=asyncio.run, args=(agent.run(),), daemon=True)
    thread.start()
    wait_for("the agent's loop", lambda: agent._stop is not None, 10)
    try:
        yield agent
    finally:
        agent.shutdown()
        thread.join(30)
        assert not thread.is_alive(), "the agent did not stop"


def run_of(agent: NodeAgent, dep_id: int) -> Any:
    run = agent.reconciler.runs.get(dep_id)
    return run if run is not None and run.running else None


def subject_of(gov: Gov, wid: int) -> int:
    with gov.db.reading() as s:
        sid = s.scalar(select(Subject.id).where(Subject.watchlist_id == wid))
        assert sid is not None
        return int(sid)


# -- the node's own rules (no broker) --------------------------------------------------------


def test_the_node_refuses_past_the_window_and_below_the_floor() -> None:
    from openlfr.vision import registry

    spec = registry.backend_spec("sface")
    now = datetime.now(UTC)
    entry = DeploymentEntry(1, "x", spec.default_floor or 0.5, spec.model_id,
                            now + timedelta(hours=1), "deployment-1", "f",
                            (CameraEntry("gate", "sealed", (), ()),))
    assert refusal(entry, now) is None
    from dataclasses import replace
    assert "below the model's floor" in (refusal(replace(entry, threshold=0.1), now) or "")
    assert "window has ended" in (refusal(entry, now + timedelta(hours=2)) or "")
    assert "no camera" in (refusal(replace(entry, cameras=()), now) or "")
    assert "not one this node" in (refusal(replace(entry, model_id="mystery"), now) or "")
    # and the source offers the reconciler nothing the node refuses or holds no lease for
    source = DocumentSource()
    source.install({1: entry, 2: replace(entry, id=2, threshold=0.1)}, {})
    assert source.wanted(now) == {}
    key = __import__("cryptography.hazmat.primitives.asymmetric.ed25519",
                     fromlist=["Ed25519PrivateKey"]).Ed25519PrivateKey.generate()
    source.lease = protocol.open_lease(protocol.sign_lease(
        key, 5, {1: now + timedelta(seconds=60), 2: now + timedelta(seconds=60)}),
        key.public_key().public_bytes_raw(), 5)
    assert source.wanted(now) == {1: "f"}
    assert "floor" in source.refused[2]
    assert source.wanted(now + timedelta(seconds=61)) == {}  # the lease ran out


# -- against a real broker -------------------------------------------------------------------


def test_desired_state_starts_and_stops_a_run_within_2_s_and_alerts_arrive_sealed(
        centre: Centre, tmp_path: Path, face_images, clips) -> None:
    gov = centre.gov
    centre.make_stream()
    centre.enrol(tmp_path / "node")
    wid = approved_watchlist(gov, face_images["obama"])
    dep_id = deployment_on_node(gov, clips.obama, (wid,))
    centre.sync()
    with running(tmp_path / "node") as agent:
        wait_for("the agent connected", lambda: agent.client.connected, 10)
        time.sleep(0.5)
        assert agent.reconciler.runs == {}
        deps.start(gov.db, gov.actors["op1"], dep_id)
        t0 = time.monotonic()
        centre.sync()
        wait_for("a run on the node", lambda: run_of(agent, dep_id), 5)
        took = time.monotonic() - t0
        assert took < 2.0, took
        wait_for("an alert in the stream", lambda: centre.alerts(), 60)
        wait_for("a health report saying running", lambda: any(
            h.body["state"] == "running" for h in centre.health), 10)
        deps.stop(gov.db, gov.actors["op1"], dep_id, "The operation is over")
        t0 = time.monotonic()
        centre.sync()
        wait_for("the run stopped", lambda: dep_id not in agent.reconciler.runs, 5)
        assert time.monotonic() - t0 < 2.0
    (alert, *_) = centre.alerts()
    body = alert.body
    assert (body["deployment"], body["camera"], body["revision"]) == (dep_id, "gate", 0)
    assert body["score"] >= body["threshold"] and body["subject"] == str(subject_of(gov, wid))
    crop = open_sealed(protocol.sealed_crop(body), centre.box,
                       protocol.crop_context(body["alert_id"]))
    image = cv2.imdecode(np.frombuffer(crop, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[0] > 20
    ids = [(m, e.msg_id) for _, m, e in centre.messages()]
    assert all(m == e for m, e in ids), "Nats-Msg-Id is the envelope's id"
    names = [e.body["event"] for e in centre.events()]
    assert names[0] == "run_started" and "run_stopped" in names
    (started,) = centre.events("run_started")
    assert (started.body["deployment"], started.body["subjects"]) == (dep_id, 1)
    assert not list((tmp_path / "node" / "outbox").glob("*.msg"))  # all acknowledged
    h = [h for h in centre.health if h.body["state"] == "running"][-1]
    (cam,) = h.body["cameras"]
    assert cam["camera"] == "gate" and cam["frames"] > 0 and "cpu" in h.body and h.body["run"]
    assert h.body["deployments"][str(dep_id)]["lease_expires"] is not None


def test_a_removed_subject_is_no_longer_searched(centre: Centre, tmp_path: Path,
                                                 face_images, clips) -> None:
    gov = centre.gov
    centre.make_stream()
    centre.enrol(tmp_path / "node")
    wid = approved_watchlist(gov, face_images["obama"])
    dep_id = deployment_on_node(gov, clips.obama, (wid,))
    deps.start(gov.db, gov.actors["op1"], dep_id)
    centre.sync()
    with running(tmp_path / "node") as agent:
        wait_for("an alert", lambda: centre.alerts(), 60)
        run = run_of(agent, dep_id)
        assert run.gallery_size() == (1, 1)
        watchlists.remove_subject(gov.db, gov.actors["op1"], subject_of(gov, wid), "Arrested")
        t0 = time.monotonic()
        centre.sync()
        wait_for("the gallery reloaded", lambda: run.gallery_size() == (0, 0), 5)
        assert time.monotonic() - t0 < 2.0
        assert run_of(agent, dep_id) is run  # the same run, its gallery swapped
        time.sleep(0.5)
        before = len(centre.alerts())
        time.sleep(3.5)  # the person keeps walking in (the clip loops)
        assert len(centre.alerts()) == before
        wait_for("the reload event", lambda: centre.events("gallery_reloaded"), 5)
    (reload,) = centre.events("gallery_reloaded")
    assert (reload.body["subjects_before"], reload.body["subjects_after"]) == (1, 0)


def test_without_a_lease_the_run_stops_and_on_regaining_it_the_state_is_applied_first(
        centre: Centre, tmp_path: Path, face_images, clips) -> None:
    gov = centre.gov
    centre.make_stream()
    centre.enrol(tmp_path / "node")
    wid = approved_watchlist(gov, face_images["obama"])
    dep_id = deployment_on_node(gov, clips.obama, (wid,))
    deps.start(gov.db, gov.actors["op1"], dep_id)
    centre.sync()
    with running(tmp_path / "node") as agent:
        wait_for("a run", lambda: run_of(agent, dep_id), 10)
        centre.answering = False
        t0 = time.monotonic()
        wait_for("the run stopped", lambda: dep_id not in agent.reconciler.runs, 10)
        assert time.monotonic() - t0 < LEASE_S + 1.0
        wait_for("health: lease lost", lambda: any(
            h.body["state"] == "lease lost"
            and h.body["deployments"][str(dep_id)]["state"] == "lease lost"
            for h in centre.health), 5)
        wait_for("the lease_lost event", lambda: centre.events("lease_lost"), 5)
        # meanwhile the centre removes the subject; the node is not to match until it applied
        watchlists.remove_subject(gov.db, gov.actors["op1"], subject_of(gov, wid), "Arrested")
        centre.sync()
        time.sleep(1.0)
        assert agent.reconciler.runs == {}  # still no lease: nothing runs
        regained_at = datetime.now(UTC)
        centre.answering = True
        wait_for("running again", lambda: run_of(agent, dep_id), 10)
        assert run_of(agent, dep_id).gallery_size() == (0, 0)
        time.sleep(3.0)
        wait_for("the regained event", lambda: centre.events("lease_regained"), 5)
    names = [e.body["event"] for e in centre.events()]
    assert names.index("lease_regained") < len(names) - 1 - names[::-1].index("run_started")
    last_start = centre.events("run_started")[-1]
    assert last_start.body["subjects"] == 0
    assert [a for a in centre.alerts() if a.sent_at > regained_at] == []


def test_a_watchlist_destroyed_while_the_node_could_not_hear_is_never_matched(
        centre: Centre, tmp_path: Path, face_images, clips) -> None:
    gov = centre.gov
    server = centre.server
    centre.make_stream()
    centre.enrol(tmp_path / "node")
    wid = approved_watchlist(gov, face_images["obama"])
    dep_id = deployment_on_node(gov, clips.obama, (wid,))
    deps.start(gov.db, gov.actors["op1"], dep_id)
    centre.sync()
    with running(tmp_path / "node") as agent:
        wait_for("an alert", lambda: centre.alerts(), 60)
        server.stop()  # the link is cut
        wait_for("the lease lost", lambda: agent.health()["deployments"][str(dep_id)][
            "state"] == "lease lost", LEASE_S + 5)
        wait_for("the run stopped", lambda: run_of(agent, dep_id) is None, 5)
        watchlists.destroy_watchlist(System(gov.settings, gov.db, gov.system.keyring),
                                     gov.actors["ao1"], wid, "Operation over")
        destroyed_at = datetime.now(UTC)
        # the broker comes back (same store, same port); the centre writes the current
        # state before it grants a lease again
        centre.answering = False
        restart(server)
        wait_for("the centre's sync", lambda: centre.sync() or True, 20)
        centre.answering = True
        wait_for("running again after the reconnection", lambda: run_of(agent, dep_id), 30)
        run = run_of(agent, dep_id)
        assert run.gallery_size() == (0, 0)
        frames = sum(f.frames for f in run.figures())
        time.sleep(4.0)  # the watched face keeps walking in
        assert sum(f.frames for f in run.figures()) > frames
        wait_for("the outbox drained", lambda: not agent.outbox.pending(), 10)
    late = [a for a in centre.alerts() if a.sent_at > destroyed_at]
    assert late == []
    assert centre.events("lease_regained")


def test_the_outbox_survives_kill_9_and_is_published_once(
        centre: Centre, tmp_path: Path, face_images, clips) -> None:
    gov = centre.gov
    folder = tmp_path / "node"
    centre.enrol(folder)
    wid = approved_watchlist(gov, face_images["obama"])
    dep_id = deployment_on_node(gov, clips.obama, (wid,))
    deps.start(gov.db, gov.actors["op1"], dep_id)
    centre.sync()
    # The centre's stream is not there: nothing can be acknowledged, all is kept.
    centre.drop_stream()
    proc = node_process(folder)
    try:
        wait_for("an alert in the outbox", lambda: any(
            s.endswith(".alert") for s, _ in outbox(folder).values()), 90, step=0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    kept = outbox(folder)
    for subject, path in kept.values():
        assert path.stat().st_mode & 0o777 == 0o600
        raw = path.read_bytes()
        assert b"Obama" not in raw
        envelope = json.loads(base64.b64decode(json.loads(raw)["data"]))
        if subject.endswith(".alert"):  # the crop is sealed: only the centre's key opens it
            crop = protocol.sealed_crop(envelope["body"])
            assert not crop.startswith(b"\xff\xd8") and crop.startswith(SEAL_MAGIC)
            assert open_sealed(crop, centre.box, protocol.crop_context(
                envelope["body"]["alert_id"])).startswith(b"\xff\xd8")
    centre.make_stream()
    # One message made it to the stream just before the kill (acknowledged, not yet deleted)
    first_id, (first_subject, first_path) = next(iter(kept.items()))
    data = base64.b64decode(json.loads(first_path.read_text())["data"])
    centre.call(centre.nc.jetstream().publish(first_subject, data,
                                              headers={"Nats-Msg-Id": first_id}))
    proc = node_process(folder)
    try:
        wait_for("the old outbox published", lambda: not (set(outbox(folder)) & set(kept)),
                 90, step=0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    ids = [m for _, m, _ in centre.messages()]
    assert len(ids) == len(set(ids)), "a message stored twice"
    assert set(kept) <= set(ids)
    alerts = [e for e in (x for _, _, x in centre.messages()) if e.kind == "alert"]
    assert alerts and all(a.body["deployment"] == dep_id for a in alerts)


def test_a_node_cannot_publish_on_another_nodes_subjects(centre: Centre,
                                                         tmp_path: Path) -> None:
    centre.make_stream()
    mine = centre.enrol(tmp_path / "a", "van-1")
    other = centre.enrol(tmp_path / "b", "van-2")
    keys = NodeKeys.load(tmp_path / "a")

    async def as_node() -> None:
        client = broker.NodeClient(centre.server.url, mine, keys.seed)
        await client.open()
        try:
            own = protocol.seal_envelope(keys.signing, "event", mine, "e-1", {"event": "x"})
            _, duplicate = await client.publish_durable(protocol.event_subject(mine), own,
                                                        "e-1")
            assert not duplicate
            _, duplicate = await client.publish_durable(protocol.event_subject(mine), own,
                                                        "e-1")
            assert duplicate  # the stream's de-duplication
            forged = protocol.seal_envelope(keys.signing, "alert", other, "f-1", {})
            with pytest.raises(Unavailable):
                await client.publish_durable(protocol.alert_subject(other), forged, "f-1",
                                             timeout=1.0)
            with pytest.raises(Forbidden):
                await client.publish(protocol.health_subject(other), forged)
            with pytest.raises(Forbidden):
                await client.publish(protocol.lease_subject(other), b"{}")
        finally:
            await client.close()
    asyncio.run(as_node())
    subjects = [s for s, _, _ in centre.messages()]
    assert subjects == [protocol.event_subject(mine)]
    assert "Publish Violation" in centre.server.log()


def test_node_run_says_in_one_line_what_is_missing(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from openlfr.cli import app

    def run(folder: Path) -> Any:
        return CliRunner().invoke(app, ["node", "run", "--dir", str(folder)])

    empty = run(tmp_path / "nothing")
    assert empty.exit_code == 2 and "run openlfr node enroll" in empty.output
    assert "Traceback" not in empty.output
    folder = tmp_path / "old"
    NodeKeys.generate().save(folder)
    (folder / "node.json").write_text(json.dumps({"node_id": 3, "broker_url": "nats://x:1"}))
    old = run(folder)
    assert old.exit_code == 2 and "no centre_signing_key" in old.output


def test_a_lease_not_signed_by_the_centre_lets_nothing_run(centre: Centre, tmp_path: Path,
                                                           face_images, clips) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    gov = centre.gov
    centre.enrol(tmp_path / "node")
    dep_id = deployment_on_node(gov, clips.obama, (approved_watchlist(gov, face_images[
        "obama"]),))
    deps.start(gov.db, gov.actors["op1"], dep_id)
    centre.sync()
    centre.lease_key = Ed25519PrivateKey.generate()
    with running(tmp_path / "node") as agent:
        wait_for("the forged lease refused", lambda: agent.lease_error, 10)
        assert "signature" in (agent.lease_error or "")
        time.sleep(1.5)
        assert agent.reconciler.runs == {}
        assert agent.health()["deployments"][str(dep_id)]["state"] == "waiting for a lease"
        centre.lease_key = centre.key
        wait_for("a run once the centre's own lease comes", lambda: run_of(agent, dep_id), 10)


def test_a_node_started_before_its_broker_waits_for_it(centre: Centre, tmp_path: Path) -> None:
    centre.enrol(tmp_path / "node")
    centre.server.stop()
    with running(tmp_path / "node") as agent:
        time.sleep(1.0)
        assert not agent.client.connected and agent.health()["state"] == "disconnected"
        restart(centre.server)
        wait_for("connected once the broker is up", lambda: agent.client.connected, 20)
        wait_for("a health report", lambda: centre.health, 10)
    assert centre.health[-1].body["state"] == "idle"


def test_a_failed_runs_error_keeps_no_camera_password(caplog) -> None:
    """What a failed run says goes to the node's log and, in its run_stopped event, to the
    centre's audit log: a camera's credentials are never in it."""
    from openlfr.nodes.noderun import NodeRun
    from openlfr.vision import registry
    from openlfr.watchlist.gallery import Gallery

    spec = registry.backend_spec("sface")
    entry = DeploymentEntry(1, "x", spec.default_floor or 0.5, spec.model_id,
                            datetime.now(UTC) + timedelta(hours=1), "deployment-1", "f",
                            (CameraEntry("gate", "sealed", (), ()),))
    run = NodeRun(entry, [("gate", "rtsp://olly:s3cret@10.0.0.7/cam")],
                  Gallery(spec.model_id, 128), {}, send=lambda run, alert: None,
                  allowed=lambda: True)

    def fail() -> None:
        raise RuntimeError("cannot open rtsp://olly:s3cret@10.0.0.7/cam: refused")

    run._run = fail  # type: ignore[method-assign]
    run._background()
    assert run.end_reason == "failed" and "10.0.0.7" in (run.error or "")
    assert "s3cret" not in (run.error or "") and "s3cret" not in caplog.text
