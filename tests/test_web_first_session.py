"""The README's first session, through the web console alone, in a real browser.

A real ``openlfr serve`` on a fresh data directory; headless Debian Chromium through
Playwright. The admin adds the staff; an operator builds a watchlist with one reference image
and an authorising officer (not its builder) approves it; the operator plans a deployment whose
camera is a video clip of that person, and the officer authorises it. The operator opens the
alert queue and, in another tab, presses **Start**: the server's reconciler starts the run and
the alert appears in the open queue without a reload. Two people confirm it (two-person rule),
the supervisor records the outcome; the clip ends (the deployment shows as paused), the
operator stops it, and the public page shows the figures and no longer says "Running now".
Finally the audit chain verifies, on the console's audit page.
"""

from __future__ import annotations

import re
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests import videoclips
from tests.govfix import fill_authorisation, ready_to_authorise
from tests.test_web_browser import LAUNCH_ARGS
from tests.test_web_serve import CHROMIUM, SHOTS, server_factory  # noqa: F401

ADMIN_PASSWORD = "the chief's long password"
PASSWORD = "a long staff password"
REASON = "Wanted on warrant W-1 for failure to appear at the magistrates court"


def calibrated(data: Path, dep_id: int) -> None:
    """Record the tests' calibration for the deployment's plan, as ``ann``."""
    from openlfr.config import Settings
    from openlfr.governance.authz import Actor
    from openlfr.governance.system import initialise
    from openlfr.store.enums import Role

    system, _ = initialise(Settings(data_dir=data))
    try:
        ready_to_authorise(system.db, Actor("ann", Role.AUTHORISING_OFFICER), dep_id)
    finally:
        system.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium")
def test_first_session_through_the_console(tmp_path: Path, face_images, no_face_path,
                                           server_factory: type,  # noqa: F811
                                           ) -> None:
    from playwright.sync_api import Page, expect, sync_playwright

    clip = videoclips.walk_in(tmp_path / "theatre-door.avi", face_images["obama2"])
    data = tmp_path / "data"
    pw = tmp_path / "chief.pw"
    pw.write_text(ADMIN_PASSWORD + "\n")
    server = server_factory.start(data, "--admin-user", "chief", "--admin-password-file",
                                  str(pw))
    server.wait_up(90.0)  # a busy machine: the first start creates keys and the schema
    url = server.url
    shots = tmp_path / "shots"
    shots.mkdir()
    problems: list[str] = []

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=LAUNCH_ARGS)

        def person(name: str, password: str = PASSWORD) -> Page:
            """A browser of its own for each person, signed in."""
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.on("console", lambda m: problems.append(f"{name}: {m.text}")
                    if m.type == "error" else None)
            page.on("response", lambda r: problems.append(
                f"{name}: {r.request.method} {r.url}: {r.status}") if r.status >= 400 else None)
            page.goto(f"{url}/login?next=/console")
            page.fill("#name", name)
            page.fill("#password", password)
            page.click("button[type=submit]")
            # Every password here is one-time (the first admin's from init, the staff's as the
            # admin gave them): the first sign-in leads to choosing one's own, then the console.
            page.wait_for_url(re.compile(r".*/account/password.*"))
            own = f"{name} chooses orchard lantern plum velvet"
            page.fill("#current", password)
            page.fill("#new", own)
            page.fill("#repeat", own)
            page.click("main button[type=submit]")
            page.wait_for_url(re.compile(r".*/console\?done=account"))
            return page

        def shot(page: Page, name: str) -> None:
            page.screenshot(path=str(shots / f"first-{name}.png"), full_page=True)

        try:
            # 1. The admin adds the staff.
            chief = person("chief", ADMIN_PASSWORD)
            chief.goto(f"{url}/console/users")
            for name, role in (("olly", "operator"), ("ann", "authorising_officer"),
                               ("sam", "supervisor"), ("audrey", "auditor")):
                chief.fill("#u-name", name)
                chief.select_option("#u-role", role)
                chief.fill("#u-pw", PASSWORD)
                chief.click("text=Add the user")
                expect(chief.locator("main")).to_contain_text("User added.")
            shot(chief, "users")

            # 2. The operator builds a watchlist with one reference image ...
            olly = person("olly")
            olly.goto(f"{url}/console/watchlists")
            olly.fill("#wl-name", "Theatre district")
            olly.fill("#wl-purpose", "People wanted on warrants of the magistrates court")
            olly.click("text=Create the draft")
            olly.wait_for_url(re.compile(r".*/console/watchlists/\d+.*"))
            wl_id = int(re.search(r"/console/watchlists/(\d+)", olly.url).group(1))  # type: ignore[union-attr]
            olly.fill("#s-ref", "Warrant W-1")
            olly.select_option("#s-cat", "wanted_by_court")
            olly.fill("#s-reason", REASON)
            olly.fill("#s-exp", "90d")
            olly.set_input_files("#img-0", str(face_images["obama"]))
            olly.fill("#src-0", "custody image C-17")
            olly.click("text=Check and add the subject")
            expect(olly.locator("main")).to_contain_text("Subject added")
            shot(olly, "watchlist")

            # ... and an authorising officer who did not build it approves it.
            ann = person("ann")
            ann.goto(f"{url}/console/watchlists/{wl_id}")
            ann.click("text=Approve this watchlist")
            expect(ann.locator("main")).to_contain_text("Approved.")

            # 3. The operator plans the deployment; its camera is a clip of that person.
            olly.goto(f"{url}/console/deployments/new")
            olly.fill("#d-name", "Theatre night")
            olly.fill("#d-site", "Theatre")
            olly.fill("#d-location", "46th Street entrance")
            olly.fill("#d-purpose", "Locate people wanted on warrants")
            olly.fill("#d-legal", "Common law policing powers")
            olly.fill("#d-alternatives", "Patrols do not suffice")
            olly.fill("#d-dpia", "DPIA-11")
            olly.fill("#d-eq", "EIA-07")
            now = datetime.now(UTC)
            olly.fill("#d-start", (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M"))
            olly.fill("#d-end", (now + timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M"))
            olly.fill("#d-notice", (now - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M"))
            olly.check("input[name=two_person_rule]")
            olly.check("input[name=signage]")
            olly.check("input[name=public_notice]")
            olly.check(f"input[name=watchlist_ids][value='{wl_id}']")
            olly.fill("#d-cameras", f"door={clip}")
            olly.click("text=Save the draft")
            olly.wait_for_url(re.compile(r".*/console/deployments/\d+.*"))
            dep_id = int(re.search(r"/console/deployments/(\d+)", olly.url).group(1))  # type: ignore[union-attr]

            # ... authorised by the officer (not its author), on a calibration of the model
            # (`openlfr calibrate` on the force's data; here the tests' recorded one).
            calibrated(data, dep_id)
            ann.goto(f"{url}/console/deployments/{dep_id}")
            expect(ann.locator("#dep-expected")).to_contain_text("per 10,000 people passing")
            fill_authorisation(ann)
            ann.click("button:has-text('Authorise')")
            expect(ann.locator("main")).to_contain_text("Authorised.")

            # 4. The operator opens the alert queue, then presses Start in another tab.
            queue = olly.context.new_page()
            queue.goto(f"{url}/console/alerts?deployment={dep_id}")
            expect(queue.locator("#live-state")).to_have_text(re.compile("^live"),
                                                              timeout=10_000)
            queue.evaluate("window.__sameDocument = true")
            assert queue.locator("article.alert-card").count() == 0
            olly.goto(f"{url}/console/deployments/{dep_id}")
            olly.click("button:has-text('Start')")
            expect(olly.locator("main")).to_contain_text("Started")
            card = queue.locator("article.alert-card").first
            expect(card).to_be_visible(timeout=60_000)  # pushed: the page is not reloaded
            assert queue.evaluate("window.__sameDocument === true"), "the queue was reloaded"
            text = card.inner_text()
            assert "POSSIBLE MATCH" in text.upper() and "door" in text
            assert "0 of 2 confirmations" in text
            alert_id = int(card.get_attribute("data-alert-id") or 0)
            shot(queue, "queue-alert")

            # 5. Two people confirm; the second records the outcome.
            card = queue.locator(f"#alert-{alert_id}")  # not .first: a new card may come on top
            card.locator("button[value=confirm]").click()
            expect(card).to_contain_text("1 of 2 confirmations")
            sam = person("sam")
            sam.goto(f"{url}/console/alerts/{alert_id}")
            sam.click("button[value=confirm]")
            expect(sam.locator("main")).to_contain_text("2 of 2 confirmations")
            sam.check("input[name=engaged][value=yes]")
            sam.select_option(f"#action-{alert_id}", "advice")
            sam.fill(f"#notes-{alert_id}", "Spoke to him at the door")
            sam.click("text=Record the outcome")
            expect(sam.locator("main")).to_contain_text("The outcome is recorded.")

            # 6. The clip has ended: the deployment says paused, and offers Resume.
            olly.goto(f"{url}/console/deployments/{dep_id}")
            for _ in range(60):
                if "Paused:" in olly.inner_text("main"):
                    break
                time.sleep(0.5)
                olly.reload()
            expect(olly.locator("#paused-why")).to_contain_text("the camera sources ended")
            expect(olly.locator("button:has-text('Resume')")).to_be_visible()
            expect(olly.locator("#camera-states")).to_contain_text("ended")
            shot(olly, "deployment-paused")
            public = browser.new_page()
            public.goto(f"{url}/public/deployments/{dep_id}")
            assert "Paused" in public.inner_text("main")
            assert "Running now" not in public.inner_text("main")

            # 7. The operator stops it; the public page shows the figures.
            olly.fill("#stop-reason", "Operation finished")
            olly.once("dialog", lambda dialog: dialog.accept())  # "Stop ... for good?"
            olly.click("button:has-text('Stop (final)')")
            expect(olly.locator("main")).to_contain_text("Stopped.")
            public.goto(f"{url}/public/deployments/{dep_id}")
            main = public.inner_text("main")
            assert "Running now" not in main and "Ended" in main
            alerts = re.search(r"Alerts \(possible matches\)\s+([\d,]+)", main)
            confirmed = re.search(r"Confirmed by an officer\s+([\d,]+)", main)
            faces = re.search(r"People passing\s+([\d,]+)", main)  # tracks, not detections
            assert alerts and int(alerts.group(1)) >= 1, main
            assert confirmed and confirmed.group(1) == "1", main
            assert faces and int(faces.group(1).replace(",", "")) > 0, main
            shot(public, "public-after")

            # 8. The audit chain verifies.
            audrey = person("audrey")
            audrey.goto(f"{url}/console/audit")
            audrey.click("text=Verify the chain")
            expect(audrey.locator("#verify-result")).to_contain_text("The chain verifies")
            shot(audrey, "audit-verified")
        finally:
            browser.close()
    assert server.terminate() == 0
    assert problems == [], problems
    err = server.stderr.read_text()
    assert "Traceback" not in err, err
    SHOTS.mkdir(parents=True, exist_ok=True)
    for png in sorted(shots.glob("*.png")):
        shutil.copy(png, SHOTS / png.name)
