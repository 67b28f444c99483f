"""Analysis zones and privacy masks per camera: part of the plan, validated, stored, audited
(counts and areas only), and changed only by editing (which needs authorisation again). Real
SQLite file and real PostgreSQL (``gov``)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from openlfr.errors import InvalidInput
from openlfr.governance import deployments as deps
from openlfr.store.enums import DeploymentStatus
from openlfr.store.models import AuditRecord, Camera, Deployment
from tests.govfix import Gov, authorise
from tests.govfix import run_cli as _cli
from tests.test_gov_deployments import approved_watchlist, plan, status

DOOR = ((0.0, 0.0), (0.25, 0.0), (0.25, 0.5), (0.0, 0.5))
APPROACH = ((0.3, 0.2), (0.9, 0.2), (0.9, 1.0), (0.3, 1.0))


def _cams(zones: tuple = (APPROACH,), masks: tuple = (DOOR,)) -> tuple[deps.CameraSpec, ...]:
    return (deps.CameraSpec("gate", "/nonexistent/gate.avi", zones, masks),)


def _audit(gov: Gov, dep_id: int, action: str) -> dict:
    with gov.db.reading() as s:
        rows = s.scalars(select(AuditRecord).where(AuditRecord.action == action,
                                                   AuditRecord.object_id == str(dep_id))).all()
    assert rows, action
    return json.loads(rows[-1].details)


def test_zones_are_stored_shown_and_audited_as_counts(gov: Gov, face_images):
    wid = approved_watchlist(gov, face_images["obama"])
    dep_id = deps.create(gov.db, gov.actors["op1"], plan((wid,), cameras=_cams()),
                         keyring=gov.system.keyring)
    view = deps.show(gov.db, gov.actors["ao1"], dep_id)
    assert view.cameras[0].zones == (APPROACH,)
    assert view.cameras[0].masks == (DOOR,)
    cam = _audit(gov, dep_id, "deployment.create")["cameras"][0]
    assert cam["zones"] == {"count": 1, "areas_pct": ["48.0"]}
    assert cam["masks"] == {"count": 1, "areas_pct": ["12.5"]}
    with gov.db.reading() as s:
        zones = deps.camera_zones(s.get(Deployment, dep_id))
    assert zones["gate"].masks == (DOOR,) and zones["gate"].zones == (APPROACH,)


def test_changing_a_mask_needs_authorisation_again(gov: Gov, face_images):
    wid = approved_watchlist(gov, face_images["obama"])
    dep_id = deps.create(gov.db, gov.actors["op1"], plan((wid,), cameras=_cams()),
                         keyring=gov.system.keyring)
    authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)
    assert status(gov, dep_id) == DeploymentStatus.AUTHORISED
    # the same cameras without zones given (None): kept, nothing changes
    same = (deps.CameraSpec("gate", "/nonexistent/gate.avi"),)
    assert deps.edit(gov.db, gov.actors["op1"], dep_id, cameras=same,
                     keyring=gov.system.keyring) == []
    assert status(gov, dep_id) == DeploymentStatus.AUTHORISED
    wider = ((0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (0.0, 0.5))
    changed = deps.edit(gov.db, gov.actors["op1"], dep_id, cameras=_cams(masks=(wider,)),
                        keyring=gov.system.keyring)
    assert changed == ["cameras"]
    assert status(gov, dep_id) == DeploymentStatus.DRAFT
    details = _audit(gov, dep_id, "deployment.edit")
    assert details["cameras"][0]["masks"] == {"count": 1, "areas_pct": ["25.0"]}
    assert details["status_before"] == "authorised"
    # removing every zone is a change too
    assert deps.edit(gov.db, gov.actors["op1"], dep_id, cameras=_cams((), ()),
                     keyring=gov.system.keyring) == ["cameras"]
    with gov.db.reading() as s:
        row = s.scalars(select(Camera).where(Camera.deployment_id == dep_id)).one()
        assert row.zones is None and row.masks is None and row.source_ct


@pytest.mark.parametrize(("masks", "words"), [
    ((((0.1, 0.1), (0.2, 0.2)),), "has 2 points"),
    ((((0.1, 0.1), (1.2, 0.1), (0.5, 0.5)),), "outside the frame"),
    ((((0.1, 0.1), (0.2, 0.2), (0.3, 0.3)),), "no area"),
    (tuple(((0.1, 0.1), (0.2, 0.1), (0.2, 0.2)) for _ in range(17)), "at most 16"),
    ((tuple((0.5 + 0.4 * i / 65, 0.1 * (i % 2)) for i in range(65)),), "has 65 points"),
    ("[[[0.1, 0.1], [0.2", "not valid JSON"),
    ("[" * 50_000 + "]" * 50_000, "nests its lists too deeply"),  # not a RecursionError
    (([["a", 0.1], [0.2, 0.2], [0.3, 0.1]],), "a point must be"),
])
def test_bad_polygons_are_refused_naming_camera_and_field(gov: Gov, masks, words):
    before = len(deps.list_deployments(gov.db, gov.actors["op1"]))
    with pytest.raises(InvalidInput) as err:
        deps.create(gov.db, gov.actors["op1"], plan(cameras=_cams(masks=masks)),
                    keyring=gov.system.keyring)
    assert "camera gate: masks" in str(err.value) and words in str(err.value)
    assert err.value.field == "masks"
    assert len(deps.list_deployments(gov.db, gov.actors["op1"])) == before


def test_the_live_run_applies_each_cameras_plan(gov: Gov, face_images, clips):
    """The same clip on two cameras: the masked one never alerts nor counts a face."""
    from openlfr.governance.live import DeploymentRun, RunOptions
    from openlfr.store.models import Alert, CameraStats

    wid = approved_watchlist(gov, face_images["obama"])
    whole = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))
    cams = (deps.CameraSpec("open", str(clips.obama)),
            deps.CameraSpec("private", str(clips.obama), (), (whole,)))
    dep_id = deps.create(gov.db, gov.actors["op1"], plan((wid,), cameras=cams),
                         keyring=gov.system.keyring)
    authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)
    deps.start(gov.db, gov.actors["op1"], dep_id)
    run = DeploymentRun(gov.system, dep_id, gov.actors["op1"], options=RunOptions(workers=1))
    run.run()
    with gov.db.reading() as s:
        alerts = s.scalars(select(Alert).where(Alert.deployment_id == dep_id)).all()
        rows = {r.camera: r for r in s.scalars(select(CameraStats).where(
            CameraStats.deployment_id == dep_id))}
    assert {a.camera for a in alerts} == {"open"}
    assert rows["private"].frames == rows["open"].frames == 40
    assert rows["private"].faces_seen == 0 and rows["open"].faces_seen > 0


def test_the_commands_set_zones_and_masks_from_json(sqlite_gov: Gov):
    gov = sqlite_gov
    base = ["deployment", "create", "--user", "op1", "--name", "Concourse", "--start", "now",
            "--end", "+2h", "--camera", "gate=rtsp://user:secret@10.0.0.5/stream",
            "--camera", "yard=/nonexistent/yard.avi",
            "--alternatives", "Patrols do not suffice"]
    bad = _cli(gov, *base, "--masks", "gate=[[[0,0],[2,0],[0,1]]]")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert "camera gate: masks: polygon 1: point [2, 0] lies outside the frame" in bad.stderr
    unknown = _cli(gov, *base, "--zones", "door=[]")
    assert unknown.returncode == 2 and "no camera named 'door'" in unknown.stderr
    created = _cli(gov, *base, "--masks", "gate=[[[0,0],[0.25,0],[0.25,0.5],[0,0.5]]]",
                   "--json")
    assert created.returncode == 0, created.stderr
    view = json.loads(created.stdout)
    assert view["cameras"][0]["masks"] == [[[0, 0], [0.25, 0], [0.25, 0.5], [0, 0.5]]]
    assert view["cameras"][1]["masks"] == [] and view["cameras"][1]["zones"] == []
    dep_id = view["id"]
    # an edit of the zones alone keeps the cameras (and their secret sources)
    edited = _cli(gov, "deployment", "edit", dep_id, "--user", "op1",
                  "--zones", "yard=[[[0.5,0],[1,0],[1,1],[0.5,1]]]", "--json")
    assert edited.returncode == 0, edited.stderr
    out = json.loads(edited.stdout)
    assert out["changed"] == ["cameras"]
    cams = out["deployment"]["cameras"]
    assert cams[0]["source"] == "rtsp://***@10.0.0.5/stream" and len(cams[0]["masks"]) == 1
    assert cams[1]["zones"] == [[[0.5, 0], [1, 0], [1, 1], [0.5, 1]]]
    shown = _cli(gov, "deployment", "show", dep_id, "--user", "au1")
    assert "1 privacy mask (12.5 % of the frame)" in shown.stdout
    assert "1 analysis zone (50.0 % of the frame)" in shown.stdout
    with gov.db.reading() as s:
        src = deps.camera_sources(s, gov.system.keyring, s.get(Deployment, dep_id))
    assert src[0] == ("gate", "rtsp://user:secret@10.0.0.5/stream")
