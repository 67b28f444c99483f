"""The governance pages and their JSON API: watchlists (with real face uploads), deployments,
users and tokens, the audit log viewer. On SQLite and PostgreSQL (the ``gov`` fixture), with
FastAPI's TestClient, one client per signed-in person."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from openlfr.governance import deployments as deps
from openlfr.governance import watchlists as wls
from openlfr.store.models import Deployment, Subject, SubjectImage
from openlfr.web.app import create_app
from tests.govfix import (
    AUTHORISE_FORM,
    AUTHORISE_JSON,
    PASSWORD,
    Gov,
    authorise,
    ready_to_authorise,
)
from tests.govfix import audit_records as actions

META_CSRF = re.compile(r'<meta name="csrf-token" content="([0-9a-f]{64})">')
REASON = "Warrant W-77 of the crown court, failing to appear at trial"


@pytest.fixture()
def people(app: FastAPI) -> Iterator[Callable[[str], TestClient]]:
    """``people("op1")``: a client signed in as op1 (one per name, made on first use)."""
    clients: dict[str, TestClient] = {}

    def get(name: str) -> TestClient:
        if name not in clients:
            c = TestClient(app, base_url="http://testserver")
            c.__enter__()
            r = c.post("/api/v1/auth/login", json={"name": name, "password": PASSWORD})
            assert r.status_code == 200, r.text
            clients[name] = c
        return clients[name]

    yield get
    for c in clients.values():
        c.__exit__(None, None, None)


def token_of(client: TestClient, path: str = "/console") -> str:
    r = client.get(path)
    assert r.status_code == 200, r.text
    m = META_CSRF.search(r.text)
    assert m
    return m.group(1)


def post(client: TestClient, path: str, data: dict[str, object] | None = None,
         files: list[tuple[str, tuple[str, bytes, str]]] | None = None,
         page: str = "/console") -> object:
    body = dict(data or {})
    body["csrf_token"] = token_of(client, page)
    return client.post(path, data=body, files=files, follow_redirects=False)


def counts(gov: Gov) -> tuple[int, int]:
    with gov.db.reading() as s:
        return (len(s.scalars(select(Subject.id)).all()),
                len(s.scalars(select(SubjectImage.id)).all()))


def subject_files(image: bytes, name: str = "face.jpg", ctype: str = "image/jpeg"
                  ) -> list[tuple[str, tuple[str, bytes, str]]]:
    """Three image slots as a browser sends them: one chosen file, two empty."""
    empty = ("", b"", "application/octet-stream")
    return [("image", (name, image, ctype)), ("image", empty), ("image", empty)]


def subject_form(**extra: object) -> dict[str, object]:
    form: dict[str, object] = {"reference": "case 2026/117", "category": "wanted_by_court",
                               "reason": REASON, "expires": "90d",
                               "source": ["custody record 2026/117", "", ""]}
    form.update(extra)
    return form


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid PNG header claiming width × height pixels, a few hundred bytes on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 4096)) + chunk(b"IEND", b""))


def approved_watchlist(gov: Gov, face: bytes, name: str = "city centre") -> int:
    info = wls.create_watchlist(gov.system, gov.actors["op2"], name,
                                "Find people wanted by the courts at the event")
    wls.add_subject(gov.system, gov.actors["op2"], info.id, "case 1", "wanted_by_court",
                    REASON, datetime.now(UTC) + timedelta(days=30), [(face, "custody 1")])
    wls.approve_watchlist(gov.db, gov.actors["ao2"], info.id)
    return info.id


# -- watchlists -------------------------------------------------------------------------------

def test_watchlist_flow_on_the_pages(gov: Gov, people: Callable[[str], TestClient],
                                     face_images: dict[str, Path]) -> None:
    ao1, ao2, op1, au1 = people("ao1"), people("ao2"), people("op1"), people("au1")
    home = op1.get("/console").text
    assert 'href="/console/watchlists"' in home and 'href="/console/users"' not in home

    r = post(ao1, "/console/watchlists", {"name": "city centre", "purpose": "short"})
    assert r.status_code == 400 and "at least 20 characters" in r.text
    assert 'value="city centre"' in r.text  # the field is kept
    r = post(ao1, "/console/watchlists",
             {"name": "city centre", "purpose": "Find people wanted by the courts"})
    assert r.status_code == 303
    url = r.headers["location"].split("?")[0]
    wl_id = int(url.rsplit("/", 1)[1])

    r = post(ao1, f"{url}/subjects", subject_form(),
             subject_files(face_images["obama"].read_bytes()), page=url)
    assert r.status_code == 303, r.text
    page = ao1.get(url).text
    assert "case 2026/117" in page and "custody record 2026/117" in page
    assert "Added" in page and "Subject added" not in page  # done=… only on the redirect
    assert "Subject added" in ao1.get(r.headers["location"]).text

    # the author may not approve it: refused on the page, with the reason, and audited
    refused_before = len(actions(gov, "access.refused"))
    assert "another authorising officer must approve it" in ao1.get(url).text
    r = post(ao1, f"{url}/approve", page=url)  # the button is not shown; forced anyway
    assert r.status_code == 403
    assert "may not approve" in r.text and 'role="alert"' in r.text
    assert "case 2026/117" in r.text  # the page itself, not a bare error page
    assert len(actions(gov, "access.refused")) == refused_before + 1
    # an operator and an auditor see no approve button; the auditor no form at all
    assert "Approve this watchlist" not in op1.get(url).text
    audit_view = au1.get(url).text
    assert "<form method=\"post\" action=\"/console/watchlists" not in audit_view
    assert "Add a subject" not in audit_view and "Destroy" not in audit_view
    # another authorising officer approves
    assert "Approve this watchlist" in ao2.get(url).text
    r = post(ao2, f"{url}/approve", page=url)
    assert r.status_code == 303
    assert wls.show_watchlist(gov.db, gov.actors["au1"], wl_id).status == "approved"

    # the reference image, decrypted, to permitted roles only, never cached
    image_id = wls.show_watchlist(gov.db, gov.actors["au1"], wl_id).subject_list[0].images[0].id
    r = au1.get(f"/console/subject-images/{image_id}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content == face_images["obama"].read_bytes()
    assert "no-store" in r.headers["cache-control"]
    assert people("admin").get(f"/console/subject-images/{image_id}").status_code == 403
    assert actions(gov, "subject_image.view")[-1].actor == "au1"

    # removing a subject sends the watchlist back to draft; destroying needs a reason
    subject_id = wls.show_watchlist(gov.db, gov.actors["au1"], wl_id).subject_list[0].id
    r = post(op1, f"/console/subjects/{subject_id}/remove",
             {"watchlist_id": wl_id, "reason": "arrested", "confirm": "yes"}, page=url)
    assert r.status_code == 303
    assert wls.show_watchlist(gov.db, gov.actors["au1"], wl_id).status == "draft"
    r = post(ao2, f"{url}/destroy", {"reason": "", "confirm": "yes"}, page=url)
    assert r.status_code == 400 and "reason" in r.text
    r = post(ao2, f"{url}/destroy", {"reason": "the event is over", "confirm": "yes"},
             page=url)
    assert r.status_code == 303
    assert wls.show_watchlist(gov.db, gov.actors["au1"], wl_id).status == "destroyed"


def test_bad_uploads_are_clear_messages_and_store_nothing(
        gov: Gov, people: Callable[[str], TestClient], face_images: dict[str, Path],
        no_face_path: Path, truncated_path: Path) -> None:
    op1 = people("op1")
    wl_id = wls.create_watchlist(gov.system, gov.actors["op1"], "uploads",
                                 "Find people wanted by the courts").id
    url = f"/console/watchlists/{wl_id}"
    bomb = png_bomb()
    assert len(bomb) < 1000
    cases = [
        ("not an image", b"%PDF-1.4 this is a document\n" * 20, "photo.jpg", "image/jpeg",
         400, "not an image"),
        ("truncated", truncated_path.read_bytes(), "cut.jpg", "image/jpeg", 400,
         "truncated"),
        ("pixel bomb", bomb, "bomb.png", "image/png", 400, "too large"),
        ("no face", no_face_path.read_bytes(), "coffee.png", "image/png", 400, "no face"),
        ("two faces", face_images["group"].read_bytes(), "group.jpg", "image/jpeg", 400,
         "faces"),
        ("too big", b"\xff\xd8\xff" + b"\x00" * (10 * 1024 * 1024 + 10), "big.jpg",
         "image/jpeg", 413, "limit of 10 mib"),
    ]
    for what, data, name, ctype, status, words in cases:
        r = post(op1, f"{url}/subjects", subject_form(reference=f"ref {what}"),
                 subject_files(data, name, ctype), page=url)
        assert r.status_code == status, (what, r.status_code, r.text[-2000:])
        assert "text/html" in r.headers["content-type"], what
        message = re.search(r'id="subject-error"[^>]*>([^<]+)<', r.text)
        assert message, (what, r.text[-3000:])
        assert words in message.group(1).lower(), (what, message.group(1))
        assert f'value="ref {what}"' in r.text, what  # the fields are kept
        assert REASON in r.text and "custody record 2026/117" in r.text, what
        assert "Traceback" not in r.text
    assert counts(gov) == (0, 0)
    assert actions(gov, "subject.add") == []
    # a source is required for each image; a missing field is named
    r = post(op1, f"{url}/subjects", subject_form(source=["", "", ""]),
             subject_files(face_images["obama"].read_bytes()), page=url)
    assert r.status_code == 400 and "source of the image is required" in r.text
    r = post(op1, f"{url}/subjects", subject_form(category=""),
             subject_files(face_images["obama"].read_bytes()), page=url)
    assert r.status_code == 400 and "category" in r.text
    r = post(op1, f"{url}/subjects", subject_form(is_minor="1", minor_justification=""),
             subject_files(face_images["obama"].read_bytes()), page=url)
    assert r.status_code == 400 and "under-18" in r.text
    assert counts(gov) == (0, 0)
    # and a good one goes in, under 18 with its justification
    r = post(op1, f"{url}/subjects",
             subject_form(is_minor="1", minor_justification="Missing child at risk, "
                                                            "court order 2026/5"),
             subject_files(face_images["obama2"].read_bytes()), page=url)
    assert r.status_code == 303, r.text
    assert counts(gov) == (1, 1)


# -- deployments ------------------------------------------------------------------------------

def test_deployment_flow_on_the_pages(gov: Gov, people: Callable[[str], TestClient],
                                      face_images: dict[str, Path]) -> None:
    wl_id = approved_watchlist(gov, face_images["obama"].read_bytes())
    op1, ao1, au1 = people("op1"), people("ao1"), people("au1")
    assert "Plan a new deployment" not in au1.get("/console/deployments").text
    form = op1.get("/console/deployments/new").text
    assert f'name="watchlist_ids" value="{wl_id}"' in form
    now = datetime.now(UTC)
    fields = {
        "name": "Cup final", "site": "Stadium", "location": "North gate",
        "purpose": "Find people wanted by the courts",
        "alternatives": "Patrols do not suffice", "legal_basis": "Common law powers",
        "dpia_ref": "DPIA-1", "equality_ref": "EIA-1",
        "planned_start": (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M"),
        "planned_end": (now + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M"),
        "threshold": "", "backend": "sface", "signage": "1", "public_notice": "1",
        "watchlist_ids": [str(wl_id)], "cameras": "gate=rtsp://user:secret@10.0.0.5/s\n",
        "notice_at": (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
    }
    r = post(op1, "/console/deployments", {**fields, "cameras": "gate rtsp://x"})
    assert r.status_code == 400 and "NAME=SOURCE" in r.text and 'value="Cup final"' in r.text
    r = post(op1, "/console/deployments", {**fields, "planned_end": "tomorrow"})
    assert r.status_code == 400 and "not a date and time" in r.text
    r = post(op1, "/console/deployments", fields)
    assert r.status_code == 303, r.text
    url = r.headers["location"].split("?")[0]
    dep_id = int(url.rsplit("/", 1)[1])
    page = op1.get(url).text
    assert "rtsp://***@10.0.0.5/s" in page and "secret" not in page  # no credentials shown
    assert "/authorise" not in page and "Change the plan" in page

    # the cameras are edited with the draft; unchanged lines keep the credentials
    r = post(op1, f"{url}/edit", {**fields, "cameras": "gate=rtsp://***@10.0.0.5/s\n"
                                                       "side=rtsp://10.0.0.6/s",
                                  "name": "Cup final 2026"}, page=url)
    assert r.status_code == 303, r.text
    view = deps.show(gov.db, gov.actors["au1"], dep_id)
    assert [c.name for c in view.cameras] == ["gate", "side"]
    assert view.name == "Cup final 2026"
    with gov.db.reading() as s:
        dep = s.get(Deployment, dep_id)
        assert deps.camera_sources(s, gov.system.keyring, dep) == [
            ("gate", "rtsp://user:secret@10.0.0.5/s"), ("side", "rtsp://10.0.0.6/s")]
    r = post(op1, f"{url}/edit", {**fields, "name": "Cup final",
                                  "cameras": "gate=rtsp://***@10.0.0.5/s\n"
                                             "side=rtsp://10.0.0.6/s"},
             page=url)
    assert r.status_code == 303
    # the author may not authorise (no button; refused by the service if forced)
    r = post(op1, f"{url}/authorise", AUTHORISE_FORM, page=url)
    assert r.status_code == 403
    assert "Refused: only an authorising officer may authorise a deployment: op1 is an operator" \
        in r.text
    ready_to_authorise(gov.db, gov.actors["ao2"], dep_id)
    r = post(ao1, f"{url}/authorise", {**AUTHORISE_FORM, "rank": "inspector"}, page=url)
    assert r.status_code == 409 and "an inspector may not authorise" in r.text
    r = post(ao1, f"{url}/authorise", AUTHORISE_FORM, page=url)
    assert r.status_code == 303, r.text
    assert deps.show(gov.db, gov.actors["au1"], dep_id).status == "authorised"
    assert "(superintendent)" in au1.get(url).text
    assert "/start" not in au1.get(url).text
    r = post(op1, f"{url}/start", page=url)
    assert r.status_code == 303
    assert deps.show(gov.db, gov.actors["au1"], dep_id).status == "running"
    r = post(op1, f"{url}/stop", {"reason": "", "confirm": "yes"}, page=url)
    assert r.status_code == 400 and "needs a reason" in r.text
    r = post(op1, f"{url}/stop", {"reason": "the match is over", "confirm": "yes"}, page=url)
    assert r.status_code == 303
    view = deps.show(gov.db, gov.actors["au1"], dep_id)
    assert view.status == "ended" and view.end_reason == "the match is over"
    assert "Change the plan" not in op1.get(url).text


def test_threshold_override_on_the_page(gov: Gov, people: Callable[[str], TestClient],
                                        face_images: dict[str, Path]) -> None:
    wl_id = approved_watchlist(gov, face_images["obama"].read_bytes())
    now = datetime.now(UTC)
    plan = deps.Plan(
        alternatives="Patrols do not suffice",
        name="Low", site="s", location="l", purpose="p", legal_basis="b",
                     dpia_ref="d", equality_ref="e", planned_start=now,
                     planned_end=now + timedelta(hours=2), threshold=0.05,
                     model_id=wls.show_watchlist(gov.db, gov.actors["au1"], wl_id).model_id,
                     signage=True, public_notice=True, watchlist_ids=(wl_id,),
                     notice_at=now - timedelta(days=1),
                     cameras=(deps.CameraSpec("a", "0"),))
    dep_id = deps.create(gov.db, gov.actors["op1"], plan, keyring=gov.system.keyring)
    ready_to_authorise(gov.db, gov.actors["ao2"], dep_id)
    ao1 = people("ao1")
    url = f"/console/deployments/{dep_id}"
    r = post(ao1, f"{url}/authorise", AUTHORISE_FORM, page=url)
    assert r.status_code == 409 and "below the" in r.text  # the deployment's state
    r = post(ao1, f"{url}/override-threshold", {"reason": ""}, page=url)
    assert r.status_code == 400 and "written reason" in r.text
    r = post(ao1, f"{url}/override-threshold", {"reason": "Small crowd"}, page=url)
    assert r.status_code == 400 and "at least a sentence" in r.text
    r = post(ao1, f"{url}/override-threshold", {"reason": "Small crowd, tested on site"},
             page=url)
    assert r.status_code == 303
    assert "Small crowd, tested on site" in ao1.get(url).text
    r = post(ao1, f"{url}/authorise", AUTHORISE_FORM, page=url)
    assert r.status_code == 409 and "second authorising officer" in r.text
    ao2 = people("ao2")
    r = post(ao2, f"{url}/override-threshold", {"reason": "Agreed: the crowd is small today"},
             page=url)
    assert r.status_code == 303
    assert "confirmed by ao2" in ao1.get(url).text
    r = post(ao1, f"{url}/authorise", AUTHORISE_FORM, page=url)
    assert r.status_code == 303


# -- users, tokens, audit ---------------------------------------------------------------------

def test_users_and_tokens_pages(gov: Gov, people: Callable[[str], TestClient]) -> None:
    admin, op1 = people("admin"), people("op1")
    assert op1.get("/console/users").status_code == 403
    r = post(admin, "/console/users", {"name": "dawn", "role": "operator", "password": "short"})
    assert r.status_code == 400 and "at least 12 characters" in r.text
    assert 'value="dawn"' in r.text
    r = post(admin, "/console/users", {"name": "dawn", "role": "operator",
                                       "password": PASSWORD})
    assert r.status_code == 303
    r = post(admin, "/console/users/dawn/active", {"active": "0", "confirm": "yes"})
    assert r.status_code == 303
    assert "inactive" in admin.get("/console/users").text
    r = post(admin, "/console/users/admin/active", {"active": "0", "confirm": "yes"})
    assert r.status_code == 400 and "your own account" in r.text
    r = post(admin, "/console/tokens", {"user": "op1", "name": "camera bridge", "role": ""})
    assert r.status_code == 201
    secret = re.search(r'value="(olfr_[^"]+)"', r.text)
    assert secret and "shown only this once" in r.text
    assert secret.group(1) not in admin.get("/console/users").text  # never again
    bearer = {"Authorization": f"Bearer {secret.group(1)}"}
    fresh = TestClient(admin.app)
    assert fresh.get("/api/v1/auth/me", headers=bearer).status_code == 200
    token_id = actions(gov, "token.create")[-1].object_id
    r = post(admin, f"/console/tokens/{token_id}/revoke", {"confirm": "yes"})
    assert r.status_code == 303
    assert fresh.get("/api/v1/auth/me", headers=bearer).status_code == 401


def test_audit_pages(gov: Gov, people: Callable[[str], TestClient],
                     face_images: dict[str, Path]) -> None:
    wl_id = approved_watchlist(gov, face_images["obama"].read_bytes())
    model_id = wls.show_watchlist(gov.db, gov.actors["au1"], wl_id).model_id
    au1, op1 = people("au1"), people("op1")
    assert op1.get("/console/audit").status_code == 403
    assert 'href="/console/audit"' not in op1.get("/console").text
    page = au1.get("/console/audit").text
    assert "watchlist.approve" in page and "Verify the chain" in page
    r = post(au1, "/console/audit/verify", page="/console/audit")
    assert r.status_code == 200 and "The chain verifies" in r.text
    r = post(au1, "/console/audit/export", {"what": "log"}, page="/console/audit")
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    lines = r.text.splitlines()
    assert lines and all(line.startswith("{") for line in lines)
    assert actions(gov, "audit.export")[-1].actor == "au1"
    # paging: 50 a page, newest first, and an older page
    for i in range(60):
        with gov.db.session() as s:
            from openlfr.audit import log as audit_log
            audit_log.record(s, "system", "test.filler", "test", i)
    page = au1.get("/console/audit").text
    older = re.search(r'href="/console/audit\?before=(\d+)"', page)
    assert older
    assert au1.get(f"/console/audit?before={older.group(1)}").status_code == 200
    # the Art. 12 view of a deployment
    now = datetime.now(UTC)
    dep_id = deps.create(gov.db, gov.actors["op1"], deps.Plan(
        alternatives="Patrols do not suffice",
        name="Art12", site="s", location="l", purpose="p", legal_basis="b", dpia_ref="d",
        equality_ref="e", planned_start=now, planned_end=now + timedelta(hours=1),
        threshold=0.5, model_id=model_id), keyring=gov.system.keyring)
    r = au1.get(f"/console/audit/art12/{dep_id}")
    assert r.status_code == 200 and "Art. 12 record: Art12" in r.text
    assert au1.get("/console/audit/art12/999").status_code == 404


# -- the JSON API -----------------------------------------------------------------------------

def test_json_api_watchlists_deployments_audit(gov: Gov, app: FastAPI,
                                               face_images: dict[str, Path],
                                               no_face_path: Path) -> None:
    from openlfr.web import tokens as tok
    auth = {name: {"Authorization": "Bearer " + tok.create_token(
        gov.db, gov.actors["admin"], name, "test")[1]} for name in ("op1", "ao1", "ao2", "au1")}
    c = TestClient(app)
    r = c.post("/api/v1/watchlists", json={"name": "api", "purpose": "too short"},
               headers=auth["op1"])
    assert r.status_code == 400 and "at least 20" in r.json()["detail"]
    r = c.post("/api/v1/watchlists", json={"name": "api",
                                           "purpose": "Find people wanted by the courts"},
               headers=auth["op1"])
    assert r.status_code == 201
    wl_id = r.json()["id"]
    fields = {"reference": "case 9", "category": "wanted_by_court", "reason": REASON,
              "expires": "30d", "source": "custody record 9"}
    r = c.post(f"/api/v1/watchlists/{wl_id}/subjects", data=fields,
               files={"image": ("coffee.png", no_face_path.read_bytes(), "image/png")},
               headers=auth["op1"])
    assert r.status_code == 400 and "no face" in r.json()["detail"]
    r = c.post(f"/api/v1/watchlists/{wl_id}/subjects", data=fields,
               files={"image": ("x.jpg", b"GIF89a not really", "image/jpeg")},
               headers=auth["op1"])
    assert r.status_code == 400 and "not an image" in r.json()["detail"]
    r = c.post(f"/api/v1/watchlists/{wl_id}/subjects", data=fields,
               files={"image": ("bomb.png", png_bomb(), "image/png")}, headers=auth["op1"])
    assert r.status_code == 400 and "too large" in r.json()["detail"]
    r = c.post(f"/api/v1/watchlists/{wl_id}/subjects", data=fields,
               files={"image": ("o.jpg", face_images["obama"].read_bytes(), "image/jpeg")},
               headers=auth["op1"])
    assert r.status_code == 201, r.text
    subject = r.json()
    assert subject["images"][0]["source"] == "custody record 9"
    r = c.post(f"/api/v1/subjects/{subject['id']}/images",
               data={"source": "court file"},
               files={"image": ("o2.jpg", face_images["obama2"].read_bytes(), "image/jpeg")},
               headers=auth["ao1"])
    assert r.status_code == 201 and len(r.json()["images"]) == 2
    r = c.post(f"/api/v1/watchlists/{wl_id}/approve", headers=auth["ao1"])
    assert r.status_code == 403 and "may not approve" in r.json()["detail"]
    r = c.post(f"/api/v1/watchlists/{wl_id}/approve", headers=auth["ao2"])
    assert r.status_code == 200 and r.json()["status"] == "approved"
    r = c.post(f"/api/v1/watchlists/{wl_id}/approve", headers=auth["ao2"])
    assert r.status_code == 409 and "already approved" in r.json()["detail"]
    shown = c.get(f"/api/v1/watchlists/{wl_id}", headers=auth["au1"]).json()
    image_id = shown["subject_list"][0]["images"][0]["id"]
    r = c.get(f"/api/v1/subject-images/{image_id}", headers=auth["au1"])
    assert r.status_code == 200 and "no-store" in r.headers["cache-control"]
    assert c.get("/api/v1/watchlists/999", headers=auth["au1"]).status_code == 404

    now = datetime.now(UTC)
    body = {"name": "API run", "site": "s", "location": "l", "purpose": "p",
            "alternatives": "Patrols do not suffice", "legal_basis": "b", "dpia_ref": "d",
            "equality_ref": "e",
            "planned_start": (now - timedelta(minutes=1)).isoformat(),
            "planned_end": (now + timedelta(hours=1)).isoformat(), "signage": True,
            "public_notice": True, "watchlist_ids": [wl_id],
            "notice_at": (now - timedelta(days=1)).isoformat(),
            "cameras": [{"name": "gate", "source": "0"}]}
    r = c.post("/api/v1/deployments", json={**body, "planned_end": "soon"},
               headers=auth["op1"])
    assert r.status_code == 422
    r = c.post("/api/v1/deployments", json=body, headers=auth["op1"])
    assert r.status_code == 201, r.text
    dep = r.json()
    assert dep["threshold"] == dep["floor"] and dep["missing"] == []
    r = c.patch(f"/api/v1/deployments/{dep['id']}", json={"site": "stadium"},
                headers=auth["op1"])
    assert r.status_code == 200 and r.json()["changed"] == ["site"]
    assert c.post(f"/api/v1/deployments/{dep['id']}/start",
                  headers=auth["op1"]).status_code == 409  # not authorised yet
    r = c.post(f"/api/v1/deployments/{dep['id']}/authorise", headers=auth["ao1"])
    assert r.status_code == 409 and "no recorded calibration" in r.text
    ready_to_authorise(gov.db, gov.actors["ao2"], dep["id"])
    r = c.post(f"/api/v1/deployments/{dep['id']}/authorise", headers=auth["ao1"],
               json=AUTHORISE_JSON)
    assert r.status_code == 200 and r.json()["status"] == "authorised"
    r = c.post(f"/api/v1/deployments/{dep['id']}/start", headers=auth["op1"])
    assert r.status_code == 200 and r.json()["deployment"]["status"] == "running"
    r = c.post(f"/api/v1/deployments/{dep['id']}/stop", json={"reason": ""},
               headers=auth["op1"])
    assert r.status_code == 422
    r = c.post(f"/api/v1/deployments/{dep['id']}/stop", json={"reason": "done"},
               headers=auth["op1"])
    assert r.status_code == 200 and r.json()["status"] == "ended"
    assert c.post(f"/api/v1/deployments/{dep['id']}/stop", json={"reason": "again"},
                  headers=auth["op1"]).status_code == 409

    r = c.get("/api/v1/audit/entries?limit=5", headers=auth["au1"])
    assert r.status_code == 200 and len(r.json()["entries"]) == 5
    assert r.json()["entries"][0]["seq"] > r.json()["entries"][-1]["seq"]
    r = c.get("/api/v1/audit/verify", headers=auth["au1"])
    assert r.status_code == 200 and r.json()["ok"] is True
    r = c.post("/api/v1/audit/export", headers=auth["au1"])
    assert r.status_code == 200 and r.headers["content-type"].startswith(
        "application/x-ndjson")
    r = c.get(f"/api/v1/audit/art12/{dep['id']}", headers=auth["au1"])
    assert r.status_code == 200 and r.json()["end_reason"] == "done"
    r = c.post(f"/api/v1/audit/export?art12=true&deployment={dep['id']}", headers=auth["au1"])
    assert r.status_code == 200 and len(r.text.splitlines()) == 1


# -- screenshots ------------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path("/tmp/openlfr-shots")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium")
def test_screenshots_of_the_governance_pages(sqlite_gov: Gov, face_images: dict[str, Path],
                                             tmp_path: Path) -> None:
    """Each governance page in headless Chromium (laptop and tablet), saved to
    /tmp/openlfr-shots/gov-*.png, with no console error (a CSP violation, a missing asset)."""
    import socket
    import threading
    import time

    import uvicorn
    from playwright.sync_api import sync_playwright

    gov = sqlite_gov
    wl_id = approved_watchlist(gov, face_images["obama"].read_bytes())
    draft = wls.create_watchlist(gov.system, gov.actors["ao1"], "missing persons",
                                 "Find missing and vulnerable people at the station")
    wls.add_subject(gov.system, gov.actors["ao1"], draft.id, "missing 2026/3",
                    "missing_or_vulnerable", "Missing since Monday, at risk, family report",
                    datetime.now(UTC) + timedelta(days=14),
                    [(face_images["biden"].read_bytes(), "family photo")], is_minor=True,
                    minor_justification="Fifteen, at risk of harm, court order 2026/5")
    now = datetime.now(UTC)
    model_id = wls.show_watchlist(gov.db, gov.actors["au1"], wl_id).model_id
    dep_id = deps.create(gov.db, gov.actors["op1"], deps.Plan(
        alternatives="Patrols do not suffice",
        name="Cup final", site="City stadium", location="North gate, Station Road",
        purpose="Find people wanted by the courts for violent offences",
        legal_basis="Common law policing powers; DPA 2018 s.35", dpia_ref="DPIA-2026-04",
        equality_ref="EIA-2026-04", planned_start=now - timedelta(minutes=5),
        planned_end=now + timedelta(hours=4), threshold=0.52, model_id=model_id,
        two_person_rule=True, signage=True, public_notice=True, watchlist_ids=(wl_id,),
        notice_at=now - timedelta(days=1),
        cameras=(deps.CameraSpec("gate", "rtsp://user:pw@10.0.0.5/stream"),
                 deps.CameraSpec("side", "rtsp://10.0.0.6/stream"))),
        keyring=gov.system.keyring)
    authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)
    deps.start(gov.db, gov.actors["op1"], dep_id)
    draft_dep = deps.create(gov.db, gov.actors["op1"], deps.Plan(
        alternatives="Patrols do not suffice",
        name="Market day", site="Market square", location="", purpose="", legal_basis="",
        dpia_ref="", equality_ref="", planned_start=now + timedelta(days=2),
        planned_end=now + timedelta(days=2, hours=6), threshold=0.30, model_id=model_id),
                keyring=gov.system.keyring)
    from openlfr.web import tokens as tok
    tok.create_token(gov.db, gov.actors["admin"], "op1", "camera bridge")
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"these are notes, not a photo\n" * 10)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(gov.system), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    pages = {
        "ao2": {"console": "/console", "watchlists": "/console/watchlists",
                "watchlist-draft": f"/console/watchlists/{draft.id}",
                "watchlist-approved": f"/console/watchlists/{wl_id}",
                "deployments": "/console/deployments",
                "deployment-running": f"/console/deployments/{dep_id}",
                "deployment-draft": f"/console/deployments/{draft_dep}",
                "audit": "/console/audit", "art12": f"/console/audit/art12/{dep_id}"},
        "op1": {"deployment-new": "/console/deployments/new"},
        "admin": {"users": "/console/users"},
    }
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM), headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync"])
            try:
                for device, size in (("laptop", (1280, 800)), ("tablet", (820, 1180))):
                    for who, paths in pages.items():
                        page = browser.new_page(viewport={"width": size[0], "height": size[1]})
                        problems: list[str] = []
                        page.on("console", lambda m, problems=problems: problems.append(m.text)
                                if m.type == "error" and "status of 4" not in m.text else None)
                        page.goto(base + "/login")
                        page.fill("#name", who)
                        page.fill("#password", PASSWORD)
                        page.click("button[type=submit]")
                        page.wait_for_url(base + "/console")
                        for shot, path in paths.items():
                            response = page.goto(base + path)
                            assert response is not None and response.status == 200, path
                            page.screenshot(path=str(SHOTS / f"gov-{shot}-{device}.png"),
                                            full_page=True)
                        if who == "ao2":
                            # a bad upload: the message on the page, the fields kept
                            page.goto(base + f"/console/watchlists/{draft.id}")
                            page.fill("#s-ref", "case 2026/200")
                            page.select_option("#s-cat", "wanted_by_court")
                            page.fill("#s-reason", REASON)
                            page.fill("#s-exp", "90d")
                            page.set_input_files("#img-0", str(bad))
                            page.fill("#src-0", "court file")
                            page.click("text=Check and add the subject")
                            assert "not an image" in page.inner_text("#subject-error")
                            assert page.input_value("#s-ref") == "case 2026/200"
                            page.screenshot(path=str(SHOTS / f"gov-upload-error-{device}.png"),
                                            full_page=True)
                            # the image, revealed in the page
                            page.goto(base + f"/console/watchlists/{wl_id}")
                            page.click("a.reveal")
                            page.wait_for_selector("ul.images img")
                            page.screenshot(path=str(SHOTS / f"gov-image-{device}.png"),
                                            full_page=True)
                            page.goto(base + "/console/audit")
                            page.click("text=Verify the chain")
                            assert "The chain verifies" in page.inner_text("#verify-result")
                            page.screenshot(path=str(SHOTS / f"gov-audit-verified-{device}.png"),
                                            full_page=True)
                        assert problems == [], problems
                        page.close()
            finally:
                browser.close()
    finally:
        server.should_exit = True
        thread.join(10)
    for png in SHOTS.glob("gov-*.png"):
        assert png.stat().st_size > 5000
