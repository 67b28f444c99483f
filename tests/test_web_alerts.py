"""The operator console and the alerts API: every route × every role (allowed and refused,
refusals audited), CSRF on the forms, the two-person rule through the API, images only for
permitted roles and never cached, and the live stream (Server-Sent Events) delivering an alert
published through the broker. SQLite and PostgreSQL (``gov``), FastAPI's TestClient."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import select

from openlfr.governance.authz import Actor
from openlfr.governance.watchlists import _aad
from openlfr.store.enums import Role
from openlfr.store.models import Alert as AlertRow
from openlfr.store.models import AuditRecord, SubjectImage, Watchlist
from openlfr.web import events
from openlfr.web.app import create_app
from tests.govfix import Gov
from tests.govfix import audit_records as actions
from tests.test_gov_alerts import Setup, _setup, _stored
from tests.test_web_core import META_CSRF, login

READERS = {"op1", "op2", "sv1", "ao1", "au1"}
DECIDERS = {"op1", "op2", "sv1"}
HOLDERS = {"sv1", "ao1"}
EVERYONE = ("admin", "ao1", "op1", "op2", "sv1", "au1")


def setup_alerts(gov: Gov, face_images: dict[str, Path], two: bool = True) -> Setup:
    """A deployment with its data key, and a subject whose reference image is really
    encrypted (the real photo), as the console shows it."""
    st = _setup(gov, face_images, two_person_rule=two)
    photo = face_images["obama"].read_bytes()
    with gov.db.session() as s:
        img = s.get(SubjectImage, st.image_id)
        wl = s.get(Watchlist, st.watchlist_id)
        assert img is not None and wl is not None
        img.image_ct = gov.system.keyring.encrypt(s, wl.data_key_id, photo,
                                                  _aad(img.id, "image"))
    return st


def refusals(gov: Gov, actor: str) -> int:
    with gov.db.reading() as s:
        return len(list(s.scalars(select(AuditRecord.seq).where(
            AuditRecord.action == "access.refused", AuditRecord.actor == actor))))


def status(gov: Gov, alert_id: int) -> str:
    with gov.db.reading() as s:
        row = s.get(AlertRow, alert_id)
        assert row is not None
        return row.status.value


def page_csrf(client: TestClient, path: str) -> str:
    r = client.get(path)
    assert r.status_code == 200, r.text
    m = META_CSRF.search(r.text)
    assert m
    return m.group(1)


# -- pages and images ------------------------------------------------------------------------

def test_pages_and_images_by_role(gov: Gov, client: TestClient,
                                  face_images: dict[str, Path]) -> None:
    st = setup_alerts(gov, face_images)
    aid = _stored(gov, st)
    r = client.get("/console/alerts", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    assert client.get(f"/console/alerts/{aid}/crop.jpg",
                      follow_redirects=False).status_code == 303
    pages = ["/console/alerts", f"/console/alerts?deployment={st.deployment_id}&status=all",
             f"/console/alerts/{aid}", f"/console/alerts/{aid}/card"]
    images = [f"/console/alerts/{aid}/crop.jpg", f"/console/alerts/{aid}/reference.jpg"]
    for name in EVERYONE:
        login(client, name)
        before = refusals(gov, name)
        for path in pages:
            r = client.get(path)
            if name in READERS:
                assert r.status_code == 200, (name, path, r.text)
                assert "possible match" in r.text.lower() and "cam1" in r.text
                assert "0.500" in r.text and "0.360" in r.text  # score and threshold
                assert "1 of 2" not in r.text and "0 of 2 confirmations" in r.text
                assert (f'action="/console/alerts/{aid}/decide"' in r.text) == (
                    name in DECIDERS)
            else:
                assert r.status_code == 403 and "refused" in r.text.lower(), (name, path)
        for path in images:
            r = client.get(path)
            if name in READERS:
                assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
                assert r.headers["cache-control"].startswith("no-store")
                assert r.content[:2] == b"\xff\xd8"
                image = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
                assert image is not None and image.size > 0
            else:
                assert r.status_code == 403
        expected = 0 if name in READERS else len(pages) + len(images)
        assert refusals(gov, name) - before == expected, name
    # each view of a crop and of a reference image is on record, by whom
    assert {e.actor for e in actions(gov, "alert.view_crop")} == READERS
    assert {e.actor for e in actions(gov, "subject_image.view")} == READERS
    login(client, "op1")
    assert client.get("/console/alerts/99999").status_code == 404
    assert client.get("/console/alerts/99999/crop.jpg").status_code == 404
    assert client.get("/console/alerts?deployment=99999").status_code == 404
    assert client.get("/console/alerts?deployment=abc").status_code == 400
    bogus = client.get("/console/alerts?status=bogus")  # said, and the page still shown
    assert bogus.status_code == 400 and "Status: status &#39;bogus&#39; is not one of" in bogus.text
    assert 'id="alert-queue"' in bogus.text


# -- the forms -------------------------------------------------------------------------------

def test_forms_need_csrf_and_decide_in_two_clicks(gov: Gov, client: TestClient,
                                                  face_images: dict[str, Path]) -> None:
    st = setup_alerts(gov, face_images)
    first, second, third = (_stored(gov, st, alert_id=f"cam1:{i}:s", track=i)
                            for i in (1, 2, 3))
    login(client, "op1")
    token = page_csrf(client, "/console/alerts")
    # no token, a wrong token: refused, nothing recorded
    for data in ({"decision": "confirm"}, {"decision": "confirm", "csrf_token": "0" * 64}):
        r = client.post(f"/console/alerts/{first}/decide", data=data, follow_redirects=False)
        assert r.status_code == 403 and "CSRF" in r.text
    assert status(gov, first) == "pending" and not actions(gov, "alert.adjudicate")
    # confirm: one click; the two-person rule shows 1 of 2
    r = client.post(f"/console/alerts/{first}/decide", follow_redirects=False, data={
        "csrf_token": token, "decision": "confirm", "here": "/console/alerts?status=all"})
    assert r.status_code == 303
    assert r.headers["location"] == f"/console/alerts?status=all&saved=confirm#alert-{first}"
    page = client.get(r.headers["location"]).text
    assert "Your confirmation is recorded." in page and "1 of 2 confirmations" in page
    assert "you have confirmed; a second person must confirm" in page
    assert status(gov, first) == "pending"
    # the same person again: refused (audited), shown on the page
    before = refusals(gov, "op1")
    r = client.post(f"/console/alerts/{first}/decide",
                    data={"csrf_token": token, "decision": "confirm"})
    assert r.status_code == 403 and "two-person rule" in r.text
    assert refusals(gov, "op1") == before + 1
    # reject: a preset reason (click 1) and the button (click 2)
    r = client.post(f"/console/alerts/{second}/decide", follow_redirects=False, data={
        "csrf_token": token, "decision": "reject", "reason_choice": "not_same"})
    assert r.status_code == 303 and status(gov, second) == "rejected"
    view = client.get(f"/api/v1/alerts/{second}").json()
    assert view["adjudications"][0]["reason"] == "Not the same person"
    # a reject or no action without a reason, or "other" with no text: a clear message
    for data in ({"decision": "no_action"}, {"decision": "reject", "reason_choice": "other"},
                 {"decision": "maybe"}, {}):
        r = client.post(f"/console/alerts/{third}/decide", data={"csrf_token": token, **data})
        assert r.status_code == 400 and 'class="notice error"' in r.text, data
        assert "Traceback" not in r.text
    r = client.post(f"/console/alerts/{third}/decide", data={"csrf_token": token})
    assert "choose confirm, reject or no action" in r.text.lower()
    # the script's variant answers with the updated card
    r = client.post(f"/console/alerts/{third}/decide", data={
        "csrf_token": token, "decision": "no_action", "reason_choice": "other",
        "reason": "Crowd too dense to approach", "fragment": "1"})
    assert r.status_code == 200 and r.text.lstrip().startswith("<article")
    assert "Recorded: no action." in r.text and "no action" in r.text
    assert "<html" not in r.text
    # the second confirmation, by someone else, verifies; then the outcome form
    login(client, "sv1")
    token = page_csrf(client, f"/console/alerts/{first}")
    r = client.post(f"/console/alerts/{first}/decide", follow_redirects=False,
                    data={"csrf_token": token, "decision": "confirm",
                          "here": f"/console/alerts/{first}"})
    assert r.status_code == 303 and status(gov, first) == "confirmed"
    page = client.get(f"/console/alerts/{first}").text
    assert "2 of 2 confirmations" in page and "Record the outcome" in page
    r = client.post(f"/console/alerts/{first}/outcome", data={
        "csrf_token": token, "engaged": "no", "action": "arrest"})
    assert r.status_code == 400 and "engaged" in r.text
    r = client.post(f"/console/alerts/{first}/outcome", follow_redirects=False, data={
        "csrf_token": token, "engaged": "yes", "action": "advice", "notes": "spoke to him"})
    assert r.status_code == 303
    assert [json.loads(e.details)["action"] for e in actions(gov, "alert.outcome")] == [
        "advice"]
    # hold and release (supervisor); the operator may not
    r = client.post(f"/console/alerts/{first}/hold", follow_redirects=False,
                    data={"csrf_token": token, "reason": "complaint received"})
    assert r.status_code == 303 and actions(gov, "alert.hold")
    r = client.post(f"/console/alerts/{first}/release", follow_redirects=False,
                    data={"csrf_token": token})
    assert r.status_code == 303 and actions(gov, "alert.release")
    login(client, "op2")
    token = page_csrf(client, "/console/alerts")
    r = client.post(f"/console/alerts/{first}/hold",
                    data={"csrf_token": token, "reason": "I would like to keep it"})
    assert r.status_code == 403
    # the auditor and the admin may decide nothing
    for name in ("au1", "admin", "ao1"):
        login(client, name)
        token = page_csrf(client, "/console")
        before = refusals(gov, name)
        r = client.post(f"/console/alerts/{third}/decide",
                        data={"csrf_token": token, "decision": "confirm"})
        assert r.status_code == 403 and refusals(gov, name) == before + 1


# -- the API ---------------------------------------------------------------------------------

def test_api_routes_by_role(gov: Gov, client: TestClient,
                            face_images: dict[str, Path]) -> None:
    st = setup_alerts(gov, face_images, two=False)
    ids = [_stored(gov, st, alert_id=f"cam1:{i}:s", track=i) for i in range(1, 8)]
    assert client.get("/api/v1/alerts").status_code == 401
    assert client.get(f"/api/v1/alerts/{ids[0]}/crop").status_code == 401
    pending = iter(ids)
    for name in EVERYONE:
        csrf = login(client, name)
        h = {"X-CSRF-Token": csrf}
        before = refusals(gov, name)
        reads = [client.get("/api/v1/alerts"), client.get(f"/api/v1/alerts/{ids[0]}"),
                 client.get(f"/api/v1/alerts/{ids[0]}/crop"),
                 client.get(f"/api/v1/alerts/{ids[0]}/reference")]
        for r in reads:
            assert r.status_code == (200 if name in READERS else 403), (name, r.text)
        if name in READERS:
            listed = reads[0].json()
            assert [a["id"] for a in listed] == sorted(ids, reverse=True)
            one = reads[1].json()
            assert one["kind"] == "possible match" and one["camera"] == "cam1"
            assert one["crop_url"] == f"/api/v1/alerts/{ids[0]}/crop"
            assert reads[2].headers["content-type"] == "image/jpeg"
            assert reads[2].headers["cache-control"].startswith("no-store")
        else:
            assert reads[0].json()["detail"].startswith("refused")
        aid = next(pending)
        r = client.post(f"/api/v1/alerts/{aid}/adjudications", headers=h,
                        json={"decision": "confirm"})
        assert r.status_code == (201 if name in DECIDERS else 403), (name, r.text)
        if name in DECIDERS:
            assert r.json()["status"] == "confirmed"  # no two-person rule here
            r = client.post(f"/api/v1/alerts/{aid}/outcome", headers=h,
                            json={"engaged": True, "action": "advice"})
            assert r.status_code == 201 and r.json()["outcome"]["action"] == "advice"
        r = client.post(f"/api/v1/alerts/{ids[0]}/hold", headers=h,
                        json={"reason": f"kept by {name}"})
        if name in HOLDERS:
            assert r.status_code in (200, 409), r.text  # the second holder finds it held
        else:
            assert r.status_code == 403
        refused = 0 if name in READERS else 4
        refused += 0 if name in DECIDERS else 1
        refused += 0 if name in HOLDERS else 1
        assert refusals(gov, name) - before == refused, name
    # a write without the CSRF header on a session is refused; a missing alert is 404
    login(client, "op1")
    r = client.post(f"/api/v1/alerts/{ids[-1]}/adjudications", json={"decision": "confirm"})
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    csrf = login(client, "op1")
    r = client.get("/api/v1/alerts/99999")
    assert r.status_code == 404 and r.json() == {"detail": "no alert 99999"}
    assert client.get("/api/v1/alerts?status=bogus").status_code == 400
    assert client.get("/api/v1/alerts?limit=0").status_code == 422
    assert client.get(f"/api/v1/alerts?deployment_id={st.deployment_id}&status=confirmed"
                      "&limit=2").status_code == 200
    r = client.post("/api/v1/alerts/99999/adjudications", headers={"X-CSRF-Token": csrf},
                    json={"decision": "confirm"})
    assert r.status_code == 404


def test_two_person_rule_through_the_api(gov: Gov, client: TestClient,
                                         face_images: dict[str, Path]) -> None:
    st = setup_alerts(gov, face_images, two=True)
    aid = _stored(gov, st)
    other = _stored(gov, st, alert_id="cam1:2:s", track=2)
    url = f"/api/v1/alerts/{aid}"
    h1 = {"X-CSRF-Token": login(client, "op1")}
    r = client.post(f"{url}/outcome", headers=h1, json={"engaged": True, "action": "none"})
    assert r.status_code == 409 and "only for confirmed" in r.json()["detail"]
    r = client.post(f"{url}/adjudications", headers=h1, json={"decision": "confirm"})
    assert r.status_code == 201
    body = r.json()
    assert body["status"] == "pending" and body["confirmations"] == 1
    assert body["confirmations_needed"] == 2 and body["two_person_rule"] is True
    before = refusals(gov, "op1")
    r = client.post(f"{url}/adjudications", headers=h1, json={"decision": "confirm"})
    assert r.status_code == 403 and "two-person rule" in r.json()["detail"]
    assert refusals(gov, "op1") == before + 1
    r = client.post(f"{url}/adjudications", headers=h1, json={"decision": "maybe"})
    assert r.status_code == 400 and "unknown decision" in r.json()["detail"]
    r = client.post(f"/api/v1/alerts/{other}/adjudications", headers=h1,
                    json={"decision": "reject"})
    assert r.status_code == 400 and "reason" in r.json()["detail"]
    r = client.post(f"{url}/adjudications", headers=h1, json={"reason": "x"})
    assert r.status_code == 422
    h2 = {"X-CSRF-Token": login(client, "op2")}
    r = client.post(f"{url}/adjudications", headers=h2, json={"decision": "confirm"})
    assert r.status_code == 201 and r.json()["status"] == "confirmed"
    assert [a["user"] for a in r.json()["adjudications"]] == ["op1", "op2"]
    r = client.post(f"{url}/adjudications", headers=h2,
                    json={"decision": "reject", "reason": "changed my mind"})
    assert r.status_code == 409 and "already decided" in r.json()["detail"]
    r = client.post(f"{url}/outcome", headers=h2,
                    json={"engaged": True, "action": "arrest", "notes": "at gate 3"})
    assert r.status_code == 201 and r.json()["outcome"]["recorded_by"] == "op2"
    r = client.post(f"{url}/outcome", headers=h2, json={"engaged": False, "action": "none"})
    assert r.status_code == 409
    r = client.post(f"{url}/outcome", headers=h2, json={"engaged": True, "action": "hug"})
    assert r.status_code == 400
    hs = {"X-CSRF-Token": login(client, "sv1")}
    assert client.post(f"{url}/hold", headers=hs, json={"reason": "complaint"}).status_code \
        == 200
    r = client.post(f"{url}/hold", headers=hs, json={"reason": "again"})
    assert r.status_code == 409 and "already held" in r.json()["detail"]
    r = client.post(f"/api/v1/alerts/{other}/hold", headers=hs, json={"reason": "  "})
    assert r.status_code == 400 and "reason" in r.json()["detail"]


# -- the live stream -------------------------------------------------------------------------

def _publish_when_subscribed(app: object, row_id: int, n: int = 1) -> threading.Thread:
    def go() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            b = getattr(app.state, "alert_broker", None)  # type: ignore[attr-defined]
            if b is not None and b.subscribers >= n:
                b.on_alert(row_id)
                time.sleep(0.3)
                b.close()  # as at server shutdown: the stream ends with "bye"
                return
            time.sleep(0.05)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def _events(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.split("\n\n"):
        lines = block.splitlines()
        kind = next((ln[7:] for ln in lines if ln.startswith("event: ")), None)
        data = next((ln[6:] for ln in lines if ln.startswith("data: ")), None)
        if kind and data:
            out.append((kind, json.loads(data)))
    return out


def test_the_stream_delivers_a_published_alert(gov: Gov, face_images: dict[str, Path]) -> None:
    st = setup_alerts(gov, face_images)
    aid = _stored(gov, st)
    app = create_app(gov.system)
    with TestClient(app, base_url="http://testserver") as client:
        assert client.get("/console/alerts/stream",
                          follow_redirects=False).status_code == 303
        login(client, "admin")  # may not read alerts: refused before any stream opens
        assert client.get("/console/alerts/stream").status_code == 403
        login(client, "op1")
        thread = _publish_when_subscribed(app, aid)
        r = client.get("/console/alerts/stream")
        thread.join()
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-store"
    assert r.text.startswith("retry: ")
    got = _events(r.text)
    kinds = [k for k, _ in got]
    assert kinds[0] == "health" and kinds[-1] == "bye" and "alert" in kinds
    alert = next(d for k, d in got if k == "alert")
    assert alert["id"] == aid and alert["deployment_id"] == st.deployment_id
    assert alert["label"] == "possible match" and alert["camera"] == "cam1"
    assert alert["card_url"] == f"/console/alerts/{aid}/card"
    # no pixels, no subject in the event: the page fetches those by URL, with a check
    assert set(alert) == {"type", "id", "label", "deployment_id", "deployment", "camera",
                          "score", "threshold", "revision", "status", "seen_at", "url",
                          "card_url", "crop_url"}
    assert "CASE-17" not in r.text and len(r.text) < 4000


def test_the_broker_sends_only_what_a_viewer_may_read() -> None:
    async def run() -> dict[str, list[object]]:
        broker = events.AlertBroker(db=None)  # type: ignore[arg-type]
        subs = {
            "op1-all": broker.subscribe(Actor("op1", Role.OPERATOR)),
            "au1-dep1": broker.subscribe(Actor("au1", Role.AUDITOR), 1),
            "au1-dep2": broker.subscribe(Actor("au1", Role.AUDITOR), 2),
            "admin": broker.subscribe(Actor("admin", Role.ADMIN)),
        }
        sent = await asyncio.to_thread(broker.publish, {"type": "alert", "id": 7,
                                                        "deployment_id": 1})
        assert sent == 2
        await asyncio.sleep(0.05)
        got: dict[str, list[object]] = {}
        for name, sub in subs.items():
            got[name] = []
            while not sub.queue.empty():
                got[name].append(sub.queue.get_nowait())
        await asyncio.to_thread(broker.close)
        await asyncio.sleep(0.05)
        for sub in subs.values():
            assert sub.queue.get_nowait() is events._CLOSE  # every stream told to end
            broker.unsubscribe(sub)
        assert broker.subscribers == 0
        return got

    got = asyncio.run(run())
    assert [m for m in got["op1-all"] if isinstance(m, dict)] == [
        {"type": "alert", "id": 7, "deployment_id": 1}]
    assert [m for m in got["au1-dep1"] if isinstance(m, dict)] == [
        {"type": "alert", "id": 7, "deployment_id": 1}]
    assert not [m for m in got["au1-dep2"] if isinstance(m, dict)]
    assert not [m for m in got["admin"] if isinstance(m, dict)]
