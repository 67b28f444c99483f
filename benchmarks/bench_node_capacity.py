"""Capacity of nodes on one machine against one process: cameras held under 5 % drops.

Both setups run copies of the shared data's Hamilton clip (``short_hamilton_clip.mp4``,
640x360, 29.97 fps, 9 s), each camera the clip read at its own speed and looped
(``--realtime --loop``), on a watchlist of Lin-Manuel Miranda, Alex Lacamoire, Barack Obama
and Joe Biden made with ``--backend`` (default sface). For each number of cameras, from
``--min-cameras`` up, a run of ``--seconds``; the capacity is the last number before the first
run that drops 5 % of its frames or more, or in which a camera did not alert Lin-Manuel
Miranda, or any camera alerted somebody else. The two setups:

* **one process**: the N cameras in one ``openlfr watch --realtime --loop --max-seconds S``,
  as ``bench_live.py capacity`` runs it (its watchlist, command line and checks, imported from
  that file). Drop rate: the frames the cameras dropped over the frames they delivered
  (``dropped_frames / sum(frames_in)`` of the run's JSON summary); cores used: the run's own
  CPU-seconds (the process and its helper processes, from the cameras' start to the end) over
  its seconds; memory: its resident memory with its child processes', the peak of samples
  taken every half second.
* **nodes** (``--nodes``, default 4): a centre on SQLite in this process, as ``openlfr serve``
  runs it with a broker (``tests/nodefix.CentreSide``: the reconcile tick that writes the
  nodes' desired state, the leases, the ingest of alerts and health), a ``nats-server``
  (``tests/natsfix.start_nats``: JetStream in a temporary folder, a free port), and the nodes
  ``node-1`` … ``node-K`` enrolled with it, each ``openlfr node run --realtime --loop
  --workers W --health-every 1`` (``--node-workers``, default 1, as the tests run a node) in a
  process of its own. ONE deployment holds the N cameras, ``cam-1`` … ``cam-N``, given to the
  nodes in turn (``cam-1`` on ``node-1``, ``cam-2`` on ``node-2``, …), with the model of
  ``--backend`` and its default threshold, as ``openlfr watch`` uses. Each camera's figures
  are read at the centre, from what its node reported (the ``node_cameras`` table: the run's
  cumulative frames analysed, frames dropped, seconds, frames per second analysed), the first
  time its ``seconds`` reach S; the drop rate is ``dropped / (frames + dropped)`` summed over
  the cameras (a node reports the frames it analysed, not those delivered; a camera's delivered
  frames are those analysed plus those dropped, so this is the one process's definition).
  Alerts: those stored at the centre for the deployment after the nodes stopped and the
  broker's stream drained, checked per camera as in the one process. Cores used: the CPU time
  of the node processes and of their child processes (``/proc/PID/stat``, utime + stime, and
  cutime + cstime of children already ended) from the moment every camera had reported running
  to the moment every one had reached S, over that wall time. Memory: the sum of the node
  processes' resident memory (with their children), its peak during that window. The centre
  and the broker are not counted (one process has no centre either); they run on the same
  machine and take some of its CPU.

The load average at each run's start is printed with it: drop rates follow the machine, so the
measurement is made when other work has stopped. Needs ``nats-server`` (Debian's package) and
the ``nodes`` extra; uses ../shared/data/face_recognition_examples, never copied.

    python benchmarks/bench_node_capacity.py --data ../shared/data/face_recognition_examples \\
        --seconds 20 --min-cameras 6 --max-cameras 14     # both setups, 4 nodes, sface
    python benchmarks/bench_node_capacity.py --only nodes --nodes 2 --min-cameras 4
    python benchmarks/bench_node_capacity.py --only one --max-cameras 10 --out one.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_live import (  # noqa: E402
    CLIP,
    DATA,
    PEOPLE,
    build_watchlist,
    check_subjects,
    openlfr_cmd,
    rss_kib,
)

#: a run is within capacity under this share of frames dropped (as ``bench_live.py capacity``)
DROP_LIMIT = 0.05
TICK = os.sysconf("SC_CLK_TCK")
REASON = "Wanted on a warrant issued by the magistrates' court (capacity benchmark)."


class BenchError(Exception):
    """A run could not be made (a node died, figures never came): one line for the user."""


# -- the one process ---------------------------------------------------------------------------

def one_process_run(data: Path, work: Path, cameras: int, seconds: float, backend: str
                    ) -> dict[str, Any]:
    """N cameras in one ``openlfr watch --realtime --loop`` (``bench_live.realtime_run``'s
    command and figures), its resident memory sampled every half second."""
    load = os.getloadavg()[0]
    watchlist = build_watchlist(data, work, backend)
    events_path = work / f"one-{cameras}.jsonl"
    peak = 0
    with events_path.open("w") as events, (work / "one.err").open("w") as err:
        proc = subprocess.Popen([*openlfr_cmd(), "watch", *([str(data / CLIP)] * cameras),
                                 "--watchlist", str(watchlist), "--json", "--realtime",
                                 "--loop", "--max-seconds", str(seconds)],
                                stdout=events, stderr=err)
        deadline = time.monotonic() + seconds + 600
        while proc.poll() is None:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                peak = max(peak, rss_kib(proc.pid))
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise BenchError(f"openlfr watch with {cameras} cameras did not end")
            time.sleep(0.5)
    if proc.returncode != 0:
        tail = (work / "one.err").read_text().strip().splitlines()[-1:]
        raise BenchError(f"openlfr watch failed (exit {proc.returncode}): {' '.join(tail)}")
    lines = [json.loads(line) for line in events_path.read_text().splitlines() if line]
    alerts = [e for e in lines if e["event"] == "alert"]
    summary = lines[-1]
    frames_in = sum(c["frames_in"] for c in summary["cameras"])
    dropped = summary["dropped_frames"]
    cores = summary["cpu_seconds"] / summary["seconds"]
    return {
        "setup": "one process", "cameras": cameras, "load_at_start": round(load, 2),
        "seconds": summary["seconds"], "frames_in": frames_in, "frames": summary["frames"],
        "dropped": dropped, "drop_rate": dropped / frames_in if frames_in else 0.0,
        "fps": summary["fps"], "cores_used": round(cores, 3),
        "cores_per_camera": round(cores / cameras, 3), "rss_mib": round(peak / 1024, 1),
        "alerts": len(alerts),
        "subjects": check_subjects(alerts, [c["camera"] for c in summary["cameras"]]),
    }


# -- the nodes -----------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and of its live descendants, with that of its ended children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = sum(int(v) for v in fields[11:15]) / TICK  # utime stime cutime cstime
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for child in (task / "children").read_text().split():
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    total += cpu_seconds(int(child))
    return total


def watchlist_of_people(gov: Any, data: Path, backend: str) -> int:
    """The approved watchlist of :data:`bench_live.PEOPLE` (one image each, ``backend``), its
    subjects' references the people's names, as ``check_subjects`` expects them."""
    from openlfr.governance import watchlists

    info = watchlists.create_watchlist(gov.system, gov.actors["op1"], "hamilton",
                                       "Locate people wanted by the courts", backend=backend)
    for subject, image in PEOPLE.items():
        watchlists.add_subject(gov.system, gov.actors["op1"], info.id, subject,
                               "wanted_by_court", REASON, datetime.now(UTC) + timedelta(days=30),
                               [((data / image).read_bytes(), f"custody record ({image})")])
    watchlists.approve_watchlist(gov.db, gov.actors["ao2"], info.id)
    return info.id


def deployment_over_nodes(gov: Any, clip: Path, watchlist: int, placement: list[str],
                          backend: str) -> int:
    """A deployment (authorised, not started) whose camera ``cam-i`` plays ``clip`` on the
    node ``placement[i - 1]``, with ``backend``'s model and default threshold (a variant of
    ``tests/nodefix.deployment_on_node``, which puts every camera on one node)."""
    from dataclasses import replace

    from openlfr.governance import deployments as deps
    from openlfr.vision import get_engine
    from tests.govfix import authorise
    from tests.test_gov_deployments import plan

    engine = get_engine(backend)
    cams = tuple(deps.CameraSpec(f"cam-{i}", str(clip), node=node)
                 for i, node in enumerate(placement, start=1))
    dep_id = deps.create(gov.db, gov.actors["op1"],
                         replace(plan((watchlist,), cameras=cams), model_id=engine.model_id,
                                 threshold=engine.default_threshold),
                         keyring=gov.system.keyring)
    authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)
    return dep_id


def camera_rows(gov: Any, dep_id: int) -> dict[str, dict[str, Any]]:
    """Each camera's figures as its node last reported them to the centre."""
    from sqlalchemy import select

    from openlfr.store.models import NodeCamera

    with gov.db.reading() as s:
        return {r.camera: {"state": r.state, "frames": r.frames, "dropped": r.dropped,
                           "seconds": r.seconds, "fps_analysed": r.fps_analysed,
                           "fps_in": r.fps_in, "reconnects": r.reconnects}
                for r in s.scalars(select(NodeCamera).where(
                    NodeCamera.deployment_id == dep_id))}


def stored_alerts(gov: Any, dep_id: int) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from openlfr.store.models import Alert, Subject

    with gov.db.reading() as s:
        return [{"camera": camera, "subject": subject or "(removed subject)"}
                for camera, subject in s.execute(
                    select(Alert.camera, Subject.reference)
                    .outerjoin(Subject, Subject.id == Alert.subject_id)
                    .where(Alert.deployment_id == dep_id))]


def wait(what: str, cond: Callable[[], object], timeout: float,
         procs: list[subprocess.Popen[bytes]], folders: list[Path]) -> None:
    """Until ``cond()`` holds; a :class:`BenchError` when a node process ends or after
    ``timeout`` seconds."""
    t0 = time.monotonic()
    while not cond():
        check_alive(procs, folders)
        if time.monotonic() - t0 > timeout:
            raise BenchError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.25)


def check_alive(procs: list[subprocess.Popen[bytes]], folders: list[Path]) -> None:
    for proc, folder in zip(procs, folders, strict=True):
        if proc.poll() is not None:
            tail = (folder / "node.err").read_text(errors="replace").strip().splitlines()[-1:]
            raise BenchError(f"{folder.name} ended (exit {proc.returncode}): "
                             f"{' '.join(tail) or 'nothing on its stderr'}")


def nodes_run(data: Path, cameras: int, seconds: float, backend: str, n_nodes: int,
              workers: int) -> dict[str, Any]:
    """N cameras of one deployment over ``n_nodes`` node processes (module docstring)."""
    from openlfr.governance import deployments as deps
    from openlfr.governance import nodes
    from tests.govfix import make_gov
    from tests.natsfix import start_nats
    from tests.nodefix import CentreSide, enrol_node, node_process, outbox

    load = os.getloadavg()[0]
    names = [f"node-{i}" for i in range(1, n_nodes + 1)]
    placement = [names[i % n_nodes] for i in range(cameras)]
    with tempfile.TemporaryDirectory(prefix="openlfr-bench-nodecap-") as tmp:
        work = Path(tmp)
        srv = start_nats(work / "nats")
        gov = make_gov("sqlite", work, None)
        procs: list[subprocess.Popen[bytes]] = []
        folders = [work / name for name in names]
        centre = None
        try:
            settings = srv.centre(gov.settings)
            for name, folder in zip(names, folders, strict=True):
                folder.mkdir()
                enrol_node(gov, settings, folder, name=name)
            wid = watchlist_of_people(gov, data, backend)
            dep = deployment_over_nodes(gov, data / CLIP, wid, placement, backend)
            centre = CentreSide(gov, settings)
            centre.start()
            procs = [node_process(folder, "--workers", str(workers)) for folder in folders]
            admin = gov.actors["admin"]
            wait("every node online at the centre",
                 lambda: all(nodes.show_node(gov.db, admin, n).online for n in names),
                 120, procs, folders)
            deps.start(gov.db, gov.actors["op1"], dep)
            started = time.monotonic()

            def all_running() -> bool:
                rows = camera_rows(gov, dep)
                return len(rows) == cameras and all(
                    r["state"] == "running" and r["seconds"] > 0 for r in rows.values())

            # every camera running: the window of CPU time starts
            wait("every camera running on its node", all_running, 300, procs, folders)
            t0 = time.monotonic()
            cpu0 = sum(cpu_seconds(p.pid) for p in procs)
            figures: dict[str, dict[str, Any]] = {}
            peak = 0
            while len(figures) < cameras:
                check_alive(procs, folders)
                if time.monotonic() - t0 > seconds + 120:
                    late = [f"cam-{i}" for i in range(1, cameras + 1)
                            if f"cam-{i}" not in figures]
                    raise BenchError(f"{', '.join(late)}: never reported {seconds:g} s of "
                                     "running")
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    peak = max(peak, sum(rss_kib(p.pid) for p in procs))
                for camera, row in camera_rows(gov, dep).items():
                    if camera not in figures and row["seconds"] >= seconds:
                        figures[camera] = row
                time.sleep(0.25)
            t1 = time.monotonic()
            cpu1 = sum(cpu_seconds(p.pid) for p in procs)
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            link = centre.link
            wait("the nodes' outboxes drained",
                 lambda: not any(outbox(f) for f in folders), 60, [], [])
            wait("the broker's stream drained", lambda: link.broker.pending() == 0, 60, [], [])
            alerts = stored_alerts(gov, dep)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            if centre is not None:
                centre.stop()
            gov.system.close()
            srv.stop()
    frames = sum(int(r["frames"]) for r in figures.values())
    dropped = sum(int(r["dropped"]) for r in figures.values())
    cores = (cpu1 - cpu0) / (t1 - t0)
    return {
        "setup": f"{n_nodes} nodes", "cameras": cameras, "load_at_start": round(load, 2),
        "seconds_to_all_running": round(t0 - started, 1), "cpu_window": round(t1 - t0, 1),
        "frames": frames, "dropped": dropped,
        "drop_rate": dropped / (frames + dropped) if frames + dropped else 0.0,
        "fps": round(sum(float(r["fps_analysed"] or 0) for r in figures.values()), 1),
        "cores_used": round(cores, 3), "cores_per_camera": round(cores / cameras, 3),
        "rss_mib": round(peak / 1024, 1), "alerts": len(alerts),
        "subjects": check_subjects(alerts, [f"cam-{i}" for i in range(1, cameras + 1)]),
        "placement": dict(zip([f"cam-{i}" for i in range(1, cameras + 1)], placement,
                              strict=True)),
        "per_camera": figures,
    }


# -- the search and the table ------------------------------------------------------------------

def search(setup: str, run: Callable[[int], dict[str, Any]], min_cameras: int,
           max_cameras: int) -> dict[str, Any]:
    """Runs from ``min_cameras`` up until one drops 5 % or more of its frames or misses the
    right alerts; the capacity is the last number before it (0: none passed)."""
    runs = []
    best = 0
    for n in range(min_cameras, max_cameras + 1):
        r = run(n)
        ok = r["drop_rate"] < DROP_LIMIT and r["subjects"]["correct"]
        runs.append(r | {"passed": ok})
        print(f"  {setup}, {n} camera(s): drop rate {r['drop_rate']:.1%}, "
              f"{r['cores_used']} cores used, {r['rss_mib']} MiB, "
              f"alerts correct: {r['subjects']['correct']}, load at start "
              f"{r['load_at_start']:.1f}", file=sys.stderr)
        if not ok:
            break
        best = n
    return {"capacity": best, "reached_max": best == max_cameras, "runs": runs}


def table(results: dict[str, dict[str, Any]]) -> str:
    head = ("setup", "cameras", "dropped", "cores used", "cores/camera", "memory",
            "right alerts", "load at start")
    rows = [head]
    for out in results.values():
        for r in out["runs"]:
            mark = " *" if r["cameras"] == out["capacity"] else ""
            rows.append((r["setup"], f"{r['cameras']}{mark}", f"{r['drop_rate']:.1%}",
                         f"{r['cores_used']:.2f}", f"{r['cores_per_camera']:.3f}",
                         f"{r['rss_mib']:.0f} MiB",
                         "yes" if r["subjects"]["correct"] else "NO",
                         f"{r['load_at_start']:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("* the capacity: the most cameras with under 5 % of frames dropped and every "
                 "camera alerting Lin-Manuel Miranda only")
    for out in results.values():
        more = " (the last number tried: it may hold more)" if out["reached_max"] else ""
        lines.append(f"{out['runs'][0]['setup']}: capacity {out['capacity']} camera(s){more}")
    if len(results) == 2:
        one, many = (out["capacity"] for out in results.values())
        ratio = f"{many / one:.2f}" if one else "n/a (one process held no camera)"
        lines.append(f"ratio (nodes / one process): {ratio}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from openlfr.vision.registry import BACKENDS

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="each run's length")
    parser.add_argument("--min-cameras", type=int, default=1,
                        help="the first number of cameras tried")
    parser.add_argument("--max-cameras", type=int, default=16,
                        help="the last number of cameras tried")
    parser.add_argument("--nodes", type=int, default=4, help="node processes (default 4)")
    parser.add_argument("--node-workers", type=int, default=1,
                        help="analysis threads of each node (default 1)")
    parser.add_argument("--backend", default="sface", choices=sorted(BACKENDS),
                        help="the watchlists' recogniser and the plan's model")
    parser.add_argument("--data", type=Path, default=DATA,
                        help="the face_recognition examples folder (the clip and the faces)")
    parser.add_argument("--only", choices=["one", "nodes"],
                        help="run one setup only: one process, or the nodes")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.seconds > 0:
        parser.error("--seconds must be more than 0")
    if args.min_cameras < 1:
        parser.error("--min-cameras must be at least 1")
    if args.max_cameras < args.min_cameras:
        parser.error("--max-cameras must be at least --min-cameras")
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    if args.node_workers < 1:
        parser.error("--node-workers must be at least 1")
    missing = [p for p in [CLIP, *PEOPLE.values()] if not (args.data / p).is_file()]
    if missing:
        parser.error(f"--data {args.data}: {', '.join(missing)} not found there (the "
                     "face_recognition examples folder)")
    if args.only != "one" and not (shutil.which("nats-server")
                                   or Path("/usr/sbin/nats-server").exists()):
        parser.error("the nodes need nats-server (Debian's nats-server package); "
                     "--only one runs without it")
    return args


def main() -> None:
    args = parse_args(sys.argv[1:])
    os.environ["OPENLFR_DEFAULT_BACKEND"] = args.backend  # the centre's and the nodes' model
    results: dict[str, dict[str, Any]] = {}
    try:
        if args.only in (None, "one"):
            with tempfile.TemporaryDirectory(prefix="openlfr-bench-onecap-") as tmp:
                results["one_process"] = search(
                    "one process", lambda n: one_process_run(args.data, Path(tmp), n,
                                                             args.seconds, args.backend),
                    args.min_cameras, args.max_cameras)
        if args.only in (None, "nodes"):
            results["nodes"] = search(
                f"{args.nodes} nodes", lambda n: nodes_run(args.data, n, args.seconds,
                                                           args.backend, args.nodes,
                                                           args.node_workers),
                args.min_cameras, args.max_cameras)
    except BenchError as exc:
        sys.exit(f"bench_node_capacity: {exc}")
    doc: dict[str, Any] = {"cpu_count": os.cpu_count(), "seconds": args.seconds,
                           "backend": args.backend, "nodes": args.nodes,
                           "node_workers": args.node_workers, **results}
    if len(results) == 2 and results["one_process"]["capacity"]:
        doc["ratio"] = round(results["nodes"]["capacity"]
                             / results["one_process"]["capacity"], 3)
    if args.out:
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
