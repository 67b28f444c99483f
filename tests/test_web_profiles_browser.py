"""Authorising under each jurisdiction profile in a real browser against ``openlfr serve``:
under uk-app an inspector is refused and a superintendent who approves the criteria
authorises; an administrator switches to eu-ai-act on the settings page; the officer records
the independent authority's decision; the start's notification is a printable page."""

from __future__ import annotations

import re
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
from tests.govfix import AUTHORISE_FORM, fill_authorisation, ready_to_authorise
from tests.test_gov_deployments import REASON, plan
from tests.test_web_browser import LAUNCH_ARGS, PASSWORD
from tests.test_web_serve import CHROMIUM, server_factory  # noqa: F401

OP1 = Actor("op1", Role.OPERATOR)
ADMIN = Actor("admin", Role.ADMIN)


def prepare(data: Path, face: Path) -> tuple[int, int]:
    """Staff, an approved watchlist, a calibration, and two drafts: one for uk-app, one with
    the references eu-ai-act asks for."""
    system, _ = initialise(Settings(data_dir=data))
    try:
        users.create_first_admin(system.db, "admin", PASSWORD)
        for name, role in (("op1", Role.OPERATOR), ("ao1", Role.AUTHORISING_OFFICER),
                           ("ao2", Role.AUTHORISING_OFFICER)):
            users.add_user(system.db, ADMIN, name, role, PASSWORD)
        wl = watchlists.create_watchlist(system, OP1, "wanted",
                                         "Locate people wanted by the courts at the station")
        watchlists.add_subject(system, OP1, wl.id, "Case 2026/118", "wanted_by_court", REASON,
                               datetime.now(UTC) + timedelta(days=30),
                               [(face.read_bytes(), "custody record 118")])
        watchlists.approve_watchlist(system.db, Actor("ao2", Role.AUTHORISING_OFFICER), wl.id)
        uk = deps.create(system.db, OP1, plan((wl.id,)), keyring=system.keyring)
        eu = deps.create(system.db, OP1, replace(plan((wl.id,)), name="Station, EU rules",
                                                 fria_ref="FRIA-2026-7",
                                                 eu_db_ref="EU-DB-RBI-0042"),
                         keyring=system.keyring)
        ready_to_authorise(system.db, ADMIN, uk)
        return uk, eu
    finally:
        system.close()


def start(data: Path, dep_id: int) -> None:
    system, _ = initialise(Settings(data_dir=data))
    try:
        deps.start(system.db, OP1, dep_id)
    finally:
        system.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium")
def test_authorising_under_each_profile(tmp_path: Path, face_images,
                                        server_factory: type,  # noqa: F811
                                        ) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    data = tmp_path / "data"
    uk, eu = prepare(data, face_images["obama"])
    server = server_factory.start(data)
    server.wait_up(90.0)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=LAUNCH_ARGS)

        def sign_in(name: str, where: str) -> object:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.goto(f"{server.url}/login?next={where}")
            page.fill("#name", name)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{server.url}{where}")
            return page

        try:
            # uk-app (the default): the rank, the criteria, the calibration's attestation
            ao = sign_in("ao1", f"/console/deployments/{uk}")
            expect(ao.locator("#dep-profile")).to_contain_text("uk-app")  # type: ignore[attr-defined]
            expect(ao.locator("#criteria")).to_contain_text("wanted by a court 1")  # type: ignore[attr-defined]
            expect(ao.locator("#dep-expected")).to_contain_text("per 10,000 people passing")  # type: ignore[attr-defined]
            fill_authorisation(ao)
            ao.select_option("#a-rank", "inspector")  # type: ignore[attr-defined]
            ao.click("button:has-text('Authorise')")  # type: ignore[attr-defined]
            expect(ao.locator("#form-error")).to_contain_text(  # type: ignore[attr-defined]
                "an inspector may not authorise live facial recognition")
            fill_authorisation(ao)
            ao.click("button:has-text('Authorise')")  # type: ignore[attr-defined]
            ao.wait_for_url(re.compile(r".*done=authorised.*"))  # type: ignore[attr-defined]
            expect(ao.locator("#dep-authorised")).to_contain_text(  # type: ignore[attr-defined]
                f"ao1 ({AUTHORISE_FORM['rank']})")
            expect(ao.locator("#dep-authorised")).to_contain_text("watchlist criteria approved")  # type: ignore[attr-defined]

            # an administrator puts eu-ai-act in force on the settings page
            admin = sign_in("admin", "/console/settings")
            expect(admin.locator("#profile-in-force")).to_contain_text("uk-app (the default)")  # type: ignore[attr-defined]
            admin.check("input[name=profile][value=eu-ai-act]")  # type: ignore[attr-defined]
            admin.click("button:has-text('Put in force')")  # type: ignore[attr-defined]
            expect(admin.locator("main")).to_contain_text("Jurisdiction profile changed.")  # type: ignore[attr-defined]
            expect(admin.locator("#profile-in-force")).to_contain_text("eu-ai-act")  # type: ignore[attr-defined]

            # eu-ai-act: the independent authority's decision; no rank asked
            ao.goto(f"{server.url}/console/deployments/{eu}")  # type: ignore[attr-defined]
            expect(ao.locator("#authorise-profile")).to_contain_text("eu-ai-act")  # type: ignore[attr-defined]
            assert ao.locator("#a-rank").count() == 0  # type: ignore[attr-defined]
            fill_authorisation(ao)
            ao.click("button:has-text('Authorise')")  # type: ignore[attr-defined]
            ao.wait_for_url(re.compile(r".*done=authorised.*"))  # type: ignore[attr-defined]
            expect(ao.locator("#dep-authorised")).to_contain_text(  # type: ignore[attr-defined]
                f"decision {AUTHORISE_FORM['authority_ref']}")
            expect(ao.locator("main")).to_contain_text("two-person rule")  # type: ignore[attr-defined]

            # each start generates the authorities' notification: a printable page
            start(data, eu)
            ao.reload()  # type: ignore[attr-defined]
            ao.locator("#notifications a").first.click()  # type: ignore[attr-defined]
            expect(ao.locator("h1")).to_contain_text("Notification of a use")  # type: ignore[attr-defined]
            expect(ao.locator("#notification")).to_contain_text("FRIA-2026-7")  # type: ignore[attr-defined]
            expect(ao.locator("#notification")).to_contain_text("EU-DB-RBI-0042")  # type: ignore[attr-defined]
        finally:
            browser.close()
    assert server.terminate() == 0
