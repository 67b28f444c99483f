"""Sites' leaf nodes against real nats-server processes: a hub (the centre's broker) and a
site leaf written by :mod:`openlfr.nodes.topology`; store-and-forward by the broker."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from openlfr.nodes import broker, protocol, topology
from openlfr.nodes.keys import public_nkey, seed_nkey
from tests.govfix import Gov
from tests.natsfix import Topology, start_topology

pytest.importorskip("nats")

SITE = "high-street"
NODE, OTHER = 7, 8


@pytest.fixture()
def keys() -> dict[int, Ed25519PrivateKey]:
    return {NODE: Ed25519PrivateKey.generate(), OTHER: Ed25519PrivateKey.generate()}


@pytest.fixture()
def topo(tmp_path: Path, keys: dict[int, Ed25519PrivateKey]) -> Iterator[Topology]:
    users = [(n, public_nkey(k.public_key().public_bytes_raw())) for n, k in keys.items()]
    t = start_topology(tmp_path / "brokers", SITE, users)
    try:
        broker.add_site_source(t.hub.url, t.centre_seed, SITE)
        yield t
    finally:
        t.stop()


async def _node(t: Topology, key: Ed25519PrivateKey, node_id: int) -> Any:
    return await broker.connect(t.leaf.url, seed_nkey(key),
                                inbox=broker.inbox_prefix(node_id))


async def _publish(t: Topology, key: Ed25519PrivateKey, ids: list[str]) -> None:
    nc = await _node(t, key, NODE)
    try:
        js = nc.jetstream()
        for msg_id in ids:
            ack = await js.publish(protocol.alert_subject(NODE), msg_id.encode(),
                                   headers={"Nats-Msg-Id": msg_id})
            assert ack.stream == topology.site_stream(SITE)
    finally:
        await nc.close()


async def _hub_ids(t: Topology, want: int, timeout: float = 30) -> list[str]:
    """The message ids in the hub's stream once it holds ``want`` (or at the timeout); each
    must have come through the source of the site's stream, not directly."""
    nc = await broker.connect(t.hub.url, t.centre_seed)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + timeout
        while True:
            info = await js.stream_info(protocol.NODES_STREAM)
            if info.state.messages >= want or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # anything more that would arrive
        info = await js.stream_info(protocol.NODES_STREAM)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(protocol.NODES_STREAM, seq)
            headers = msg.headers or {}
            assert topology.site_stream(SITE) in headers.get("Nats-Stream-Source", ""), headers
            out.append(headers.get("Nats-Msg-Id", ""))
        return out
    finally:
        await nc.close()


def test_alerts_published_at_the_leaf_reach_the_hub_once(
        topo: Topology, keys: dict[int, Ed25519PrivateKey]) -> None:
    ids = [f"alert-{i}" for i in range(5)]
    asyncio.run(_publish(topo, keys[NODE], ids))
    assert sorted(asyncio.run(_hub_ids(topo, 5))) == ids


def test_the_link_does_not_carry_alerts_itself(
        topo: Topology, keys: dict[int, Ed25519PrivateKey]) -> None:
    """A subscriber at the hub on the nodes' alert subjects hears nothing published at the
    site (only the source brings them), while health crosses the link."""
    async def go() -> tuple[list[str], list[str]]:
        hub = await broker.connect(topo.hub.url, topo.centre_seed)
        heard: list[str] = []
        sub = await hub.subscribe("openlfr.node.*.*", cb=_collect(heard))
        await hub.flush()
        node = await _node(topo, keys[NODE], NODE)

        async def health_heard(body: bytes) -> None:
            deadline = time.monotonic() + 10
            while f"{protocol.health_subject(NODE)} {body.decode()}" not in heard:
                assert time.monotonic() < deadline, heard
                await node.publish(protocol.health_subject(NODE), body)
                await node.flush()
                await asyncio.sleep(0.05)

        await health_heard(b"first")  # the hub's interest has reached the leaf
        await node.publish(protocol.alert_subject(NODE), b"a", headers={"Nats-Msg-Id": "x1"})
        await node.publish(protocol.event_subject(NODE), b"e", headers={"Nats-Msg-Id": "x2"})
        await health_heard(b"last")  # in order on one link: anything before it has come
        await sub.unsubscribe()
        await node.close()
        await hub.close()
        return heard, await _hub_ids(topo, 2)

    heard, stored = asyncio.run(go())
    assert {h.split()[0] for h in heard} == {protocol.health_subject(NODE)}
    assert sorted(stored) == ["x1", "x2"]


def _collect(into: list[str]) -> Any:
    async def cb(msg: Any) -> None:
        into.append(f"{msg.subject} {msg.data.decode(errors='replace')}")
    return cb


def test_a_duplicate_id_is_stored_once(topo: Topology,
                                       keys: dict[int, Ed25519PrivateKey]) -> None:
    asyncio.run(_publish(topo, keys[NODE], ["a1", "a2", "a1", "a2", "a3"]))
    assert sorted(asyncio.run(_hub_ids(topo, 3))) == ["a1", "a2", "a3"]


def test_alerts_kept_at_the_site_while_the_link_is_cut_arrive_once(
        topo: Topology, keys: dict[int, Ed25519PrivateKey]) -> None:
    asyncio.run(_publish(topo, keys[NODE], ["before"]))
    assert asyncio.run(_hub_ids(topo, 1)) == ["before"]
    topo.hub.stop()
    # the hub is down: the site's broker still takes (and acknowledges) its nodes' alerts
    asyncio.run(_publish(topo, keys[NODE], ["cut-1", "cut-2", "cut-3", "before"]))
    topo.hub.start()  # the same port and store
    topo.linked()
    assert sorted(asyncio.run(_hub_ids(topo, 4))) == ["before", "cut-1", "cut-2", "cut-3"]


async def _lease_round(topo: Topology, key: Ed25519PrivateKey) -> bytes:
    """A node at the site asks for its lease over the link; the centre at the hub answers."""
    hub = await broker.connect(topo.hub.url, topo.centre_seed)

    async def answer(msg: Any) -> None:
        await msg.respond(b"lease for " + msg.subject.encode())

    await hub.subscribe("openlfr.node.*.lease", cb=answer)
    await hub.flush()
    try:
        node = await _node(topo, key, NODE)
        try:
            deadline = time.monotonic() + 10
            while True:  # the subscription's interest crosses the link in a moment
                try:
                    return bytes((await node.request(protocol.lease_subject(NODE), b"?",
                                                     timeout=1)).data)
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
        finally:
            await node.close()
    finally:
        await hub.close()


def test_a_lease_request_crosses_the_link_when_up_and_fails_when_down(
        topo: Topology, keys: dict[int, Ed25519PrivateKey]) -> None:
    assert asyncio.run(_lease_round(topo, keys[NODE])) == (
        b"lease for " + protocol.lease_subject(NODE).encode())
    topo.hub.stop()

    async def cut_off() -> float:
        from nats.errors import NoRespondersError
        node = await _node(topo, keys[NODE], NODE)
        started = time.monotonic()
        try:
            with pytest.raises((NoRespondersError, TimeoutError)):
                await node.request(protocol.lease_subject(NODE), b"?", timeout=2)
            return time.monotonic() - started
        finally:
            await node.close()

    assert asyncio.run(cut_off()) <= 2.5


def test_a_node_at_the_leaf_is_held_to_its_own_subjects(
        topo: Topology, keys: dict[int, Ed25519PrivateKey]) -> None:
    async def go() -> list[str]:
        import nats
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        nc = await nats.connect(topo.leaf.url, nkeys_seed_str=seed_nkey(keys[NODE]),
                                inbox_prefix=broker.inbox_prefix(NODE), error_cb=on_error,
                                allow_reconnect=False)
        try:
            await nc.publish(protocol.health_subject(NODE), b"ok")
            await nc.publish(protocol.alert_subject(OTHER), b"forged")
            await nc.publish(protocol.lease_subject(OTHER), b"?")
            await nc.flush()
            deadline = time.monotonic() + 10
            while len(errors) < 2 and time.monotonic() < deadline:  # they come on their own
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            return errors
        finally:
            await nc.close()

    errors = asyncio.run(go())
    assert len(errors) == 2, errors
    assert protocol.alert_subject(OTHER) in errors[0] and "ermissions" in errors[0]
    assert protocol.lease_subject(OTHER) in errors[1]
    assert f'Subject "{protocol.alert_subject(OTHER)}"' in topo.leaf.log()
    assert protocol.health_subject(NODE) not in topo.leaf.log()
    stranger = Ed25519PrivateKey.generate()  # not a node of this site: not let in

    async def refused() -> None:
        await _node(topo, stranger, 99)

    with pytest.raises(Exception, match=r"(?i)authorization"):
        asyncio.run(refused())


def test_a_node_at_the_leaf_reads_its_own_state_at_the_hub(
        topo: Topology, keys: dict[int, Ed25519PrivateKey]) -> None:
    centre = broker.Broker(topo.hub.url, broker.load_or_create_seed(
        topo.hub.folder / "centre.nk"))
    for node_id in (NODE, OTHER):
        centre.ensure_node(node_id)
        centre.put_desired(node_id, f"state of {node_id}".encode())

    async def go() -> None:
        nc = await _node(topo, keys[NODE], NODE)
        try:
            js = nc.jetstream(domain=topology.HUB_DOMAIN, timeout=1)
            kv = await js.key_value(broker.state_bucket(NODE))
            assert (await kv.get(broker.DESIRED_KEY)).value == f"state of {NODE}".encode()
            with pytest.raises(TimeoutError):  # refused by the leaf: no answer
                await js.key_value(broker.state_bucket(OTHER))
        finally:
            await nc.close()

    async def client() -> bytes | None:  # the node agent's own client, told the domain
        async with broker.NodeClient(topo.leaf.url, NODE, seed_nkey(keys[NODE]),
                                     state_domain=topology.HUB_DOMAIN) as c:
            return await c.desired()

    asyncio.run(go())
    assert asyncio.run(client()) == f"state of {NODE}".encode()
    nkey = public_nkey(keys[NODE].public_key().public_bytes_raw())
    topo.leaf.wait_log(f'Publish Violation - Nkey "{nkey}", Subject "$JS.'
                       f'{topology.HUB_DOMAIN}.API.STREAM.INFO.KV_{broker.state_bucket(OTHER)}"')


def test_no_site_and_no_node_lets_no_one_in(tmp_path: Path) -> None:
    """A site not among the hub's users: its leaf is refused; with no node in the leaf's
    users, a client without credentials is refused (an empty list would let anyone in)."""
    t = start_topology(tmp_path / "brokers", SITE, [], listed=False)
    try:
        t.hub.wait_log("Leafnode connection closed: Authentication Failure")

        async def anonymous() -> None:
            import nats
            await nats.connect(t.leaf.url, connect_timeout=2, allow_reconnect=False,
                               max_reconnect_attempts=0)

        with pytest.raises(Exception, match=r"(?i)authorization"):
            asyncio.run(anonymous())
        with pytest.raises(RuntimeError, match="did not link"):
            t.linked(timeout=2)
    finally:
        t.stop()


# -- the operator's path: the commands write every file, the brokers run on them ---------------

def _cli(gov: Gov, *args: object, **env: str) -> tuple[int, str]:
    from typer.testing import CliRunner

    from openlfr.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], env={**gov.env(), **env})
    return result.exit_code, result.stdout + result.stderr


def test_the_commands_set_up_a_hub_and_a_site_that_carry_a_nodes_alert(
        gov: Gov, tmp_path: Path) -> None:
    from openlfr.governance import nodes
    from openlfr.nodes.keys import NodeKeys, b64
    from tests.natsfix import NatsProcess, free_port

    admin = gov.actors["admin"]
    nodes.add_site(gov.db, admin, SITE)
    nodes.add_site(gov.db, admin, "gate")
    keys: dict[str, NodeKeys] = {}
    ids: dict[str, int] = {}
    for name, site in (("van-1", SITE), ("van-2", "gate")):
        token = nodes.add_node(gov.db, admin, site, name).token
        keys[name] = NodeKeys.generate()
        ids[name] = nodes.enrol(gov.db, gov.settings, token, b64(keys[name].signing_public),
                                b64(keys[name].box_public)).node_id
    nodes.add_node(gov.db, admin, SITE, "van-3")  # not enrolled: not a user of the leaf
    hub_dir, leaf_dir = tmp_path / "hub", tmp_path / "site"
    hub_dir.mkdir()
    hp, lp, sp = free_port(), free_port(), free_port()
    env = {"OPENLFR_NATS_URL": f"nats://127.0.0.1:{hp}",
           "OPENLFR_NATS_PID_FILE": str(hub_dir / "nats.pid")}
    sites = topology.sites_path(gov.settings.nats_auth_path)
    active = hub_dir / "openlfr-sites.conf"  # the copy the broker's unit makes at its start
    steps: list[list[object]] = [
        ["nodes", "broker-users", "--no-reload", "--user", "admin"],
        ["nodes", "broker-config", "--role", "hub", "--out", hub_dir / "nats.conf",
         "--listen", f"127.0.0.1:{hp}", "--leaf-listen", f"127.0.0.1:{lp}",
         "--store-dir", hub_dir / "js", "--pid-file", hub_dir / "nats.pid",
         "--auth-file", gov.settings.nats_auth_path, "--sites-file", active],
        ["nodes", "site-link", SITE, "--hub", f"nats-leaf://127.0.0.1:{lp}",
         "--out-dir", leaf_dir, "--user", "admin"],
        ["nodes", "broker-config", "--role", "leaf", "--site", SITE,
         "--out", leaf_dir / "nats.conf", "--listen", f"127.0.0.1:{sp}",
         "--store-dir", leaf_dir / "js", "--pid-file", leaf_dir / "nats.pid",
         "--link-file", leaf_dir / "openlfr-link.conf",
         "--users-file", leaf_dir / "openlfr-site-users.conf"],
    ]
    for step in steps:
        code, out = _cli(gov, *step, **env)
        assert code == 0, (step, out)
    assert (leaf_dir / "openlfr-link.conf").stat().st_mode & 0o777 == 0o600
    assert (hub_dir / "nats.conf").exists() and sites.exists()
    assert list(topology.read_sites(sites)) == [SITE]
    users = (leaf_dir / "openlfr-site-users.conf").read_text()
    assert keys["van-1"].nkey in users and keys["van-2"].nkey not in users
    # refusals: not an administrator, an unknown site
    assert _cli(gov, "nodes", "site-link", SITE, "--hub", "nats-leaf://h:7422", "--out-dir",
                tmp_path / "x", "--user", "op1")[0] == 3
    assert _cli(gov, "nodes", "site-link", "moon", "--hub", "nats-leaf://h:7422", "--out-dir",
                tmp_path / "x", "--user", "admin")[0] == 5

    hub = NatsProcess(hub_dir / "nats.conf", hp, hub_dir, {})
    leaf = NatsProcess(leaf_dir / "nats.conf", sp, leaf_dir, {})
    seed = seed_nkey(broker.load_or_create_seed(gov.settings.nats_seed_path))
    topo = Topology(hub, leaf, SITE, seed)
    try:
        shutil.copy(sites, active)
        hub.start()
        leaf.start()
        topo.linked()
        code, out = _cli(gov, "nodes", "site-source", SITE, "--user", "admin", **env)
        assert code == 0, out
        van1 = keys["van-1"]
        node_id = ids["van-1"]

        async def go() -> list[str]:
            nc = await broker.connect(leaf.url, van1.seed, inbox=broker.inbox_prefix(node_id))
            try:
                await nc.jetstream().publish(protocol.alert_subject(node_id), b"sealed",
                                             headers={"Nats-Msg-Id": "alert-1"})
            finally:
                await nc.close()
            hub_nc = await broker.connect(hub.url, seed)
            try:
                js = hub_nc.jetstream()
                deadline = time.monotonic() + 20
                while (await js.stream_info(protocol.NODES_STREAM)).state.messages < 1:
                    assert time.monotonic() < deadline, "the alert did not reach the hub"
                    await asyncio.sleep(0.1)
                msg = await js.get_msg(protocol.NODES_STREAM, 1)
                return [(msg.headers or {}).get("Nats-Msg-Id", ""), msg.subject or ""]
            finally:
                await hub_nc.close()

        assert asyncio.run(go()) == ["alert-1", protocol.alert_subject(node_id)]

        async def other_site() -> None:  # van-2 is a user of another site's leaf, not this
            await broker.connect(leaf.url, keys["van-2"].seed)

        with pytest.raises(Exception, match=r"(?i)authorization"):
            asyncio.run(other_site())

        # the site revoked (its secret stolen): cut off from the hub's restart on
        code, out = _cli(gov, "nodes", "site-link", SITE, "--revoke", "--user", "admin", **env)
        assert code == 0, out
        assert topology.read_sites(sites) == {}
        hub.stop()
        shutil.copy(sites, active)
        hub.start()
        with pytest.raises(RuntimeError, match="did not link"):
            topo.linked(timeout=3)
    finally:
        topo.stop()


def test_adding_a_site_as_a_source_keeps_the_hubs_stream_and_is_idempotent(
        tmp_path: Path) -> None:
    """The centre's stream made first (as its ingest makes it), then the site added twice:
    one source, the stream's own subjects and de-duplication window kept."""
    t = start_topology(tmp_path / "brokers", SITE, [])
    try:
        async def make() -> None:
            from nats.js.api import StreamConfig
            nc = await broker.connect(t.hub.url, t.centre_seed)
            try:
                await nc.jetstream().add_stream(StreamConfig(
                    name=protocol.NODES_STREAM, subjects=list(protocol.NODES_STREAM_SUBJECTS),
                    duplicate_window=protocol.DUPLICATE_WINDOW_S))
            finally:
                await nc.close()

        asyncio.run(make())
        broker.add_site_source(t.hub.url, t.centre_seed, SITE)
        broker.add_site_source(t.hub.url, t.centre_seed, SITE)

        async def config() -> Any:
            nc = await broker.connect(t.hub.url, t.centre_seed)
            try:
                return (await nc.jetstream().stream_info(protocol.NODES_STREAM)).config
            finally:
                await nc.close()

        cfg = asyncio.run(config())
        assert [(s.name, s.external.api) for s in cfg.sources] == [
            (topology.site_stream(SITE), f"$JS.{SITE}.API")]
        assert cfg.subjects == list(protocol.NODES_STREAM_SUBJECTS)
        assert cfg.duplicate_window == protocol.DUPLICATE_WINDOW_S
    finally:
        t.stop()


def test_the_sites_node_users_are_changed_by_a_reload_of_its_broker(
        tmp_path: Path, keys: dict[int, Ed25519PrivateKey]) -> None:
    """`site-link --users-only` and a reload at the site: a node added may sign in, one
    removed (disabled at the centre) is disconnected."""
    import os
    import signal

    nkey = {n: public_nkey(k.public_key().public_bytes_raw()) for n, k in keys.items()}
    t = start_topology(tmp_path / "brokers", SITE, [(NODE, nkey[NODE])])
    users = t.leaf.folder / "users.conf"
    try:
        async def connect(node_id: int) -> Any:
            return await broker.connect(t.leaf.url, seed_nkey(keys[node_id]),
                                        inbox=broker.inbox_prefix(node_id))

        async def go() -> None:
            first = await connect(NODE)
            with pytest.raises(Exception, match=r"(?i)authorization"):
                await connect(OTHER)
            users.write_text(topology.leaf_users_conf(
                [(nkey[OTHER], topology.leaf_permissions(broker.node_permissions(OTHER)))]))
            assert t.leaf.proc is not None
            os.kill(t.leaf.proc.pid, signal.SIGHUP)
            deadline = time.monotonic() + 10
            while True:
                try:
                    other = await connect(OTHER)
                    break
                except Exception:
                    assert time.monotonic() < deadline, "the reload was not applied"
                    await asyncio.sleep(0.05)
            while not first.is_closed:
                assert time.monotonic() < deadline, "the removed node stayed connected"
                await asyncio.sleep(0.05)
            await other.close()

        asyncio.run(go())
    finally:
        t.stop()


def test_the_centres_start_keeps_the_sites_sources(tmp_path: Path) -> None:
    """The centre brings its stream in line when it starts serving and when a node enrols
    (``Broker.ensure_stream``): the sites' sources added by ``site-source`` stay, or nothing
    kept at a site would reach the hub again."""
    t = start_topology(tmp_path / "brokers", SITE, [])
    try:
        broker.add_site_source(t.hub.url, t.centre_seed, SITE)
        centre = broker.Broker(t.hub.url, broker.load_or_create_seed(
            t.hub.folder / "centre.nk"), auth_file=t.hub.folder / "auth.conf",
            pid_file=t.hub.folder / "nats.pid")
        centre.ensure_stream()
        centre.ensure_stream()

        async def config() -> Any:
            nc = await broker.connect(t.hub.url, t.centre_seed)
            try:
                return (await nc.jetstream().stream_info(protocol.NODES_STREAM)).config
            finally:
                await nc.close()

        cfg = asyncio.run(config())
        assert [s.name for s in cfg.sources or []] == [topology.site_stream(SITE)]
        assert cfg.duplicate_window == protocol.DUPLICATE_WINDOW_S
    finally:
        t.stop()
