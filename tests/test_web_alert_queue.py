"""The alert queue at volume through the web: the console's filters and pages (bookmarkable,
bad values said and the page still shown), the same filters on ``GET /api/v1/alerts`` (total
and Link headers), a card's images counted with its view (one ``alert.view`` per session),
enlarging audited, and the decision history kept on the alert's page after a decision.
SQLite and PostgreSQL (``gov``), FastAPI's TestClient."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from tests.govfix import Gov, audit_records
from tests.test_gov_alert_pages import _many
from tests.test_gov_alerts import _stored
from tests.test_web_alerts import page_csrf, setup_alerts
from tests.test_web_core import login


def _ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'data-alert-id="(\d+)"', html)]


def test_queue_filters_and_pages(gov: Gov, client: TestClient,
                                 face_images: dict[str, Path]) -> None:
    st = setup_alerts(gov, face_images)
    _, rows = _many(gov, st, 240)
    login(client, "op1")
    pending = sorted((int(r["id"]) for r in rows if r["status"].value == "pending"),  # type: ignore[attr-defined]
                     reverse=True)
    everything = sorted((int(r["id"]) for r in rows), reverse=True)
    # the default: pending alerts, 50 a page, newest first, with the total and a next page
    r = client.get("/console/alerts")
    assert r.status_code == 200
    assert _ids(r.text) == pending[:50]
    assert f"Alerts 1–50 of {len(pending)}, newest first" in r.text
    seen: list[int] = []
    url: str | None = "/console/alerts?status=all"
    while url:
        page = client.get(url.replace("&amp;", "&")).text
        seen += _ids(page)
        m = re.search(r'href="([^"]+)" rel="next"', page)
        url = m.group(1) if m else None
    assert len(everything) > 200 and seen == everything  # none lost past 200, none twice
    # and back: the newer link of the last page
    m = re.search(r'href="([^"]+)" rel="prev"', page)
    assert m and "status=all" in m.group(1)
    top = everything.index(_ids(page)[0])  # the 50 just newer than the last page
    assert _ids(client.get(m.group(1).replace("&amp;", "&")).text) == everything[top - 50:top]
    # filters in the URL: a bookmark; the form shows them back
    hall = sorted((int(r["id"]) for r in rows if r["camera"] == "hall"
                   and 0.5 <= r["score"] <= 0.7), reverse=True)  # type: ignore[operator]
    q = (f"/console/alerts?deployment={st.deployment_id}&camera=hall&status=all"
         "&min_score=0.5&max_score=0.7")
    r = client.get(q)
    mine = [i for i in hall if any(x["id"] == i and x["deployment_id"] == st.deployment_id
                                   for x in rows)]
    assert _ids(r.text) == mine[:50] and 'value="hall"' in r.text and 'value="0.5"' in r.text
    # a time range, as the form sends it (UTC, no zone), labelled with its zone
    r = client.get("/console/alerts?status=all&since=2026-06-01T09:00&until=2026-06-01T09:10")
    assert len(_ids(r.text)) == 10 and "Seen from <span class=\"muted\">(UTC)</span>" in r.text
    # bad values: each named, the page still shown (without them)
    r = client.get("/console/alerts?status=all&min_score=high&since=tomorrow&camera=hall")
    assert r.status_code == 400
    assert "Score from: min_score &#39;high&#39; is not a number" in r.text
    assert "Seen from: since &#39;tomorrow&#39;" in r.text and 'value="tomorrow"' in r.text
    assert 'aria-invalid="true"' in r.text and _ids(r.text)  # the alerts, filtered by camera
    assert "no_action" not in re.sub(r'value="[^"]*"|class="[^"]*"', "", r.text)


def test_api_filters_total_and_links(gov: Gov, client: TestClient,
                                     face_images: dict[str, Path]) -> None:
    st = setup_alerts(gov, face_images)
    _, rows = _many(gov, st, 60)
    login(client, "au1")
    gate = sorted((int(r["id"]) for r in rows if r["camera"] == "gate"), reverse=True)
    r = client.get("/api/v1/alerts?camera=gate&limit=7")
    assert r.status_code == 200 and [a["id"] for a in r.json()] == gate[:7]
    assert r.headers["x-total-count"] == str(len(gate))
    nxt = re.search(r'<([^>]+)>; rel="next"', r.headers["link"])
    assert nxt and "camera=gate" in nxt.group(1) and f"before={gate[6]}" in nxt.group(1)
    r = client.get(nxt.group(1))
    assert [a["id"] for a in r.json()] == gate[7:14] and 'rel="prev"' in r.headers["link"]
    r = client.get("/api/v1/alerts?since=2026-06-01T08:10Z&until=2026-06-01T08:20Z"
                   "&status=decided")
    assert {a["status"] for a in r.json()} <= {"confirmed", "rejected", "no_action"}
    assert len(r.json()) == 6
    for bad, field in (("since=08:00", "since"), ("status=maybe", "status"),
                       ("min_score=0.7&max_score=0.5", "max_score")):
        r = client.get(f"/api/v1/alerts?{bad}")
        assert r.status_code == 400 and field in r.text, (bad, r.text)


def test_card_views_enlarging_and_history(gov: Gov, client: TestClient,
                                          face_images: dict[str, Path]) -> None:
    st = setup_alerts(gov, face_images)
    ids = [_stored(gov, st, alert_id=f"cam1:{i}:s", track=i) for i in (1, 2)]
    login(client, "op1")
    for _ in range(3):  # the queue, reloaded, and each card's two images
        page = client.get("/console/alerts").text
        for src in re.findall(r'<img src="(/console/alerts/\d+/[a-z]+\.jpg[^"]*)"', page):
            r = client.get(src.replace("&amp;", "&"))
            assert r.status_code == 200 and r.headers["cache-control"].startswith("no-store")
    assert sorted(int(e.object_id) for e in audit_records(gov, "alert.view")) == sorted(ids)
    assert not audit_records(gov, "alert.view_crop")
    assert not audit_records(gov, "subject_image.view")
    # enlarging: the full-resolution images, each fetch on record
    for which in ("crop", "reference"):
        assert client.get(f"/console/alerts/{ids[0]}/{which}.jpg?in=enlarge").status_code == 200
    assert [(e.actor, e.object_id) for e in audit_records(gov, "alert.enlarge")] == [
        ("op1", str(ids[0]))] * 2
    # the reference opened on its own: on record as ever
    assert client.get(f"/console/alerts/{ids[0]}/reference.jpg").status_code == 200
    assert len(audit_records(gov, "subject_image.view")) == 1
    # a decision from the alert's page (the page's script asks for the card back): the
    # history stays on the page
    here = f"/console/alerts/{ids[0]}"
    token = page_csrf(client, here)
    r = client.post(f"{here}/decide", data={"csrf_token": token, "decision": "reject",
                                            "reason_choice": "not_same", "here": here,
                                            "fragment": "1"})
    assert r.status_code == 200 and "Recorded as a false alert." in r.text
    assert "Decision history" in r.text and "op1</strong>: rejected (false alert)" in r.text
    assert "Not the same person" in r.text
    # from the queue, the card stays short
    r = client.post(f"/console/alerts/{ids[1]}/decide", data={
        "csrf_token": token, "decision": "confirm", "here": "/console/alerts",
        "fragment": "1"})
    assert r.status_code == 200 and "Decision history" not in r.text
    # the views, for those who may read audit data
    assert "Viewed" not in client.get(here).text
    login(client, "au1")
    page = client.get(here).text
    assert re.search(r"op1</strong>: \d+ views in 1 session", page), page
