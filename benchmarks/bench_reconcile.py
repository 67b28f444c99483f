"""How fast live runs follow the governance state (desired state, reconciled).

Runs the background jobs of ``openlfr serve`` (reconciling every 0.5 s) on a fresh data
directory and, ``--tries`` times, a deployment whose camera is a looping clip of a watchlisted
person (read at its own pace, 25 fps):

* **start → first frame analysed**: from the commit of ``deployment start`` (made on another
  database connection, as the console, the API or another process would) to the first frame
  the run analysed;
* **removal → gallery reloaded**: from the commit of the subject's removal to the new (empty)
  gallery being searched by the running camera;
* **stop → run ended**: from the commit of ``deployment stop`` to the run's thread having
  finished (cameras closed, counts written).

Prints the median and the maximum of each, over the tries after one warm-up (the first run of a
process also loads the models: 3-4 s more, once per server). Uses
../shared/data/face_recognition_examples (never copied into the project); the clip is made from
obama2.jpg with the tests' clip maker.

    python benchmarks/bench_reconcile.py [--tries 20] [--database-url postgresql+psycopg://…]
        [--data ../shared/data/face_recognition_examples]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
DATA = HERE.parent.parent / "shared" / "data" / "face_recognition_examples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--database-url", default=None,
                        help="PostgreSQL URL (default: SQLite in a temporary directory)")
    parser.add_argument("--data", type=Path, default=DATA,
                        help=f"the face_recognition examples (default {DATA})")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from openlfr.config import Settings
    from openlfr.governance import deployments as deps
    from openlfr.governance import users, watchlists
    from openlfr.governance.authz import Actor
    from openlfr.governance.reconcile import Reload
    from openlfr.governance.system import initialise
    from openlfr.store.db import Database
    from openlfr.store.enums import Role
    from openlfr.vision import get_engine
    from openlfr.web.jobs import BackgroundJobs
    from tests import videoclips
    from tests.govfix import DECISION, ready_to_authorise

    face, walker = args.data / "obama.jpg", args.data / "obama2.jpg"
    for path in (face, walker):
        if not path.exists():
            sys.exit(f"missing {path}")
    tmp = Path(tempfile.mkdtemp(prefix="openlfr-bench-reconcile-"))
    clip = videoclips.walk_in(tmp / "walk.avi", walker)
    system, _ = initialise(Settings(data_dir=tmp / "data", database_url=args.database_url))
    users.create_first_admin(system.db, "admin", "a long benchmark password")
    admin = Actor("admin", Role.ADMIN)
    op = users.add_user(system.db, admin, "op", Role.OPERATOR, "a long benchmark password")
    ao = users.add_user(system.db, admin, "ao", Role.AUTHORISING_OFFICER,
                        "a long benchmark password")
    model_id = get_engine("sface").model_id
    other = Database(system.db.url)  # "another process": its own connection

    reloads: list[Reload] = []
    reloaded = threading.Event()

    def on_reload(event: Reload) -> None:
        reloads.append(event)
        reloaded.set()

    jobs = BackgroundJobs(system, tick=3600, retention_every=1e9,
                          run_options={"realtime": True, "loop": True, "workers": 1})
    jobs.reconciler.on_reload = on_reload
    jobs.start()
    starts: list[float] = []
    removals: list[float] = []
    stops: list[float] = []

    def wait(cond, timeout: float = 60.0) -> float:  # type: ignore[no-untyped-def]
        t0 = time.monotonic()
        while not cond():
            if time.monotonic() - t0 > timeout:
                raise SystemExit("timed out")
            time.sleep(0.005)
        return time.monotonic()

    try:
        for i in range(args.tries + 1):  # try 0 warms up (models loaded): not counted
            wl = watchlists.create_watchlist(system, op, f"list {i}",
                                             "Locate people wanted by the courts",
                                             backend="sface")
            subject = watchlists.add_subject(
                system, op, wl.id, f"Case {i}", "wanted_by_court",
                "Wanted on a warrant for failure to appear at court",
                datetime.now(UTC) + timedelta(days=30), [(face.read_bytes(), "custody")])
            watchlists.approve_watchlist(system.db, ao, wl.id)
            now = datetime.now(UTC)
            dep_id = deps.create(system.db, op, deps.Plan(
                name=f"Bench {i}", site="Bench", location="here", purpose="benchmark",
                legal_basis="test", dpia_ref="D", equality_ref="E",
                planned_start=now - timedelta(minutes=1), planned_end=now + timedelta(hours=1),
                threshold=None, model_id=model_id, signage=True,
                public_notice=True, watchlist_ids=(wl.id,), notice_at=now - timedelta(days=1),
                alternatives="patrols cannot check every face at the gate",
                cameras=(deps.CameraSpec("gate", str(clip)),)), keyring=system.keyring)
            ready_to_authorise(system.db, ao, dep_id)  # a calibration that answers for it
            deps.authorise(system.db, system.keyring, ao, dep_id, decision=DECISION)

            t0 = time.monotonic()
            deps.start(other, op, dep_id)
            t1 = wait(lambda d=dep_id: d in jobs.runs and sum(
                f.frames for f in jobs.runs[d].figures()) > 0)
            start_s = t1 - t0
            run = jobs.runs[dep_id]

            reloaded.clear()
            t0 = time.monotonic()
            watchlists.remove_subject(other, op, subject.id)
            wait(reloaded.is_set)
            removal_s = reloads[-1].at - t0

            t0 = time.monotonic()
            deps.stop(other, op, dep_id, "benchmark over")
            t1 = wait(lambda r=run: not r.running)
            stop_s = t1 - t0
            print(f"{'warm-up' if i == 0 else f'try {i}'}: start {start_s:.3f} s, "
                  f"removal {removal_s:.3f} s, stop {stop_s:.3f} s", file=sys.stderr)
            if i > 0:
                starts.append(start_s)
                removals.append(removal_s)
                stops.append(stop_s)
    finally:
        jobs.stop()
        other.dispose()
        system.close()

    def row(values: list[float]) -> dict[str, float]:
        return {"median_s": round(statistics.median(values), 3),
                "max_s": round(max(values), 3)}

    result = {"tries": args.tries, "database": "postgresql" if args.database_url else "sqlite",
              "start_to_first_frame": row(starts), "removal_to_gallery_reloaded": row(removals),
              "stop_to_run_ended": row(stops)}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.tries} tries on {result['database']}:")
        for key in ("start_to_first_frame", "removal_to_gallery_reloaded",
                    "stop_to_run_ended"):
            print(f"  {key.replace('_', ' '):32s} median {result[key]['median_s']:.3f} s, "
                  f"max {result[key]['max_s']:.3f} s")


if __name__ == "__main__":
    main()
