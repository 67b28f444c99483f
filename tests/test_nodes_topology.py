"""Sites' leaf nodes against real nats-server processes: a hub (the centre's broker) and a
site leaf written by :mod:`openlfr.nodes.topology`; store-and-forward by the broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from openlfr.nodes import broker, protocol, topology
from openlfr.nodes.keys import public_nkey, seed_nkey
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


async def _hub_ids(t: Topology, want: int, timeout: float = 15) -> list[str]:
    """The message ids in the hub's stream once it holds ``want`` (or at the timeout)."""
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
            out.append((msg.headers or {}).get("Nats-Msg-Id", ""))
        return out
    finally:
        await nc.close()


def test_alerts_published_at_the_leaf_reach_the_hub_once(
        topo: Topology, keys: dict[int, Ed25519PrivateKey]) -> None:
    ids = [f"alert-{i}" for i in range(5)]
    asyncio.run(_publish(topo, keys[NODE], ids))
    assert sorted(asyncio.run(_hub_ids(topo, 5))) == ids
