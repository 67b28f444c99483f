"""The console's zones editor: a still taken from the camera (held in memory for the plan's
life only), polygons posted as text, shown at authorisation, saved as a plan edit (back to
draft). On SQLite and PostgreSQL (``gov``), with a real clip as the camera."""

from __future__ import annotations

import json
from collections.abc import Callable

import cv2
from fastapi import FastAPI
from fastapi.testclient import TestClient

from openlfr.governance import deployments as deps
from openlfr.governance import stills
from openlfr.vision.detect import YuNetDetector
from tests.govfix import Gov, audit_records, authorise
from tests.test_gov_deployments import approved_watchlist, plan, status
from tests.test_web_governance import people, post  # noqa: F401 (the fixture)

MASK = "[[[0, 0], [0.25, 0], [0.25, 0.5], [0, 0.5]]]"


def test_take_a_still_draw_a_mask_and_see_it_at_authorisation(
        gov: Gov, people: Callable[[str], TestClient], face_images, clips) -> None:  # noqa: F811
    wid = approved_watchlist(gov, face_images["obama"])
    dep_id = deps.create(gov.db, gov.actors["op1"],
                         plan((wid,), cameras=(deps.CameraSpec("gate", str(clips.obama)),)),
                         keyring=gov.system.keyring)
    authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)
    op1, ao2 = people("op1"), people("ao2")
    base = f"/console/deployments/{dep_id}/cameras/gate"
    page = op1.get(f"{base}/zones")
    assert page.status_code == 200 and "Take a still" in page.text
    assert op1.get(f"{base}/still.jpg").status_code == 404  # none taken yet
    assert op1.get(f"/console/deployments/{dep_id}/cameras/nope/zones").status_code == 404

    r = post(op1, f"{base}/still", page=f"{base}/zones")
    assert r.status_code == 303, r.text
    still = op1.get(f"{base}/still.jpg")
    assert still.status_code == 200 and still.content[:2] == b"\xff\xd8"
    assert "no-store" in still.headers["cache-control"]
    taken = json.loads(audit_records(gov, "deployment.still")[-1].details)
    assert taken["camera"] == "gate" and taken["width"] == 640 and taken["height"] == 360
    assert status(gov, dep_id).value == "authorised"  # a still changes no plan

    bad = post(op1, f"{base}/zones", {"zones": "", "masks": "[[[0, 0], [1.5, 0], [0, 1]]]"},
               page=f"{base}/zones")
    assert bad.status_code == 400
    assert "Camera gate: masks: polygon 1: point [1.5, 0] lies outside the frame" in bad.text
    assert "[1.5, 0]" in bad.text  # what was typed is kept on the page
    assert status(gov, dep_id).value == "authorised"

    r = post(op1, f"{base}/zones", {"zones": "", "masks": MASK}, page=f"{base}/zones")
    assert r.status_code == 303, r.text
    assert status(gov, dep_id).value == "draft"  # authorisation again
    shown = ao2.get(f"/console/deployments/{dep_id}").text
    assert "1 privacy mask" in shown and "whole frame analysed" in shown
    assert 'class="mask" points="0.0,0.0 0.25,0.0 0.25,0.5 0.0,0.5 "' in shown
    assert f'href="{base}/still.jpg"' in shown
    edit = json.loads(audit_records(gov, "deployment.edit")[-1].details)
    assert edit["cameras"][0]["masks"] == {"count": 1, "areas_pct": ["12.5"]}
    assert "still" not in json.dumps(edit)

    # the still lives as long as the plan: ending the deployment destroys it
    deps.stop(gov.db, gov.actors["op1"], dep_id, "the event was cancelled")
    assert stills.held(dep_id) == []
    assert op1.get(f"{base}/still.jpg").status_code == 404
    end = json.loads(audit_records(gov, "deployment.end")[-1].details)
    assert end["stills_destroyed"] == 1


def test_the_api_takes_and_shows_zones_and_masks(gov: Gov, app: FastAPI) -> None:
    from openlfr.web import tokens as tok

    auth = {"Authorization": "Bearer " + tok.create_token(
        gov.db, gov.actors["admin"], "op1", "test")[1]}
    c = TestClient(app)
    body = json.loads(json.dumps({
        "name": "Cup final", "site": "Stadium", "location": "North gate",
        "purpose": "Find people wanted by the courts", "legal_basis": "Common law powers",
        "dpia_ref": "DPIA-1", "equality_ref": "EIA-1", "alternatives": "Patrols do not suffice",
        "planned_start": "2030-01-01T10:00Z", "planned_end": "2030-01-01T12:00Z",
        "cameras": [{"name": "gate", "source": "rtsp://10.0.0.5/s",
                     "masks": [[[0, 0], [0.5, 0], [0.5, 0.5]]]}]}))
    bad = dict(body, cameras=[{"name": "gate", "source": "rtsp://10.0.0.5/s",
                               "zones": [[[0, 0], [0.5, 0.5], [1, 1]]]}])
    r = c.post("/api/v1/deployments", json=bad, headers=auth)
    assert r.status_code == 400
    assert r.json()["detail"].startswith("camera gate: zones: polygon 1 has no area")
    r = c.post("/api/v1/deployments", json=body, headers=auth)
    assert r.status_code == 201, r.text
    dep_id = r.json()["id"]
    assert r.json()["cameras"][0]["masks"] == [[[0, 0], [0.5, 0], [0.5, 0.5]]]
    # a PATCH of the cameras without zones or masks keeps them
    r = c.patch(f"/api/v1/deployments/{dep_id}", headers=auth,
                json={"cameras": [{"name": "gate", "source": "rtsp://10.0.0.5/s"}]})
    assert r.status_code == 200 and r.json()["changed"] == []
    r = c.patch(f"/api/v1/deployments/{dep_id}", headers=auth,
                json={"cameras": [{"name": "gate", "source": "rtsp://10.0.0.5/s",
                                   "masks": []}]})
    assert r.status_code == 200 and r.json()["changed"] == ["cameras"]
    assert c.get(f"/api/v1/deployments/{dep_id}", headers=auth).json()["cameras"][0][
        "masks"] == []


def test_a_still_keeps_no_face_it_caught(face_images) -> None:
    """The people a still catches are anonymised before it is held: the place, not who."""
    for name in ("obama", "group"):
        image = cv2.imread(str(face_images[name]))
        found = len(YuNetDetector().detect(image))
        assert found >= 1, name
        held = stills.without_faces(image)
        assert held.shape == image.shape and YuNetDetector().detect(held) == [], name
        assert (held != image).any()
