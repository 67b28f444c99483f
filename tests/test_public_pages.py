"""The public pages answer residents (SQLite and PostgreSQL): people passing instead of face
detections, the plain answers to what residents ask first, references for questions and the
answers an overseer publishes (redacted), plurals and the empty year."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from html import unescape

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from openlfr.governance import floors, questions
from openlfr.redact import REMOVED, redact_personal
from openlfr.store.models import AuditRecord, PublicQuestion
from openlfr.web.app import create_app
from openlfr.web.render import _noun, _plural
from tests.govfix import Gov, database_at
from tests.test_web_core import META_CSRF, login
from tests.test_web_public import CAMERA_URL, REASON, SUBJECT_REF, Demo, populate


@pytest.fixture()
def demo(gov: Gov) -> Demo:
    return populate(gov.db)


@pytest.fixture()
def client(gov: Gov) -> Iterator[TestClient]:
    with TestClient(create_app(gov.system), base_url="http://testserver") as c:
        yield c


def visible(html: str) -> str:
    """The page's text, tags removed and white space folded (what a reader sees)."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


# -- plurals -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "args", "expected"), [
    (1, ("person",), "1 person"), (2, ("person",), "2 people"), (0, ("person",), "0 people"),
    (1, ("deployment",), "1 deployment"), (1200, ("deployment",), "1,200 deployments"),
    (1, ("alert",), "1 alert"), (3, ("match",), "3 matches"), (1.0, ("hour",), "1 hour"),
    (2.5, ("hour",), "2.5 hours"), (None, ("day",), "— days"),
    (2, ("face detection",), "2 face detections"), (1, ("entry",), "1 entry"),
])
def test_the_plural_filter(n: float | None, args: tuple[str, ...], expected: str) -> None:
    assert _plural(n, *args) == expected
    assert _noun(n, *args) == expected.split(" ", 1)[1]


def test_no_public_page_says_1_people_or_1_deployments(gov: Gov, client: TestClient) -> None:
    """One deployment that saw one person with one alert: every public page in the singular."""
    from datetime import timedelta

    from openlfr.store.enums import DeploymentStatus
    from openlfr.store.models import Camera, CameraStats
    from tests.test_web_public import _deployment

    now = datetime.now(UTC)
    with gov.db.session() as s:
        d = _deployment("Op One", "Market Square", DeploymentStatus.ENDED,
                        now - timedelta(hours=3), 2, started_at=now - timedelta(hours=3),
                        ended_at=now - timedelta(hours=1))
        s.add(d)
        s.flush()
        s.add(Camera(deployment_id=d.id, name="cam", display="file.avi"))
        s.add(CameraStats(deployment_id=d.id, camera="cam", frames=50, faces_seen=1, tracks=1,
                          seconds=3600.0))
        dep_id = d.id
    wrong = re.compile(r"\b1 (people|deployments|alerts|hours|cameras|persons|days|questions)\b")
    for url in ("/public", f"/public/deployments/{dep_id}", f"/public/summary?year={now.year}"):
        page = visible(client.get(url).text)
        assert not wrong.search(page), (url, wrong.search(page))
    index = visible(client.get("/public").text)
    assert f"1 deployment in {now.year}" in index and "1 person passing" in index
    page = visible(client.get(f"/public/deployments/{dep_id}").text)
    assert "1 person passing" in page and "of 1 camera" not in page
    assert "no false alert in 1 person passing" in page


# -- people passing ----------------------------------------------------------------------------

def test_people_passing_are_published_and_the_rate_is_per_person(demo: Demo,
                                                                 client: TestClient) -> None:
    page = visible(client.get(f"/public/deployments/{demo.ended}").text)
    # the key figures come first, before the plan
    assert page.index("4,000 people passing") < page.index("The plan")
    assert "1 in 2,000 people passing" in page  # 2 false alerts, 4,000 people
    # the detections are a labelled technical figure, with how the count is made
    assert "Technical figure: 12,000 face detections" in page
    assert "How people passing are counted" in page
    assert "counts too many" in page and "counts too few" in page
    assert "Faces seen" not in page

    index = visible(client.get("/public").text)
    assert "People passing" in index and "false alerts per person passing" in index
    assert "Faces seen" not in index
    this_year = client.get("/api/v1/public/summary").json()
    if this_year["totals"]["people_passing"]:  # the index's answer about the threshold
        t = this_year["totals"]
        assert (f"In {this_year['year']}, there were {t['false_alerts']} false alerts for "
                f"{t['people_passing']:,} people passing the cameras") in index
    summary = client.get(f"/api/v1/public/summary?year={demo.year}").json()
    assert summary["totals"]["people_passing"] == 4300  # ended 4,000 + running 300
    assert summary["totals"]["false_alert_rate"] == pytest.approx(2 / 4300)
    rows = {r["site"]: r for r in csv.DictReader(io.StringIO(
        client.get("/public/deployments.csv").text))}
    assert rows["High Street"]["people_passing"] == "4000"
    assert rows["High Street"]["faces_seen"] == "12000"
    assert rows["High Street"]["false_alert_rate"] == "0.0005"
    year = visible(client.get(f"/public/summary?year={demo.year}").text)
    assert "4,300 people passing" in year and "per person passing" in year


# -- what residents ask first ------------------------------------------------------------------

QUESTIONS = ("What happens to my face if I am not on the list?", "What does the threshold mean?",
             "How long are things kept?", "Who is responsible, and how do I complain?",
             "Where can I read the impact assessments?")


def test_residents_first_questions_are_answered_from_settings_and_data(
        gov: Gov, demo: Demo, client: TestClient) -> None:
    settings = gov.system.settings
    for url in ("/public", f"/public/deployments/{demo.ended}"):
        page = visible(client.get(url).text)
        for q in QUESTIONS:
            assert q in page, (url, q)
        assert "Nothing is kept" in page and "automated tests" in page
        assert f"within {settings.watchlist_destroy_hours} hours" in page
        assert f"deleted after {settings.retention_days} days" in page
        assert "Information Commissioner" in page and "ico.org.uk/make-a-complaint" in page

    page = visible(client.get(f"/public/deployments/{demo.ended}").text)
    # no calibration recorded: the default floor's measurement on LFW
    assert "similar to a picture on the watchlist" in page and "0.48" in page
    assert "1 in 100 searches for people not on a list of 1,000 people" in page
    assert "2 false alerts in 4,000 people passing" in page
    assert "DPIA-2026-014" in page and "Ask for them by their reference" in page

    # the settings say who is responsible, where to complain and where the assessments are
    settings.responsible_body = "the Metropolitan Police Service"
    settings.complaints_url = "https://example.police.uk/complaints"
    settings.complaints_contact = "dpo@example.police.uk"
    settings.impact_assessments_url = "https://example.police.uk/lfr/assessments"
    settings.retention_days = 14
    settings.regulator_url = "https://ico.org.uk/make-a-complaint/"
    html = client.get(f"/public/deployments/{demo.ended}").text
    page = visible(html)
    assert "The Metropolitan Police Service is responsible" in page
    assert 'href="https://example.police.uk/complaints"' in html
    assert "dpo@example.police.uk" in page and "deleted after 14 days" in page
    assert 'href="https://example.police.uk/lfr/assessments"' in html
    assert 'href="https://ico.org.uk/make-a-complaint/"' in html

    # a calibration recorded for the model: its measured rate, at its list size
    floors.record_floor(gov.db, gov.actors["admin"], "sface-2021dec", 0.45, {
        "fpir": {"fpir": "0.002", "searches": 50000}, "watchlist_size": 500,
        "dataset": {"identities": 1200}, "target_fpir": "0.005"})
    page = visible(client.get(f"/public/deployments/{demo.ended}").text)
    assert "1 in 500 searches for people not on a list of 500 people" in page
    assert "the operator's own test photos (1,200 people)" in page
    assert "this deployment's threshold is higher, so it gives fewer" in page


def test_the_settings_refuse_a_complaints_address_that_is_not_a_web_address() -> None:
    from pydantic import ValidationError

    from openlfr.config import Settings

    with pytest.raises(ValidationError, match="not a web address"):
        Settings(complaints_url="javascript:alert(1)")
    assert Settings(complaints_url="  ").complaints_url is None


# -- questions answered in public --------------------------------------------------------------

def test_redact_personal_removes_what_a_machine_can_find() -> None:
    sent = ("My name is Jane Doe, write to jane.doe@example.org or call +44 (0)20 7946 0958; "
            "I live at SW1A 1AA, see www.example.org/me. Why at 3 pm in 2026? Regards, Bob Lee")
    out = redact_personal(sent)
    for gone in ("Jane", "Doe", "jane.doe", "7946", "SW1A", "example.org", "Bob", "Lee"):
        assert gone not in out, gone
    assert out.count(REMOVED) == 6
    assert "Why at 3 pm in 2026?" in out  # short numbers and ordinary words stay
    assert redact_personal("I am worried about the cameras.") == "I am worried about the cameras."


def test_a_question_gets_a_reference_and_its_published_answer_is_redacted(
        gov: Gov, demo: Demo, client: TestClient) -> None:
    url = f"/public/deployments/{demo.ended}"
    token = META_CSRF.search(client.get(url).text).group(1)  # type: ignore[union-attr]
    sent = ("My name is Jane Doe and I live next to the station (jane@example.org). "
            "Were the cameras switched off at night?")
    r = client.post(f"{url}/questions", data={"kind": "question", "text": sent,
                                              "contact": "07700 900123",
                                              "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    ref = re.search(r"ref=(Q-[0-9A-Z]{4}-[0-9A-Z]{4})", r.headers["location"]).group(1)  # type: ignore[union-attr]
    page = client.get(r.headers["location"]).text
    assert f'<strong class="reference">{ref}</strong>' in page
    # a reference that is not one is not echoed
    assert "Your reference" not in client.get(f"{url}?sent=1&ref=<b>x</b>").text
    # references are random, not a sequence: many of them share no order with the ids
    refs = [questions.new_reference() for _ in range(200)]
    assert len(set(refs)) == 200 and all(questions.REFERENCE_PATTERN.fullmatch(x) for x in refs)
    assert refs != sorted(refs)
    with gov.db.reading() as s:
        q = s.scalars(select(PublicQuestion)).one()
        assert q.reference == ref and q.published_at is None
    qid = q.id
    # nothing is public before it is answered and published
    assert "Were the cameras switched off" not in client.get(url).text

    csrf = login(client, "ao1")
    h = {"X-CSRF-Token": csrf}
    r = client.post(f"/api/v1/questions/{qid}/publish", json={}, headers=h)
    assert r.status_code == 409 and "no answer" in r.json()["detail"]
    answer = ("Yes, from 22:00. Jane, call 020 7946 0000 if you want to know more.")
    assert client.post(f"/api/v1/questions/{qid}/answer", json={"answer": answer},
                       headers=h).status_code == 200
    r = client.post(f"/api/v1/questions/{qid}/publish", json={}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["reference"] == ref and body["published_by"] == "ao1"
    assert "Jane Doe" not in body["public_text"] and "jane@example.org" not in body["public_text"]
    assert "020 7946 0000" not in body["public_answer"]

    html = client.get(url).text
    page = visible(html)
    assert f'id="{ref}"' in html and "Were the cameras switched off at night?" in page
    assert "Yes, from 22:00." in page
    for secret in ("Jane Doe", "jane@example.org", "07700 900123", "7946 0000"):
        assert secret not in html, secret
    api = client.get(f"/api/v1/public/deployments/{demo.ended}").json()
    assert [a["reference"] for a in api["answers"]] == [ref]
    assert "jane@example.org" not in json.dumps(api)

    # the overseer edits the published question (a name the machine cannot find)
    r = client.post(f"/api/v1/questions/{qid}/publish", headers=h, json={
        "public_text": "Were the cameras next to Mr Smith's shop switched off at night?"})
    assert r.status_code == 200
    r = client.post(f"/api/v1/questions/{qid}/publish", headers=h, json={
        "public_text": "Were the cameras switched off at night (name removed)?"})
    page = visible(client.get(url).text)
    assert "Were the cameras switched off at night (name removed)?" in page
    assert "Smith" not in page

    # audited, with digests only
    with gov.db.reading() as s:
        entries = list(s.scalars(select(AuditRecord).where(
            AuditRecord.action.in_(["question.publish", "question.unpublish"]))
            .order_by(AuditRecord.seq)))
    assert [e.action for e in entries] == ["question.publish"] * 3
    assert all(e.actor == "ao1" and "Jane" not in e.details and "Smith" not in e.details
               and "question_sha256" in e.details for e in entries)

    # an auditor reads but may not publish; withdrawing is audited and removes it
    client.cookies.clear()
    au = login(client, "au1")
    r = client.post(f"/api/v1/questions/{qid}/unpublish", headers={"X-CSRF-Token": au})
    assert r.status_code == 403
    client.cookies.clear()
    h = {"X-CSRF-Token": login(client, "ao1")}
    assert client.post(f"/api/v1/questions/{qid}/unpublish", headers=h).status_code == 200
    assert "Were the cameras switched off" not in client.get(url).text
    r = client.post(f"/api/v1/questions/{qid}/unpublish", headers=h)
    assert r.status_code == 409 and "not published" in r.json()["detail"]


def test_the_console_publishes_and_withdraws_an_answer(gov: Gov, demo: Demo,
                                                       client: TestClient) -> None:
    received = questions.receive_question(gov.db, demo.ended, "objection",
                                          "I object to cameras at the market, call 0161 496 0000",
                                          "me@example.org")
    questions.answer_question(gov.db, gov.actors["ao1"], received.id,
                              "The market is outside the deployment's area.")
    login(client, "sv1")
    page = client.get("/console/questions?status=all")
    assert received.reference in page.text and "Publish with its answer" in page.text
    token = META_CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    r = client.post(f"/console/questions/{received.id}/publish", follow_redirects=False,
                    data={"csrf_token": token, "public_text": "I object to cameras at the "
                          "market, call 0161 496 0000"})
    assert r.status_code == 303
    page = client.get("/console/questions?status=all").text
    assert "Published on the public page by sv1" in page and "Publish again" in page
    public = visible(client.get(f"/public/deployments/{demo.ended}").text)
    assert "I object to cameras at the market, call [removed]" in public
    assert "0161" not in public and "me@example.org" not in public
    # the answer changes: the console says the published one is out of date
    questions.answer_question(gov.db, gov.actors["ao1"], received.id, "Reviewed: it is not.")
    assert "the answer changed since" in client.get("/console/questions?status=all").text
    r = client.post(f"/console/questions/{received.id}/publish", follow_redirects=False,
                    data={"csrf_token": token, "withdraw": "1"})
    assert r.status_code == 303
    assert "I object to cameras" not in client.get(f"/public/deployments/{demo.ended}").text
    # without a CSRF token: refused
    r = client.post(f"/console/questions/{received.id}/publish", data={"public_text": "x"},
                    follow_redirects=False)
    assert r.status_code in (400, 403)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_migration_gives_questions_already_stored_a_reference(kind: str, tmp_path) -> None:
    with database_at(kind, tmp_path, "0006") as db:
        when = datetime(2026, 11, 1)
        with db.engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO deployments (id, name, site, location, purpose, legal_basis, "
                "dpia_ref, equality_ref, planned_start, planned_end, threshold, model_id, "
                "status, created_by, created_at, signage, public_notice, two_person_rule) "
                "VALUES (1, 'd', 's', 'l', 'p', 'b', 'x', 'y', :t, :t, 0.5, 'sface', "
                "'ended', 'op1', :t, :no, :no, :no)"), {"t": when, "no": False})
            for i in (1, 2, 3):
                conn.execute(text(
                    "INSERT INTO public_questions (id, deployment_id, kind, text, created_at, "
                    "status) VALUES (:i, 1, 'question', 'why here and not there?', :t, "
                    "'open')"), {"i": i, "t": when})
        db.upgrade()
        with db.engine.connect() as conn:
            refs = [r for (r,) in conn.execute(text(
                "SELECT reference FROM public_questions ORDER BY id"))]
        assert len(set(refs)) == 3
        assert all(questions.REFERENCE_PATTERN.fullmatch(r) for r in refs)


# -- empty states ------------------------------------------------------------------------------

def test_an_empty_year_says_so_instead_of_an_empty_chart(demo: Demo, client: TestClient) -> None:
    page = client.get("/public/summary?year=2031")
    assert page.status_code == 200
    assert "No deployments in 2031" in visible(page.text)
    assert "chart.svg" not in page.text and "<table" not in page.text
    assert "chart.svg" in client.get(f"/public/summary?year={demo.year}").text


def test_an_installation_without_deployments_says_so(client: TestClient) -> None:
    year = datetime.now(UTC).year
    page = visible(client.get("/public").text)
    assert f"No deployments in {year} so far" in page
    assert "No deployment is planned or running" in page
    for q in QUESTIONS:  # the answers are there before the first deployment
        assert q in page
    assert f"No deployments in {year}" in visible(client.get("/public/summary").text)


def test_public_pages_still_leak_nothing(demo: Demo, client: TestClient) -> None:
    for url in ("/public", f"/public/deployments/{demo.ended}", "/public/summary"):
        body = client.get(url).text
        for secret in (SUBJECT_REF, REASON, CAMERA_URL, "campass"):
            assert secret not in body, (url, secret)
