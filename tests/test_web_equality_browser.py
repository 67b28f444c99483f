"""Equality monitoring in a real browser (Debian's Chromium through Playwright, ``openlfr
serve``): an operator rejects a possible match as false, records on the outcome form that the
person was stopped for 12 minutes and the perceived ethnic group and sex, and the public yearly
summary then shows the count for that group, never the record itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from openlfr.config import Settings
from openlfr.governance import alerts as svc
from openlfr.governance.authz import Actor
from openlfr.governance.system import initialise
from openlfr.store.enums import Action, Decision, DeploymentStatus, PerceivedEthnicity, Role
from openlfr.store.models import Deployment
from tests.test_web_alert_review_browser import prepare
from tests.test_web_browser import LAUNCH_ARGS, PASSWORD
from tests.test_web_serve import CHROMIUM, server_factory  # noqa: F401


def _earlier_false_alerts(data: Path, dep_id: int, rows: list[int]) -> None:
    """Five false alerts recorded before (stopped, perceived White), and the deployment ended
    (the yearly summary counts deployments that ran)."""
    system, _ = initialise(Settings(data_dir=data))
    try:
        op1 = Actor("op1", Role.OPERATOR)
        for row in rows:
            svc.adjudicate(system.db, op1, row, Decision.REJECT, "not the same person")
            svc.record_outcome(system.db, op1, row, True, Action.NONE, stop=svc.FalseAlertStop(
                True, 5, PerceivedEthnicity.WHITE))
        with system.db.session() as s:
            dep = s.get(Deployment, dep_id)
            assert dep is not None
            now = datetime.now(UTC)
            dep.status = DeploymentStatus.ENDED
            dep.started_at, dep.ended_at = now - timedelta(hours=2), now - timedelta(hours=1)
    finally:
        system.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium")
def test_a_false_alert_with_equality_fields_reaches_the_public_counts(
        tmp_path: Path, face_images: dict[str, Path],
        server_factory: type,  # noqa: F811
        ) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    data = tmp_path / "data"
    dep_id, ids = prepare(data, face_images["obama"])
    rows = sorted(ids["gate"])
    _earlier_false_alerts(data, dep_id, rows[:5])
    alert = rows[5]
    server = server_factory.start(data)
    server.wait_up(90.0)
    year = datetime.now(UTC).year
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=LAUNCH_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
            page.goto(f"{server.url}/login?next=/console/alerts/{alert}")
            page.fill("#name", "op1")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{server.url}/console/alerts/{alert}")

            card = page.locator(f"#alert-{alert}")
            card.locator("label.choice", has_text="Not the same person").click()
            card.locator("button[value=reject]").click()
            expect(card.locator(".badge.alert-rejected")).to_have_text("false alert",
                                                                       ignore_case=True)
            form = card.locator("form.outcome")
            expect(form).to_contain_text("Outcome of the false alert")
            expect(form).to_contain_text("public sector equality duty")
            form.locator("input[name=engaged][value=yes]").check()
            form.locator("select[name=action]").select_option("none")
            form.locator("input[name=stopped][value=yes]").check()
            form.locator("input[name=stop_minutes]").fill("12")
            form.locator("select[name=perceived_ethnicity]").select_option(
                label="White")
            form.locator("select[name=perceived_sex]").select_option("female")
            form.locator("button[type=submit]").click()
            expect(card).to_contain_text("stopped for 12 minutes")
            expect(card).to_contain_text("perceived ethnic group: White")
            expect(card.locator("form.outcome")).to_have_count(0)

            public = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
            public.goto(f"{server.url}/public/summary?year={year}")
            section = public.locator("#equality")
            expect(section).to_contain_text("False alerts by group (equality monitoring)")
            white = section.locator("table.equality-ethnicity tr", has_text="White")
            expect(white.locator("td").nth(0)).to_have_text("6")
            expect(white.locator("td").nth(1)).to_have_text("6")
            female = section.locator("table.equality-sex tr", has_text="Female")
            expect(female.locator("td").nth(0)).to_have_text("fewer than 5")
            expect(section).to_contain_text("not about the same groups")
            text = public.locator("main").inner_text()
            for leak in ("12 minutes", "Case 2026/117", "op1"):
                assert leak not in text, leak
            public.screenshot(path=str(tmp_path / "public-equality.png"), full_page=True)
        finally:
            browser.close()
