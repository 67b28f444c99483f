"""Field tests over the JSON API and in the console, and their report on the public page. On
SQLite and PostgreSQL (``gov``), FastAPI's TestClient, real photos."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from openlfr.governance import alerts as alerts_svc
from openlfr.governance import deployments as deps
from openlfr.governance import fieldtests as ft
from openlfr.governance import watchlists
from tests.govfix import Gov, authorise, bearer_headers
from tests.test_gov_deployments import approved_watchlist, plan
from tests.test_gov_fieldtests import go_live, pipeline_alert
from tests.test_web_governance import people, post  # noqa: F401 (a fixture)

LABEL = "Kestrel"


def authorised(gov: Gov, face_images) -> int:
    wid = approved_watchlist(gov, face_images["obama"])
    dep_id = deps.create(gov.db, gov.actors["op1"],
                         plan((wid,), cameras=(deps.CameraSpec("gate", "/x/gate.avi"),)),
                         keyring=gov.system.keyring)
    authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)
    return dep_id


def window(start: float = -1, minutes: float = 10) -> str:
    now = datetime.now(UTC)
    a, b = now + timedelta(minutes=start), now + timedelta(minutes=start + minutes)
    return f"gate={a.isoformat(timespec='seconds')}/{b.isoformat(timespec='seconds')}"


def volunteer_form(passes: list[str]) -> dict[str, object]:
    return {"label": LABEL, "source": "photo taken with consent", "consent_by": "PC Smith",
            "consent_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
            "consent_reference": "CONSENT-9", "passes": passes, "ethnicity": "asian"}


def test_the_field_test_api_from_plan_to_public_report(gov: Gov, face_images,
                                                       client: TestClient):
    heads = bearer_headers(gov, "ft")
    op, auditor = heads[next(r for r in heads if r.value == "operator")], \
        heads[next(r for r in heads if r.value == "auditor")]
    dep_id = authorised(gov, face_images)
    r = client.post(f"/api/v1/deployments/{dep_id}/field-tests", json={}, headers=auditor)
    assert r.status_code == 403
    r = client.post(f"/api/v1/deployments/{dep_id}/field-tests", json={}, headers=op)
    assert r.status_code == 201, r.text
    test_id = r.json()["id"]
    assert client.post(f"/api/v1/deployments/{dep_id}/field-tests", json={},
                       headers=op).status_code == 409
    photo = face_images["biden"].read_bytes()
    url = f"/api/v1/field-tests/{test_id}/volunteers"
    bad = client.post(url, data=volunteer_form(["door=2026-01-01T00:00Z/2026-01-01T00:01Z"]),
                      files={"image": ("v.jpg", photo, "image/jpeg")}, headers=op)
    assert bad.status_code == 400 and "camera 'door' is not in the plan" in bad.json()["detail"]
    bad = client.post(url, data=volunteer_form(["gate 10:00"]),
                      files={"image": ("v.jpg", photo, "image/jpeg")}, headers=op)
    assert bad.status_code == 400 and "CAMERA=START/END" in bad.json()["detail"]
    bad = client.post(url, data=volunteer_form([window()]),
                      files={"image": ("v.jpg", b"not an image", "image/jpeg")}, headers=op)
    assert bad.status_code == 400 and "not an image" in bad.json()["detail"]
    r = client.post(url, data=volunteer_form([window()]),
                    files={"image": ("v.jpg", photo, "image/jpeg")}, headers=op)
    assert r.status_code == 201, r.text
    assert r.json()["label"] == LABEL and r.json()["ethnicity"] == "asian"
    assert client.get(f"/api/v1/field-tests/{test_id}/alerts", headers=op).json() == []
    go_live(gov, dep_id, test_id)
    subject = ft_subject(gov, test_id)
    alerts_svc.AlertRecorder(gov.system, dep_id).publish(
        pipeline_alert(gov, subject, face_images["biden"]))
    seen = client.get(f"/api/v1/field-tests/{test_id}/alerts", headers=op).json()
    assert [(a["volunteer"], a["in_pass"]) for a in seen] == [(LABEL, True)]
    assert client.get("/api/v1/alerts", headers=op).json() == []
    r = client.post(f"/api/v1/field-tests/{test_id}/end", headers=op)
    assert r.status_code == 200, r.text
    assert r.json()["report"]["overall"]["tpir"]["k"] == 1 and r.json()["watchlist_destroyed"]
    assert client.post(f"/api/v1/field-tests/{test_id}/end", headers=op).status_code == 409
    assert client.get("/api/v1/field-tests/999/alerts", headers=op).status_code == 404
    public = client.get(f"/api/v1/public/deployments/{dep_id}").json()
    assert public["field_tests"][0]["overall"]["tpir"]["k"] == 1
    assert public["field_tests"][0]["volunteers"] == [] and LABEL not in str(public)
    page = client.get(f"/public/deployments/{dep_id}").text
    assert "Field tests" in page and "Passes alerted (TPIR)" in page and LABEL not in page
    assert "fewer than 5 volunteers" in page


def ft_subject(gov: Gov, test_id: int) -> int:
    from sqlalchemy import select

    from openlfr.store.models import FieldTestVolunteer

    with gov.db.reading() as s:
        return s.scalars(select(FieldTestVolunteer.subject_id).where(
            FieldTestVolunteer.field_test_id == test_id)).one()


def test_the_console_plans_adds_shows_and_ends_a_field_test(
        gov: Gov, face_images, people: Callable[[str], TestClient]):  # noqa: F811
    dep_id = authorised(gov, face_images)
    op = people("op1")
    page = op.get(f"/console/deployments/{dep_id}")
    assert "Plan a field test" in page.text
    r = post(op, f"/console/deployments/{dep_id}/field-tests")
    assert r.status_code == 303  # type: ignore[attr-defined]
    test_id = ft.list_field_tests(gov.db, gov.actors["op1"], dep_id)[0].id
    form = volunteer_form([])
    form["passes"] = "gate=yesterday"
    photo = [("image", ("v.jpg", face_images["biden"].read_bytes(), "image/jpeg"))]
    r = post(op, f"/console/field-tests/{test_id}/volunteers", form, photo,
             page=f"/console/field-tests/{test_id}")
    assert r.status_code == 400  # type: ignore[attr-defined]
    assert "CAMERA=START/END" in r.text and "CONSENT-9" in r.text  # type: ignore[attr-defined]
    form["passes"] = window()
    # an auditor may not add a volunteer: refused before the photo is read
    au = people("au1")
    r = post(au, f"/console/field-tests/{test_id}/volunteers", form,
             [("image", ("v.jpg", b"not an image at all", "image/jpeg"))],
             page=f"/console/field-tests/{test_id}")
    assert r.status_code == 403, r.text  # type: ignore[attr-defined]
    r = post(op, f"/console/field-tests/{test_id}/volunteers", form, photo,
             page=f"/console/field-tests/{test_id}")
    assert r.status_code == 303, r.text  # type: ignore[attr-defined]
    shown = op.get(f"/console/field-tests/{test_id}").text
    assert LABEL in shown and "Asian or Asian British" in shown and "No test alert yet" in shown
    test = ft.show_field_test(gov.db, gov.actors["op1"], test_id)
    assert test.watchlist_id is not None
    watchlists.approve_watchlist(gov.db, gov.actors["ao2"], test.watchlist_id)
    r = post(op, f"/console/field-tests/{test_id}/end", {"confirm": "yes"},
             page=f"/console/field-tests/{test_id}")
    assert r.status_code == 303  # type: ignore[attr-defined]
    shown = op.get(f"/console/field-tests/{test_id}").text
    assert "Report" in shown and f"Volunteer {LABEL}" in shown and "0 of 1" in shown
