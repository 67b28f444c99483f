"""How fast the broker acts on the centre's word about nodes.

* **revoke**: a node is connected with its own nkey; the centre removes it from the broker's
  users (rewrites the file, ``SIGHUP``), as ``openlfr nodes disable`` does. Measured: from the
  start of that call to the node's connection being closed by the broker. Median and maximum
  over ``--tries`` nodes.
* **seal**: sealing and opening a gallery of ``--templates`` 128-d templates to a node's key
  (MB/s of the packed gallery).

Starts Debian's ``nats-server`` (as the tests do: JetStream in a temporary folder, a free
port); needs the ``nodes`` extra.

    python benchmarks/bench_nodes.py revoke [--tries 20]
    python benchmarks/bench_nodes.py seal [--templates 5000]
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

import numpy as np  # noqa: E402

from openlfr.nodes import broker, desired  # noqa: E402
from openlfr.nodes.keys import NodeKeys, open_sealed, seal  # noqa: E402
from openlfr.watchlist.gallery import Gallery  # noqa: E402
from tests.natsfix import start_nats  # noqa: E402


def revoke(tries: int) -> None:
    srv = start_nats(Path(tempfile.mkdtemp(prefix="openlfr-bench-nats-")))
    try:
        centre = broker.load_or_create_seed(srv.centre_seed_file)
        b = broker.Broker(srv.url, centre, auth_file=srv.auth_file, pid_file=srv.pid_file)
        times = []
        for i in range(1, tries + 1):
            keys = NodeKeys.generate()
            b.set_users([broker.NodeUser(i, keys.nkey)])
            time.sleep(0.2)  # the reload that lets it in

            async def one(node_id: int, seed: str) -> float:
                async with broker.NodeClient(srv.url, node_id, seed) as c:
                    assert c.nc is not None
                    t0 = time.perf_counter()
                    await asyncio.to_thread(b.set_users, [])
                    while not c.nc.is_closed:
                        await asyncio.sleep(0.001)
                    return time.perf_counter() - t0
            times.append(asyncio.run(one(i, keys.seed)))
        print(f"revoke → disconnected, {tries} nodes: median "
              f"{statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")
    finally:
        srv.stop()


def seal_speed(templates: int) -> None:
    rng = np.random.default_rng(0)
    gallery = Gallery("bench", 128)
    gallery.add_many([f"s{i // 2}" for i in range(templates)], [f"r{i}" for i in range(templates)],
                     rng.normal(size=(templates, 128)).astype(np.float32))
    names = {f"s{i}": f"subject {i}" for i in range(templates // 2 + 1)}
    keys = NodeKeys.generate()
    t0 = time.perf_counter()
    packed = desired.pack_gallery(gallery, names)
    sealed = seal(packed, keys.box_public, b"deployment-1")
    t1 = time.perf_counter()
    opened, _ = desired.unpack_gallery(open_sealed(sealed, keys.box, b"deployment-1"))
    t2 = time.perf_counter()
    assert len(opened) == templates
    mb = len(packed) / 1e6
    print(f"{templates} templates ({mb:.1f} MB packed): pack+seal {(t1 - t0) * 1000:.0f} ms, "
          f"open+unpack {(t2 - t1) * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("revoke").add_argument("--tries", type=int, default=20)
    sub.add_parser("seal").add_argument("--templates", type=int, default=5000)
    args = parser.parse_args()
    if args.what == "revoke":
        revoke(args.tries)
    else:
        seal_speed(args.templates)


if __name__ == "__main__":
    main()
