"""Sites and nodes end to end: the centre's own side (``openlfr serve`` itself, or its
:class:`~openlfr.web.jobs.BackgroundJobs` with the broker's link, as serve runs it) and a real
``openlfr node run`` in a second process, a real ``nats-server`` (tests/natsfix.py), real models
and a looping realtime clip of the watched person.

- the whole first session with the camera on a node: the alert reaches the console's live
  queue (its Server-Sent Events stream), stored once, audited, its crop readable at the centre
  and sealed everywhere else;
- a node killed with ``kill -9`` mid-run (with alerts in its outbox) and started again: it
  resumes, no alert is lost and none doubled;
- the broker stopped while the face is on camera: every alert made meanwhile arrives after
  the restart, exactly once (``OPENLFR_TEST_BROKER_OUTAGE_S``, default 6 s; 30 s for the
  issue's figure);
- a site's link cut longer than the lease: matching stops on the node; a watchlist destroyed
  meanwhile is never matched after the reconnection;
- the centre restarted during ingest: nothing lost, nothing doubled (SQLite and PostgreSQL).

Alerts are counted by their node alert id (``<node id>:<alert id>``): in the stream (what the
node's outbox delivered), in the database (what the centre stored) and in the audit log."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from openlfr.errors import IntegrityFailure
from openlfr.governance import deployments as deps
from openlfr.governance import nodes
from openlfr.nodes import broker, protocol
from openlfr.nodes.keys import NodeKeys, open_sealed, seed_nkey
from tests.govfix import Gov, audit_records
from tests.natsfix import NatsServer
from tests.nodefix import (
    CentreSide,
    alert_ids,
    audited,
    deployment_on_node,
    enrol_node,
    envelopes,
    node_process,
    outbox,
    restart,
    stored,
    stream_messages,
    wait_for,
)
from tests.test_gov_deployments import approved_watchlist
from tests.test_web_serve import server_factory  # noqa: F401

#: How long the broker is stopped in the outage test (the issue asks for 30 s).
OUTAGE_S = float(os.environ.get("OPENLFR_TEST_BROKER_OUTAGE_S", "6"))


def _stop(proc: subprocess.Popen[bytes]) -> int | None:
    """Stop a node process as systemd does (SIGTERM); its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            return None
    return proc.returncode


def _centre_seed(server: NatsServer) -> str:
    return seed_nkey(broker.load_or_create_seed(server.centre_seed_file))


def _exactly_once(gov: Gov, server: NatsServer, node_id: int) -> list[str]:
    """Every alert the stream holds is stored once at the centre, nothing else is, each
    audited once; the stream itself holds each message id once. The stored ids."""
    msgs = stream_messages(server.url, _centre_seed(server))
    ids = [m for _, m, _ in msgs]
    assert len(ids) == len(set(ids)), "a message twice in the stream"
    rows = stored(gov)
    assert len(rows) == len(set(rows)), "an alert stored twice"
    assert sorted(rows) == sorted(alert_ids(msgs, node_id)), "stream and database differ"
    assert audited(gov, "alert.create") == len(rows)
    assert audited(gov, "node.message_refused") == 0
    return rows


def _pushed_once(centre: CentreSide, rows: int) -> None:
    """Every stored alert was pushed to the console's live queue, each revision once."""
    pushed = [(p.row, p.alert.revision) for p in centre.pushed]
    assert len(pushed) == len(set(pushed)), "an alert pushed twice"
    assert len({row for row, _ in pushed}) == rows


class Scene:
    """A node ``van-1`` enrolled with the centre (keys in ``folder``) and a running
    deployment whose camera ``gate`` on it loops the clip of the watched person."""

    def __init__(self, gov: Gov, server: NatsServer, folder: Path, face: Path, clip: Path,
                 **plan: object) -> None:
        self.gov, self.server, self.folder = gov, server, folder
        self.settings = server.centre(gov.settings)
        self.node = enrol_node(gov, self.settings, folder)
        self.watchlist = approved_watchlist(gov, face)
        self.dep = deployment_on_node(gov, clip, (self.watchlist,), **plan)
        deps.start(gov.db, gov.actors["op1"], self.dep)
        self.centre = CentreSide(gov, self.settings)


@pytest.fixture()
def scene(sqlite_gov: Gov, nats_server: NatsServer, tmp_path: Path, face_images,
          clips) -> Iterator[Scene]:
    s = Scene(sqlite_gov, nats_server, tmp_path / "node", face_images["obama"], clips.obama)
    try:
        yield s
    finally:
        s.centre.stop()


# -- kill -9 ----------------------------------------------------------------------------------


def test_a_node_killed_mid_run_resumes_and_loses_and_doubles_nothing(scene: Scene) -> None:
    gov, server, folder = scene.gov, scene.server, scene.folder
    scene.centre.start()
    proc = node_process(folder)
    try:
        wait_for("a first alert stored at the centre", lambda: stored(gov), 120, 0.1)
        # The broker paused (not stopped): what the node publishes now is neither refused nor
        # acknowledged, so its next alerts are in its outbox when it is killed.
        assert server.proc.pid
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            wait_for("a new alert in the node's outbox", lambda: any(
                s.endswith(".alert") and "." not in m for m, (s, _) in outbox(folder).items()),
                60, 0.05)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        kept = {f"{scene.node}:{m}" for m, (s, _) in outbox(folder).items()
                if s.endswith(".alert") and "." not in m}
        assert kept
        before = set(stored(gov))
        assert not kept & before
        proc = node_process(folder)
        wait_for("the kept alerts stored at the centre",
                 lambda: kept <= set(stored(gov)), 120, 0.1)
        # it resumes: a new run of the deployment, and alerts of it
        wait_for("an alert of the restarted node", lambda: len(
            set(stored(gov)) - before - kept) > 0, 120, 0.1)
        wait_for("the outbox drained", lambda: not outbox(folder), 30, 0.1)
    finally:
        code = _stop(proc)
    assert code == 0
    link = scene.centre.link
    wait_for("the centre drained the stream", lambda: link.broker.pending() == 0, 30, 0.1)
    rows = _exactly_once(gov, server, scene.node)
    assert kept <= set(rows)
    _pushed_once(scene.centre, len(rows))
    assert audited(gov, "node.run_started") >= 2  # the run, and its resumption


# -- the broker stopped -------------------------------------------------------------------------


def test_the_broker_stopped_while_the_face_is_on_camera_loses_and_doubles_nothing(
        scene: Scene) -> None:
    gov, server, folder = scene.gov, scene.server, scene.folder
    scene.centre.start()
    proc = node_process(folder)
    try:
        wait_for("a first alert stored at the centre", lambda: stored(gov), 120, 0.1)
        server.stop()
        stopped = time.monotonic()
        made: set[str] = set()
        while time.monotonic() - stopped < OUTAGE_S:
            made |= {f"{scene.node}:{m}" for m, (s, _) in outbox(folder).items()
                     if s.endswith(".alert") and "." not in m}
            time.sleep(0.1)
        made |= {f"{scene.node}:{m}" for m, (s, _) in outbox(folder).items()
                 if s.endswith(".alert") and "." not in m}
        assert made, f"no alert was made in the {OUTAGE_S:.0f} s the broker was away"
        assert not made & set(stored(gov))
        restart(server)
        back = time.monotonic()
        took = wait_for("every alert made meanwhile stored at the centre",
                        lambda: made <= set(stored(gov)), 120, 0.1)
        wait_for("the outbox drained", lambda: not outbox(folder), 30, 0.1)
    finally:
        code = _stop(proc)
    assert code == 0
    link = scene.centre.link
    wait_for("the centre drained the stream", lambda: link.broker.pending() == 0, 30, 0.1)
    rows = _exactly_once(gov, server, scene.node)
    assert made <= set(rows)
    print(f"broker away {OUTAGE_S:.0f} s: {len(made)} alerts made meanwhile, all stored "
          f"once {took:.1f} s after its restart ({time.monotonic() - back:.1f} s to drain)")


# -- the centre restarted -----------------------------------------------------------------------


def test_the_centre_restarted_during_ingest_loses_and_doubles_nothing(
        gov: Gov, nats_server: NatsServer, tmp_path: Path, face_images, clips) -> None:
    scene = Scene(gov, nats_server, tmp_path / "node", face_images["obama"], clips.obama)
    centre = scene.centre
    b = nodes.broker_of(scene.settings)
    assert b is not None
    centre.start()
    proc = node_process(scene.folder)
    try:
        wait_for("a first alert stored at the centre", lambda: stored(gov), 120, 0.1)
        centre.stop()
        # the node goes on (its lease outlasts the centre's absence): alerts wait in the stream
        wait_for("alerts waiting in the stream", lambda: b.pending() >= 3, 120, 0.2)
        centre.start()  # and stopped again as soon as it stored one of them
        first = centre.link.ingest.counts
        wait_for("one stored", lambda: first["ack"] >= 1, 30, 0.005)
        centre.stop()
        assert b.pending() >= 1 or first["ack"] >= 3
        centre.start()
        wait_for("the stream drained", lambda: b.pending() == 0 and len(stored(gov)) >= 4,
                 60, 0.1)
        code = _stop(proc)
        wait_for("the last alerts drained", lambda: b.pending() == 0, 30, 0.1)
    finally:
        _stop(proc)
        centre.stop()
    assert code == 0
    rows = _exactly_once(gov, nats_server, scene.node)
    assert len(rows) >= 4
    _pushed_once(centre, len(rows))


# -- the whole first session, with ``openlfr serve`` itself ----------------------------------


def test_the_first_session_with_the_camera_on_a_node(
        sqlite_gov: Gov, nats_server: NatsServer, tmp_path: Path, face_images, clips,
        server_factory: type) -> None:  # noqa: F811
    import base64
    import json

    import cv2
    import httpx
    import numpy as np

    from tests.govfix import bearer_headers, run_cli

    gov = sqlite_gov
    settings = nats_server.centre(gov.settings)
    env = {"OPENLFR_NATS_URL": nats_server.url,
           "OPENLFR_NATS_SEED_FILE": str(nats_server.centre_seed_file),
           "OPENLFR_NATS_AUTH_FILE": str(nats_server.auth_file),
           "OPENLFR_NATS_PID_FILE": str(nats_server.pid_file)}
    server = server_factory.start(gov.data_dir, "--no-resume", env=env)
    server.wait_up(90.0)
    # an administrator adds the node; the node enrols itself over HTTP with the token
    nodes.add_site(gov.db, gov.actors["admin"], "high-street")
    token = nodes.add_node(gov.db, gov.actors["admin"], "high-street", "van-1").token
    folder = tmp_path / "node"
    enrolled = run_cli(gov, "node", "enroll", "--server", server.url, "--token", token,
                       "--node-dir", folder)
    assert enrolled.returncode == 0, enrolled.stderr
    node_id = json.loads((folder / "node.json").read_text())["node_id"]
    # the plan: its one camera on the node, authorised by someone else
    wid = approved_watchlist(gov, face_images["obama"])
    dep = deployment_on_node(gov, clips.obama, (wid,))
    shown = deps.show(gov.db, gov.actors["op1"], dep)
    assert "van-1" in json.dumps(shown.model_dump(mode="json"))
    headers = bearer_headers(gov, "e2e")
    op = next(h for r, h in headers.items() if r.value == "operator")
    events: list[dict[str, object]] = []
    opened = threading.Event()

    def listen() -> None:  # the console's live queue, as the page's script reads it
        with httpx.stream("GET", server.url + f"/console/alerts/stream?deployment={dep}",
                          headers=op, timeout=httpx.Timeout(10, read=180)) as r:
            assert r.status_code == 200
            kind = None
            for line in r.iter_lines():
                opened.set()
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "alert":
                    events.append(json.loads(line[6:]))
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert opened.wait(30), "the live stream did not open"
    proc = node_process(folder)
    try:
        deps.start(gov.db, gov.actors["op1"], dep)  # the server tells the node
        listener.join(180)
        assert events, "no alert reached the console's live queue"
        wait_for("the node's outbox drained", lambda: not outbox(folder), 30, 0.1)
    finally:
        code = _stop(proc)
    assert code == 0
    (pushed,) = events
    row_id = int(str(pushed["id"]))
    rows = stored(gov)
    assert rows and len(rows) == len(set(rows))
    assert audited(gov, "alert.create") == len(rows)
    # the crop: readable at the centre (the console's image), sealed in the broker's stream
    crop = httpx.get(f"{server.url}/console/alerts/{row_id}/crop.jpg", headers=op, timeout=30)
    assert crop.status_code == 200 and crop.content.startswith(b"\xff\xd8")
    assert cv2.imdecode(np.frombuffer(crop.content, np.uint8), cv2.IMREAD_COLOR) is not None
    msgs = stream_messages(nats_server.url, _centre_seed(nats_server))
    assert sorted(alert_ids(msgs, node_id)) == sorted(rows)
    raw = b"".join(d for _, _, d in msgs)
    head = crop.content[:300]
    assert head not in raw and base64.b64encode(head)[:200] not in raw
    assert base64.urlsafe_b64encode(head)[:200] not in raw
    centre_box = nodes.centre_box(settings)
    node_keys = NodeKeys.load(folder)
    for env_ in envelopes([m for m in msgs if m[0] == protocol.alert_subject(node_id)],
                          node_keys.signing_public):
        sealed = protocol.sealed_crop(env_.body)
        context = protocol.crop_context(env_.body["alert_id"])
        with pytest.raises(IntegrityFailure):  # not even the node that made it opens it
            open_sealed(sealed, node_keys.box, context)
        assert open_sealed(sealed, centre_box, context).startswith(b"\xff\xd8")
    assert server.terminate() == 0


# -- a site's link cut longer than the lease ----------------------------------------------------


class HealthAtSite:
    """The node's heartbeats as its site's broker carries them (heard with the node's own
    credentials, which may read its own subjects): what the node says while the centre
    cannot hear it."""

    def __init__(self, url: str, node_id: int, seed: str) -> None:
        import asyncio

        self.beats: list[dict[str, object]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def go() -> object:
            nc = await broker.connect(url, seed, inbox=broker.inbox_prefix(node_id),
                                      reconnect=True)

            async def heard(msg: object) -> None:
                data = msg.data  # type: ignore[attr-defined]
                self.beats.append(protocol.open_envelope(
                    data, protocol.health_subject(node_id), self._public).body)

            await nc.subscribe(protocol.health_subject(node_id), cb=heard)
            return nc

        self._public = b""
        self._go = go

    def start(self, public: bytes) -> None:
        import asyncio

        self._public = public
        self.nc = asyncio.run_coroutine_threadsafe(self._go(), self._loop).result(20)

    def close(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.nc.close(), self._loop).result(10)  # type: ignore[attr-defined]
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def last(self) -> dict[str, object]:
        return self.beats[-1] if self.beats else {}

    def frames(self) -> int:
        cams = self.last().get("cameras") or []
        return sum(int(c["frames"]) for c in cams)  # type: ignore[union-attr, index]


def test_a_sites_link_cut_longer_than_the_lease_stops_matching_and_a_destroyed_watchlist_is_never_matched(  # noqa: E501
        sqlite_gov: Gov, tmp_path: Path, face_images, clips) -> None:
    from datetime import UTC, datetime

    from openlfr.governance import watchlists
    from openlfr.governance.system import System
    from openlfr.nodes import topology
    from tests.natsfix import start_topology

    gov = sqlite_gov
    site = "high-street"
    topo = start_topology(tmp_path / "brokers", site, [])
    hub = topo.hub
    settings = gov.settings.model_copy(update={
        "nats_url": hub.url, "nats_seed_file": hub.folder / "centre.nk",
        "nats_auth_file": hub.folder / "auth.conf", "nats_pid_file": hub.folder / "nats.pid"})
    folder = tmp_path / "node"
    centre = CentreSide(gov, settings)
    watch: HealthAtSite | None = None
    proc: subprocess.Popen[bytes] | None = None
    try:
        node_id = enrol_node(gov, settings, folder, site=site)
        keys = NodeKeys.load(folder)
        # the site's broker lets the node in (`openlfr nodes site-link --users-only`, reload)
        (topo.leaf.folder / "users.conf").write_text(topology.leaf_users_conf(
            [(keys.nkey, topology.leaf_permissions(broker.node_permissions(node_id)))]))
        assert topo.leaf.proc is not None
        os.kill(topo.leaf.proc.pid, signal.SIGHUP)
        broker.add_site_source(hub.url, topo.centre_seed, site)  # `openlfr nodes site-source`
        lease = deps.LEASE_MIN_S
        wid = approved_watchlist(gov, face_images["obama"])
        dep = deployment_on_node(gov, clips.obama, (wid,), lease_seconds=lease)
        deps.start(gov.db, gov.actors["op1"], dep)
        centre.start()
        watch = HealthAtSite(topo.leaf.url, node_id, keys.seed)
        wait_for("the node let in at the site", lambda: _try(watch.start,
                                                             keys.signing_public), 20, 0.2)
        proc = node_process(folder, "--broker", topo.leaf.url, "--state-domain", "hub")
        try:
            wait_for("a first alert through the site stored at the centre",
                     lambda: stored(gov), 40, 0.1)
        except AssertionError:
            print("NODE", (folder / "node.err").read_text()[-4000:])
            print("OUTBOX", outbox(folder))
            print("HUB", [(m[0], m[1]) for m in stream_messages(hub.url, topo.centre_seed)])
            print("LEAF", [(m[0], m[1]) for m in stream_messages(
                hub.url, topo.centre_seed, topology.site_stream(site),
                domain=topology.site_domain(site))])
            raise
        wait_for("the node says running", lambda: watch.last().get("state") == "running", 20)

        hub.stop()  # the link is cut (and the centre's broker is away)
        cut = time.monotonic()
        wait_for("the node says its lease is lost", lambda: watch.last().get(
            "state") == "lease lost", lease + 10, 0.1)
        lost_after = time.monotonic() - cut
        assert lost_after <= lease + 3, lost_after
        beat = watch.last()
        assert all(c["state"] == "stopped" and not c["connected"]  # type: ignore[index]
                   for c in beat["cameras"])  # type: ignore[union-attr]
        frames = watch.frames()
        # meanwhile the watchlist is destroyed at the centre
        watchlists.destroy_watchlist(System(settings, gov.db, gov.system.keyring),
                                     gov.actors["ao1"], wid, "Operation over")
        destroyed_at = datetime.now(UTC)
        time.sleep(max(0.0, lease + 2 - (time.monotonic() - cut)))
        assert watch.frames() == frames, "the node analysed frames without a lease"
        assert watch.last().get("state") == "lease lost"
        hub.start()  # the link is back
        topo.linked()
        wait_for("the node running again", lambda: watch.last().get("state") == "running",
                 60, 0.1)
        wait_for("the lease's loss reported to the centre", lambda: audited(
            gov, "node.lease_lost") >= 1, 60, 0.2)
        time.sleep(4.0)  # the watched face keeps walking in (the clip loops)
        assert watch.frames() > frames
        code = _stop(proc)
        proc = None
        msgs = stream_messages(hub.url, topo.centre_seed)
    finally:
        if proc is not None:
            _stop(proc)
        if watch is not None and hasattr(watch, "nc"):
            watch.close()
        centre.stop()
        topo.stop()
    assert code == 0
    alerts = envelopes([m for m in msgs if m[0].endswith(".alert")], keys.signing_public)
    assert alerts
    late = [a for a in alerts
            if protocol.parse_time(a.body["seen_at"], "seen_at") >= destroyed_at]
    assert late == [], "matched against a destroyed watchlist"
    # alerts made between the cut and the lease's end reached the centre after the
    # destruction: refused (the subject is gone), audited, never stored
    stored_ids = set(stored(gov))
    refused = [r.details for r in audit_records(gov, "node.message_refused")]
    assert all("no longer on an approved watchlist" in r for r in refused), refused
    for a in alerts:  # each either stored or refused: none lost on the way
        alert_id = a.body["alert_id"]
        assert f"{node_id}:{alert_id}" in stored_ids or any(
            f"alert {alert_id} not stored" in r for r in refused), alert_id
    started = [e.body for e in envelopes([m for m in msgs if m[0].endswith(".event")],
                                         keys.signing_public)
               if e.body["event"] == "run_started"]
    assert started[-1]["subjects"] == 0  # the run after the reconnection searches no one
    ids = [m for _, m, _ in msgs]
    assert len(ids) == len(set(ids))


def _try(fn: object, *args: object) -> bool:
    try:
        fn(*args)  # type: ignore[operator]
        return True
    except Exception:
        return False
