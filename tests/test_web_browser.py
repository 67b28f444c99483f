"""The operator console in a real browser: ``openlfr serve`` on a fresh data directory runs an
authorised deployment whose camera is an MJPEG stream made from registry-package photos; an
operator signs in, a watchlisted face walks in, the alert appears on the open page WITHOUT a
reload (Server-Sent Events), the operator confirms it, a supervisor gives the second
confirmation (two-person rule) and records the outcome, and the public page's figures follow.

Headless Debian Chromium (``/usr/bin/chromium``) through Playwright; screenshots of every page
visited are saved in the test's tmp dir and copied to /tmp/openlfr-shots for people to look at.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import pytest
from sqlalchemy import func, select

from openlfr.config import Settings
from openlfr.governance import deployments as deps
from openlfr.governance import users, watchlists
from openlfr.governance.authz import Actor
from openlfr.governance.system import initialise
from openlfr.store.enums import Role
from openlfr.store.models import Alert
from tests import videoclips
from tests.govfix import authorise
from tests.test_gov_deployments import REASON, plan
from tests.test_web_serve import CHROMIUM, SHOTS, server_factory  # noqa: F401

PASSWORD = "a long test password"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]


class MjpegCamera:
    """A camera on 127.0.0.1: an MJPEG stream (15 fps) of an empty scene until :meth:`go`,
    then a watchlisted person walking in and standing still."""

    def __init__(self, empty: list, person: list) -> None:
        def jpeg(frame: object) -> bytes:
            ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
            assert ok
            return bytes(buf.tobytes())

        self.empty = [jpeg(f) for f in empty]
        self.person = [jpeg(f) for f in person]
        self.started = threading.Event()
        self.closing = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = j = 0
                try:
                    while not owner.closing.is_set():
                        if owner.started.is_set():
                            data = owner.person[min(j, len(owner.person) - 1)]
                            j += 1
                        else:
                            data = owner.empty[i % len(owner.empty)]
                            i += 1
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                         + f"Content-Length: {len(data)}\r\n\r\n".encode()
                                         + data + b"\r\n")
                        self.wfile.flush()
                        time.sleep(1 / 15)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/camera.mjpg"

    def go(self) -> None:
        self.started.set()

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def camera(face_images: dict[str, Path], no_face_path: Path) -> Iterator[MjpegCamera]:
    walk = videoclips.walk_in_frames(face_images["obama2"], n=30)
    cam = MjpegCamera(videoclips.empty_frames(30, prop=no_face_path), walk)
    try:
        yield cam
    finally:
        cam.close()


def prepare(data: Path, face: Path, camera_url: str) -> int:
    """A fresh installation with staff, an approved watchlist (one subject, from obama.jpg),
    and a deployment authorised and started (``openlfr serve`` resumes its live run)."""
    system, _ = initialise(Settings(data_dir=data))
    try:
        users.create_first_admin(system.db, "admin", PASSWORD)
        admin = Actor("admin", Role.ADMIN)
        for name, role in (("op1", Role.OPERATOR), ("sv1", Role.SUPERVISOR),
                           ("ao1", Role.AUTHORISING_OFFICER)):
            users.add_user(system.db, admin, name, role, PASSWORD)
        op1, ao1 = Actor("op1", Role.OPERATOR), Actor("ao1", Role.AUTHORISING_OFFICER)
        wl = watchlists.create_watchlist(system, op1, "wanted",
                                         "Locate people wanted by the courts at the station")
        watchlists.add_subject(system, op1, wl.id, "Case 2026/117", "wanted_by_court", REASON,
                               datetime.now(UTC) + timedelta(days=30),
                               [(face.read_bytes(), "custody record 117")])
        watchlists.approve_watchlist(system.db, ao1, wl.id)
        dep_id = deps.create(system.db, op1, plan(
            (wl.id,), cameras=(deps.CameraSpec("gate", camera_url),)), keyring=system.keyring)
        authorise(system.db, system.keyring, ao1, dep_id)
        deps.start(system.db, op1, dep_id)
        return dep_id
    finally:
        system.close()


def figures(page: object) -> dict[str, str]:
    text = page.inner_text("main")  # type: ignore[attr-defined]
    out = {}
    for label in ("Alerts (possible matches)", "Confirmed by an officer"):
        m = re.search(re.escape(label) + r"\s+([\d,]+)", text)
        out[label] = m.group(1) if m else "?"
    return out


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium")
def test_operator_sees_the_alert_live_and_confirms_it(tmp_path: Path, face_images,
                                                      camera: MjpegCamera,
                                                      server_factory: type,  # noqa: F811
                                                      ) -> None:
    from playwright.sync_api import expect, sync_playwright

    # Each step waits for what the page shows, with room for a busy machine (the default is 5 s:
    # a confirmation's round trip took longer than that on a loaded CI machine).
    expect.set_options(timeout=30_000)
    data = tmp_path / "data"
    dep_id = prepare(data, face_images["obama"], camera.url)
    server = server_factory.start(data)
    server.wait_up(90.0)  # a busy machine imports slowly
    shots = tmp_path / "shots"
    shots.mkdir()
    problems: list[str] = []

    def shot(page: object, name: str) -> None:
        page.screenshot(path=str(shots / f"console-{name}.png"), full_page=True)  # type: ignore[attr-defined]

    def watch(page: object) -> None:
        page.on("console", lambda m: problems.append(m.text)  # type: ignore[attr-defined]
                if m.type == "error" else None)
        page.on("response", lambda r: problems.append(  # type: ignore[attr-defined]
            f"{r.request.method} {r.url}: {r.status}") if r.status >= 400 else None)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=LAUNCH_ARGS)
        try:
            public = browser.new_page(viewport={"width": 1280, "height": 900})
            watch(public)
            public.goto(f"{server.url}/public/deployments/{dep_id}")
            before = figures(public)
            assert before == {"Alerts (possible matches)": "0",
                              "Confirmed by an officer": "0"}, before
            shot(public, "public-before")

            # the operator signs in and opens the alert queue of the deployment
            ctx = browser.new_context(viewport={"width": 1280, "height": 900})
            page = ctx.new_page()
            watch(page)
            page.goto(f"{server.url}/login?next=/console")
            shot(page, "login")
            page.fill("#name", "op1")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{server.url}/console")
            assert "Alerts: the live review queue" in page.inner_text("main")
            shot(page, "home")
            page.click("text=Alerts: the live review queue")
            page.select_option("#dep", str(dep_id))
            page.click("form.filters-form button")
            page.wait_for_url(re.compile(rf".*deployment={dep_id}.*"))
            expect(page.locator("#live-state")).to_have_text(re.compile("^live"),
                                                             timeout=10_000)
            # camera health arrives on the same stream
            expect(page.locator("#health-rows")).to_contain_text("live", timeout=30_000)
            assert page.locator("article.alert-card").count() == 0
            page.evaluate("window.__sameDocument = true")
            shot(page, "queue-waiting")

            # the watchlisted person walks in: the alert appears without a reload
            camera.go()
            first = page.locator("article.alert-card").first
            expect(first).to_be_visible(timeout=40_000)
            assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
            # this alert's card (another track of the same person may put a new card on top)
            alert_id = int(first.get_attribute("data-alert-id") or 0)
            card = page.locator(f"#alert-{alert_id}")
            text = card.inner_text()
            assert "POSSIBLE MATCH" in text.upper() and "gate" in text
            assert "threshold" in text and "0 of 2 confirmations" in text
            # Both pictures load (a better shot of the same track may swap the crop's source
            # meanwhile: wait for a loaded one rather than checking at one instant).
            for picture in (f"#alert-{alert_id} img[data-crop]",
                            f"#alert-{alert_id} img[alt^='Watchlist reference']"):
                page.wait_for_function("s => { const i = document.querySelector(s);"
                                       " return i && i.complete && i.naturalWidth > 0; }",
                                       arg=picture, timeout=30_000)
            shot(page, "queue-alert")

            # confirm: one click; the two-person rule now wants a second person (this alert's
            # card: another track of the same person may have put a new card on top)
            card = page.locator(f"#alert-{alert_id}")
            card.locator("button[value=confirm]").click()
            expect(card).to_contain_text("1 of 2 confirmations")
            expect(card.locator("button[value=confirm]")).to_be_disabled()
            assert page.evaluate("window.__sameDocument === true")
            shot(page, "queue-confirmed-once")

            # a supervisor gives the second confirmation and records the outcome
            ctx2 = browser.new_context(viewport={"width": 820, "height": 1180})  # a tablet
            sv = ctx2.new_page()
            watch(sv)
            sv.goto(f"{server.url}/login?next=/console/alerts/{alert_id}")
            sv.fill("#name", "sv1")
            sv.fill("#password", PASSWORD)
            sv.click("button[type=submit]")
            sv.wait_for_url(f"{server.url}/console/alerts/{alert_id}")
            sv.click("button[value=confirm]")
            expect(sv.locator("main")).to_contain_text("2 of 2 confirmations")
            sv.check("input[name=engaged][value=yes]")
            sv.select_option(f"#action-{alert_id}", "advice")
            sv.fill(f"#notes-{alert_id}", "Spoke to him at gate 3")
            sv.click("text=Record the outcome")
            expect(sv.locator("main")).to_contain_text("The outcome is recorded.")
            expect(sv.locator("main")).to_contain_text("engaged, action advice")
            shot(sv, "alert-outcome-tablet")

            # the operator's deployment ends; the public figures follow
            system, _ = initialise(Settings(data_dir=data))
            try:
                deps.stop(system.db, Actor("op1", Role.OPERATOR), dep_id,
                          "Operation finished")
                with system.db.reading() as s:
                    stored = s.scalar(select(func.count()).select_from(Alert).where(
                        Alert.deployment_id == dep_id))
            finally:
                system.close()
            public.goto(f"{server.url}/public/deployments/{dep_id}")
            after = figures(public)
            assert after == {"Alerts (possible matches)": str(stored),
                             "Confirmed by an officer": "1"}, after
            assert stored >= 1
            shot(public, "public-after")
            page.goto(f"{server.url}/console/alerts?deployment={dep_id}&status=all")
            expect(page.locator("#live-state")).to_have_text(re.compile("^live"))
            shot(page, "queue-all")
            # a graceful stop is not held up by the open stream, which says goodbye (held up,
            # uvicorn would cancel it at the end of its graceful timeout, and say so)
            assert server.terminate() == 0
            expect(page.locator("#live-state")).to_contain_text("the server is stopping")
        finally:
            browser.close()
    assert problems == [], problems  # e.g. a CSP violation or a failed request
    err = server.stderr.read_text()
    assert "Traceback" not in err, err
    assert "timeout graceful shutdown exceeded" not in err, err
    SHOTS.mkdir(parents=True, exist_ok=True)
    for png in sorted(shots.glob("*.png")):
        assert png.stat().st_size > 5000
        shutil.copy(png, SHOTS / png.name)
