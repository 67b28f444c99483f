"""The field-test flow in a real browser (Debian's Chromium through Playwright, ``openlfr
serve``): an operator plans a field test from the deployment's page and adds a consenting
volunteer with a real photo; the volunteer's possible match, recorded by the alert recorder,
is in the test view and not in the operational queue; the test is ended, and the public
deployment page shows the report beside the laboratory figures, never the volunteer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import pytest
from sqlalchemy import select

from openlfr.config import Settings
from openlfr.governance import alerts as svc
from openlfr.governance import deployments as deps
from openlfr.governance import users, watchlists
from openlfr.governance.authz import Actor
from openlfr.governance.system import initialise
from openlfr.store.enums import Role
from openlfr.store.models import FieldTest, FieldTestVolunteer, SubjectImage
from openlfr.video.types import Alert
from tests.govfix import authorise
from tests.test_gov_deployments import REASON, plan
from tests.test_web_browser import LAUNCH_ARGS, PASSWORD
from tests.test_web_serve import CHROMIUM, server_factory  # noqa: F401

LABEL = "Volunteer Heron"


def _prepare(data: Path, face: Path) -> int:
    """Staff, an approved operational watchlist and an authorised deployment (camera gate)."""
    system, _ = initialise(Settings(data_dir=data))
    try:
        users.create_first_admin(system.db, "admin", PASSWORD)
        admin = Actor("admin", Role.ADMIN)
        for name, role in (("op1", Role.OPERATOR), ("ao1", Role.AUTHORISING_OFFICER)):
            users.add_user(system.db, admin, name, role, PASSWORD)
        op1, ao1 = Actor("op1", Role.OPERATOR), Actor("ao1", Role.AUTHORISING_OFFICER)
        wl = watchlists.create_watchlist(system, op1, "wanted",
                                         "Locate people wanted by the courts at the station")
        watchlists.add_subject(system, op1, wl.id, "Case 2026/117", "wanted_by_court", REASON,
                               datetime.now(UTC) + timedelta(days=30),
                               [(face.read_bytes(), "custody record 117")])
        watchlists.approve_watchlist(system.db, ao1, wl.id)
        dep_id = deps.create(system.db, op1, plan((wl.id,)), keyring=system.keyring)
        authorise(system.db, system.keyring, ao1, dep_id)
        return dep_id
    finally:
        system.close()


def _volunteer_walks_past(data: Path, dep_id: int, face: Path) -> int:
    """The authorising officer approves the test list and the plan again; the volunteer's
    possible match is recorded by the deployment's alert recorder. Returns its alert id."""
    system, _ = initialise(Settings(data_dir=data))
    try:
        ao1 = Actor("ao1", Role.AUTHORISING_OFFICER)
        with system.db.reading() as s:
            test = s.scalars(select(FieldTest)).one()
            subject = s.scalars(select(FieldTestVolunteer.subject_id)).one()
            image = s.scalars(select(SubjectImage.id).where(
                SubjectImage.subject_id == subject)).one()
            wl_id = test.watchlist_id
        assert wl_id is not None and subject is not None
        watchlists.approve_watchlist(system.db, ao1, wl_id)
        authorise(system.db, system.keyring, ao1, dep_id)
        crop = cv2.imread(str(face))
        assert crop is not None
        now = datetime.now(UTC).timestamp()
        rec = svc.AlertRecorder(system, dep_id)
        alert = Alert(alert_id=f"gate:1:{subject}", camera="gate", track_id=1,
                      subject_id=str(subject), display_name=LABEL, score=0.71, threshold=0.5,
                      reference_id=str(image), model_id="sface", frame=1, t=0.5,
                      wall_time=now, frame_wall=now, box=(1, 2, 30, 40),
                      probe_crop=crop[:160, :140].copy(), latency=1.2)
        rec.publish(alert)
        row = rec.stored_id(alert.alert_id)
        assert row is not None
        return row
    finally:
        system.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium")
def test_a_field_test_from_plan_to_the_public_report(
        tmp_path: Path, face_images: dict[str, Path],
        server_factory: type,  # noqa: F811
        ) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    data = tmp_path / "data"
    dep_id = _prepare(data, face_images["obama"])
    server = server_factory.start(data)
    server.wait_up(90.0)
    now = datetime.now(UTC)
    start, end = now - timedelta(minutes=2), now + timedelta(minutes=20)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=LAUNCH_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
            page.on("dialog", lambda d: d.accept())
            page.goto(f"{server.url}/login?next=/console/deployments/{dep_id}")
            page.fill("#name", "op1")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{server.url}/console/deployments/{dep_id}")

            # plan the test from the deployment's page
            page.get_by_role("button", name="Plan a field test").click()
            expect(page.locator("h1")).to_contain_text("Field test")
            expect(page.locator(".notice.ok")).to_contain_text("Field test planned")

            # a consenting volunteer with a real photo; a wrong pass first
            page.fill("#v-label", LABEL)
            page.set_input_files("#v-image", str(face_images["biden"]))
            page.fill("#v-source", "photo taken at the briefing, with consent")
            page.fill("#v-consent-by", "PC Dawn Smith")
            page.fill("#v-consent-at", (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%MZ"))
            page.fill("#v-consent-ref", "CONSENT-2026-031")
            page.fill("#v-passes", "door=now/1h")
            page.select_option("#v-ethnicity", "black")
            page.get_by_role("button", name="Add the volunteer").click()
            expect(page.locator(".notice.error")).to_contain_text("camera 'door' is not in")
            expect(page.locator("#v-consent-ref")).to_have_value("CONSENT-2026-031")
            page.set_input_files("#v-image", str(face_images["biden"]))
            page.fill("#v-passes", f"gate={start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}")
            page.get_by_role("button", name="Add the volunteer").click()
            expect(page.locator(".notice.ok")).to_contain_text("Volunteer added")
            expect(page.locator("#volunteers + div table")).to_contain_text(LABEL)
            expect(page.locator("#volunteers + div table")).to_contain_text(
                "Black, Black British, Caribbean or African")
            test_url = page.url.split("?")[0]

            # the volunteer walks past: the test alert is in the test view only
            alert_id = _volunteer_walks_past(data, dep_id, face_images["biden"])
            page.goto(test_url)
            table = page.locator("#test-alert-table")
            expect(table).to_contain_text(f"#{alert_id}")
            expect(table).to_contain_text(LABEL)
            expect(table.locator("tbody tr")).to_have_count(1)
            page.goto(f"{server.url}/console/alerts")
            expect(page.locator("h1")).to_be_visible()
            expect(page.locator(f"#alert-{alert_id}")).to_have_count(0)

            # end the test: the report is shown here, with the volunteer
            page.goto(test_url)
            page.get_by_role("button", name="End the field test").click()
            expect(page.locator(".notice.ok")).to_contain_text("Field test ended")
            report = page.locator("#report")
            expect(report).to_contain_text("Passes alerted (TPIR)")
            expect(report).to_contain_text(f"Volunteer {LABEL}")
            expect(report).to_contain_text("1 of 1 = 100 %")

            # and on the public page, aggregate only, beside the laboratory figures
            page.goto(f"{server.url}/public/deployments/{dep_id}")
            section = page.locator("#field-tests")
            expect(section).to_contain_text("Field tests")
            expect(section).to_contain_text("1 of 1 = 100 %")
            expect(section).to_contain_text("fewer than 5 volunteers")
            assert LABEL not in page.content()
            page.screenshot(path=str(tmp_path / "fieldtest-public.png"), full_page=True)
        finally:
            browser.close()
    assert server.terminate() == 0
