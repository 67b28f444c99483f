"""How fast an urgent use is stopped, and its results deleted, once its 24-hour deadline passes
(``eu-ai-act``; :mod:`openlfr.governance.urgent`), with nobody acting.

Runs the background jobs of ``openlfr serve`` (reconciling every 0.5 s) on a fresh data
directory under the ``eu-ai-act`` profile and, ``--tries`` times, a draft started urgently whose
camera is a looping clip of a watchlisted person. Once the run has stored a possible match, the
deadline is moved to one second from now (as if 24 hours had passed; on another database
connection) and the benchmark measures, from the deadline:

* **run stopped**: the live run's thread has finished (cameras closed);
* **results deleted**: no alert of it is left in the database and its data key's file is gone
  from the key store.

Prints the median and maximum over the tries after one warm-up (the first run loads the
models). Uses ../shared/data/face_recognition_examples (never copied into the project); the clip
is made from obama2.jpg with the tests' clip maker.

    python benchmarks/bench_urgent.py [--tries 10] [--database-url postgresql+psycopg://…]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
DATA = HERE.parent.parent / "shared" / "data" / "face_recognition_examples"
WHY = ("A child was reported abducted twenty minutes ago near the station; the suspect is on "
       "the watchlist and there is no time to obtain prior authorisation.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tries", type=int, default=10)
    parser.add_argument("--database-url", default=None,
                        help="PostgreSQL URL (default: SQLite in a temporary directory)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from sqlalchemy import func, select, update

    from openlfr.config import Settings
    from openlfr.governance import deployments as deps
    from openlfr.governance import profiles, urgent, users, watchlists
    from openlfr.governance.authz import Actor
    from openlfr.governance.system import initialise
    from openlfr.store.db import Database
    from openlfr.store.enums import Role
    from openlfr.store.models import Alert, Deployment, UrgentUse
    from openlfr.vision import get_engine
    from openlfr.web.jobs import BackgroundJobs
    from tests import videoclips
    from tests.govfix import ready_to_authorise

    face, walker = args.data / "obama.jpg", args.data / "obama2.jpg"
    for path in (face, walker):
        if not path.exists():
            sys.exit(f"missing {path}")
    tmp = Path(tempfile.mkdtemp(prefix="openlfr-bench-urgent-"))
    clip = videoclips.walk_in(tmp / "walk.avi", walker)
    system, _ = initialise(Settings(data_dir=tmp / "data", database_url=args.database_url))
    password = "a long benchmark password"
    users.create_first_admin(system.db, "admin", password)
    admin = Actor("admin", Role.ADMIN)
    profiles.set_profile(system.db, admin, "eu-ai-act")
    op = users.add_user(system.db, admin, "op", Role.OPERATOR, password)
    ao = users.add_user(system.db, admin, "ao", Role.AUTHORISING_OFFICER, password)
    model_id = get_engine("sface").model_id
    other = Database(system.db.url)  # "another process": its own connection
    jobs = BackgroundJobs(system, tick=3600, retention_every=1e9,
                          run_options={"realtime": True, "loop": True, "workers": 1})
    jobs.start()
    stopped: list[float] = []
    deleted: list[float] = []

    def wait(cond, timeout: float = 120.0) -> float:  # type: ignore[no-untyped-def]
        t0 = time.monotonic()
        while not cond():
            if time.monotonic() - t0 > timeout:
                raise SystemExit("timed out")
            time.sleep(0.01)
        return time.time()

    def alerts(dep_id: int) -> int:
        with other.reading() as s:
            return int(s.scalar(select(func.count()).select_from(Alert).where(
                Alert.deployment_id == dep_id)) or 0)

    try:
        for i in range(args.tries + 1):  # try 0 warms up: not counted
            wl = watchlists.create_watchlist(system, op, f"list {i}",
                                             "Locate people wanted by the courts",
                                             backend="sface")
            watchlists.add_subject(
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
                public_notice=True, watchlist_ids=(wl.id,), alternatives="none would do",
                fria_ref="FRIA-BENCH", eu_db_ref="EU-DB-BENCH",
                cameras=(deps.CameraSpec("gate", str(clip)),)), keyring=system.keyring)
            ready_to_authorise(system.db, ao, dep_id)  # a calibration that answers for it
            urgent.start_urgent(other, system.keyring, op, dep_id, WHY)
            wait(lambda d=dep_id: d in jobs.runs and alerts(d) > 0)
            run = jobs.runs[dep_id]
            with other.reading() as s:
                dep = s.get(Deployment, dep_id)
                assert dep is not None
                key_id = dep.data_key_id
            assert key_id is not None
            deadline = time.time() + 1.0
            with other.session() as s:
                s.execute(update(UrgentUse).where(UrgentUse.deployment_id == dep_id).values(
                    deadline=datetime.fromtimestamp(deadline, UTC)))
            t_stop = wait(lambda r=run: not r.running)
            t_gone = wait(lambda d=dep_id, k=key_id: alerts(d) == 0
                          and not system.keyring.store.exists(k))
            print(f"{'warm-up' if i == 0 else f'try {i}'}: run stopped "
                  f"{t_stop - deadline:.3f} s, results deleted {t_gone - deadline:.3f} s "
                  "after the deadline", file=sys.stderr)
            if i > 0:
                stopped.append(t_stop - deadline)
                deleted.append(t_gone - deadline)
    finally:
        jobs.stop()
        other.dispose()
        system.close()

    def row(values: list[float]) -> dict[str, float]:
        return {"median_s": round(statistics.median(values), 3),
                "max_s": round(max(values), 3)}

    result = {"tries": args.tries, "database": "postgresql" if args.database_url else "sqlite",
              "deadline_to_run_stopped": row(stopped),
              "deadline_to_results_deleted": row(deleted)}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.tries} tries on {result['database']}:")
        for key in ("deadline_to_run_stopped", "deadline_to_results_deleted"):
            print(f"  {key.replace('_', ' '):30s} median {result[key]['median_s']:.3f} s, "
                  f"max {result[key]['max_s']:.3f} s")


if __name__ == "__main__":
    main()
