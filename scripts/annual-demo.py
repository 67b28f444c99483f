"""The annual report, demonstrated on the shared clip: a temporary installation plans,
authorises and runs a deployment on ``short_hamilton_clip.mp4`` through the real live run
(:class:`openlfr.governance.live.DeploymentRun`), with a watchlist of Lin-Manuel Miranda and two
distractors (Obama, Biden); two operators review its alerts (the two-person rule), outcomes are
recorded, a resident's question is answered, the deployment ends, and ``openlfr report annual``
writes the year's report (JSON, CSV, printable HTML).

    python scripts/annual-demo.py [--out DIR] [--data ../shared/data/face_recognition_examples]

The shared files are read where they are (never copied into the project); the installation
lives in a temporary folder, removed at the end (``--keep`` keeps it); the report goes to
``--out`` (default: that temporary folder). Prints the report's key figures and where its
files are.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from demo_calibration import DECISION, calibrate_on_lfw  # scripts/demo_calibration.py

from openlfr.config import Settings
from openlfr.governance import alerts as alert_svc
from openlfr.governance import deployments as deps
from openlfr.governance import questions, users, watchlists
from openlfr.governance.authz import Actor
from openlfr.governance.live import DeploymentRun, RunOptions
from openlfr.governance.system import initialise
from openlfr.store.enums import Action, Decision, Role
from openlfr.vision import get_engine

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "face_recognition_examples"
CLIP = "short_hamilton_clip.mp4"
WANTED = ("LMM-2026-001", "lin-manuel-miranda.png")
DISTRACTORS = (("OB-2026-002", "obama.jpg"), ("JB-2026-003", "biden.jpg"))
PASSWORD = "an annual report demonstration password"
STAFF = {"admin": Role.ADMIN, "op1": Role.OPERATOR, "op2": Role.OPERATOR,
         "ao1": Role.AUTHORISING_OFFICER, "ao2": Role.AUTHORISING_OFFICER,
         "sv1": Role.SUPERVISOR, "au1": Role.AUDITOR}
REASON = "Wanted on a warrant issued by the magistrates' court (demonstration case)."


def run(data: Path, root: Path, out: Path) -> dict[str, object]:
    system, _ = initialise(Settings(data_dir=root / "data"))
    try:
        users.create_first_admin(system.db, "admin", PASSWORD)
        admin = Actor("admin", Role.ADMIN)
        for name, role in STAFF.items():
            if name != "admin":
                users.add_user(system.db, admin, name, role, PASSWORD)
        op1, op2 = Actor("op1", Role.OPERATOR), Actor("op2", Role.OPERATOR)
        ao1, ao2 = Actor("ao1", Role.AUTHORISING_OFFICER), Actor("ao2", Role.AUTHORISING_OFFICER)
        wl = watchlists.create_watchlist(system, op1, "Hamilton stage door",
                                         "Locate people wanted by the courts at the theatre",
                                         backend="sface")
        expires = datetime.now(UTC) + timedelta(days=30)
        for ref, photo in (WANTED, *DISTRACTORS):
            watchlists.add_subject(system, op1, wl.id, ref, "wanted_by_court", REASON, expires,
                                   [((data / photo).read_bytes(), f"custody record {ref}")])
        watchlists.approve_watchlist(system.db, ao2, wl.id)
        # no deployment is authorised on a model's default floor: a recorded calibration
        floor = calibrate_on_lfw(system, ao1, data.parent / "lfw").threshold
        now = datetime.now(UTC)
        plan = deps.Plan(
            name="Theatre stage door", site="Richard Rodgers Theatre",
            location="Stage door, West 46th Street", purpose="Locate people wanted by the courts",
            legal_basis="Common law policing powers", dpia_ref="DPIA-DEMO-01",
            equality_ref="EIA-DEMO-01", planned_start=now - timedelta(minutes=5),
            planned_end=now + timedelta(hours=2), threshold=floor,
            model_id=get_engine("sface").model_id, two_person_rule=True, signage=True,
            public_notice=True, alternatives="Officers at the door cannot check every face.",
            notice_at=now - timedelta(days=7),
            watchlist_ids=(wl.id,), cameras=(deps.CameraSpec("stage", str(data / CLIP)),))
        dep_id = deps.create(system.db, op1, plan, keyring=system.keyring)
        deps.authorise(system.db, system.keyring, ao1, dep_id, decision=DECISION)
        deps.start(system.db, op1, dep_id)
        shown: list[int] = []
        began = time.perf_counter()
        result = DeploymentRun(system, dep_id, op1, options=RunOptions(workers=1),
                               on_alert=lambda row, _alert: shown.append(row)).run()
        run_seconds = time.perf_counter() - began
        decided: dict[str, int] = {}
        for row in sorted(set(shown)):
            alert = alert_svc.get_alert(system.db, op1, row)
            if alert.subject_reference == WANTED[0]:  # the person on the list: confirmed
                alert_svc.adjudicate(system.db, op1, row, Decision.CONFIRM)
                alert_svc.adjudicate(system.db, op2, row, Decision.CONFIRM)
                alert_svc.record_outcome(system.db, op1, row, True, Action.ADVICE)
                decided["confirmed"] = decided.get("confirmed", 0) + 1
            else:  # a distractor: a false alert, nobody stopped
                alert_svc.adjudicate(system.db, op1, row, Decision.REJECT,
                                     "The person on stage is not the person on the list")
                alert_svc.record_outcome(system.db, op1, row, False, Action.NONE,
                                         stop=alert_svc.FalseAlertStop(False))
                decided["false"] = decided.get("false", 0) + 1
        got = questions.receive_question(system.db, dep_id, "question",
                                         "How long do you keep the pictures of people who "
                                         "walked past?", None)
        questions.answer_question(system.db, ao1, got.id,
                                  "Nothing is kept of people who do not match.")
        deps.stop(system.db, op1, dep_id, "The performance is over")
    finally:
        system.close()
    env = {**os.environ, "OPENLFR_DATA_DIR": str(root / "data"), "OPENLFR_PASSWORD": PASSWORD}
    made = subprocess.run([sys.executable, "-c", "from openlfr.cli import main; main()",
                           "report", "annual", "--year", str(now.year), "--out", str(out),
                           "--user", "au1", "--json"], env=env, capture_output=True, text=True,
                          check=False)
    if made.returncode != 0:
        raise SystemExit(f"openlfr report annual failed: {made.stderr.strip()}")
    said = json.loads(made.stdout)
    return {"deployment": dep_id, "alerts_shown": len(set(shown)), "decided": decided,
            "run_seconds": round(run_seconds, 1), "pause_reason": result.pause_reason,
            "report": said}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA,
                        help="the shared face_recognition_examples folder")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the report (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary installation and print where it is")
    args = parser.parse_args()
    missing = [f for f in (CLIP, WANTED[1], *(p for _, p in DISTRACTORS))
               if not (args.data / f).is_file()]
    if missing:
        raise SystemExit(f"--data {args.data}: missing {', '.join(missing)}")
    tmp = tempfile.mkdtemp(prefix="openlfr-annual-demo-")
    root = Path(tmp)
    out = args.out or root / "report"
    try:
        summary = run(args.data, root, out)
    finally:
        if args.keep:
            print(f"the installation is kept in {root / 'data'}", file=sys.stderr)
        else:
            shutil.rmtree(root / "data", ignore_errors=True)
    print(json.dumps(summary, indent=1))
    print(f"the report: {out}", file=sys.stderr)
    report = json.loads((out / f"annual-report-{datetime.now(UTC).year}.json").read_text())
    for s in report["sections"]:
        print(f"\n## {s['title']}")
        for k, v in s["figures"].items():
            print(f"  {k}: {v}")


if __name__ == "__main__":
    main()
