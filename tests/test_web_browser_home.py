"""The console's home page in a real browser (``openlfr serve``, headless Debian Chromium):
an operator and an authorising officer each see what waits for them and not what waits for
the other, follow a link from the home page to where the item is dealt with, deal with it, and
find it gone from the home page; a refused page still knows who is signed in.

Screenshots are saved in the test's tmp dir and copied to /tmp/openlfr-shots.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from openlfr.config import Settings
from openlfr.governance import deployments as deps
from openlfr.governance import users, watchlists
from openlfr.governance.authz import Actor
from openlfr.governance.system import initialise
from openlfr.store.enums import AlertStatus, Role
from openlfr.store.models import Alert
from tests.govfix import authorise
from tests.test_gov_deployments import REASON, plan
from tests.test_web_browser import LAUNCH_ARGS
from tests.test_web_serve import CHROMIUM, SHOTS, server_factory  # noqa: F401

PASSWORD = "a long test password"


@dataclass
class Seeded:
    wl_by_op1: int
    wl_by_ao1: int
    dep_by_op1: int
    dep_by_ao1: int
    alerts: list[int]


def prepare(data: Path, face: Path) -> Seeded:
    """Staff; a draft watchlist built by op1 and one built by ao1; complete draft deployments
    created by op1 and by ao1; an authorised deployment (never started) with two pending
    alerts."""
    system, _ = initialise(Settings(data_dir=data))
    try:
        users.create_first_admin(system.db, "admin", PASSWORD)
        admin = Actor("admin", Role.ADMIN)
        for name, role in (("op1", Role.OPERATOR), ("ao1", Role.AUTHORISING_OFFICER),
                           ("ao2", Role.AUTHORISING_OFFICER)):
            users.add_user(system.db, admin, name, role, PASSWORD)
        op1, ao1 = Actor("op1", Role.OPERATOR), Actor("ao1", Role.AUTHORISING_OFFICER)
        ao2 = Actor("ao2", Role.AUTHORISING_OFFICER)

        def watchlist(actor: Actor, name: str) -> int:
            wl = watchlists.create_watchlist(system, actor, name,
                                             "Locate people wanted by the courts at the station")
            watchlists.add_subject(system, actor, wl.id, f"Case of {name}", "wanted_by_court",
                                   REASON, datetime.now(UTC) + timedelta(days=30),
                                   [(face.read_bytes(), "custody record 117")])
            return wl.id

        by_op1, by_ao1 = watchlist(op1, "Warrants built by op1"), watchlist(ao1, "Built by ao1")
        approved = watchlist(op1, "Approved warrants")
        watchlists.approve_watchlist(system.db, ao2, approved)
        kr = system.keyring
        dep_op1 = deps.create(system.db, op1, replace(plan((approved,)),
                                                      name="Station concourse by op1"),
                              keyring=kr)
        dep_ao1 = deps.create(system.db, ao1, replace(plan((approved,)),
                                                      name="Market square by ao1"), keyring=kr)
        authorised = deps.create(system.db, op1, plan((approved,)), keyring=kr)
        authorise(system.db, kr, ao2, authorised)
        now = datetime.now(UTC)
        with system.db.session() as s:
            rows = [Alert(deployment_id=authorised, camera="gate", track_id=i,
                          pipeline_id=f"t{i}", score=0.6, threshold=0.5, model_id="sface",
                          status=AlertStatus.PENDING, seen_at=now - timedelta(minutes=i))
                    for i in range(2)]
            s.add_all(rows)
            s.flush()
            alert_ids = [r.id for r in rows]
        return Seeded(by_op1, by_ao1, dep_op1, dep_ao1, alert_ids)
    finally:
        system.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium")
def test_each_person_sees_and_reaches_their_own_work(tmp_path: Path,
                                                     face_images: dict[str, Path],
                                                     server_factory: type,  # noqa: F811
                                                     ) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    data = tmp_path / "data"
    seeded = prepare(data, face_images["obama"])
    server = server_factory.start(data, "--no-resume")
    server.wait_up(90.0)
    shots = tmp_path / "shots"
    shots.mkdir()
    problems: list[str] = []

    def sign_in(browser: object, name: str) -> object:
        ctx = browser.new_context(viewport={"width": 1366, "height": 900})  # type: ignore[attr-defined]
        page = ctx.new_page()
        # errors in the browser's console (a CSP violation, a missing asset); the refused page
        # below is answered with 403 on purpose
        page.on("console", lambda m: problems.append(m.text)
                if m.type == "error" and "status of 403" not in m.text else None)
        page.goto(f"{server.url}/login?next=/console")
        page.fill("#name", name)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{server.url}/console")
        return page

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=LAUNCH_ARGS)
        try:
            # the operator: two alerts wait for their decision, nothing to approve
            op = sign_in(browser, "op1")
            main = op.locator("main")  # type: ignore[attr-defined]
            expect(main).to_contain_text("2 things wait for you.")
            expect(op.locator("#home-alerts")).to_contain_text(  # type: ignore[attr-defined]
                "2 possible matches wait for your decision")
            text = main.inner_text()
            for other in ("Waiting for your approval", "Warrants built by op1",
                          "Station concourse by op1", "Residents' open questions",
                          "The audit log's last check"):
                assert other not in text, other
            op.screenshot(path=str(shots / "home-operator.png"), full_page=True)  # type: ignore[attr-defined]
            newest = max(seeded.alerts)
            op.click(f"#home-alerts a[href='/console/alerts/{newest}']")  # type: ignore[attr-defined]
            op.wait_for_url(f"{server.url}/console/alerts/{newest}")  # type: ignore[attr-defined]
            expect(op.locator("button[value=confirm]")).to_be_visible()  # type: ignore[attr-defined]
            # a refusal still knows who is signed in, and says who may
            response = op.goto(f"{server.url}/console/users")  # type: ignore[attr-defined]
            assert response is not None and response.status == 403
            expect(main).to_contain_text("Only an administrator may manage user accounts")
            expect(main).to_contain_text("You are signed in as op1, an operator.")
            expect(op.locator("header nav")).to_contain_text("Sign out op1")  # type: ignore[attr-defined]
            assert "Staff sign-in" not in op.locator("header").inner_text()  # type: ignore[attr-defined]
            op.screenshot(path=str(shots / "refused-operator.png"), full_page=True)  # type: ignore[attr-defined]

            # the authorising officer: op1's watchlist and deployment wait for them; their
            # own do not; no alert waits for their decision
            ao = sign_in(browser, "ao1")
            approvals = ao.locator("#home-approvals")  # type: ignore[attr-defined]
            expect(approvals).to_contain_text("Warrants built by op1")
            expect(approvals).to_contain_text("Station concourse by op1")
            text = ao.locator("main").inner_text()  # type: ignore[attr-defined]
            for other in ("Built by ao1", "Market square by ao1",
                          "Alerts waiting for your decision"):
                assert other not in text, other
            assert re.search(r"1 watchlist\b.*to approve", text) and "1 deployment" in text
            ao.screenshot(path=str(shots / "home-authorising-officer.png"), full_page=True)  # type: ignore[attr-defined]
            # follow the link, approve, and it no longer waits
            approvals.locator(f"a[href='/console/watchlists/{seeded.wl_by_op1}']").click()
            ao.wait_for_url(f"{server.url}/console/watchlists/{seeded.wl_by_op1}")  # type: ignore[attr-defined]
            ao.click("text=Approve this watchlist")  # type: ignore[attr-defined]
            expect(ao.locator("main h1")).to_contain_text("approved")  # type: ignore[attr-defined]
            ao.goto(f"{server.url}/console")  # type: ignore[attr-defined]
            expect(approvals).not_to_contain_text("Warrants built by op1")
            expect(approvals).to_contain_text("Station concourse by op1")
            approvals.locator(f"a[href='/console/deployments/{seeded.dep_by_op1}']").click()
            ao.wait_for_url(f"{server.url}/console/deployments/{seeded.dep_by_op1}")  # type: ignore[attr-defined]
            expect(ao.locator("button", has_text="Authorise")).to_be_visible()  # type: ignore[attr-defined]
        finally:
            browser.close()
    assert problems == [], problems
    assert server.terminate() == 0
    SHOTS.mkdir(parents=True, exist_ok=True)
    for png in sorted(shots.glob("*.png")):
        shutil.copy(png, SHOTS / png.name)
