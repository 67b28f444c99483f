"""How fast the broker acts on the centre's word about nodes.

* **revoke**: a node is connected with its own nkey; the centre removes it from the broker's
  users (rewrites the file, ``SIGHUP``), as ``openlfr nodes disable`` does. Measured: from the
  start of that call to the node's connection being closed by the broker. Median and maximum
  over ``--tries`` nodes.
* **seal**: sealing and opening a gallery of ``--templates`` 128-d templates to a node's key
  (MB/s of the packed gallery).
* **latency**: camera to console through the broker. A centre on SQLite runs as ``openlfr
  serve`` does with a broker (its background jobs: desired state, leases, the ingest of the
  nodes' stream, the console's alert listeners); a node enrolled with it runs ``openlfr node
  run --realtime --loop`` in a process of its own on the shared data's Hamilton clip (640x360,
  29.97 fps, 9 s, looped for ``--seconds``) with Lin-Manuel Miranda on an approved watchlist
  (``--backend``, default sface). For each alert (revision 0) the centre stores and pushes:
  from the frame that made it (its ``seen_at``, the frame's wall time on the node) to stored
  (the row's ``created_at``) and to pushed to the console's listener; and, as ``bench_live.py
  latency`` counts in one process, from the first frame with an enrolment-quality face of the
  track (the alert's ``latency``) plus the node-to-console leg (the envelope's ``sent_at`` to
  pushed). p50 and p95.

Starts Debian's ``nats-server`` (as the tests do: JetStream in a temporary folder, a free
port); needs the ``nodes`` extra.

    python benchmarks/bench_nodes.py revoke [--tries 20]
    python benchmarks/bench_nodes.py seal [--templates 5000]
    python benchmarks/bench_nodes.py latency [--seconds 45] [--cameras 1] [--backend sface]
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


DATA = HERE.parent.parent / "shared" / "data" / "face_recognition_examples"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def latency(seconds: float, backend: str, data: Path, cameras: int) -> None:
    import os
    import signal

    os.environ["OPENLFR_DEFAULT_BACKEND"] = backend  # the centre's plan and the node's model
    from sqlalchemy import select

    from openlfr.governance import deployments as deps
    from openlfr.nodes import protocol
    from openlfr.store.models import Alert
    from tests.govfix import make_gov
    from tests.nodefix import (
        CentreSide,
        deployment_on_node,
        enrol_node,
        node_process,
        outbox,
        stream_messages,
        wait_for,
    )
    from tests.test_gov_deployments import approved_watchlist

    work = Path(tempfile.mkdtemp(prefix="openlfr-bench-latency-"))
    srv = start_nats(work / "nats")
    gov = make_gov("sqlite", work, None)
    proc = None
    centre = None
    try:
        settings = srv.centre(gov.settings)
        folder = work / "node"
        node_id = enrol_node(gov, settings, folder)
        wid = approved_watchlist(gov, data / "lin-manuel-miranda.png")
        dep = deployment_on_node(gov, data / "short_hamilton_clip.mp4", (wid,),
                                 cameras=cameras)
        centre = CentreSide(gov, settings)
        centre.start()
        proc = node_process(folder)
        time.sleep(3.0)  # the node signs in and reads its (empty) desired state
        deps.start(gov.db, gov.actors["op1"], dep)
        started = time.monotonic()
        wait_for("a first alert at the centre", lambda: centre.pushed, 120, 0.1)  # type: ignore[union-attr]
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        wait_for("the outbox drained", lambda: not outbox(folder), 30, 0.1)
        wait_for("the stream drained", lambda: centre.link.broker.pending() == 0,  # type: ignore[union-attr]
                 30, 0.1)
        pushed = [p for p in centre.pushed if p.alert.revision == 0]
        centre.stop()
        with gov.db.reading() as s:
            created = {r.id: r.created_at.timestamp() for r in s.scalars(select(Alert))}
        sent = {}
        for subject, msg_id, raw in stream_messages(srv.url, broker.seed_nkey(
                broker.load_or_create_seed(srv.centre_seed_file))):
            if subject == protocol.alert_subject(node_id):
                sent[msg_id] = protocol.open_envelope(
                    raw, subject, NodeKeys.load(folder).signing_public).sent_at.timestamp()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if centre is not None:
            centre.stop()
        gov.system.close()
        srv.stop()
    to_stored = [created[p.row] - p.alert.frame_wall for p in pushed]
    to_pushed = [p.at - p.alert.frame_wall for p in pushed]
    leg = [p.at - sent[p.alert.alert_id] for p in pushed if p.alert.alert_id in sent]
    as_one = [p.alert.latency + p.at - sent[p.alert.alert_id] for p in pushed
              if p.alert.latency is not None and p.alert.alert_id in sent]

    def line(name: str, values: list[float]) -> str:
        if not values:
            return f"  {name}: none"
        return (f"  {name}: p50 {pct(values, 50):.3f} s, p95 {pct(values, 95):.3f} s, "
                f"max {max(values):.3f} s")

    print(f"{len(pushed)} alerts in {seconds:.0f} s ({backend}, {cameras} camera(s) on a node "
          f"in its own process, load {os.getloadavg()[0]:.1f}):")
    print(line("frame seen → stored at the centre", to_stored))
    print(line("frame seen → pushed to the console", to_pushed))
    print(line("node sent → pushed to the console", leg))
    print(line("first enrolment-quality frame → pushed (as bench_live latency)", as_one))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("revoke").add_argument("--tries", type=int, default=20)
    sub.add_parser("seal").add_argument("--templates", type=int, default=5000)
    lat = sub.add_parser("latency")
    lat.add_argument("--seconds", type=float, default=45.0)
    lat.add_argument("--backend", default="sface")
    lat.add_argument("--data", type=Path, default=DATA)
    lat.add_argument("--cameras", type=int, default=1, help="cameras of the node, each the "
                     "clip (more alerts to count)")
    args = parser.parse_args()
    if args.what == "revoke":
        revoke(args.tries)
    elif args.what == "latency":
        latency(args.seconds, args.backend, args.data, args.cameras)
    else:
        seal_speed(args.templates)


if __name__ == "__main__":
    main()
