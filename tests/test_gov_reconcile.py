"""Live runs follow the governance state (desired state, reconciled): a deployment started from
another connection gets a live run within 2 s and loses it within 2 s of being stopped; a
subject removed, expired, destroyed or taken off stops being matched within 2 s (gallery
reloaded, audited with counts only) and no alert of theirs is stored afterwards — including
the race of a match computed before the change and recorded after it; newly approved subjects
are matched; runs that stop without ending their deployment pause it, the console and the API
resume it, the public page says so and counts only hours spent analysing; camera states reach
the API. Real SQLite file and real PostgreSQL (``gov``), real models, real clips, the server's
own background jobs."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select, update
from typer.testing import CliRunner

from openlfr.cli import app
from openlfr.governance import deployments as deps
from openlfr.governance import watchlists
from openlfr.governance.alerts import AlertRecorder
from openlfr.governance.system import System
from openlfr.store.db import Database
from openlfr.store.enums import DeploymentStatus
from openlfr.store.models import (
    Alert,
    AuditRecord,
    CameraStats,
    Deployment,
    Subject,
    deployment_watchlists,
)
from openlfr.video import types as vtypes
from openlfr.web.app import create_app
from openlfr.web.jobs import BackgroundJobs
from tests.govfix import Gov, authorise
from tests.test_gov_deployments import REASON, approved_watchlist, plan
from tests.test_web_core import login

LIVE = {"realtime": True, "loop": True, "workers": 1, "flush_interval": 0.5}


def wait_for(what: str, cond: Callable[[], object], timeout: float, step: float = 0.02
             ) -> float:
    """Seconds until ``cond()`` is true; fails after ``timeout``."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(step)
    return time.monotonic() - t0


def authorised(gov: Gov, face_images, cameras: dict[str, object]) -> tuple[int, int]:
    """(deployment, watchlist): an authorised deployment whose watchlist holds Obama."""
    wid = approved_watchlist(gov, face_images["obama"])
    specs = tuple(deps.CameraSpec(name, str(src)) for name, src in cameras.items())
    dep_id = deps.create(gov.db, gov.actors["op1"], plan((wid,), cameras=specs),
                         keyring=gov.system.keyring)
    authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)
    return dep_id, wid


@contextmanager
def serving(gov: Gov, **options: Any) -> Iterator[BackgroundJobs]:
    """The background jobs of ``openlfr serve`` (reconciling every half second)."""
    jobs = BackgroundJobs(gov.system, tick=3600, retention_every=1e9,
                          run_options=options or LIVE)
    jobs.start()
    try:
        yield jobs
    finally:
        jobs.stop()


@contextmanager
def other_connection(gov: Gov) -> Iterator[Database]:
    """Another connection to the same database, as another process (CLI, API) has."""
    other = Database(gov.db.url)
    try:
        yield other
    finally:
        other.dispose()


def analysed(jobs: BackgroundJobs, dep_id: int) -> bool:
    run = jobs.runs.get(dep_id)
    return run is not None and sum(f.frames for f in run.figures()) > 0


def alert_rows(gov: Gov, dep_id: int) -> int:
    with gov.db.reading() as s:
        return int(s.scalar(select(func.count()).select_from(Alert).where(
            Alert.deployment_id == dep_id)) or 0)


def reloads(gov: Gov, dep_id: int) -> list[dict[str, Any]]:
    with gov.db.reading() as s:
        return [json.loads(r.details) for r in s.scalars(select(AuditRecord).where(
            AuditRecord.action == "deployment.gallery_reload",
            AuditRecord.object_id == str(dep_id)).order_by(AuditRecord.seq))]


def status(gov: Gov, dep_id: int) -> Deployment:
    with gov.db.reading() as s:
        dep = s.get(Deployment, dep_id)
        assert dep is not None
        return dep


# -- start and stop ----------------------------------------------------------------------------

def test_start_elsewhere_gets_a_run_and_stop_ends_it(gov: Gov, face_images, clips):
    dep_id, _ = authorised(gov, face_images, {"gate": clips.empty, "yard": clips.stranger})
    with serving(gov) as jobs, TestClient(create_app(gov.system, jobs)) as client:
        time.sleep(0.6)
        assert jobs.runs == {}  # authorised is not running: nothing opened
        with other_connection(gov) as other:
            deps.start(other, gov.actors["op1"], dep_id)
        assert wait_for("a live run", lambda: dep_id in jobs.runs, 60.0)
        wait_for("the first frame analysed", lambda: analysed(jobs, dep_id), 30.0)
        # The API shows each camera's state, as the run wrote it in the database.
        login(client, "au1")

        def states() -> dict[str, str | None]:
            body = client.get(f"/api/v1/deployments/{dep_id}").json()
            return {c["name"]: c["state"] for c in body["cameras"]}

        wait_for("both cameras live", lambda: states() == {"gate": "live", "yard": "live"},
                 60.0)
        body = client.get(f"/api/v1/deployments/{dep_id}").json()
        assert body["cameras_live"] == 2 and body["cameras"][0]["state_since"]
        page = client.get(f"/public/deployments/{dep_id}").text
        assert "Running now" in page and "running, 2 of 2 cameras live" in page
        # The command line does not run it a second time beside the server.
        result = CliRunner().invoke(app, ["watch", "--deployment", str(dep_id), "--user",
                                          "op1"], env=gov.env())
        assert result.exit_code == 2 and "running in another process" in result.stderr
        run = jobs.runs[dep_id]
        with other_connection(gov) as other:
            deps.stop(other, gov.actors["op2"], dep_id, "Operation finished")
        assert wait_for("the run ended", lambda: not run.running, 60.0)
        wait_for("the run forgotten", lambda: dep_id not in jobs.runs, 60.0)
        assert set(states().values()) <= {"stopped", "ended"}
        page = client.get(f"/public/deployments/{dep_id}").text
        assert "Running now" not in page and "Ended" in page
    dep = status(gov, dep_id)
    assert dep.status == DeploymentStatus.ENDED and dep.end_reason == "Operation finished"


def test_a_camera_that_fails_says_so_without_credentials(gov: Gov, face_images, clips):
    dep_id, _ = authorised(gov, face_images, {
        "gate": clips.empty, "side": "rtsp://viewer:s3cret@127.0.0.1:9/stream"})
    with serving(gov) as jobs, TestClient(create_app(gov.system, jobs)) as client:
        deps.start(gov.db, gov.actors["op1"], dep_id)
        login(client, "au1")

        def side() -> dict[str, Any]:
            body = client.get(f"/api/v1/deployments/{dep_id}").json()
            return next(c for c in body["cameras"] if c["name"] == "side")

        wait_for("the failing camera's state", lambda: side()["state"] in (
            "retrying", "failed") and side()["last_error"], 30.0)
        body = client.get(f"/api/v1/deployments/{dep_id}")
        assert "s3cret" not in body.text and "viewer" not in body.text
        assert body.json()["status"] == "running"  # still running: it keeps retrying
        live = body.json()["cameras_live"]
        page = client.get(f"/public/deployments/{dep_id}").text
        if live:
            assert f"running, {live} of 2 cameras live" in page
        else:
            assert "no camera live" in page
        login(client, "op1")
        console = client.get(f"/console/deployments/{dep_id}").text
        assert "last error" in console and "s3cret" not in console
        deps.stop(gov.db, gov.actors["op1"], dep_id, "Test over")


# -- watchlist changes reach the cameras ---------------------------------------------------------

CHANGES = ("remove", "expire", "destroy", "detach")


@pytest.mark.parametrize("change", CHANGES)
def test_a_subject_that_leaves_is_never_alerted_again(gov: Gov, face_images, clips, change):
    dep_id, wid = authorised(gov, face_images, {"gate": clips.obama})
    with gov.db.reading() as s:
        subject_id = s.scalar(select(Subject.id).where(Subject.watchlist_id == wid))
    shown: list[tuple[float, int]] = []
    with serving(gov) as jobs:
        jobs.add_alert_listener(lambda row, _a: shown.append((time.monotonic(), row)))
        deps.start(gov.db, gov.actors["op1"], dep_id)
        wait_for("a first alert", lambda: shown, 60.0)
        run = jobs.runs[dep_id]
        assert run.gallery_size() == (1, 1)
        with other_connection(gov) as other:
            if change == "remove":
                watchlists.remove_subject(other, gov.actors["op1"], subject_id, "Arrested")
            elif change == "destroy":
                watchlists.destroy_watchlist(System(gov.settings, other, gov.system.keyring),
                                             gov.actors["ao1"], wid, "Operation over")
            elif change == "detach":
                with other.session() as s:
                    s.execute(delete(deployment_watchlists).where(
                        deployment_watchlists.c.deployment_id == dep_id))
            else:  # expire: nothing is written when the time comes
                with other.session() as s:
                    s.execute(update(Subject).where(Subject.id == subject_id).values(
                        expires_at=datetime.now(UTC) + timedelta(seconds=1)))
                time.sleep(1.0)
        changed = time.monotonic()
        rows_then = alert_rows(gov, dep_id)
        # How soon (a reconcile tick) is benchmarks/bench_reconcile.py's figure.
        took = wait_for("the gallery reloaded", lambda: reloads(gov, dep_id), 60.0)
        assert run.gallery_size() == (0, 0)  # the templates left memory
        # The person keeps walking in (the clip loops every 1.6 s): nothing more is stored.
        time.sleep(4.0)
        assert alert_rows(gov, dep_id) == rows_then
        assert [row for t, row in shown if t > changed + took] == []
        deps.stop(gov.db, gov.actors["op1"], dep_id, "Test over")
    (reload,) = reloads(gov, dep_id)
    assert set(reload) == {"subjects_before", "subjects_after", "templates_before",
                           "templates_after", "reason"}
    assert (reload["subjects_before"], reload["subjects_after"]) == (1, 0)
    assert (reload["templates_before"], reload["templates_after"]) == (1, 0)
    assert "Case 1" not in json.dumps(reload)


def test_newly_approved_subjects_are_matched(gov: Gov, face_images, clips):
    dep_id, wid = authorised(gov, face_images, {"street": clips.stranger})
    shown: list[int] = []
    with serving(gov) as jobs:
        jobs.add_alert_listener(lambda row, _a: shown.append(row))
        deps.start(gov.db, gov.actors["op1"], dep_id)
        wait_for("the first frame analysed", lambda: analysed(jobs, dep_id), 30.0)
        time.sleep(2.0)
        assert shown == []  # the stranger is not on the watchlist
        image = face_images["biden"].read_bytes()
        watchlists.add_subject(gov.system, gov.actors["op1"], wid, "Case 2",
                               "wanted_by_court", REASON,
                               datetime.now(UTC) + timedelta(days=30),
                               [(image, "custody record 2")])
        wait_for("the draft's gallery dropped", lambda: len(reloads(gov, dep_id)) == 1, 60.0)
        assert jobs.runs[dep_id].gallery_size() == (0, 0)  # a draft is not searched
        watchlists.approve_watchlist(gov.db, gov.actors["ao2"], wid)
        wait_for("the approved gallery", lambda: len(reloads(gov, dep_id)) == 2, 60.0)
        assert jobs.runs[dep_id].gallery_size() == (2, 2)
        wait_for("an alert for the new subject", lambda: shown, 30.0)
        deps.stop(gov.db, gov.actors["op1"], dep_id, "Test over")
    first, second = reloads(gov, dep_id)
    assert (first["subjects_after"], second["subjects_after"]) == (0, 2)


def test_the_recorder_refuses_a_match_recorded_after_the_removal(gov: Gov, face_images):
    """The race: the pipeline matched before the removal committed and records after it."""
    import cv2

    dep_id, wid = authorised(gov, face_images, {"gate": "/nonexistent.avi"})
    deps.start(gov.db, gov.actors["op1"], dep_id)
    with gov.db.reading() as s:
        subject_id = s.scalar(select(Subject.id).where(Subject.watchlist_id == wid))
    crop = cv2.imread(str(face_images["obama2"]))
    assert crop is not None
    shown: list[int] = []
    recorder = AlertRecorder(gov.system, dep_id, on_stored=lambda row, _a: shown.append(row))

    def alert(track: int) -> vtypes.Alert:
        now = time.time()
        return vtypes.Alert(alert_id=f"gate:{track}:{subject_id}", camera="gate",
                            track_id=track, subject_id=str(subject_id), display_name="Case 1",
                            score=0.7, threshold=0.4, reference_id="0", model_id="sface",
                            frame=1, t=0.1, wall_time=now, frame_wall=now, box=(1, 2, 3, 4),
                            probe_crop=crop, revision=0)

    recorder.publish(alert(1))  # enrolled: stored and shown
    assert len(shown) == 1 and recorder.refused == 0
    matched = alert(2)  # computed now ...
    barrier = threading.Event()

    def remove() -> None:
        watchlists.remove_subject(gov.db, gov.actors["op1"], subject_id)
        barrier.set()

    threading.Thread(target=remove).start()
    assert barrier.wait(30)
    recorder.publish(matched)  # ... recorded after the removal committed
    assert len(shown) == 1 and recorder.refused == 1
    assert alert_rows(gov, dep_id) == 1
    # Expired, or on a watchlist no longer approved, is refused the same way.
    other = approved_watchlist(gov, face_images["biden"])
    with gov.db.session() as s:
        dep = s.get(Deployment, dep_id)
        assert dep is not None
        s.execute(deployment_watchlists.insert().values(deployment_id=dep_id,
                                                        watchlist_id=other))
        biden = s.scalar(select(Subject.id).where(Subject.watchlist_id == other))
        s.execute(update(Subject).where(Subject.id == biden).values(
            expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    recorder.publish(replace(alert(3), subject_id=str(biden), alert_id=f"gate:3:{biden}"))
    assert recorder.refused == 2 and alert_rows(gov, dep_id) == 1


# -- paused, resumed, and what the public sees --------------------------------------------------

def test_a_run_whose_sources_end_pauses_and_resumes(gov: Gov, face_images, clips):
    dep_id, _ = authorised(gov, face_images, {"street": clips.stranger})
    with serving(gov, workers=1, flush_interval=0.5) as jobs, \
            TestClient(create_app(gov.system, jobs)) as client:
        deps.start(gov.db, gov.actors["op1"], dep_id)
        # The file is read to its end: the run stops and the deployment is paused.
        wait_for("paused", lambda: status(gov, dep_id).status == DeploymentStatus.PAUSED,
                 60.0)
        dep = status(gov, dep_id)
        assert dep.pause_reason == "the camera sources ended"
        wait_for("the run forgotten", lambda: dep_id not in jobs.runs, 60.0)
        time.sleep(1.0)
        assert dep_id not in jobs.runs  # paused: not started again
        with gov.db.reading() as s:
            row = s.scalar(select(CameraStats).where(CameraStats.deployment_id == dep_id))
            assert row is not None and row.frames == 40 and row.state == "ended"
            seconds = row.seconds
        assert seconds > 0
        page = client.get(f"/public/deployments/{dep_id}").text
        assert "Paused" in page and "Running now" not in page
        public = client.get(f"/api/v1/public/deployments/{dep_id}")
        assert public.status_code == 200 and public.json()["status"] == "paused"
        from openlfr.transparency.public import get_public

        shown = get_public(gov.db, dep_id)
        assert shown is not None and shown.status == "paused" and shown.figures is not None
        assert shown.figures.hours == pytest.approx(seconds / 3600, abs=0.01)
        # The console offers Resume to those who may start; the API resumes (audited).
        csrf = login(client, "op2")
        assert "Resume" in client.get(f"/console/deployments/{dep_id}").text
        r = client.post(f"/api/v1/deployments/{dep_id}/resume",
                        headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "running"
        r = client.post(f"/api/v1/deployments/{dep_id}/resume",
                        headers={"X-CSRF-Token": csrf})
        assert r.status_code == 409 and "only a paused" in r.json()["detail"]
        wait_for("paused again", lambda: status(gov, dep_id).status
                 == DeploymentStatus.PAUSED, 60.0)
    with gov.db.reading() as s:
        row = s.scalar(select(CameraStats).where(CameraStats.deployment_id == dep_id))
        assert row is not None and row.frames == 80 and row.seconds > seconds
        trail = [r.action for r in s.scalars(select(AuditRecord).where(
            AuditRecord.object_type == "deployment", AuditRecord.object_id == str(dep_id))
            .order_by(AuditRecord.seq))]
    assert trail[-4:] == ["deployment.start", "deployment.pause", "deployment.resume",
                          "deployment.pause"]


def test_a_stopped_server_pauses_and_the_next_one_resumes(gov: Gov, face_images, clips):
    dep_id, _ = authorised(gov, face_images, {"gate": clips.empty})
    with serving(gov) as jobs:
        deps.start(gov.db, gov.actors["op1"], dep_id)
        wait_for("the first frame analysed", lambda: analysed(jobs, dep_id), 30.0)
    dep = status(gov, dep_id)
    assert dep.status == DeploymentStatus.PAUSED and dep.pause_reason == "the server stopped"
    # Another deployment paused for another reason stays paused.
    ended_id, _ = authorised(gov, face_images, {"gate": clips.empty})
    deps.start(gov.db, gov.actors["op1"], ended_id)
    deps.pause(gov.db, gov.actors["op1"], ended_id, "the camera sources ended")
    jobs = BackgroundJobs(gov.system, tick=3600, retention_every=1e9, resume=True,
                          run_options=LIVE)
    jobs.start()
    try:
        assert status(gov, dep_id).status == DeploymentStatus.RUNNING
        assert wait_for("a live run", lambda: dep_id in jobs.runs, 60.0)
    finally:
        jobs.stop()
    assert status(gov, dep_id).pause_reason == "the server stopped"
    assert status(gov, ended_id).status == DeploymentStatus.PAUSED
