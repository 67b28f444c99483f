"""The accessibility check (tests/a11y.py: axe-core's WCAG 2 A/AA rules, and every interactive
element reachable with Tab) on the console's and the public pages, at desktop (1366 x 900) and
phone (390 px) width, in Debian's Chromium; the check itself on a page made to fail it; and
scripts/screenshots.py's pictures of the same site."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.a11y import MOUSE_HANDLERS, assert_accessible, axe_problems, keyboard_problems
from tests.showcase import PASSWORD, Showcase, Site, running_site
from tests.test_web_browser import LAUNCH_ARGS
from tests.test_web_serve import CHROMIUM

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian's Chromium at /usr/bin/chromium")

SIZES = {"desktop": (1366, 900), "phone": (390, 844)}
#: name: (who signs in, or None for a member of the public; the page's path).
PAGES: dict[str, tuple[str | None, Callable[[Showcase], str]]] = {
    "sign-in": (None, lambda s: "/login"),
    "console-home": ("op1", lambda s: "/console"),
    "alert-queue": ("op1", lambda s: "/console/alerts"),
    "alert": ("op1", lambda s: f"/console/alerts/{s.alerts[0]}"),
    "watchlists": ("op1", lambda s: "/console/watchlists"),
    "watchlist": ("op1", lambda s: f"/console/watchlists/{s.watchlist}"),
    "deployments": ("op1", lambda s: "/console/deployments"),
    "deployment": ("op1", lambda s: f"/console/deployments/{s.deployment}"),
    "new-deployment": ("op1", lambda s: "/console/deployments/new"),
    "camera-zones": ("op1", lambda s: f"/console/deployments/{s.deployment}/cameras/gate-3/zones"),
    "users": ("admin", lambda s: "/console/users"),
    "sites-and-nodes": ("admin", lambda s: "/console/nodes"),
    "audit-log": ("au1", lambda s: "/console/audit"),
    "annual-report": ("au1", lambda s: "/console/reports"),
    "public-index": (None, lambda s: "/public"),
    "public-deployment": (None, lambda s: f"/public/deployments/{s.demo.ended}"),
    "public-summary": (None, lambda s: f"/public/summary?year={s.demo.year}"),
}


@pytest.fixture(scope="module")
def site(face_images: dict[str, Path]) -> Iterator[Site]:
    with running_site(face_images) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def signed_in(site: Site, browser: Any) -> Iterator[Callable[[str | None, str], Any]]:
    """A page of a browser window of each size for each person (signed in once)."""
    opened: dict[tuple[str | None, str], Any] = {}

    def page(who: str | None, size: str) -> Any:
        if (who, size) not in opened:
            width, height = SIZES[size]
            context = browser.new_context(viewport={"width": width, "height": height})
            context.add_init_script(MOUSE_HANDLERS)
            p = context.new_page()
            if who is not None:
                p.goto(f"{site.url}/login?next=/console")
                p.fill("#name", who)
                p.fill("#password", PASSWORD)
                p.click("button[type=submit]")
                p.wait_for_url(site.url + "/console")
            opened[(who, size)] = p
        return opened[(who, size)]

    yield page
    for p in opened.values():
        p.context.close()


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("name", list(PAGES))
def test_the_page_is_accessible(site: Site, signed_in: Callable[[str | None, str], Any],
                                name: str, size: str) -> None:
    who, path = PAGES[name]
    page = signed_in(who, size)
    response = page.goto(site.url + path(site.showcase))
    assert response is not None and response.status == 200, name
    page.wait_for_load_state("load")
    assert_accessible(page, f"{name} ({size}, {who or 'public'})")
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"{name} ({size}) scrolls sideways: {width}"
    broken = page.evaluate(BROKEN_WORDS)
    assert broken == [], f"{name} ({size}): words broken across lines in a table: {broken}"


#: The words of a table's cells (letters only) that are broken across two lines (but in code
#: and digests, .mono, made to break anywhere).
BROKEN_WORDS = """() => {
  const out = [];
  for (const cell of document.querySelectorAll('th, td')) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (node.parentElement.closest('code, .mono')) continue;
      for (const m of node.textContent.matchAll(/[A-Za-z]{2,}/g)) {
        const r = document.createRange();
        r.setStart(node, m.index);
        r.setEnd(node, m.index + m[0].length);
        const lines = new Set([...r.getClientRects()].filter(b => b.width > 0)
                                .map(b => Math.round(b.top)));
        if (lines.size > 1) out.push(m[0]);
      }
    }
  }
  return out.slice(0, 10);
}"""


#: A page with one of each fault the check must find, and the same things done right.
FAULTY = """<!doctype html><html lang="en"><head><title>Faults</title></head><body><main>
<h1>Faults</h1>
<p><label for="ok-field">Named</label><input id="ok-field" name="ok"></p>
<p><input id="nameless" name="nameless"></p>
<p style="color:#aaaaaa;background:#ffffff">Pale grey text on white</p>
<p><a href="#top">A link</a> <button type="button">A button</button></p>
<fieldset><legend>Pick</legend><label><input type="radio" name="pick" value="a"> A</label>
<label><input type="radio" name="pick" value="b"> B</label></fieldset>
<div onclick="this.textContent = 'clicked'">Open by mouse (attribute)</div>
<span id="by-script">Open by mouse (script)</span>
<div onclick="void 0" tabindex="0" role="button">Open by keyboard too</div>
<script>document.getElementById('by-script').addEventListener('click', () => {});</script>
</main></body></html>"""


def test_the_check_names_what_is_wrong(browser: Any) -> None:
    context = browser.new_context(viewport={"width": 800, "height": 600})
    context.add_init_script(MOUSE_HANDLERS)
    page = context.new_page()
    page.route("http://a11y.test/", lambda route: route.fulfill(
        status=200, content_type="text/html", body=FAULTY))
    page.goto("http://a11y.test/")
    found = axe_problems(page)
    assert {line.split(" ")[0] for line in found} == {"label", "color-contrast"}, found
    assert any("#nameless" in line for line in found)
    assert keyboard_problems(page) == [
        "not reachable by keyboard: <div> 'Open by mouse (attribute)'",
        "not reachable by keyboard: <span> 'Open by mouse (script)'"]
    with pytest.raises(AssertionError, match="4 accessibility problem"):
        assert_accessible(page, "faults")
    context.close()


def _screenshots_script() -> Any:
    path = Path(__file__).resolve().parent.parent / "scripts" / "screenshots.py"
    spec = importlib.util.spec_from_file_location("screenshots", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_screenshot_script_takes_its_six_pictures(site: Site, browser: Any,
                                                      tmp_path: Path) -> None:
    script = _screenshots_script()
    written = script.main(tmp_path / "shots", site=site, browser=browser)
    assert sorted(p.name for p in written) == sorted(
        f"{name}-{size}.png" for name in ("console-home", "alert-queue", "public-deployment")
        for size in ("desktop", "phone"))
    for png in written:
        with Image.open(png) as image:
            assert image.format == "PNG"
            assert image.size == SIZES["desktop" if "desktop" in png.name else "phone"]
        assert 5_000 < png.stat().st_size < 300_000, png
