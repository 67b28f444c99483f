"""Consultation before a deployment, the whole way in a real browser (``openlfr serve`` on a
fresh data directory, headless Debian Chromium): the operator publishes a plan with a
consultation period as proposed; the public pages show it, with where, when, why, the
alternatives considered and the end of the period; a resident objects through the form; the
period ends (its times set in the past through the service, no sleeping); the authorising
officer cannot authorise yet, records a response to the comments and authorises; the public
page shows the response. Screenshots go to the test's tmp dir and /tmp/openlfr-shots."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from openlfr.config import Settings
from openlfr.governance import deployments as deps
from openlfr.governance import users, watchlists
from openlfr.governance.authz import Actor
from openlfr.governance.system import initialise
from openlfr.store.enums import Role
from tests.govfix import Gov, fill_authorisation, ready_to_authorise
from tests.test_gov_deployments import REASON, approved_watchlist, plan
from tests.test_web_browser import LAUNCH_ARGS, PASSWORD
from tests.test_web_governance import people, post  # noqa: F401
from tests.test_web_serve import CHROMIUM, SHOTS, server_factory  # noqa: F401

ALTERNATIVES = ("Extra foot patrols for six weeks found none of the people wanted; CCTV "
                "review after the fact cannot stop a person at the gate.")
OBJECTION = "Please keep the cameras away from the school entrance on the north side."
RESPONSE = ("Thank you for the comment received. No camera will face the school entrance: "
            "the only camera looks at the station's gate 3.")
OP1 = Actor("op1", Role.OPERATOR)


def prepare(data: Path, face: Path) -> int:
    """A fresh installation with staff, an approved watchlist and a complete draft with a
    14-day consultation period, not yet published."""
    system, _ = initialise(Settings(data_dir=data))
    try:
        users.create_first_admin(system.db, "admin", PASSWORD)
        admin = Actor("admin", Role.ADMIN)
        for name, role in (("op1", Role.OPERATOR), ("ao1", Role.AUTHORISING_OFFICER)):
            users.add_user(system.db, admin, name, role, PASSWORD)
        ao1 = Actor("ao1", Role.AUTHORISING_OFFICER)
        wl = watchlists.create_watchlist(system, OP1, "wanted",
                                         "Locate people wanted by the courts at the station")
        watchlists.add_subject(system, OP1, wl.id, "Case 2026/117", "wanted_by_court", REASON,
                               datetime.now(UTC) + timedelta(days=30),
                               [(face.read_bytes(), "custody record 117")])
        watchlists.approve_watchlist(system.db, ao1, wl.id)
        dep_id = deps.create(system.db, OP1, replace(
            plan((wl.id,)), alternatives=ALTERNATIVES, consultation_days=14),
            keyring=system.keyring)
        ready_to_authorise(system.db, admin, dep_id)
        return dep_id
    finally:
        system.close()


def end_the_period(data: Path, dep_id: int) -> None:
    """Publish again as if 15 days ago: the 14-day period ended yesterday."""
    system, _ = initialise(Settings(data_dir=data))
    try:
        deps.propose(system.db, OP1, dep_id, now=datetime.now(UTC) - timedelta(days=15))
    finally:
        system.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium")
def test_consultation_the_whole_way(tmp_path: Path, face_images,
                                    server_factory: type,  # noqa: F811
                                    ) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    data = tmp_path / "data"
    dep_id = prepare(data, face_images["obama"])
    server = server_factory.start(data)
    server.wait_up(90.0)
    shots = tmp_path / "shots"
    shots.mkdir()
    problems: list[str] = []

    def shot(page: object, name: str) -> None:
        page.screenshot(path=str(shots / f"engage-{name}.png"), full_page=True)  # type: ignore[attr-defined]

    def watch(page: object) -> None:
        page.on("console", lambda m: problems.append(m.text)  # type: ignore[attr-defined]
                if m.type == "error" else None)
        page.on("response", lambda r: problems.append(  # type: ignore[attr-defined]
            f"{r.request.method} {r.url}: {r.status}") if r.status >= 400 else None)

    def sign_in(browser: object, name: str) -> object:
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
        page = ctx.new_page()
        watch(page)
        page.goto(f"{server.url}/login?next=/console/deployments/{dep_id}")
        page.fill("#name", name)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{server.url}/console/deployments/{dep_id}")
        return page

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=LAUNCH_ARGS)
        try:
            # a draft is not public yet
            public = browser.new_page(viewport={"width": 1280, "height": 900})
            watch(public)
            public.goto(f"{server.url}/public")
            expect(public.locator("main")).not_to_contain_text("Central station")

            # 1. the operator publishes the plan as proposed
            op = sign_in(browser, "op1")
            expect(op.locator("#consultation-state")).to_contain_text("not published yet")
            op.click("button:has-text('Publish as proposed')")
            expect(op.locator("main")).to_contain_text("Published as proposed")
            expect(op.locator("#consultation-state")).to_contain_text("open: comments until")
            shot(op, "console-proposed")

            # 2. the public pages list it as proposed, with the period's end
            public.goto(f"{server.url}/public")
            card = public.locator("article.card", has_text="Central station")
            expect(card).to_contain_text("Proposed")
            expect(card).to_contain_text("comments open until")
            expect(card).to_contain_text("Locate people wanted by the courts")
            shot(public, "public-index-proposed")
            card.locator("text=Comment on this proposal").click()
            expect(public.locator("#consultation")).to_contain_text("it has not been authorised")
            expect(public.locator("#alternatives")).to_contain_text("Extra foot patrols")

            # 3. a resident objects through the questions form
            public.check("input[name=kind][value=objection]")
            public.fill("#q-text", OBJECTION)
            public.click("#questions button[type=submit]")
            expect(public.locator("#questions")).to_contain_text("Your reference is")
            expect(public.locator("#consultation")).to_contain_text(
                "Comments received since it was proposed: 1")
            shot(public, "public-commented")

            # 4. the period ends (set in the past through the service)
            end_the_period(data, dep_id)

            # 5. the authorising officer cannot authorise before responding
            ao = sign_in(browser, "ao1")
            expect(ao.locator("#consultation-state")).to_contain_text("a response to the "
                                                                      "comments is needed")
            expect(ao.locator("main")).to_contain_text("Alternatives considered")
            fill_authorisation(ao)
            ao.click("button:has-text('Authorise')")
            expect(ao.locator("#form-error")).to_contain_text("response to the comments")
            ao.fill("#c-response", RESPONSE)
            ao.click("text=Record the response")
            expect(ao.locator("main")).to_contain_text("The response to the consultation is "
                                                       "recorded")
            fill_authorisation(ao)
            ao.click("button:has-text('Authorise')")
            ao.wait_for_url(re.compile(r".*done=authorised.*"))
            expect(ao.locator("h1")).to_contain_text("authorised")
            shot(ao, "console-authorised")

            # 6. the public page shows the response with the deployment, now planned
            public.goto(f"{server.url}/public/deployments/{dep_id}")
            expect(public.locator("h1")).to_contain_text("Planned")
            expect(public.locator("#consultation-response")).to_contain_text(
                "No camera will face the school entrance")
            expect(public.locator("#consultation")).to_contain_text("before the response: 1")
            expect(public.locator("#shared")).to_contain_text("Nothing has been exported")
            shot(public, "public-response")
        finally:
            browser.close()
    # the one refusal shown (409), as the response and in the browser's console; nothing else
    assert [m for m in problems if "409" not in m] == [], problems
    assert server.terminate() == 0
    SHOTS.mkdir(exist_ok=True)
    for f in shots.iterdir():
        shutil.copy(f, SHOTS / f.name)


def test_the_api_and_the_console_take_the_same_rules(gov: Gov, app, people,  # noqa: F811
                                                     face_images) -> None:
    """The JSON API and the console forms: alternatives required, propose, response refused
    during the period and recorded after it, the export's purpose and recipient checked; the
    public JSON shows the proposal and what was shared."""
    from fastapi.testclient import TestClient

    from openlfr.web import tokens as tok
    auth = {name: {"Authorization": "Bearer " + tok.create_token(
        gov.db, gov.actors["admin"], name, "test")[1]} for name in ("op1", "ao1", "au1")}
    wid = approved_watchlist(gov, face_images["obama"])
    now = datetime.now(UTC)
    body = {"name": "API plan", "site": "Market square", "location": "North corner",
            "purpose": "Locate people wanted by the courts", "legal_basis": "Common law",
            "dpia_ref": "D-1", "equality_ref": "E-1", "planned_start": now.isoformat(),
            "planned_end": (now + timedelta(days=40)).isoformat(), "signage": True,
            "public_notice": True, "watchlist_ids": [wid],
            "cameras": [{"name": "gate", "source": "0"}]}
    c = TestClient(app)
    r = c.post("/api/v1/deployments", json=body, headers=auth["op1"])
    assert r.status_code == 400 and "less intrusive alternatives" in r.json()["detail"]
    r = c.post("/api/v1/deployments", json={**body, "alternatives": ALTERNATIVES},
               headers=auth["op1"])
    assert r.status_code == 201, r.text
    dep_id = r.json()["id"]
    r = c.post(f"/api/v1/deployments/{dep_id}/authorise", headers=auth["ao1"])
    assert r.status_code == 409 and "longer than 30 days" in r.json()["detail"]
    r = c.patch(f"/api/v1/deployments/{dep_id}", json={"consultation_days": 21},
                headers=auth["op1"])
    assert r.status_code == 200 and r.json()["changed"] == ["consultation_days"]
    r = c.post(f"/api/v1/deployments/{dep_id}/propose", headers=auth["op1"])
    assert r.status_code == 200 and r.json()["consultation"] == "open"
    r = c.post(f"/api/v1/deployments/{dep_id}/consultation-response",
               json={"response": RESPONSE}, headers=auth["ao1"])
    assert r.status_code == 409 and "once it has ended" in r.json()["detail"]
    public = c.get(f"/api/v1/public/deployments/{dep_id}").json()
    assert public["status"] == "proposed" and public["alternatives"] == ALTERNATIVES
    assert public["consultation_ends_at"] and public["consultation_response"] is None

    # the console: the same refusal, shown on the page (409), and the response form absent
    ao1 = people("ao1")
    r = post(ao1, f"/console/deployments/{dep_id}/authorise",
             page=f"/console/deployments/{dep_id}")
    assert r.status_code == 409 and "public consultation runs until" in r.text  # type: ignore[attr-defined]
    assert "Record the response" not in r.text  # type: ignore[attr-defined]

    # exports: the purpose and the recipient, from the fixed lists only
    r = c.post("/api/v1/audit/export?recipient=the%20press", headers=auth["au1"])
    assert r.status_code == 400 and "recipient" in r.json()["detail"]
    r = c.post("/api/v1/audit/export?purpose=complaint&recipient=data_subject",
               headers=auth["au1"])
    assert r.status_code == 200
    r = post(people("au1"), "/console/audit/export",
             {"what": "log", "purpose": "audit", "recipient": "oversight"},
             page="/console/audit")
    assert r.status_code == 200  # type: ignore[attr-defined]
    shared = {(x["what"], x["purpose"], x["recipient"]): x["count"]
              for x in c.get("/api/v1/public/shared").json()["shared"]}
    assert shared[("audit_export", "complaint", "data_subject")] == 1
    assert shared[("audit_export", "audit", "oversight")] == 1
    page = c.get("/public").text
    assert "<td>a subject access request</td>" not in page
    assert "<td>a complaint</td>" in page and "<td>the person the data is about</td>" in page
