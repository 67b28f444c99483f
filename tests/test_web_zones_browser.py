"""In a real browser (headless Debian Chromium through Playwright): an operator takes a still
of a camera, draws an analysis zone with the mouse and types a privacy mask with the keyboard
(the text alternative), saves, and an authorising officer sees both drawn over the still at
authorisation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from openlfr.governance import deployments as deps
from tests.govfix import Gov
from tests.test_gov_deployments import approved_watchlist, plan
from tests.test_web_safety_browser import browser, london, signed_in  # noqa: F401 (fixtures)
from tests.test_web_serve import CHROMIUM, SHOTS

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian's Chromium at /usr/bin/chromium")

MASK = "[[[0, 0], [0.25, 0], [0.25, 0.5], [0, 0.5]]]"


def test_still_drawn_zone_typed_mask_shown_at_authorisation(
        sqlite_gov: Gov, london: str, browser: Any, face_images, clips) -> None:  # noqa: F811
    gov, url = sqlite_gov, london
    wid = approved_watchlist(gov, face_images["obama"])
    dep_id = deps.create(gov.db, gov.actors["op1"],
                         plan((wid,), cameras=(deps.CameraSpec("gate", str(clips.obama)),)),
                         keyring=gov.system.keyring)
    page = signed_in(browser, url, "op1")
    page.goto(f"{url}/console/deployments/{dep_id}")
    page.get_by_role("link", name="Draw zones and masks of camera gate").click()
    page.get_by_role("button", name="Take a still").click()
    page.wait_for_url("**/zones?done=still")
    assert "kept in memory only" in page.locator("[role=status]").inner_text()
    loaded = page.evaluate("""() => fetch(document.querySelector('#zones-canvas image')
                                  .getAttribute('href')).then(r => r.status)""")
    assert loaded == 200
    # a zone drawn with the mouse: three clicks, then closed as an analysis zone
    box = page.locator("#zones-canvas").bounding_box()
    for fx, fy in ((0.5, 0.1), (0.95, 0.1), (0.95, 0.9)):
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
    page.get_by_role("button", name="Close as analysis zone").click()
    zones = json.loads(page.input_value("#zones"))
    assert len(zones) == 1 and len(zones[0]) == 3
    assert zones[0][0] == pytest.approx([0.5, 0.1], abs=0.01)
    # a mask typed with the keyboard, in the text field (the drawing follows)
    page.focus("#masks")
    page.keyboard.type(MASK)
    assert page.locator("#zones-canvas polygon.mask").count() == 1
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # the save button, reached from the field
    page.wait_for_url(f"**/console/deployments/{dep_id}?done=saved")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "zones-saved.png"), full_page=True)

    officer = signed_in(browser, url, "ao1")
    officer.goto(f"{url}/console/deployments/{dep_id}")
    section = officer.locator("#camera-zones")
    words = section.inner_text()
    assert "1 analysis zone" in words and "1 privacy mask" in words
    assert "privacy mask 1: [0.0, 0.0] [0.25, 0.0] [0.25, 0.5] [0.0, 0.5]" in words
    assert section.locator("polygon.mask").count() == 1
    assert section.locator("polygon.zone").count() == 1
    assert section.locator("svg image").count() == 1  # over the still
    assert officer.get_by_role("button", name="Authorise").count() >= 1
