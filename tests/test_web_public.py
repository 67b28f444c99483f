"""The public transparency pages and residents' questions (SQLite and PostgreSQL).

The data are written straight into the tables (the governance services are tested on their
own); the subject, its reason, the crop and the camera address carry marker strings that must
never reach a public page, download or JSON answer."""

from __future__ import annotations

import base64
import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from openlfr.store.db import Database
from openlfr.store.enums import (
    Action,
    AlertStatus,
    Category,
    DeploymentStatus,
    WatchlistStatus,
)
from openlfr.store.models import (
    Alert,
    AuditRecord,
    Camera,
    CameraStats,
    Deployment,
    Outcome,
    PublicQuestion,
    Subject,
    Watchlist,
)
from tests.govfix import Gov
from tests.test_web_core import META_CSRF, login

SUBJECT_REF = "SUBJREF-7731-DO-NOT-PUBLISH"
REASON = "REASONTEXT-wanted-for-a-reason-that-must-stay-private"
CAMERA_URL = "rtsp://camuser:campass@10.9.8.7/secretstream"
CROP = b"\xff\xd8CROPBYTES-must-not-leak" * 4
URGENCY = "Urgent: a missing child, published afterwards"


@dataclass
class Demo:
    planned: int
    running: int
    ended: int
    ended_urgent: int
    planned_urgent: int
    draft: int
    year: int


def _deployment(name: str, site: str, status: DeploymentStatus, start: datetime, hours: float,
                **extra: object) -> Deployment:
    return Deployment(
        name=name, site=site, location=f"{site}, outside the station entrance",
        purpose="Locate people wanted on warrant for serious offences",
        legal_basis="Common law policing powers; Data Protection Act 2018 s.35",
        dpia_ref="DPIA-2026-014", equality_ref="EIA-2026-009", planned_start=start,
        planned_end=start + timedelta(hours=hours), threshold=0.48, model_id="sface-2021dec",
        status=status, created_by="op1", authorised_by="ao1", signage=True,
        public_notice=True, **extra)


def populate(db: Database) -> Demo:
    """Six deployments: planned, running, ended (with alerts and outcomes), ended after an
    urgency reason, planned with an urgency reason (hidden), and a draft (hidden)."""
    now = datetime.now(UTC)
    start = now - timedelta(days=2)
    with db.session() as s:
        wl = Watchlist(name="Warrants", purpose="warrants", status=WatchlistStatus.APPROVED,
                       model_id="sface-2021dec", max_subjects=100, created_by="op1")
        s.add(wl)
        s.flush()
        subjects = [Subject(watchlist_id=wl.id, reference=f"{SUBJECT_REF}-{i}",
                            category=Category.WANTED_BY_COURT, reason=REASON, added_by="op1",
                            expires_at=now + timedelta(days=30)) for i in range(3)]
        s.add_all(subjects)
        planned = _deployment("Op Planned", "Riverside Market", DeploymentStatus.AUTHORISED,
                              now + timedelta(days=3), 6)
        running = _deployment("Op Running", "Central Station", DeploymentStatus.RUNNING,
                              now - timedelta(hours=1), 8, started_at=now - timedelta(hours=1))
        ended = _deployment("Op Ended", "High Street", DeploymentStatus.ENDED, start, 5,
                            started_at=start, ended_at=start + timedelta(hours=5),
                            two_person_rule=True)
        ended_urgent = _deployment("Op Urgent", "Harbour Road", DeploymentStatus.ENDED,
                                   start + timedelta(hours=6), 2, urgency_reason=URGENCY,
                                   started_at=start + timedelta(hours=6),
                                   ended_at=start + timedelta(hours=8))
        planned_urgent = _deployment("Op Secret Plan", "Hidden Square",
                                     DeploymentStatus.AUTHORISED, now + timedelta(days=1), 3,
                                     urgency_reason="not to be published in advance")
        draft = _deployment("Op Draft", "Draft Avenue", DeploymentStatus.DRAFT,
                            now + timedelta(days=9), 3)
        for d in (planned, running, ended, ended_urgent, planned_urgent, draft):
            d.watchlists = [wl]
            s.add(d)
        s.flush()
        for d in (planned, running, ended, ended_urgent):
            s.add(Camera(deployment_id=d.id, name="cam-north", display=CAMERA_URL))
        s.add(CameraStats(deployment_id=ended.id, camera="cam-north", frames=90000,
                          faces_seen=12000, tracks=4000, seconds=18000.0))
        s.add(CameraStats(deployment_id=running.id, camera="cam-north", frames=9000,
                          faces_seen=800, tracks=300, seconds=3600.0))
        alerts = []
        for i, status in enumerate([AlertStatus.CONFIRMED, AlertStatus.REJECTED,
                                    AlertStatus.REJECTED, AlertStatus.NO_ACTION]):
            a = Alert(deployment_id=ended.id, camera="cam-north", track_id=i,
                      pipeline_id=f"p{i}", subject_id=subjects[i % 3].id, watchlist_id=wl.id,
                      score=0.61, threshold=0.48, model_id="sface-2021dec",
                      seen_at=start + timedelta(hours=1, minutes=i), crop_ct=CROP,
                      status=status, decided_at=start + timedelta(hours=2))
            s.add(a)
            alerts.append(a)
        s.flush()
        s.add(Outcome(alert_id=alerts[0].id, engaged=True, action=Action.ARREST,
                      notes="arrested by a named officer", recorded_by="op1"))
        ids = Demo(planned.id, running.id, ended.id, ended_urgent.id, planned_urgent.id,
                   draft.id, start.year)
    return ids


def public_urls(demo: Demo) -> list[str]:
    return ["/public", f"/public/deployments/{demo.ended}", f"/public/deployments/{demo.running}",
            f"/public/deployments/{demo.planned}", f"/public/deployments/{demo.ended_urgent}",
            f"/public/summary?year={demo.year}", f"/public/summary/chart.svg?year={demo.year}",
            "/public/deployments.csv", "/public/deployments.json",
            f"/public/summary.csv?year={demo.year}", f"/public/summary.json?year={demo.year}",
            "/api/v1/public/deployments", f"/api/v1/public/deployments/{demo.ended}",
            f"/api/v1/public/summary?year={demo.year}"]


def test_public_pages_show_the_figures(demo: Demo, client: TestClient) -> None:
    index = client.get("/public")
    assert index.status_code == 200
    for site in ("Riverside Market", "Central Station", "High Street", "Harbour Road"):
        assert site in index.text
    # hidden: a draft, and a planned deployment with an urgency reason
    assert "Draft Avenue" not in index.text and "Hidden Square" not in index.text
    for hidden in (demo.draft, demo.planned_urgent):
        assert client.get(f"/public/deployments/{hidden}").status_code == 404
        assert client.get(f"/api/v1/public/deployments/{hidden}").status_code == 404
    assert client.get("/public/deployments/99999").status_code == 404

    page = client.get(f"/public/deployments/{demo.ended}").text
    for text in ("High Street", "Common law policing powers", "DPIA-2026-014", "0.48",
                 "4,000", "1 in 2,000"):  # people passing; 2 false alerts in 4,000 people
        assert text in page, text
    d = client.get(f"/api/v1/public/deployments/{demo.ended}").json()
    f = d["figures"]
    assert (f["people_passing"], f["faces_seen"], f["alerts"], f["confirmed"],
            f["false_alerts"], f["no_action"], f["engaged"],
            f["outcomes"]["arrest"]) == (4000, 12000, 4, 1, 2, 1, 1, 1)
    assert f["false_alert_rate"] == pytest.approx(2 / 4000)  # per person passing
    assert d["watchlist_size"] == 3 and d["cameras"] == 1 and d["two_person_rule"] is True
    # the urgency reason is shown once the deployment has ended
    assert URGENCY in client.get(f"/public/deployments/{demo.ended_urgent}").text
    planned = client.get(f"/api/v1/public/deployments/{demo.planned}").json()
    assert planned["status"] == "planned" and planned["figures"] is None


def test_summary_chart_and_downloads(demo: Demo, client: TestClient) -> None:
    page = client.get(f"/public/summary?year={demo.year}")
    assert page.status_code == 200
    assert f'/public/summary/chart.svg?year={demo.year}' in page.text
    svg = client.get(f"/public/summary/chart.svg?year={demo.year}")
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.lstrip().startswith("<?xml") and "<svg" in svg.text
    assert "<script" not in svg.text and "href=\"http" not in svg.text
    summary = client.get(f"/api/v1/public/summary?year={demo.year}").json()
    assert summary["deployments"] == 3  # running, ended, ended-urgent
    assert summary["totals"]["faces_seen"] == 12800
    assert summary["totals"]["false_alerts"] == 2
    assert client.get("/api/v1/public/summary?year=1800").status_code == 422

    rows = list(csv.DictReader(io.StringIO(client.get("/public/deployments.csv").text)))
    by_site = {r["site"]: r for r in rows}
    assert set(by_site) == {"Riverside Market", "Central Station", "High Street",
                            "Harbour Road"}
    assert by_site["High Street"]["false_alerts"] == "2"
    assert by_site["Harbour Road"]["urgency_reason"] == URGENCY
    r = client.get("/public/deployments.csv")
    assert "attachment" in r.headers["content-disposition"]
    months = list(csv.DictReader(io.StringIO(
        client.get(f"/public/summary.csv?year={demo.year}").text)))
    assert len(months) == 13 and months[-1]["month"] == "total"
    assert months[-1]["alerts"] == "4"
    data = client.get("/public/deployments.json").json()
    assert len(data["deployments"]) == 4


def test_nothing_identifying_on_public_pages(demo: Demo, client: TestClient) -> None:
    forbidden = [SUBJECT_REF, REASON, CAMERA_URL, "10.9.8.7", "camuser", "secretstream",
                 "CROPBYTES", base64.b64encode(CROP).decode()[:24], CROP.hex()[:24],
                 "arrested by a named officer", "Hidden Square", "Draft Avenue", "op1", "ao1"]
    for url in public_urls(demo):
        r = client.get(url)
        assert r.status_code == 200, (url, r.status_code)
        body = r.text
        for marker in forbidden:
            assert marker not in body, (url, marker)
        assert not re.search(r"subject|crop", body.split("<footer")[0], re.IGNORECASE) \
            or url.endswith(".svg"), url


def test_residents_question_flow(gov: Gov, demo: Demo, client: TestClient) -> None:
    url = f"/public/deployments/{demo.ended}"
    page = client.get(url)
    token = META_CSRF.search(page.text).group(1)
    assert "Received: <strong>0</strong>" in page.text
    post = f"{url}/questions"
    text = "Why was this camera placed next to the school gate on a Tuesday?"
    # no CSRF token: refused
    r = client.post(post, data={"kind": "question", "text": text}, follow_redirects=False)
    assert r.status_code == 403
    # the honeypot: answered like a success, nothing stored
    r = client.post(post, data={"kind": "question", "text": text, "website": "http://spam",
                                "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    # too short: a message on the page, the text kept
    r = client.post(post, data={"kind": "question", "text": "why?", "csrf_token": token})
    assert r.status_code == 400 and "at least 10 characters" in r.text and "why?" in r.text
    r = client.post(post, data={"kind": "objection", "text": text, "contact": "me@example.org",
                                "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and re.search(r"\?sent=1&ref=Q-[0-9A-Z]{4}-[0-9A-Z]{4}#questions$",
                                              r.headers["location"])
    page = client.get(r.headers["location"])
    assert "your message was received" in page.text
    assert "Received: <strong>1</strong>" in page.text and text not in page.text
    with gov.db.reading() as s:
        stored = list(s.scalars(select(PublicQuestion)))
    assert len(stored) == 1 and stored[0].kind.value == "objection"
    assert stored[0].contact == "me@example.org"
    # a planned deployment with an urgency reason takes no questions (it is not public)
    r = client.post(f"/public/deployments/{demo.planned_urgent}/questions",
                    data={"kind": "question", "text": text, "csrf_token": token})
    assert r.status_code == 404

    # overseers: the auditor reads but may not answer; the authorising officer answers
    login(client, "au1")
    listed = client.get("/api/v1/questions").json()
    assert [q["text"] for q in listed] == [text]
    qid = listed[0]["id"]
    au_csrf = client.get("/api/v1/auth/me").json()["csrf_token"]
    r = client.post(f"/api/v1/questions/{qid}/answer", json={"answer": "No."},
                    headers={"X-CSRF-Token": au_csrf})
    assert r.status_code == 403
    client.cookies.clear()
    csrf = login(client, "ao1")
    answer = "The camera faced the high street; the school gate was outside its view."
    r = client.post(f"/api/v1/questions/{qid}/answer", json={"answer": answer},
                    headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["status"] == "answered"
    assert r.json()["answered_by"] == "ao1"
    with gov.db.reading() as s:
        entries = list(s.scalars(select(AuditRecord).where(
            AuditRecord.action.in_(["question.received", "question.answer",
                                    "access.refused"])).order_by(AuditRecord.seq)))
    actions = [(e.action, e.actor) for e in entries]
    assert ("question.received", "public") in actions
    assert ("question.answer", "ao1") in actions
    assert ("access.refused", "au1") in actions
    assert all(answer not in e.details and text not in e.details for e in entries)
    r = client.post(f"/api/v1/questions/{qid}/close", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["status"] == "closed"
    r = client.post(f"/api/v1/questions/{qid}/close", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 409 and "already closed" in r.json()["detail"]
    client.cookies.clear()
    page = client.get(url).text
    assert "Received: <strong>1</strong>" in page and "answered: <strong>1</strong>" in page
    assert answer not in page


def test_console_answers_a_question(gov: Gov, demo: Demo, client: TestClient) -> None:
    from openlfr.governance import questions
    qid = questions.submit_question(gov.db, demo.running, "question",
                                    "How long is the footage of this camera kept?", None)
    page = client.get("/login")
    token = META_CSRF.search(page.text).group(1)
    r = client.post("/login", data={"name": "sv1", "password": "correct horse battery staple",
                                    "csrf_token": token, "next": "/console/questions"})
    assert r.status_code == 200 and "How long is the footage" in r.text
    token = META_CSRF.search(r.text).group(1)
    r = client.post(f"/console/questions/{qid}/answer",
                    data={"answer": "Footage of people who do not match is not kept.",
                          "close": "1", "csrf_token": token})
    assert r.status_code == 200
    q = questions.get_question(gov.db, gov.actors["ao1"], qid)
    assert q.status == "closed" and q.answered_by == "sv1"


def test_question_rate_limit(demo: Demo, client: TestClient) -> None:
    url = f"/public/deployments/{demo.planned}"
    token = META_CSRF.search(client.get(url).text).group(1)
    for i in range(5):
        r = client.post(f"{url}/questions", data={"kind": "question", "csrf_token": token,
                                                   "text": f"Question number {i} about this"},
                        follow_redirects=False)
        assert r.status_code == 303
    r = client.post(f"{url}/questions", data={"kind": "question", "csrf_token": token,
                                               "text": "One question too many today"})
    assert r.status_code == 429 and "Too many messages" in r.text
    r = client.post(f"{url}/questions", data={"kind": "question", "csrf_token": token,
                                               "text": "x" * 40_000})
    assert r.status_code == 413
