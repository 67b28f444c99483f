"""In a real browser (headless Debian Chromium through Playwright): an administrator finds
"Sites and nodes" on the console's home page, adds a site and a node with the forms, copies the
one-time enrolment token that a node then enrolls with, and disables the node after a dialog;
the page passes the accessibility check."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from openlfr.governance import nodes
from openlfr.nodes.keys import NodeKeys, b64
from tests.a11y import assert_accessible
from tests.govfix import Gov, audit_records
from tests.test_nodes_web import serving
from tests.test_web_safety_browser import browser, signed_in  # noqa: F401 (fixtures)
from tests.test_web_serve import CHROMIUM

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian's Chromium at /usr/bin/chromium")


@pytest.fixture()
def centre(sqlite_gov: Gov) -> Iterator[str]:
    with serving(sqlite_gov.system) as url:
        yield url


def test_an_admin_adds_and_disables_a_node_in_the_browser(
        sqlite_gov: Gov, centre: str, browser: Any) -> None:  # noqa: F811
    gov = sqlite_gov
    page = signed_in(browser, centre, "admin")
    page.click("text=Sites and nodes")
    page.wait_for_url(f"{centre}/console/nodes")
    page.fill("#s-name", "high-street")
    page.fill("#s-desc", "Vans parked on the high street")
    page.click("button:has-text('Add the site')")
    page.wait_for_selector("text=Site added.")
    page.fill("#n-name", "van-1")
    page.fill("#n-hours", "4")
    page.click("button:has-text('Add the node')")
    token = page.input_value("#node-token")
    assert token.startswith(nodes.TOKEN_PREFIX)
    assert "openlfr node enroll --server" in page.inner_text("#enrolment-token")
    assert_accessible(page, "sites and nodes, with a new token")

    keys = NodeKeys.generate()
    nodes.enrol(gov.db, gov.settings, token, b64(keys.signing_public), b64(keys.box_public))
    page.goto(f"{centre}/console/nodes")
    row = page.locator("tr[data-node='van-1']")
    assert "enrolled" in row.inner_text() and keys.nkey in row.inner_text()

    row.locator("input[name=reason]").fill("the van was sold")
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.accept()))
    row.locator("button:has-text('Disable')").click()
    page.wait_for_selector("text=Node disabled")
    assert asked == ["Disable node van-1 for good? Its broker credentials are revoked at once."]
    (entry,) = audit_records(gov, "node.disable")
    assert json.loads(entry.details)["reason"] == "the van was sold"
    assert_accessible(page, "sites and nodes, a node disabled")
