"""Store-and-forward at a site, by the broker: a hub and a site's leaf (``nats-server``,
configured by :mod:`openlfr.nodes.topology`, started as the tests do on free ports in a
temporary folder).

For each round: the hub is stopped (the site's link is cut); a node at the site asks for its
lease (it fails: how long until it knows) and publishes ``--alerts`` alerts, each with its id
as ``Nats-Msg-Id``, acknowledged by the site's own stream; the hub is started again on the
same port and store. Measured: from the hub's start to the link being up, and to every kept
alert being in the hub's stream (each once: the count is checked).

    python benchmarks/bench_topology.py [--alerts 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from openlfr.nodes import broker, protocol  # noqa: E402
from openlfr.nodes.keys import public_nkey, seed_nkey  # noqa: E402
from tests.natsfix import start_topology  # noqa: E402

SITE, NODE = "high-street", 7


def run(alerts: int, rounds: int) -> None:
    key = Ed25519PrivateKey.generate()
    folder = Path(tempfile.mkdtemp(prefix="openlfr-bench-topology-"))
    topo = start_topology(folder, SITE, [(NODE, public_nkey(key.public_key()
                                                            .public_bytes_raw()))])
    lease_ms: list[float] = []
    link_s: list[float] = []
    all_s: list[float] = []
    try:
        broker.add_site_source(topo.hub.url, topo.centre_seed, SITE)
        for r in range(rounds):
            topo.hub.stop()

            async def at_site(r: int = r) -> float:
                nc = await broker.connect(topo.leaf.url, seed_nkey(key),
                                          inbox=broker.inbox_prefix(NODE))
                try:
                    started = time.perf_counter()
                    try:
                        await nc.request(protocol.lease_subject(NODE), b"?", timeout=5)
                        raise SystemExit("a lease request was answered with the hub down")
                    except Exception as exc:
                        if isinstance(exc, SystemExit):
                            raise
                    failed = time.perf_counter() - started
                    js = nc.jetstream()
                    for i in range(alerts):
                        await js.publish(protocol.alert_subject(NODE), b"sealed",
                                         headers={"Nats-Msg-Id": f"r{r}-a{i}"})
                    return failed
                finally:
                    await nc.close()

            lease_ms.append(asyncio.run(at_site()) * 1000)
            started = time.monotonic()
            topo.hub.start()
            topo.linked()
            link_s.append(time.monotonic() - started)

            async def arrived(want: int) -> int:
                nc = await broker.connect(topo.hub.url, topo.centre_seed)
                try:
                    js = nc.jetstream()
                    deadline = time.monotonic() + 120
                    while (await js.stream_info(protocol.NODES_STREAM)).state.messages < want:
                        if time.monotonic() > deadline:
                            raise SystemExit("the kept alerts did not arrive in 120 s")
                        await asyncio.sleep(0.02)
                    await asyncio.sleep(0.5)
                    return int((await js.stream_info(protocol.NODES_STREAM)).state.messages)
                finally:
                    await nc.close()

            got = asyncio.run(arrived(alerts * (r + 1)))
            all_s.append(time.monotonic() - started)
            if got != alerts * (r + 1):
                raise SystemExit(f"{got} messages in the hub's stream, not {alerts * (r + 1)}")
            print(f"round {r + 1}: lease request failed in {lease_ms[-1]:.2f} ms; hub started "
                  f"→ link up {link_s[-1]:.2f} s, → {alerts} kept alerts in the hub's stream "
                  f"{all_s[-1]:.2f} s (each once)")
    finally:
        topo.stop()
    print(f"median over {rounds} rounds: lease failed in {statistics.median(lease_ms):.2f} ms; "
          f"link up {statistics.median(link_s):.2f} s; all {alerts} alerts at the hub "
          f"{statistics.median(all_s):.2f} s after the hub's start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    run(args.alerts, args.rounds)


if __name__ == "__main__":
    main()
