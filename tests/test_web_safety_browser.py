"""In a real browser (headless Debian Chromium through Playwright): an irreversible action asks
in a dialog with JavaScript and on a page of its own without it, and does nothing until the
person says yes; a console whose zone of people is Europe/London shows and takes times there,
labelled."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from openlfr.governance import deployments as deps
from openlfr.governance import users as users_svc
from openlfr.store.enums import Role
from openlfr.web import tokens
from openlfr.web.app import create_app
from tests.govfix import PASSWORD, Gov
from tests.test_web_browser import LAUNCH_ARGS
from tests.test_web_governance import approved_watchlist
from tests.test_web_serve import CHROMIUM

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian's Chromium at /usr/bin/chromium")


@pytest.fixture()
def london(sqlite_gov: Gov) -> Iterator[str]:
    """The console of ``sqlite_gov`` served on 127.0.0.1 with OPENLFR_TIME_ZONE=Europe/London;
    its address."""
    system = dataclasses.replace(sqlite_gov.system, settings=sqlite_gov.settings.model_copy(
        update={"time_zone": "Europe/London"}))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(system), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture()
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()


def signed_in(browser: Any, url: str, name: str, javascript: bool = True) -> Any:
    page = browser.new_context(viewport={"width": 1280, "height": 900},
                               java_script_enabled=javascript).new_page()
    page.goto(f"{url}/login?next=/console")
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/console")
    return page


def test_revoking_a_token_asks_in_a_dialog_and_without_javascript_on_a_page(
        sqlite_gov: Gov, london: str, browser: Any) -> None:
    gov = sqlite_gov
    admin = gov.actors["admin"]
    token = tokens.create_token(gov.db, admin, "op1", "camera bridge")[0]
    users_svc.add_user(gov.db, admin, "dawn", Role.OPERATOR, PASSWORD)

    def revoked() -> bool:
        return next(t for t in tokens.list_tokens(gov.db, admin)
                    if t.id == token.id).revoked_at is not None

    page = signed_in(browser, london, "admin")
    page.goto(f"{london}/console/users")
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    page.click(f"button:has-text('Revoke token {token.id}')")
    page.wait_for_timeout(500)
    assert asked == [f"Revoke token #{token.id}? Every request with it will be refused."]
    assert not revoked() and page.url == f"{london}/console/users"
    page.once("dialog", lambda d: d.accept())
    page.click(f"button:has-text('Revoke token {token.id}')")
    page.wait_for_url(f"{london}/console/users?done=revoked#tokens")
    assert "Token revoked." in page.inner_text("main") and revoked()

    # without JavaScript: the server asks on a page of its own, and "No" changes nothing
    plain = signed_in(browser, london, "admin", javascript=False)
    plain.goto(f"{london}/console/users")
    plain.click("button:has-text('Deactivate dawn')")
    main = plain.inner_text("main")
    assert "Deactivate dawn? Their sessions and API tokens end for good." in main
    assert "Nothing has been done yet." in main
    assert next(u for u in users_svc.list_users(gov.db, admin) if u.name == "dawn").active
    plain.click("text=No, go back")
    plain.wait_for_url(f"{london}/console/users")
    plain.click("button:has-text('Deactivate dawn')")
    plain.click("button:has-text('Yes: deactivate')")
    plain.wait_for_url(f"{london}/console/users?done=active")
    assert not next(u for u in users_svc.list_users(gov.db, admin) if u.name == "dawn").active


def test_a_deployment_in_the_zone_of_people(sqlite_gov: Gov, london: str, browser: Any,
                                            face_images: dict[str, Path]) -> None:
    gov = sqlite_gov
    wl_id = approved_watchlist(gov, face_images["obama"].read_bytes())
    page = signed_in(browser, london, "op1")
    page.goto(f"{london}/console/deployments/new")
    assert page.inner_text("label[for=d-start]") == "Planned start (Europe/London)"
    page.fill("#d-name", "Summer fair")
    for field, value in (("site", "Park"), ("location", "Gate"), ("purpose", "p"),
                         ("legal_basis", "b"), ("dpia_ref", "d"), ("equality_ref", "e"),
                         ("alternatives", "Patrols do not suffice")):
        page.fill(f"[name={field}]", value)
    page.fill("#d-start", "2027-07-01T14:05")
    page.fill("#d-end", "2027-07-01T18:00")
    page.fill("[name=cameras]", "gate=0")
    page.check(f"[name=watchlist_ids][value='{wl_id}']")
    page.click("button:has-text('Save the draft')")
    page.wait_for_url(f"{london}/console/deployments/*")
    dep_id = int(page.url.split("?")[0].rsplit("/", 1)[1])
    assert deps.show(gov.db, gov.actors["au1"], dep_id).planned_start == datetime(
        2027, 7, 1, 13, 5, tzinfo=UTC)  # stored in UTC
    main = page.inner_text("main")
    assert "01 Jul 2027 14:05 BST (Europe/London) – 01 Jul 2027 18:00 BST (Europe/London)" in main
    assert page.input_value("#d-start") == "2027-07-01T14:05"
    # a time the clocks skip: the message names the field and the form keeps what was typed
    page.fill("#d-start", "2027-03-28T01:30")
    page.click("button:has-text('Save the changes')")
    alert = page.inner_text("[role=alert]")
    assert "Planned_start 2027-03-28 01:30 does not exist in Europe/London" in alert
    assert page.input_value("#d-start") == "2027-03-28T01:30"
    assert deps.show(gov.db, gov.actors["au1"], dep_id).planned_start == datetime(
        2027, 7, 1, 13, 5, tzinfo=UTC)  # unchanged
