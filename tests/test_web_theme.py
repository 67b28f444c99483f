"""The pages in a real browser (Debian's Chromium, launched as tests/test_web_browser.py does,
through ``openlfr serve`` and the shared server fixture): on a phone the public pages put the
key figures first and never scroll sideways; dark mode follows the system setting with every
text at WCAG AA contrast; an alert's page and the Art. 12 record print without navigation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from openlfr.config import Settings
from openlfr.governance import users
from openlfr.governance.authz import Actor
from openlfr.governance.system import initialise
from openlfr.store.enums import Role
from openlfr.store.models import Alert
from tests.test_web_browser import LAUNCH_ARGS, PASSWORD
from tests.test_web_public import Demo, populate
from tests.test_web_serve import CHROMIUM, server_factory  # noqa: F401

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian's Chromium at /usr/bin/chromium")

#: For every visible element with text of its own: its colour, the colour of the first
#: ancestor with an opaque background, the contrast ratio and whether the text is large.
CONTRASTS = """() => {
  const parse = c => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(',').map(Number); return {r: p[0], g: p[1], b: p[2],
    a: p.length > 3 ? p[3] : 1}; };
  const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92
    : Math.pow((v + 0.055) / 1.055, 2.4); }; return 0.2126 * f(c.r) + 0.7152 * f(c.g)
    + 0.0722 * f(c.b); };
  const background = el => { for (let e = el; e; e = e.parentElement) {
    const c = parse(getComputedStyle(e).backgroundColor); if (c && c.a > 0.5) return c; }
    return {r: 255, g: 255, b: 255, a: 1}; };
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const st = getComputedStyle(el), box = el.getBoundingClientRect();
    if (st.visibility === 'hidden' || st.display === 'none' || box.width < 2 || box.height < 2
        || box.right < 0 || box.left < -100 || el.closest('.hp, .sr-only, .skip')) continue;
    const fg = parse(st.color), bg = background(el);
    const l1 = lum(fg), l2 = lum(bg);
    const size = parseFloat(st.fontSize), bold = parseInt(st.fontWeight) >= 700;
    out.push({tag: el.tagName.toLowerCase(), cls: el.className || '', link: !!el.closest('a'),
      text: el.textContent.trim().slice(0, 40), fg: st.color,
      ratio: (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05),
      large: size >= 24 || (bold && size >= 18.66)});
  }
  return out;
}"""


@dataclass
class Site:
    url: str
    demo: Demo
    alert_id: int
    shots: Path


@pytest.fixture()
def site(tmp_path: Path, server_factory: type) -> Iterator[Site]:  # noqa: F811
    data = tmp_path / "data"
    system, _ = initialise(Settings(data_dir=data))
    try:
        users.create_first_admin(system.db, "admin", PASSWORD)
        users.add_user(system.db, Actor("admin", Role.ADMIN), "au1", Role.AUDITOR, PASSWORD)
        demo = populate(system.db)
        with system.db.reading() as s:
            alert_id = s.scalars(select(Alert.id).where(
                Alert.deployment_id == demo.ended).order_by(Alert.id)).first()
    finally:
        system.close()
    assert alert_id is not None
    server = server_factory.start(data, "--no-resume")
    server.wait_up(90.0)  # a busy machine imports slowly
    yield Site(server.url, demo, alert_id, tmp_path)


@pytest.fixture()
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()


def sign_in(page: Any, url: str, name: str, then: str) -> None:
    page.goto(f"{url}/login?next={then}")
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(url + then)


def test_on_a_phone_the_key_figures_come_first_without_sideways_scrolling(
        site: Site, browser: Any) -> None:
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                              is_mobile=True, has_touch=True)
    page = ctx.new_page()
    d = site.demo
    page.goto(f"{site.url}/public/deployments/{d.ended}")
    page.screenshot(path=str(site.shots / "phone-deployment.png"), full_page=True)
    for path in ("/public", f"/public/deployments/{d.ended}", f"/public/deployments/{d.running}",
                 f"/public/deployments/{d.planned}", f"/public/summary?year={d.year}",
                 "/public/summary?year=2031"):
        page.goto(site.url + path)
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], (path, width)
    # a deployment's page: the figures, then the plan, then the answers, then the questions
    page.goto(f"{site.url}/public/deployments/{d.ended}")
    tops = page.evaluate("""() => ['.key-figures', '#plan-h', '#faq-h', '#q-h'].map(
        s => document.querySelector(s).getBoundingClientRect().top + window.scrollY)""")
    assert tops == sorted(tops), tops
    first = page.locator(".key-figures li").first.bounding_box()
    assert first is not None and first["y"] + first["height"] < 844  # on the first screen
    assert "people passing" in page.locator(".key-figures").inner_text()
    # the index: this year's figures before the list of deployments
    page.goto(f"{site.url}/public")
    tops = page.evaluate("""() => ['.key-figures', '#current-h', '#past-h'].map(
        s => document.querySelector(s).getBoundingClientRect().top + window.scrollY)""")
    assert tops == sorted(tops), tops
    page.goto(f"{site.url}/public/summary?year=2031")
    assert page.locator(".empty-year").is_visible()
    assert page.locator("figure.chart").count() == 0
    ctx.close()


def low_contrast(page: Any) -> list[dict[str, Any]]:
    return [c for c in page.evaluate(CONTRASTS) if c["ratio"] < (3.0 if c["large"] else 4.5)]


def test_dark_mode_follows_the_system_setting_with_aa_contrast(site: Site, browser: Any,
                                                               tmp_path: Path) -> None:
    d = site.demo
    pages = ["/public", f"/public/deployments/{d.ended}", f"/public/deployments/{d.running}",
             f"/public/summary?year={d.year}", "/login"]
    console = [f"/console/alerts/{site.alert_id}", f"/console/audit/art12/{d.ended}",
               "/console/audit", "/console/questions?status=all", "/console"]
    for scheme in ("dark", "light"):
        ctx = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme=scheme)
        page = ctx.new_page()
        for i, path in enumerate(pages + console):
            if i == len(pages):
                sign_in(page, site.url, "au1", "/console")
            page.goto(site.url + path)
            body = page.evaluate("""() => { const s = getComputedStyle(document.body);
                return [s.backgroundColor, s.color]; }""")
            if scheme == "dark":  # the dark palette is in use
                assert body == ["rgb(18, 21, 25)", "rgb(231, 234, 238)"], (path, body)
            else:
                assert body[0] == "rgb(246, 247, 249)", (path, body)
            checked = page.evaluate(CONTRASTS)
            assert any(c["link"] for c in checked) and len(checked) > 10, path
            bad = low_contrast(page)
            assert bad == [], (scheme, path, bad[:5])
            page.screenshot(path=str(tmp_path / f"{scheme}-{i}.png"), full_page=True)
        ctx.close()


def test_an_alert_and_the_art12_record_print_without_navigation(site: Site,
                                                                 browser: Any) -> None:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="dark")
    page = ctx.new_page()
    sign_in(page, site.url, "au1", f"/console/alerts/{site.alert_id}")
    for path, essentials in (
            (f"/console/alerts/{site.alert_id}", ["h1", ".alert-card", ".pair", "dl"]),
            (f"/console/audit/art12/{site.demo.ended}", ["h1", "table", ".grid2 .card", "dl"])):
        page.goto(site.url + path)
        page.emulate_media(media="screen")
        assert page.locator("header.site nav").is_visible()
        page.emulate_media(media="print")
        for hidden in ("header.site", "header.site nav", "footer.site", ".crumbs"):
            assert not page.locator(hidden).first.is_visible(), (path, hidden)
        assert all(not b.is_visible() for b in page.locator("button, form").all()), path
        for shown in essentials:
            assert page.locator(shown).first.is_visible(), (path, shown)
        # printed in black on white, whatever the screen's scheme
        body = page.evaluate("""() => { const s = getComputedStyle(document.body);
            return [s.backgroundColor, s.color]; }""")
        assert body == ["rgb(255, 255, 255)", "rgb(0, 0, 0)"], (path, body)
        pdf = page.pdf(format="A4")
        assert pdf.startswith(b"%PDF") and len(pdf) > 5000
        page.emulate_media(media="screen")
    ctx.close()
