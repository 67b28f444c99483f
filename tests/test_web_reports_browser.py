"""The annual report's console page in a real browser (Debian's Chromium through Playwright,
``openlfr serve`` on a fresh data directory holding the public pages' deployments): an auditor
finds the page from the console's home, downloads this year's report as JSON, CSV and the
printable page, the three hold the same figures, and each download is audited."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from openlfr.config import Settings
from openlfr.governance import users
from openlfr.governance.authz import Actor
from openlfr.governance.system import initialise
from openlfr.store.enums import Role
from openlfr.store.models import AuditRecord
from openlfr.transparency import annual
from tests.a11y import assert_accessible
from tests.test_annual_report import check_agree, figures
from tests.test_web_browser import LAUNCH_ARGS, PASSWORD
from tests.test_web_public import populate
from tests.test_web_serve import CHROMIUM, server_factory  # noqa: F401


def prepare(data: Path) -> int:
    """An installation with an auditor and an operator, and the public pages' deployments;
    the year of their figures."""
    system, _ = initialise(Settings(data_dir=data))
    try:
        users.create_first_admin(system.db, "admin", PASSWORD)
        admin = Actor("admin", Role.ADMIN)
        users.add_user(system.db, admin, "au1", Role.AUDITOR, PASSWORD)
        users.add_user(system.db, admin, "op1", Role.OPERATOR, PASSWORD)
        return populate(system.db).year
    finally:
        system.close()


def made(data: Path) -> list[dict[str, object]]:
    system, _ = initialise(Settings(data_dir=data))
    try:
        with system.db.reading() as s:
            return [{"actor": r.actor, **json.loads(r.details)} for r in s.scalars(
                select(AuditRecord).where(AuditRecord.action == annual.REPORT_ACTION)
                .order_by(AuditRecord.seq))]
    finally:
        system.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium")
def test_an_auditor_downloads_the_annual_report(tmp_path: Path,
                                                server_factory: type,  # noqa: F811
                                                ) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    data = tmp_path / "data"
    year = prepare(data)
    server = server_factory.start(data, "--no-resume")
    server.wait_up(90.0)
    problems: list[str] = []
    files: dict[str, str] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=LAUNCH_ARGS)
        try:
            ctx = browser.new_context(viewport={"width": 1366, "height": 900},
                                      accept_downloads=True)
            page = ctx.new_page()
            page.on("response", lambda r: problems.append(f"{r.url}: {r.status}")
                    if r.status >= 400 else None)
            page.goto(f"{server.url}/login?next=/console")
            page.fill("#name", "au1")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{server.url}/console")
            page.click("text=Annual report for regulators and oversight bodies")
            page.wait_for_url(f"{server.url}/console/reports")
            expect(page.locator("h1")).to_have_text("Annual report")
            row = page.locator("#reports tbody tr", has_text=str(year))
            expect(row).to_have_count(1)
            assert_accessible(page, "annual report page")
            for fmt, text in (("json", "JSON"), ("csv", "CSV"), ("html", "HTML")):
                with page.expect_download() as got:
                    row.locator(f"text=Annual report {year} ({text})").click()
                download = got.value
                assert download.suggested_filename == f"annual-report-{year}.{fmt}"
                files[fmt] = Path(download.path()).read_text(encoding="utf-8")
            # the printable page opens on its own (from the file, as a regulator would)
            printable = tmp_path / f"annual-report-{year}.html"
            printable.write_text(files["html"], encoding="utf-8")
            page.goto(printable.as_uri())
            expect(page.locator("h1")).to_contain_text(f"annual report {year}")
            expect(page.locator("#alerts-h")).to_be_visible()
            page.emulate_media(media="print")
            page.pdf(path=str(tmp_path / "report.pdf"))
            assert (tmp_path / "report.pdf").stat().st_size > 10_000
        finally:
            browser.close()
    assert not problems, problems
    report = json.loads(files["json"])
    assert report["year"] == year and report["generated_by"] == "au1"
    # the figures of three separate makings agree (nothing changed in between; each making
    # is its own audit entry, so only the report's seq and the audit log's length differ)
    seqs = [m for m in csv.reader(io.StringIO(files["csv"])) if m[:4] == ["report", "", "",
                                                                       "audit_seq"]]
    assert int(seqs[0][4]) == report["audit_seq"] + 1
    assert check_agree({**report, "audit_seq": report["audit_seq"] + 1}, files["csv"],
                       files["html"], frozenset({"chain_entries", "head_hash"})) > 50
    assert figures(report, "alerts")["alerts"] > 0
    assert figures(report, "integrity")["chain_ok"] is True
    assert [(m["actor"], m["year"], m["formats"], m["out"]) for m in made(data)] == [
        ("au1", year, [fmt], "web") for fmt in ("json", "csv", "html")]

