"""The centre's ingest under load: a burst of node alerts while many cameras report health.

A real centre (``openlfr serve`` in a process of its own, on PostgreSQL, with a broker) runs
one deployment whose cameras are all on simulated nodes: ``--nodes`` enrolled nodes with
``--cameras-per-node`` cameras each (default 100 × 10 = 1,000 cameras). Every node sends a
signed heartbeat every second, over its own connection, carrying each of its cameras' figures
(cumulative frame counts that grow by 25 a beat).

After ``--warmup`` seconds of heartbeats alone, the nodes publish ``--alerts`` signed alerts
(default 10,000; each with a sealed 112×112 JPEG crop, as a node sends them) to the stream,
as fast as the broker takes them. Measured:

* **alerts per second**: from the first publish to the last alert stored by the centre
  (encrypted, audited ``alert.create``, committed), and the stored rate alone (first to last
  stored);
* **alert lag**: from an alert's publish (the broker's acknowledgement) to its row's
  ``created_at``, p50/p95/max;
* **health lag**: every second, for each node, how long ago it sent the oldest heartbeat the
  centre has not yet applied (0 when it is up to date); the worst node's, p50/p95/max over
  the run, before, during and after the burst;
* **memory and CPU** of the centre's process: resident memory before the burst and its peak
  during it; cores used;
* **correctness**: exactly ``--alerts`` rows and ``alert.create`` entries, the audit chain
  verified (and how long that took), and every camera's public frame count equal to what its
  node last reported.

The baseline of the same run: ``--baseline`` alerts (default 500) published with no
heartbeats at all, before the rest; the burst's stored rate is reported against it.

Needs PostgreSQL (the tests' server, ``OPENLFR_TEST_POSTGRES``) and Debian's ``nats-server``;
the ``nodes`` extra; the shared data's face photo.

    python benchmarks/bench_ingest.py [--alerts 10000] [--nodes 100] [--cameras-per-node 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import cv2  # noqa: E402
import httpx  # noqa: E402
from sqlalchemy import create_engine, func, select  # noqa: E402

from openlfr.governance import auditing, nodes  # noqa: E402
from openlfr.governance import deployments as deps  # noqa: E402
from openlfr.governance.system import open_system  # noqa: E402
from openlfr.nodes import broker, protocol  # noqa: E402
from openlfr.nodes.keys import NodeKeys, b64, box_public, seal  # noqa: E402
from openlfr.store.models import (  # noqa: E402
    Alert,
    AuditRecord,
    CameraStats,
    Deployment,
    Node,
    NodeCamera,
)
from tests.govfix import _pg_database, authorise, make_gov  # noqa: E402
from tests.natsfix import NatsServer, free_port, start_nats  # noqa: E402
from tests.test_gov_deployments import approved_watchlist, plan  # noqa: E402

DATA = HERE.parent.parent / "shared" / "data" / "face_recognition_examples"
FRAMES_PER_BEAT = 25


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def spread(values: list[float]) -> str:
    if not values:
        return "none"
    return (f"p50 {pct(values, 50):.2f} s, p95 {pct(values, 95):.2f} s, "
            f"max {max(values):.2f} s")


@dataclass
class SimNode:
    node_id: int
    name: str
    keys: NodeKeys
    cameras: list[str]
    beats_sent: list[float] = field(default_factory=list)  # wall time of beat k (1-based)


class Centre:
    """``openlfr serve`` on the installation, with the broker; its memory and CPU."""

    def __init__(self, data_dir: Path, db_url: str, srv: NatsServer, work: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENLFR_")}
        env.update({"OPENLFR_DATABASE_URL": db_url, "OPENLFR_NATS_URL": srv.url,
                    "OPENLFR_NATS_SEED_FILE": str(srv.centre_seed_file),
                    "OPENLFR_NATS_AUTH_FILE": str(srv.auth_file),
                    "OPENLFR_NATS_PID_FILE": str(srv.pid_file)})
        script = Path(sys.executable).with_name("openlfr")
        self.err = work / "serve.err"
        with self.err.open("wb") as err:
            self.proc = subprocess.Popen(
                [str(script), "serve", "--port", str(self.port), "--data-dir", str(data_dir),
                 "--log-level", "warning", "--no-resume"],
                stdout=subprocess.DEVNULL, stderr=err, env=env)

    def wait_up(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"openlfr serve exited: {self.err.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/public", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit("openlfr serve did not answer within 120 s")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def beat(node: SimNode, dep_id: int, k: int) -> bytes:
    frames = k * FRAMES_PER_BEAT
    cams = [{"deployment": dep_id, "camera": c, "connected": True, "state": "running",
             "fps_in": 25.0, "fps_analysed": 12.5, "frames": frames,
             "faces_seen": frames // 10, "tracks": k // 5, "dropped": 0, "reconnects": 0,
             "seconds": float(k)} for c in node.cameras]
    return protocol.seal_envelope(node.keys.signing, "health", node.node_id, f"h-{k}",
                                  {"interval": 1.0, "run": "bench", "cpu": 40.0,
                                   "lease": {}, "cameras": cams})


class Fleet:
    """The simulated nodes: one connection each; heartbeats every second; the burst."""

    def __init__(self, url: str, sim: list[SimNode], dep_id: int) -> None:
        self.url, self.sim, self.dep_id = url, sim, dep_id
        self.beating = False
        self.stop = False
        self.published: dict[str, float] = {}  # alert id → wall time of the broker's ack
        self.loop = asyncio.new_event_loop()
        self.conns: list[object] = []
        self._beating: Any = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: object, timeout: float | None = None) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    async def _connect(self) -> None:
        self.conns = [await broker.connect(self.url, n.keys.seed,
                                           inbox=broker.inbox_prefix(n.node_id))
                      for n in self.sim]

    def connect(self) -> None:
        self.run(self._connect(), 120)

    async def _beats(self) -> None:
        k = 0
        start = time.monotonic()
        while not self.stop:
            k += 1
            for node, nc in zip(self.sim, self.conns, strict=True):
                node.beats_sent.append(time.time())
                await nc.publish(protocol.health_subject(node.node_id),  # type: ignore[attr-defined]
                                 beat(node, self.dep_id, k))
            await asyncio.sleep(max(0.0, start + k - time.monotonic()))

    def start_beats(self) -> None:
        self._beating = asyncio.run_coroutine_threadsafe(self._beats(), self.loop)

    async def _burst(self, alerts: list[tuple[int, str, bytes]], window: int = 200) -> None:
        async def one(i: int, alert_id: str, data: bytes) -> None:
            js = self.conns[i].jetstream()  # type: ignore[attr-defined]
            await js.publish(protocol.alert_subject(self.sim[i].node_id), data,
                             headers={"Nats-Msg-Id": alert_id})
            self.published[alert_id] = time.time()
        for lo in range(0, len(alerts), window):
            await asyncio.gather(*(one(i, a, d) for i, a, d in alerts[lo:lo + window]))

    def burst(self, alerts: list[tuple[int, str, bytes]]) -> None:
        self.run(self._burst(alerts), 600)

    def close(self) -> None:
        self.stop = True
        if self._beating is not None:
            self._beating.cancel()

        async def close_all() -> None:
            for nc in self.conns:
                await nc.close()  # type: ignore[attr-defined]
        self.run(close_all(), 30)
        self.loop.call_soon_threadsafe(self.loop.stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--baseline", type=int, default=500,
                        help="alerts of the baseline burst, with no heartbeats")
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--cameras-per-node", type=int, default=10)
    parser.add_argument("--warmup", type=float, default=10.0,
                        help="seconds of heartbeats alone before the burst")
    parser.add_argument("--after", type=float, default=10.0,
                        help="seconds of heartbeats alone after the burst is stored")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    if args.alerts < 1 or args.nodes < 1 or args.cameras_per_node < 1:
        parser.error("--alerts, --nodes and --cameras-per-node must be at least 1")
    face = args.data / "lin-manuel-miranda.png"
    if not face.exists():
        parser.error(f"no face photo at {face}: --data names the shared data's "
                     "face_recognition_examples folder")

    os.environ["OPENLFR_DEFAULT_BACKEND"] = "sface"  # the plan's model and the watchlist's
    work = Path(tempfile.mkdtemp(prefix="openlfr-bench-ingest-"))
    pg = _pg_database()
    db_url = next(pg)
    srv = start_nats(work / "nats")
    gov = make_gov("postgresql", work, db_url)
    settings = srv.centre(gov.settings)
    centre: Centre | None = None
    fleet: Fleet | None = None
    try:
        print(f"setting up {args.nodes} nodes × {args.cameras_per_node} cameras …", flush=True)
        admin = gov.actors["admin"]
        nodes.add_site(gov.db, admin, "city")
        sim: list[SimNode] = []
        for i in range(args.nodes):
            name = f"n{i:03d}"
            keys = NodeKeys.generate()
            token = nodes.add_node(gov.db, admin, "city", name).token
            ans = nodes.enrol(gov.db, settings, token, b64(keys.signing_public),
                              b64(keys.box_public))
            sim.append(SimNode(ans.node_id, name, keys,
                               [f"{name}-c{j}" for j in range(args.cameras_per_node)]))
        wid = approved_watchlist(gov, face)
        cams = tuple(deps.CameraSpec(c, f"/cameras/{c}", node=n.name)
                     for n in sim for c in n.cameras)
        dep_id = deps.create(gov.db, gov.actors["op1"], plan((wid,), cameras=cams),
                             keyring=gov.system.keyring)
        authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)
        deps.start(gov.db, gov.actors["op1"], dep_id)
        with gov.db.reading() as s:
            from openlfr.store.models import Subject
            subject = str(s.scalars(select(Subject.id)).one())
            dep = s.get(Deployment, dep_id)
            assert dep is not None
            threshold, model = dep.threshold, dep.model_id
        gov.system.close()

        centre_box = box_public(nodes.centre_box(settings))
        img = cv2.imread(str(face))
        h, w = img.shape[:2]
        side = min(h, w)
        crop = cv2.resize(img[(h - side) // 2:(h + side) // 2, (w - side) // 2:(w + side) // 2],
                          (112, 112))
        jpeg = cv2.imencode(".jpg", crop)[1].tobytes()

        def make_alerts(prefix: str, n: int) -> list[tuple[int, str, bytes]]:
            out = []
            for i in range(n):
                k = i % len(sim)
                node = sim[k]
                alert_id = f"{prefix}-{i}"
                body = protocol.alert_body(
                    alert_id=alert_id, deployment_id=dep_id,
                    camera=node.cameras[(i // len(sim)) % len(node.cameras)],
                    subject_id=subject, reference_id="", score=min(1.0, threshold + 0.1),
                    threshold=threshold, model_id=model, seen_at=datetime.now(UTC),
                    track_id=i, frame=i, t=0.1, box=(10, 10, 90, 90), revision=0,
                    latency=0.2, in_view=0.5,
                    sealed_crop=seal(jpeg, centre_box, protocol.crop_context(alert_id)))
                out.append((k, alert_id, protocol.seal_envelope(
                    node.keys.signing, "alert", node.node_id, alert_id, body)))
            return out

        t = time.perf_counter()
        base_alerts = make_alerts("base", args.baseline)
        burst_alerts = make_alerts("burst", args.alerts)
        print(f"{args.baseline + args.alerts} alerts signed and sealed in "
              f"{time.perf_counter() - t:.1f} s ({len(burst_alerts[0][2])} bytes each)",
              flush=True)

        centre = Centre(gov.data_dir, db_url, srv, work)
        centre.wait_up()
        engine = create_engine(db_url, pool_size=2)

        def stored() -> int:
            with engine.connect() as c:
                return int(c.scalar(select(func.count()).select_from(Alert)) or 0)

        def wait_stored(n: int, what: str, timeout: float) -> list[tuple[float, int]]:
            samples = []
            deadline = time.monotonic() + timeout
            while True:
                got = stored()
                samples.append((time.time(), got))
                if got >= n:
                    return samples
                if time.monotonic() > deadline or centre.proc.poll() is not None:  # type: ignore[union-attr]
                    raise SystemExit(f"{what}: {got} of {n} stored after {timeout:.0f} s")
                time.sleep(0.1)

        t = time.monotonic()  # the centre's first write of every node's desired state
        while True:
            with engine.connect() as c:
                synced = int(c.scalar(select(func.count()).select_from(Node).where(
                    Node.desired_digest.is_not(None))) or 0)
            if synced >= len(sim):
                break
            if time.monotonic() - t > 600 or centre.proc.poll() is not None:
                raise SystemExit(f"the centre wrote the desired state of {synced} of "
                                 f"{len(sim)} nodes in 600 s")
            time.sleep(0.2)
        print(f"the centre wrote {len(sim)} nodes' desired state in "
              f"{time.monotonic() - t:.1f} s after it answered", flush=True)
        fleet = Fleet(srv.url, sim, dep_id)
        fleet.connect()

        # -- the baseline: alerts alone ---------------------------------------------------
        t0 = time.time()
        fleet.burst(base_alerts)
        base_samples = wait_stored(args.baseline, "the baseline", 600)
        base_first = min(fleet.published.values())
        base_rate = args.baseline / (base_samples[-1][0] - base_first)
        print(f"baseline: {args.baseline} alerts, no heartbeats: {base_rate:.0f} alerts/s "
              f"(publish → stored, {base_samples[-1][0] - t0:.1f} s)", flush=True)

        # -- heartbeats, then the burst --------------------------------------------------
        stop_watch = threading.Event()
        health_lag: list[tuple[float, float]] = []  # (wall time, worst node's lag)
        memory: list[tuple[float, float]] = []

        def watch() -> None:
            while not stop_watch.is_set():
                now = time.time()
                with engine.connect() as c:
                    applied = dict(c.execute(
                        select(NodeCamera.node_id, func.min(NodeCamera.frames))
                        .group_by(NodeCamera.node_id)).all())
                worst = 0.0
                for node in sim:
                    k = int(applied.get(node.node_id, 0) or 0) // FRAMES_PER_BEAT
                    sent = node.beats_sent
                    if len(sent) > k:  # beat k+1 was sent and is not applied yet
                        worst = max(worst, now - sent[k])
                health_lag.append((now, worst))
                memory.append((now, centre.rss_mib()))  # type: ignore[union-attr]
                stop_watch.wait(1.0)

        cpu0 = centre.cpu_seconds()
        fleet.start_beats()
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        time.sleep(args.warmup)
        rss_before = centre.rss_mib()
        b0 = time.time()
        fleet.burst(burst_alerts)
        b_published = time.time()
        samples = wait_stored(args.baseline + args.alerts, "the burst", 1800)
        b_stored = samples[-1][0]
        time.sleep(args.after)
        stop_watch.set()
        watcher.join()
        published = fleet.published
        fleet.close()
        fleet = None
        time.sleep(3.0)  # the last heartbeats applied
        cpu_s = centre.cpu_seconds() - cpu0
        cpu_wall = time.time() - (b0 - args.warmup)

        first_stored = next(t for t, n in samples if n > args.baseline)
        burst_rate = args.alerts / (b_stored - b0)
        stored_rate = args.alerts / max(1e-6, b_stored - first_stored)
        with engine.connect() as c:
            created = {r[0]: r[1].timestamp() for r in c.execute(
                select(Alert.node_alert_id, Alert.created_at))}
            rows = len(created)
            audited = int(c.scalar(select(func.count()).select_from(AuditRecord).where(
                AuditRecord.action == "alert.create")) or 0)
            reported = {n.node_id: len(n.beats_sent) for n in sim}
            frames = dict(c.execute(select(CameraStats.camera, CameraStats.frames)).all())
        lag = [at - published[key.split(":", 1)[1]] for key, at in created.items()
               if key.split(":", 1)[1].startswith("burst-")]
        wrong = [c for n in sim for c in n.cameras
                 if frames.get(c) != reported[n.node_id] * FRAMES_PER_BEAT]
        during = [v for t, v in health_lag if b0 <= t <= b_stored]
        before = [v for t, v in health_lag if t < b0]
        after = [v for t, v in health_lag if t > b_stored + 2]
        peak = max((m for t, m in memory if b0 <= t <= b_stored + 2), default=0.0)

        system = open_system(gov.settings)
        try:
            tv = time.perf_counter()
            ok = auditing.verify(system.db, gov.actors["au1"]).as_dict()["ok"]
            verify_s = time.perf_counter() - tv
        finally:
            system.close()

        cameras = args.nodes * args.cameras_per_node
        print(f"\n{args.alerts} alerts from {args.nodes} nodes while {cameras} cameras report "
              f"health every second (PostgreSQL, load {os.getloadavg()[0]:.1f}):")
        print(f"  published in {b_published - b0:.1f} s; all stored {b_stored - b0:.1f} s "
              f"after the first publish: {burst_rate:.0f} alerts/s "
              f"(stored alone: {stored_rate:.0f} alerts/s, "
              f"{stored_rate / base_rate:.2f}× the baseline's {base_rate:.0f})")
        print(f"  alert lag, published → stored: {spread(lag)}")
        print(f"  health lag (the worst node): before {spread(before)}; during the burst "
              f"{spread(during)}; after {spread(after)}")
        print(f"  centre memory: {rss_before:.0f} MiB before the burst, peak {peak:.0f} MiB "
              f"during it; CPU {cpu_s / cpu_wall:.2f} cores over {cpu_wall:.0f} s")
        print(f"  rows {rows} (expected {args.baseline + args.alerts}), alert.create "
              f"{audited}; audit chain {'verified' if ok else 'BROKEN'} in {verify_s:.1f} s; "
              f"cameras whose public frame count differs from their node's: {len(wrong)}")
        if rows != args.baseline + args.alerts or audited != rows or not ok or wrong:
            raise SystemExit("the centre's ingest lost, doubled or miscounted something")
    finally:
        if fleet is not None:
            fleet.close()
        if centre is not None:
            centre.stop()
        srv.stop()
        for _ in pg:
            pass


if __name__ == "__main__":
    main()
