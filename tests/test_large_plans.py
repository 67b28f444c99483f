"""A plan of hundreds of cameras (a city's worth, on nodes) goes on record whole: entries whose
camera list would outgrow one audit entry continue in ``<action>.part`` entries
(:func:`openlfr.audit.log.record_split`), and the chain verifies."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from openlfr.governance import auditing
from openlfr.governance import deployments as deps
from tests.govfix import Gov, audit_records, authorise, run_cli
from tests.test_gov_deployments import approved_watchlist, plan

CAMERAS = 300


def _whole(gov: Gov, action: str) -> tuple[dict[str, Any], Any]:
    """The last ``action`` entry's details and its camera value put back together."""
    head = audit_records(gov, action)[-1]
    details = json.loads(head.details)
    parts = [json.loads(r.details) for r in audit_records(gov, f"{action}.part")
             if json.loads(r.details)["entry"] == head.seq]
    assert [p["part"] for p in parts] == list(range(1, details["cameras"]["parts"] + 1))
    if all(isinstance(p["cameras"], list) for p in parts):
        whole: Any = [c for p in parts for c in p["cameras"]]
    else:
        whole = {k: v for p in parts for k, v in p["cameras"].items()}
    canonical = json.dumps(whole, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    assert hashlib.sha256(canonical.encode()).hexdigest() == details["cameras"]["sha256"]
    return details, whole


def test_a_plan_of_hundreds_of_cameras_is_recorded_whole(
        gov: Gov, face_images: dict[str, Path]) -> None:
    wid = approved_watchlist(gov, face_images["obama"])
    cams = tuple(deps.CameraSpec(f"high-street-camera-{i:03d}",
                                 f"rtsp://cam{i}.example.org:554/stream1")
                 for i in range(CAMERAS))
    dep = deps.create(gov.db, gov.actors["op1"], plan((wid,), cameras=cams),
                      keyring=gov.system.keyring)
    details, whole = _whole(gov, "deployment.create")
    assert details["cameras"]["count"] == CAMERAS and details["cameras"]["parts"] > 1
    assert details["name"]  # the rest of the plan stays in the entry itself
    assert [c["name"] for c in whole] == [c.name for c in cams]
    assert all(c["source"].startswith("rtsp://cam") and c["digest"] for c in whole)
    authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep)
    assert _whole(gov, "deployment.authorise")[0]["cameras"]["count"] == CAMERAS
    deps.start(gov.db, gov.actors["op1"], dep)
    counts = {c.name: {"frames": 10, "faces_seen": 1} for c in cams}
    deps.stop(gov.db, gov.actors["op1"], dep, "the operation is over", counts=counts)
    _, ended = _whole(gov, "deployment.end")
    assert ended == counts
    assert auditing.verify(gov.db, gov.actors["au1"]).as_dict()["ok"] is True


def test_a_small_plan_stays_in_one_entry(gov: Gov) -> None:
    deps.create(gov.db, gov.actors["op1"], plan(), keyring=gov.system.keyring)
    details = json.loads(audit_records(gov, "deployment.create")[-1].details)
    assert [c["name"] for c in details["cameras"]] == ["gate"]
    assert audit_records(gov, "deployment.create.part") == []


def test_a_plan_of_hundreds_of_cameras_from_the_command_line(
        gov: Gov, face_images: dict[str, Path]) -> None:
    """The user's way: ``openlfr deployment create`` with 150 cameras whose sources carry
    credentials; the plan shows all of them, and no password reaches any audit entry."""
    wid = approved_watchlist(gov, face_images["obama"])
    cams = [a for i in range(150)
            for a in ("--camera", f"street-{i:03d}=rtsp://op:hunter2-{i}@10.1.{i}.1/s1")]
    created = run_cli(gov, "deployment", "create", "--alternatives", "Patrols do not suffice",
                      "--user", "op1", "--name", "High street", "--site", "City centre",
                      "--location", "High street", "--purpose",
                      "Locate people wanted by the courts", "--legal-basis", "Common law",
                      "--dpia", "DPIA-1", "--equality", "EIA-1", "--start", "now", "--end",
                      "+2h", "--signage", "--public-notice", "--watchlist", wid, *cams, "--json")
    assert created.returncode == 0, created.stderr
    view = json.loads(created.stdout)
    assert len(view["cameras"]) == 150
    assert all("hunter2" not in c["source"] for c in view["cameras"])
    details, whole = _whole(gov, "deployment.create")
    assert details["cameras"]["count"] == 150 and len(whole) == 150
    everything = " ".join(r.details for r in audit_records(gov, "deployment.create")
                          + audit_records(gov, "deployment.create.part"))
    assert "hunter2" not in everything
    assert auditing.verify(gov.db, gov.actors["au1"]).as_dict()["ok"] is True
