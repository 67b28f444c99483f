#!/usr/bin/env python3
"""A field test (blue list) on the shared clip, end to end, in a temporary installation.

1. **Where the volunteers appear.** Every 3rd frame of ``short_hamilton_clip.mp4`` is searched
   (YuNet + SFace) for each volunteer's photo; the seconds in which a face scores at least the
   deployment's threshold against it are where that volunteer "walks past".
2. **The test.** A temporary installation (deleted at the end: nothing is copied into the
   project) gets an operational watchlist (``obama.jpg``, who is not in the clip) and a
   deployment whose camera ``stage`` is the clip, played at its own speed. A field test is
   planned with two consenting volunteers: Lin-Manuel Miranda, whose pass is the window found
   in step 1, and Alex Lacamoire, planned to pass in the same window (he does not appear: a
   miss, which the report must show). The clip is played :data:`LOOPS` times, one pass per
   play. The passes are planned in wall-clock time: the clip starts at a planned moment ``T0``
   and a pass at clip seconds ``a..b`` of play ``k`` is planned for
   ``T0 + k * duration + a - 1 s .. T0 + k * duration + b + 1 s``.
3. **The live run** is the real one (:class:`openlfr.governance.live.DeploymentRun`); the test
   is then ended and its report printed as Markdown, with the public form (aggregate only).

Usage: ``python scripts/fieldtest-demo.py [--data ../shared/data/face_recognition_examples]``.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
from demo_calibration import DECISION, calibrate_on_lfw  # scripts/demo_calibration.py

from openlfr.config import Settings
from openlfr.governance import deployments as deps
from openlfr.governance import fieldtests as ft
from openlfr.governance import users, watchlists
from openlfr.governance.authz import Actor
from openlfr.governance.live import DeploymentRun, RunOptions
from openlfr.governance.system import initialise
from openlfr.store.enums import Role
from openlfr.transparency import annual
from openlfr.vision import get_engine

PASSWORD = "correct horse battery staple"
REASON = "Warrant W-77 of the crown court, failing to appear at trial"
CAMERA = "stage"
#: The clip is played this many times: each play is one pass of each volunteer.
LOOPS = 3


def clip_seconds(clip: Path) -> float:
    cap = cv2.VideoCapture(str(clip))
    try:
        return float(cap.get(cv2.CAP_PROP_FRAME_COUNT)) / (cap.get(cv2.CAP_PROP_FPS) or 25.0)
    finally:
        cap.release()


def locate(clip: Path, photos: dict[str, Path], threshold: float, every: int = 3
           ) -> dict[str, tuple[float, float] | None]:
    """Per volunteer, the first and last clip second at which a face in the clip scores at
    least ``threshold`` against their photo (None: never)."""
    engine = get_engine("sface")
    refs: dict[str, np.ndarray] = {}
    for name, path in photos.items():
        image = cv2.imread(str(path))
        assert image is not None, path
        faces = engine.detect(image)
        assert len(faces) == 1, f"{path.name}: {len(faces)} faces"
        refs[name] = engine.embed(image, faces)[0].vector
    cap = cv2.VideoCapture(str(clip))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    seen: dict[str, list[float]] = {n: [] for n in photos}
    index = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if index % every == 0:
            faces = engine.detect(frame)
            for template in engine.embed(frame, faces) if faces else []:
                for name, ref in refs.items():
                    score = float(np.dot(template.vector, ref)
                                  / (np.linalg.norm(template.vector) * np.linalg.norm(ref)))
                    if score >= threshold:
                        seen[name].append(index / fps)
        index += 1
    cap.release()
    print(f"clip: {clip.name}, {index} frames at {fps:.2f} fps ({index / fps:.1f} s)")
    return {n: (min(t), max(t)) if t else None for n, t in seen.items()}


def main() -> int:
    here = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=here.parent.parent / "shared" / "data"
                        / "face_recognition_examples")
    parser.add_argument("--annual", type=Path, default=None, metavar="DIR",
                        help="also write this year's annual report of the demonstration's "
                             "installation (JSON, CSV, HTML) into DIR")
    args = parser.parse_args()
    data: Path = args.data
    if not (data / "short_hamilton_clip.mp4").exists():
        data = Path("/work/shared/data/face_recognition_examples")
    clip = data / "short_hamilton_clip.mp4"
    lin, alex = data / "lin-manuel-miranda.png", data / "alex-lacamoire.png"
    for path in (clip, lin, alex, data / "obama.jpg"):
        if not path.exists():
            print(f"error: {path}: no such file", file=sys.stderr)
            return 2
    root = Path(tempfile.mkdtemp(prefix="openlfr-fieldtest-"))
    try:
        system, _ = initialise(Settings(data_dir=root / "data"))
        try:
            users.create_first_admin(system.db, "admin", PASSWORD)
            admin = Actor("admin", Role.ADMIN)
            for name, role in (("op1", Role.OPERATOR), ("ao1", Role.AUTHORISING_OFFICER),
                               ("ao2", Role.AUTHORISING_OFFICER)):
                users.add_user(system.db, admin, name, role, PASSWORD)
            op1 = Actor("op1", Role.OPERATOR)
            ao1 = Actor("ao1", Role.AUTHORISING_OFFICER)
            ao2 = Actor("ao2", Role.AUTHORISING_OFFICER)
            wl = watchlists.create_watchlist(system, op1, "wanted",
                                             "Locate people wanted by the courts at the venue",
                                             backend="sface")
            watchlists.add_subject(system, op1, wl.id, "Case 2026/117", "wanted_by_court",
                                   REASON, datetime.now(UTC) + timedelta(days=30),
                                   [((data / "obama.jpg").read_bytes(), "custody record 117")])
            watchlists.approve_watchlist(system.db, ao1, wl.id)
            # no deployment is authorised on a model's default floor: a recorded calibration
            calibrate_on_lfw(system, ao2, data.parent / "lfw")
            now = datetime.now(UTC)
            model = get_engine("sface").model_id
            dep_id = deps.create(system.db, op1, deps.Plan(
                name="Theatre foyer", site="Theatre", location="Foyer, stage door camera",
                purpose="Locate people wanted by the courts", legal_basis="Common law powers",
                dpia_ref="DPIA-DEMO", equality_ref="EIA-DEMO", planned_start=now
                - timedelta(minutes=1), planned_end=now + timedelta(hours=1), threshold=None,
                model_id=model, two_person_rule=True, signage=True, public_notice=True,
                watchlist_ids=(wl.id,), cameras=(deps.CameraSpec(CAMERA, str(clip)),),
                alternatives="Officers at the door cannot check every face",
                notice_at=now - timedelta(days=7)),
                keyring=system.keyring)
            threshold = deps.show(system.db, op1, dep_id).threshold
            print(f"deployment {dep_id}: model {model}, threshold {threshold:g} (the floor)")

            found = locate(clip, {"Lin": lin, "Alex": alex}, threshold)
            for name, span in found.items():
                where = "not found" if span is None else f"{span[0]:.1f} s to {span[1]:.1f} s"
                print(f"  {name}: {where} in the clip")
            span = found["Lin"] or (0.0, 9.0)
            duration = clip_seconds(clip)
            test = ft.plan_field_test(system, op1, dep_id, "Blue-list test of the stage door "
                                      "camera with two consenting volunteers")
            t0 = datetime.now(UTC) + timedelta(seconds=40)  # the clip starts at T0
            window = [ft.PassSpec(CAMERA, t0 + timedelta(seconds=k * duration + span[0] - 1),
                                  t0 + timedelta(seconds=k * duration + span[1] + 1))
                      for k in range(LOOPS)]
            consent = datetime.now(UTC) - timedelta(hours=2)
            ft.add_volunteer(system, op1, test.id, "Lin", lin.read_bytes(),
                             "lin-manuel-miranda.png, given by the volunteer", "PC Smith",
                             consent, "CONSENT-DEMO-1", window, age_band="45-54", sex="male",
                             ethnicity="other_ethnic_group")
            ft.add_volunteer(system, op1, test.id, "Alex", alex.read_bytes(),
                             "alex-lacamoire.png, given by the volunteer", "PC Smith",
                             consent, "CONSENT-DEMO-2", window, age_band="45-54", sex="male",
                             ethnicity="white")
            assert test.watchlist_id is not None
            watchlists.approve_watchlist(system.db, ao2, test.watchlist_id)
            deps.authorise(system.db, system.keyring, ao1, dep_id, decision=DECISION)
            deps.start(system.db, op1, dep_id)
            get_engine("sface")  # loaded before T0
            wait = (t0 - datetime.now(UTC)).total_seconds()
            print(f"T0 = {t0.isoformat(timespec='seconds')}; the clip is played {LOOPS} times "
                  f"({duration:.2f} s each): {LOOPS} passes per volunteer, each planned at "
                  f"clip seconds {span[0] - 1:.1f} to {span[1] + 1:.1f} of its loop; waiting "
                  f"{max(wait, 0):.0f} s")
            if wait > 0:
                time.sleep(wait)
            started: list[float] = []
            run = DeploymentRun(system, dep_id, op1, options=RunOptions(
                realtime=True, loop=True, workers=1, max_seconds=LOOPS * duration + 1.0),
                on_start=lambda _r: started.append(time.time()))
            result = run.run()
            lag = started[0] - t0.timestamp() if started else math.nan
            print(f"live run: the clip started {lag:.1f} s after T0; {result.summary.alerts} "
                  f"possible match(es) recorded; deployment paused: {result.pause_reason}")
            for a in ft.test_alerts(system.db, op1, test.id):
                print(f"  test alert {a.id}: volunteer {a.volunteer}, camera {a.camera}, score "
                      f"{a.score:.3f}, time to alert {a.latency} s, in a planned pass: "
                      f"{a.in_pass}")
            done = ft.end_field_test(system, op1, test.id)
            print(f"test ended: {done.crops_purged} crop(s) purged, volunteers' data destroyed: "
                  f"{done.watchlist_destroyed}\n")
            print(done.report.markdown())
            print("### As the public page shows it\n")
            print(done.report.public().markdown(public=True))
            if args.annual is not None:
                report = annual.make_report(system.db, ao1, datetime.now(UTC).year,
                                            out=str(args.annual))
                files = annual.write_report(report, args.annual)
                section = next(x for x in report.as_json()["sections"]
                               if x["key"] == "field_tests")
                print(f"### The annual report's field-test section ({', '.join(map(str, files))})"
                      "\n")
                for row in section["tables"].get("results", []):
                    print(f"- {row['who']}: {row['volunteers']} volunteer(s), {row['passes']} "
                          f"pass(es), TPIR {row['tpir']}, median time to alert "
                          f"{row['median_seconds']} s, operational false alerts "
                          f"{row['operational']}")
        finally:
            system.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
