"""The audit log's page in a real browser (Debian's Chromium through Playwright, ``openlfr
serve`` on a fresh data directory): an auditor filters the log by who, what and a time range,
pages to older entries and back to newer ones, reads an entry's details in words (and its raw
JSON), and downloads exactly the selection as CSV and as JSON lines; the download is audited
with its filters."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from openlfr.config import Settings
from openlfr.governance import users
from openlfr.governance.authz import Actor, Forbidden, Perm, require
from openlfr.governance.system import initialise
from openlfr.store.enums import Role
from openlfr.store.models import AuditRecord
from tests.test_web_browser import LAUNCH_ARGS, PASSWORD
from tests.test_web_serve import CHROMIUM, server_factory  # noqa: F401

REFUSALS = 62  # more than a page (50) of the selection


def prepare(data: Path) -> None:
    """An installation with an auditor, and an operator refused ``REFUSALS`` times (among
    other entries the filters must leave out)."""
    system, _ = initialise(Settings(data_dir=data))
    try:
        users.create_first_admin(system.db, "admin", PASSWORD)
        admin = Actor("admin", Role.ADMIN)
        for name, role in (("au1", Role.AUDITOR), ("op1", Role.OPERATOR),
                           ("op2", Role.OPERATOR)):
            users.add_user(system.db, admin, name, role, PASSWORD)
        for n in range(REFUSALS):
            for who in ("op1", "op2"):
                with pytest.raises(Forbidden):
                    require(system.db, Actor(who, Role.OPERATOR), Perm.USER_MANAGE, "user",
                            f"person{n}")
    finally:
        system.close()


def entries(data: Path, action: str) -> list[AuditRecord]:
    system, _ = initialise(Settings(data_dir=data))
    try:
        with system.db.reading() as s:
            return list(s.scalars(select(AuditRecord).where(AuditRecord.action == action)
                                  .order_by(AuditRecord.seq)))
    finally:
        system.close()


def seqs(page: object) -> list[int]:
    rows = page.locator("table.audit tbody tr[data-seq]")  # type: ignore[attr-defined]
    return [int(x) for x in rows.evaluate_all("rs => rs.map(r => r.dataset.seq)")]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium")
def test_auditor_filters_pages_and_downloads_the_selection(tmp_path: Path,
                                                           server_factory: type,  # noqa: F811
                                                           ) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    data = tmp_path / "data"
    prepare(data)
    refused = [r.seq for r in entries(data, "access.refused") if r.actor == "op1"]
    assert len(refused) == REFUSALS
    server = server_factory.start(data, "--no-resume")
    server.wait_up(90.0)
    problems: list[str] = []
    since = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=LAUNCH_ARGS)
        try:
            ctx = browser.new_context(viewport={"width": 1366, "height": 900},
                                      accept_downloads=True)
            page = ctx.new_page()
            page.on("response", lambda r: problems.append(f"{r.url}: {r.status}")
                    if r.status >= 400 else None)
            page.goto(f"{server.url}/login?next=/console/audit")
            page.fill("#name", "au1")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{server.url}/console/audit")

            # filter: who, which action, from when (UTC)
            page.fill("#f-actor", "op1")
            page.select_option("#f-action", "access.refused")
            page.fill("#f-since", since)
            page.click("#audit-filter button[type=submit]")
            page.wait_for_url(re.compile(r".*actor=op1.*"))
            expect(page.locator("#audit-caption")).to_contain_text(
                f"{REFUSALS} entries selected")
            first = seqs(page)
            assert first == refused[::-1][:50]
            # the details in words, the raw JSON one click away
            row = page.locator(f"tr[data-seq='{first[0]}']")
            expect(row).to_contain_text("Access refused")
            expect(row.locator("dl.audit-details")).to_contain_text("Attempted")
            row.locator("summary").click()
            expect(row.locator("pre")).to_contain_text('"attempted"')
            page.screenshot(path=str(tmp_path / "audit-filtered.png"), full_page=False)

            # older, then newer again: the same first page
            page.click("text=Older entries")
            page.wait_for_url(re.compile(rf".*before={first[-1]}.*"))
            second = seqs(page)
            assert second == refused[::-1][50:]
            expect(page.locator("text=Older entries")).to_have_count(0)
            assert page.input_value("#f-actor") == "op1"  # the filters stay
            page.click("text=Newer entries")
            page.wait_for_url(re.compile(rf".*after={second[0]}.*"))
            assert seqs(page) == first

            # download exactly this selection, as CSV and as JSON lines
            with page.expect_download() as got:
                page.click("#export-selection button[value=csv]")
            download = got.value
            assert download.suggested_filename == "audit-selection.csv"
            text = Path(download.path()).read_text(encoding="utf-8")
            rows = list(csv.reader(io.StringIO(text)))
            assert rows[0][:4] == ["seq", "time", "actor", "action"]
            assert [int(r[0]) for r in rows[1:]] == refused
            with page.expect_download() as got:
                page.click("#export-selection button[value=jsonl]")
            lines = Path(got.value.path()).read_text(encoding="utf-8").splitlines()
            assert [json.loads(x)["seq"] for x in lines] == refused
        finally:
            browser.close()
    assert not problems, problems
    exported = entries(data, "audit.export")
    assert [json.loads(r.details)["format"] for r in exported] == ["csv", "jsonl"]
    filters = json.loads(exported[0].details)["filters"]
    assert filters["actor"] == "op1" and filters["action"] == "access.refused"
    assert filters["since"].startswith(since) and filters["upto"] >= refused[-1]
