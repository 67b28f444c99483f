"""The calibration the demonstrations record before authorising: ``openlfr calibrate`` on the
shared LFW images (identities labelled, groups by gender), in process, recorded by an
authorising officer. No deployment may be authorised on a model's default floor, in either
jurisdiction profile; this is what a force does with its own representative data.

Used by ``scripts/fieldtest-demo.py`` and ``scripts/annual-demo.py``; the shared data is read
where it is (never copied). Templates are cached in ``/tmp/openlfr-bench/cache`` (about two
minutes the first time, seconds after).
"""

from __future__ import annotations

from pathlib import Path

from openlfr.evaluation.calibrate import calibrate
from openlfr.governance.authz import Actor
from openlfr.governance.deployments import Decision
from openlfr.governance.floors import Floor, record_floor
from openlfr.governance.system import System
from openlfr.vision import get_engine

CACHE = Path("/tmp/openlfr-bench/cache")
WATCHLIST_SIZE = 100  # at least the demonstration watchlists' size
TARGET_FPIR = 0.01


def calibrate_on_lfw(system: System, officer: Actor, lfw: Path) -> Floor:
    """Calibrate ``sface`` on ``lfw`` (the shared LFW folder) and record the floor."""
    images, groups = lfw / "images", lfw / "identity_gender.csv"
    if not images.is_dir() or not groups.is_file():
        raise SystemExit(f"no LFW data at {lfw} (images/ and identity_gender.csv): pass --lfw")
    print(f"calibrating sface on {images} (watchlist size {WATCHLIST_SIZE}, target FPIR "
          f"{TARGET_FPIR:g}, groups by gender) ...", flush=True)
    cal = calibrate(images, str(groups), "sface", WATCHLIST_SIZE, TARGET_FPIR,
                    attributes=["gender"], cache_dir=CACHE, progress=True,
                    engine=get_engine("sface"))
    cal = cal.with_evidence(run_by=officer.name)
    floor = record_floor(system.db, officer, cal.model_id, cal.threshold, cal.evidence)
    worst = cal.evidence.get("worst_group", {})
    print(f"calibration recorded: floor {floor.threshold:.3f} (worst-measured group: "
          f"{worst.get('group', '—')} at {worst.get('floor', '—')})", flush=True)
    return floor


#: What the demonstrations' authorising officer records (the default profile, uk-app: rank,
#: the watchlist criteria approved, the calibration's data attested representative).
DECISION = Decision(rank="superintendent", criteria_approved=True, representative=True)
