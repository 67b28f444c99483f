"""The alert queue in a real browser (Debian's Chromium through Playwright, ``openlfr serve`` on
a fresh data directory with 60 stored alerts of a real watchlisted face): filters in the URL,
pages newer and older, a bad filter said on the page, a decision by keyboard shortcut (and
none while typing), the images enlarged side by side in a dialog that Esc closes, and the
decision history still on the alert's page after deciding — all without a reload.
Screenshots go to the test's tmp dir and /tmp/openlfr-shots."""

from __future__ import annotations

import re
import shutil
from collections import Counter
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
from openlfr.store.models import AuditRecord
from openlfr.video.types import Alert
from tests.govfix import authorise
from tests.test_gov_deployments import REASON, plan
from tests.test_web_browser import LAUNCH_ARGS, PASSWORD
from tests.test_web_serve import CHROMIUM, SHOTS, server_factory  # noqa: F401

CAMERAS = ("gate", "hall")
#: Stand-ins for the live stream (``window.__emit(type, data)`` sends an event) and for the
#: Notification API (``window.__notes`` records what would be shown), before the page loads.
FAKE_LIVE = """
window.__notes = [];
window.Notification = function (title, options) { window.__notes.push([title, options.body]); };
window.Notification.permission = "granted";
window.Notification.requestPermission = function () { return Promise.resolve("granted"); };
window.__sources = [];
window.EventSource = function (url) { this.url = url; this.on = {}; window.__sources.push(this); };
window.EventSource.prototype.addEventListener = function (type, f) {
  (this.on[type] = this.on[type] || []).push(f);
};
window.EventSource.prototype.close = function () {};
window.__emit = function (type, data) {
  window.__sources.forEach(function (s) {
    (s.on[type] || []).forEach(function (f) { f({ data: JSON.stringify(data) }); });
  });
};
"""
N = 60


def prepare(data: Path, face: Path) -> tuple[int, dict[str, list[int]]]:
    """Staff, an approved watchlist (one subject, a real photo), an authorised deployment,
    and ``N`` alerts stored by the alert recorder (real encrypted crops), newest last; returns
    the deployment and the alert ids per camera."""
    system, _ = initialise(Settings(data_dir=data))
    try:
        users.create_first_admin(system.db, "admin", PASSWORD)
        admin = Actor("admin", Role.ADMIN)
        for name, role in (("op1", Role.OPERATOR), ("ao1", Role.AUTHORISING_OFFICER),
                           ("au1", Role.AUDITOR)):
            users.add_user(system.db, admin, name, role, PASSWORD)
        op1, ao1 = Actor("op1", Role.OPERATOR), Actor("ao1", Role.AUTHORISING_OFFICER)
        wl = watchlists.create_watchlist(system, op1, "wanted",
                                         "Locate people wanted by the courts at the station")
        subject = watchlists.add_subject(system, op1, wl.id, "Case 2026/117",
                                         "wanted_by_court", REASON,
                                         datetime.now(UTC) + timedelta(days=30),
                                         [(face.read_bytes(), "custody record 117")])
        watchlists.approve_watchlist(system.db, ao1, wl.id)
        dep_id = deps.create(system.db, op1, plan((wl.id,)), keyring=system.keyring)
        authorise(system.db, system.keyring, ao1, dep_id)
        img = cv2.imread(str(face))
        assert img is not None
        h, w = img.shape[:2]
        crop = img[h // 6: h // 6 + h // 2, w // 4: w // 4 + w // 2].copy()
        rec = svc.AlertRecorder(system, dep_id)
        ids: dict[str, list[int]] = {c: [] for c in CAMERAS}
        now = datetime.now(UTC).timestamp()
        for i in range(N):
            cam = CAMERAS[i % 2]
            alert = Alert(alert_id=f"{cam}:{i}:s", camera=cam, track_id=i,
                          subject_id=str(subject.id), display_name="Case 2026/117",
                          score=0.45 + (i % 10) / 100, threshold=0.4,
                          reference_id=str(subject.images[0].id), model_id="sface",
                          frame=i, t=float(i), wall_time=now - (N - i) * 60,
                          frame_wall=now - (N - i) * 60, box=(1, 2, 30, 40), probe_crop=crop,
                          revision=0)
            rec.publish(alert)
            row = rec.stored_id(alert.alert_id)
            assert row is not None
            ids[cam].append(row)
        return dep_id, ids
    finally:
        system.close()


def audit_actions(data: Path, action: str) -> list[tuple[str, str]]:
    system, _ = initialise(Settings(data_dir=data))
    try:
        with system.db.reading() as s:
            return [(r.actor, r.object_id) for r in s.scalars(
                select(AuditRecord).where(AuditRecord.action == action)
                .order_by(AuditRecord.seq))]
    finally:
        system.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium")
def test_review_at_volume_by_keyboard(tmp_path: Path, face_images: dict[str, Path],
                                      server_factory: type,  # noqa: F811
                                      ) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    data = tmp_path / "data"
    _, ids = prepare(data, face_images["obama"])
    newest = sorted(ids["gate"] + ids["hall"], reverse=True)
    server = server_factory.start(data)
    server.wait_up(90.0)
    shots = tmp_path / "shots"
    shots.mkdir()
    problems: list[str] = []

    def shot(page: object, name: str, full: bool = True) -> None:
        page.screenshot(path=str(shots / f"alerts-{name}.png"), full_page=full)  # type: ignore[attr-defined]

    def card_ids(page: object) -> list[int]:
        return [int(x) for x in page.eval_on_selector_all(  # type: ignore[attr-defined]
            "article.alert-card", "els => els.map(e => e.dataset.alertId)")]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=LAUNCH_ARGS)
        try:
            ctx = browser.new_context(viewport={"width": 1366, "height": 900})
            page = ctx.new_page()
            # (the page with a bad filter is answered 400 on purpose)
            page.on("console", lambda m: problems.append(m.text) if m.type == "error"
                    and "min_score=high" not in page.url else None)
            page.on("response", lambda r: problems.append(f"{r.request.method} {r.url}: "
                                                          f"{r.status}")
                    if r.status >= 400 and "min_score=high" not in r.url else None)
            page.goto(f"{server.url}/login?next=/console/alerts")
            page.fill("#name", "op1")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{server.url}/console/alerts")

            # pages: 50 of 60 waiting, newest first; older, then newer again
            main = page.locator("main")
            expect(main).to_contain_text(f"Alerts 1–50 of {N}, newest first")
            assert card_ids(page) == newest[:50]
            page.locator("a[rel=next]").first.click()
            expect(main).to_contain_text(f"Alerts 51–{N} of {N}")
            assert card_ids(page) == newest[50:]
            page.locator("a[rel=prev]").first.click()
            expect(main).to_contain_text(f"Alerts 1–50 of {N}")

            # filters: camera and score band, into the URL (a bookmark)
            page.fill("#cam", "hall")
            page.fill("#min-score", "0.51")
            page.click("form.alert-filters button[type=submit]")
            page.wait_for_url(re.compile(r".*camera=hall.*min_score=0\.51.*"))
            # hall has the odd-numbered alerts n, scored 0.45 + (n % 10) / 100
            wanted = [row for n, row in sorted(((2 * k + 1, row) for k, row in
                                                enumerate(ids["hall"])), reverse=True)
                      if n % 10 in (7, 9)]
            assert card_ids(page) == wanted, (card_ids(page), wanted)
            expect(page.locator("#cam")).to_have_value("hall")
            shot(page, "filtered")
            bookmark = page.url
            page.goto(f"{server.url}/console/alerts")
            page.goto(bookmark)
            assert card_ids(page) == wanted
            # a bad value: said in words, the page still there
            page.goto(f"{server.url}/console/alerts?min_score=high")
            expect(page.locator("#filter-errors")).to_contain_text("Score from")
            assert len(card_ids(page)) == 50

            # the enlarged images: side by side, full resolution, Esc closes, focus returns
            page.goto(f"{server.url}/console/alerts")
            first = newest[0]
            card = page.locator(f"#alert-{first}")
            button = card.locator("[data-enlarge]")
            expect(button).to_be_visible()
            button.focus()
            page.keyboard.press("Enter")
            dialog = page.locator(f"#enlarge-{first}")
            expect(dialog).to_be_visible()
            for which in ("crop", "reference"):
                page.wait_for_function(
                    "s => { const i = document.querySelector(s);"
                    " return i && i.complete && i.naturalWidth > 0; }",
                    arg=f"#enlarge-{first} img[data-src*='{which}']", timeout=30_000)
            sizes = dialog.locator("img").evaluate_all(
                "els => els.map(e => [e.naturalWidth, e.getBoundingClientRect().width,"
                " e.getBoundingClientRect().top])")
            assert len(sizes) == 2 and abs(sizes[0][2] - sizes[1][2]) < 2  # side by side
            assert all(r[1] > 176 for r in sizes)  # larger than on the card
            assert dialog.locator("img").nth(0).get_attribute("alt")
            shot(page, "enlarged", full=False)
            page.keyboard.press("Escape")
            expect(dialog).to_be_hidden()
            assert page.evaluate("document.activeElement.hasAttribute('data-enlarge')")
            # the "e" key opens the same dialog for the current card
            page.keyboard.press("e")
            expect(dialog).to_be_visible()
            page.keyboard.press("Escape")
            expect(dialog).to_be_hidden()

            # the keyboard decides: not while typing in a box, then "c" confirms
            page.goto(f"{server.url}/console/alerts/{first}")
            page.evaluate("window.__sameDocument = true")
            expect(page.locator("kbd.key-hint").first).to_be_visible()
            reason = page.locator(f"#reason-{first}")
            reason.click()
            page.keyboard.type("cr")
            expect(reason).to_have_value("cr")
            reason.fill("")
            page.locator("h1").click()  # out of the box
            page.keyboard.press("c")
            single = page.locator(f"#alert-{first}")
            expect(single).to_contain_text("Your confirmation is recorded.")
            expect(single).to_contain_text("1 of 2 confirmations")
            history = single.locator(".alert-history")
            expect(history).to_contain_text("op1: confirmed")
            assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
            # a second person is needed: "c" again changes nothing; a reason and "r" rejects
            single.locator("label.choice", has_text="Not the same person").click()
            page.keyboard.press("r")
            expect(single.locator(".badge.alert-rejected")).to_have_text("false alert")
            expect(history).to_contain_text("op1: rejected (false alert)")
            expect(history).to_contain_text("Not the same person")
            expect(history).to_contain_text("op1: confirmed")  # the whole history stays
            assert page.evaluate("window.__sameDocument === true")
            shot(page, "decided-history")

            # the optional notification: off by default, kept in this browser
            page.goto(f"{server.url}/console/alerts")
            toggle = page.locator("#notify-new")
            expect(toggle).not_to_be_checked()
            toggle.check()
            assert page.evaluate("localStorage.getItem('openlfr.alertNotify')") == "on"
            page.reload()
            expect(page.locator("#notify-new")).to_be_checked()

            # a new alert on the live stream: a notification (words only) and the card on
            # top; on a filtered page, a note instead of a guess. The stream and the
            # Notification API are stand-ins here (a real stream: tests/test_web_browser.py).
            # the first sign-in's views so far: one entry per alert, however often shown
            views = audit_actions(data, "alert.view")
            assert len(views) == len(set(views)) == N and ("op1", str(first)) in views
            live = browser.new_context(viewport={"width": 1366, "height": 900})
            live.add_init_script(FAKE_LIVE)
            lp = live.new_page()
            lp.goto(f"{server.url}/login?next=/console/alerts")
            lp.fill("#name", "op1")
            lp.fill("#password", PASSWORD)
            lp.click("button[type=submit]")
            lp.wait_for_url(f"{server.url}/console/alerts")
            old = newest[-1]  # on the last page: not on this one
            event = {"id": old, "deployment": "Station concourse", "camera": "gate",
                     "score": 0.5, "revision": 0, "status": "pending",
                     "url": f"/console/alerts/{old}", "card_url": f"/console/alerts/{old}/card",
                     "crop_url": f"/console/alerts/{old}/crop.jpg?r=0"}
            lp.evaluate("e => window.__emit('alert', e)", event)
            expect(lp.locator("article.alert-card").first).to_have_attribute(
                "data-alert-id", str(old))
            assert lp.evaluate("window.__notes.length") == 0  # off by default
            lp.check("#notify-new")
            lp.evaluate("e => window.__emit('alert', e)", {**event, "id": newest[-2],
                                                            "card_url": f"/console/alerts/"
                                                                        f"{newest[-2]}/card"})
            expect(lp.locator("article.alert-card").first).to_have_attribute(
                "data-alert-id", str(newest[-2]))
            notes = lp.evaluate("window.__notes")
            assert notes == [[f"Possible match: alert {newest[-2]}",
                              "Station concourse, camera gate, score 0.500"]], notes
            lp.goto(f"{server.url}/console/alerts?camera=hall")
            lp.evaluate("e => window.__emit('alert', e)", {**event, "id": newest[-3]})
            expect(lp.locator("#queue-new")).to_be_visible()
            assert lp.locator(f"#alert-{newest[-3]}").count() == 0
        finally:
            browser.close()
    assert problems == [], problems
    # one view per alert shown in the session, however often; the enlargement on record
    views = audit_actions(data, "alert.view")  # and one more per alert the second showed
    assert max(Counter(views).values()) == 2
    assert audit_actions(data, "alert.enlarge") == [("op1", str(first))] * 2
    assert not audit_actions(data, "alert.view_crop")
    assert server.terminate() == 0
    assert "Traceback" not in server.stderr.read_text()
    SHOTS.mkdir(parents=True, exist_ok=True)
    for png in sorted(shots.glob("*.png")):
        shutil.copy(png, SHOTS / png.name)
