"""The privacy-masked live view in the operator console (``openlfr serve --preview``): a real
deployment run on a clip of a person who is not on the watchlist; the frames served carry no
face the detector can find, opening the view is audited, roles that may not read alerts are
refused, and without ``--preview`` nothing is served."""

from __future__ import annotations

import time
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from openlfr.governance import deployments as deps
from openlfr.store.models import AuditRecord
from openlfr.vision import get_engine
from openlfr.vision.quality import LIVE
from openlfr.web.app import create_app
from openlfr.web.jobs import BackgroundJobs
from tests import videoclips
from tests.govfix import Gov
from tests.test_gov_live import authorised
from tests.test_web_core import login


def _serve(gov: Gov, preview: bool) -> tuple[TestClient, BackgroundJobs]:
    jobs = BackgroundJobs(gov.system, tick=3600, preview=preview,
                          run_options={"realtime": True, "loop": True, "workers": 1})
    return TestClient(create_app(gov.system, jobs)), jobs


def _wait_run(jobs: BackgroundJobs, dep_id: int) -> None:
    """The running deployment gets its run from the reconciler (no route starts one)."""
    deadline = time.monotonic() + 10
    while dep_id not in jobs.runs:
        assert time.monotonic() < deadline, "no run started"
        time.sleep(0.05)


@pytest.fixture()
def running(sqlite_gov: Gov, face_images, clips) -> Iterator[tuple[Gov, int]]:
    dep_id = authorised(sqlite_gov, face_images, {"street": clips.stranger})
    deps.start(sqlite_gov.db, sqlite_gov.actors["op1"], dep_id)
    yield sqlite_gov, dep_id


def _jpegs(client: TestClient, url: str, n: int, timeout: float = 30.0) -> list[bytes]:
    """The first ``n`` frames of an MJPEG stream."""
    buf, out = b"", []
    deadline = time.monotonic() + timeout
    with client.stream("GET", url) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("multipart/x-mixed-replace")
        assert r.headers["cache-control"] == "no-store"
        for chunk in r.iter_bytes():
            buf += chunk
            while True:
                start = buf.find(b"\xff\xd8")
                end = buf.find(b"\xff\xd9", start + 2)
                if start < 0 or end < 0:
                    break
                out.append(buf[start:end + 2])
                buf = buf[end + 2:]
            if len(out) >= n:
                return out[:n]
            assert time.monotonic() < deadline, f"{len(out)} frames arrived, not {n}"
    raise AssertionError("the stream ended early")


def test_the_live_view_masks_every_face_and_is_audited(running, face_images) -> None:
    gov, dep_id = running
    client, jobs = _serve(gov, preview=True)
    with client:
        _wait_run(jobs, dep_id)
        login(client, "op1")
        page = client.get(f"/console/alerts?deployment={dep_id}")
        url = f"/console/alerts/preview/{dep_id}/street.mjpg"
        assert page.status_code == 200 and url in page.text
        # The clip shows a face the detector finds in every frame (biden.jpg walking in) ...
        engine = get_engine("sface")
        # ... and in a second of the served view nobody who is not an alert can be found, let
        # alone recognised.
        for jpeg in _jpegs(client, url, 10):
            frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert frame is not None and frame.shape[0] > 100
            assert [f for f in engine.detect(frame, LIVE) if f.score >= 0.6] == []
        with gov.db.reading() as s:
            views = list(s.scalars(select(AuditRecord).where(
                AuditRecord.action == "preview.view")))
        assert [(v.actor, v.object_id) for v in views] == [("op1", str(dep_id))]
        assert "street" in views[0].details
        # A camera that does not exist, and a role that may not read alerts.
        assert client.get(f"/console/alerts/preview/{dep_id}/nope.mjpg").status_code == 404
        client.post("/logout", data={})
        client.cookies.clear()
        login(client, "admin")
        assert client.get(url).status_code == 403
        deps.stop(gov.db, gov.actors["op1"], dep_id, "Test over")


def test_without_preview_nothing_is_served(running) -> None:
    gov, dep_id = running
    client, jobs = _serve(gov, preview=False)
    with client:
        _wait_run(jobs, dep_id)
        login(client, "op1")
        page = client.get(f"/console/alerts?deployment={dep_id}")
        assert page.status_code == 200
        assert "/console/alerts/preview/" not in page.text
        assert "openlfr serve --preview" in page.text
        r = client.get(f"/console/alerts/preview/{dep_id}/street.mjpg")
        assert r.status_code == 404
        deps.stop(gov.db, gov.actors["op1"], dep_id, "Test over")


def test_the_unmasked_clip_has_a_face(clips: videoclips.ClipSet) -> None:
    """The control for the masking test: frames of the same clip, unmasked, show a face."""
    engine = get_engine("sface")
    cap = cv2.VideoCapture(str(clips.stranger))
    found = 0
    try:
        for _ in range(60):
            ok, frame = cap.read()
            if not ok:
                break
            found += bool([f for f in engine.detect(frame, LIVE) if f.score >= 0.6])
    finally:
        cap.release()
    assert found > 10


