"""The urgent-use path in a real browser (Debian's Chromium through Playwright, ``openlfr serve``
on a fresh data directory under the ``eu-ai-act`` profile, a real live run on a clip of the
watchlisted face): an operator starts a draft urgently with a justification (the confirm
dialog), sees the clock count down on the deployment page and the banner on the home page; an
authorising officer refuses it, and the page then says its results were deleted — the alerts
are gone from the database and the data key from the key store. A second deployment is
authorised in time and runs on. Screenshots go to the test's tmp dir and /tmp/openlfr-shots."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from openlfr.config import Settings
from openlfr.governance import deployments as deps
from openlfr.governance import profiles, users, watchlists
from openlfr.governance.authz import Actor
from openlfr.governance.system import initialise
from openlfr.store.enums import Role
from openlfr.store.models import Alert, Deployment
from tests.govfix import DECISION, ready_to_authorise
from tests.test_gov_deployments import REASON, plan
from tests.test_gov_urgent import REFUSAL, WHY, eu_plan
from tests.test_web_browser import LAUNCH_ARGS, PASSWORD
from tests.test_web_serve import CHROMIUM, SHOTS, server_factory  # noqa: F401


def prepare(data: Path, face: Path, clip: Path) -> tuple[int, int]:
    """Staff, the eu-ai-act profile, an approved watchlist (a real photo) and two complete
    drafts whose camera is a clip of the watchlisted person."""
    system, _ = initialise(Settings(data_dir=data))
    try:
        users.create_first_admin(system.db, "admin", PASSWORD)
        admin = Actor("admin", Role.ADMIN)
        for name, role in (("op1", Role.OPERATOR), ("ao1", Role.AUTHORISING_OFFICER),
                           ("au1", Role.AUDITOR)):
            users.add_user(system.db, admin, name, role, PASSWORD)
        profiles.set_profile(system.db, admin, "eu-ai-act")
        op1, ao1 = Actor("op1", Role.OPERATOR), Actor("ao1", Role.AUTHORISING_OFFICER)
        wl = watchlists.create_watchlist(system, op1, "wanted",
                                         "Locate people wanted by the courts at the station")
        watchlists.add_subject(system, op1, wl.id, "Case 2026/117", "wanted_by_court",
                               REASON, datetime.now(UTC) + timedelta(days=30),
                               [(face.read_bytes(), "custody record 117")])
        watchlists.approve_watchlist(system.db, ao1, wl.id)
        cams = (deps.CameraSpec("gate", str(clip)),)
        refused = deps.create(system.db, op1, eu_plan(plan((wl.id,), cameras=cams)),
                              keyring=system.keyring)
        kept = deps.create(system.db, op1, eu_plan(plan((wl.id,), cameras=cams)),
                           keyring=system.keyring)
        ready_to_authorise(system.db, ao1, kept)  # the model's calibration for the plans
        return refused, kept
    finally:
        system.close()


def alerts_of(data: Path, dep_id: int) -> tuple[int, int | None, bool]:
    """(alerts stored, the data key's id, whether its file is in the key store)."""
    system, _ = initialise(Settings(data_dir=data))
    try:
        with system.db.reading() as s:
            n = int(s.scalar(select(func.count()).select_from(Alert).where(
                Alert.deployment_id == dep_id)) or 0)
            dep = s.get(Deployment, dep_id)
            assert dep is not None
            key = dep.data_key_id
        return n, key, key is not None and system.keyring.store.exists(key)
    finally:
        system.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium")
def test_start_urgently_see_the_clock_refuse_and_authorise(
        tmp_path: Path, face_images: dict[str, Path], clips,
        server_factory: type,  # noqa: F811
        ) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    data = tmp_path / "data"
    refused, kept = prepare(data, face_images["obama"], clips.obama)
    server = server_factory.start(data)
    server.wait_up(90.0)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=LAUNCH_ARGS)
        try:
            def signed_in(name: str, path: str):  # type: ignore[no-untyped-def]
                page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
                page.on("dialog", lambda d: d.accept())  # the confirm dialogs: yes
                page.goto(f"{server.url}/login?next={path}")
                page.fill("#name", name)
                page.fill("#password", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_url(f"{server.url}{path}")
                return page

            # The operator starts both drafts urgently.
            op = signed_in("op1", f"/console/deployments/{refused}")
            for dep_id in (refused, kept):
                op.goto(f"{server.url}/console/deployments/{dep_id}")
                form = op.locator("#urgent-start")
                expect(form).to_contain_text("Urgent use (EU AI Act)")
                form.locator("textarea[name=justification]").fill(WHY)
                form.locator("button[data-confirm]").click()
                op.wait_for_url(f"{server.url}/console/deployments/{dep_id}?done=urgent_started")
                expect(op.locator("#urgent-clock")).to_contain_text("left")
            clock = op.locator("#urgent-clock .urgent-left")
            expect(clock).to_have_text(_re(r"^23 h 59 min \d\d s$"))
            first = clock.inner_text()
            time.sleep(1.5)
            assert clock.inner_text() != first, "the clock does not count down"
            expect(op.locator("#urgent-justification")).to_have_text(WHY)
            op.screenshot(path=str(tmp_path / "urgent-clock.png"), full_page=True)
            op.goto(f"{server.url}/console")
            expect(op.locator("#urgent-banner")).to_contain_text(f"#{refused}")
            expect(op.locator("#urgent-banner li")).to_have_count(2)

            # The live run stores possible matches of the watchlisted person.
            deadline = time.monotonic() + 120
            while alerts_of(data, refused)[0] == 0:
                assert time.monotonic() < deadline, "the live run stored no alert"
                time.sleep(0.5)
            n, key_id, key_file = alerts_of(data, refused)
            assert n > 0 and key_id is not None and key_file

            # The authorising officer refuses one urgent use and authorises the other.
            ao = signed_in("ao1", f"/console/deployments/{refused}")
            section = ao.locator("#urgent-use")
            section.locator("textarea[name=reason]").fill(REFUSAL)
            section.locator("button[data-confirm]").click()
            ao.wait_for_url(f"{server.url}/console/deployments/{refused}?done=urgent_refused")
            expect(ao.locator("#urgent-state")).to_contain_text("refused")
            expect(ao.locator("#urgent-deleted")).to_contain_text("alert")
            expect(ao.locator("#urgent-clock")).to_have_count(0)
            ao.screenshot(path=str(tmp_path / "urgent-refused.png"), full_page=True)
            gone, after_key, after_file = alerts_of(data, refused)
            assert gone == 0 and after_key is None and not after_file

            ao.goto(f"{server.url}/console/deployments/{kept}")
            ao.fill("#u-ref", DECISION.authority_ref or "")
            ao.fill("#u-name", DECISION.authority_name or "")
            ao.fill("#u-date", DECISION.authority_date.isoformat()
                    if DECISION.authority_date else "")
            ao.fill("#u-scope", DECISION.authority_scope or "")
            ao.check("#urgent-use input[name=representative]")
            ao.locator("#urgent-use button", has_text="Authorise the urgent use").click()
            ao.wait_for_url(f"{server.url}/console/deployments/{kept}?done=urgent_authorised")
            expect(ao.locator("#urgent-state")).to_contain_text("authorised: ao1")
            ao.goto(f"{server.url}/console")
            expect(ao.locator("#urgent-banner")).to_have_count(0)

            public = browser.new_context().new_page()
            public.goto(f"{server.url}/public/deployments/{refused}")
            expect(public.locator("#urgent-use")).to_contain_text("Authorisation was refused")
            expect(public.locator("#urgent-use")).to_contain_text("was deleted")
        finally:
            browser.close()
    SHOTS.mkdir(parents=True, exist_ok=True)
    for png in tmp_path.glob("urgent-*.png"):
        shutil.copy(png, SHOTS / png.name)


def _re(pattern: str):  # type: ignore[no-untyped-def]
    import re

    return re.compile(pattern)
