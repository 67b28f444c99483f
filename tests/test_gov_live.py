"""Live runs of deployments (issue 4, point 4): only inside the window, stopping by itself at
its end, nothing but counts kept of people who did not match, and a SIGKILL in the middle of a
run leaving a database that opens, an audit chain that verifies and every shown alert stored.
Real SQLite file and real PostgreSQL (``gov``), real models, real clips."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from openlfr.audit import log as audit_log
from openlfr.cli import app
from openlfr.governance import deployments as deps
from openlfr.governance.authz import RuleError
from openlfr.governance.live import DeploymentRun, RunOptions
from openlfr.store.db import Database
from openlfr.store.enums import DeploymentStatus
from openlfr.store.models import (
    Alert,
    AuditRecord,
    CameraStats,
    Deployment,
    SubjectImage,
)
from tests.govfix import Gov, authorise
from tests.test_gov_deployments import approved_watchlist, plan


def authorised(gov: Gov, face_images, cameras: dict[str, object], **kwargs: object) -> int:
    wid = approved_watchlist(gov, face_images["obama"])
    specs = tuple(deps.CameraSpec(name, str(path)) for name, path in cameras.items())
    dep_id = deps.create(gov.db, gov.actors["op1"], plan((wid,), cameras=specs,
                                                         **kwargs),
                                                                 keyring=gov.system.keyring)  # type: ignore[arg-type]
    authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)
    return dep_id


def deployment(gov: Gov, dep_id: int) -> Deployment:
    with gov.db.reading() as s:
        dep = s.get(Deployment, dep_id)
        assert dep is not None
        return dep


def stats(gov: Gov, dep_id: int) -> dict[str, CameraStats]:
    with gov.db.reading() as s:
        return {r.camera: r for r in s.scalars(select(CameraStats).where(
            CameraStats.deployment_id == dep_id))}


def entries(gov: Gov, dep_id: int) -> list[AuditRecord]:
    with gov.db.reading() as s:
        return list(s.scalars(select(AuditRecord).where(
            AuditRecord.object_type == "deployment", AuditRecord.object_id == str(dep_id))
            .order_by(AuditRecord.seq)))


class SteppedClock:
    """A clock that stands at ``now`` until the test moves it (:meth:`move_to`)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def move_to(self, when: datetime) -> None:
        self.now = when

    def __call__(self) -> datetime:
        return self.now


# -- the window --------------------------------------------------------------------------------

@pytest.mark.parametrize("when", ["before", "after"])
def test_outside_its_window_a_deployment_processes_no_frame(gov: Gov, face_images, clips,
                                                            when):
    dep_id = authorised(gov, face_images, {"gate": clips.obama})
    dep = deployment(gov, dep_id)
    moment = (dep.planned_start - timedelta(minutes=1) if when == "before"
              else dep.planned_end + timedelta(seconds=1))
    # Starting is refused outside the window, and a run of a deployment not started is too.
    with pytest.raises(RuleError, match="cannot start"):
        deps.start(gov.db, gov.actors["op1"], dep_id, now=moment)
    with pytest.raises(RuleError, match="only a running deployment"):
        DeploymentRun(gov.system, dep_id, gov.actors["op1"]).run()
    deps.start(gov.db, gov.actors["op1"], dep_id)  # now, inside the window
    alerts: list[int] = []
    run = DeploymentRun(gov.system, dep_id, gov.actors["op1"], clock=lambda: moment,
                        on_alert=lambda row, _alert: alerts.append(row))
    with pytest.raises(RuleError, match=r"refused: .*no camera was opened"):
        run.run()
    assert run.runner is None and run.sources == [] and alerts == []
    assert stats(gov, dep_id) == {}
    assert deployment(gov, dep_id).status == DeploymentStatus.RUNNING
    assert [e.action for e in entries(gov, dep_id)] == ["deployment.create",
                                                        "deployment.authorise",
                                                        "deployment.start"]


def test_a_run_stops_itself_at_the_end_of_the_window(gov: Gov, face_images, clips):
    now = datetime.now(UTC)
    # The window ends 10 minutes from now; the run's clock stands still until the camera (an
    # endless, looping one) has seen faces, then jumps past the end: an event, not a race
    # between a fast clock and a busy machine.
    dep_id = authorised(gov, face_images, {"gate": clips.stranger},
                        start=now - timedelta(minutes=5), end=now + timedelta(minutes=10))
    deps.start(gov.db, gov.actors["op1"], dep_id)
    clock = SteppedClock(datetime.now(UTC))
    run = DeploymentRun(gov.system, dep_id, gov.actors["op1"], clock=clock,
                        options=RunOptions(realtime=True, loop=True, workers=1,
                                           flush_interval=0.5))
    run.start()  # in the background, as `openlfr serve` runs deployments
    assert run.running
    deadline = time.monotonic() + 90
    while not (row := stats(gov, dep_id).get("gate")) or not row.faces_seen:
        assert time.monotonic() < deadline, "the camera saw no face"
        time.sleep(0.1)
    clock.move_to(now + timedelta(minutes=10, seconds=1))
    result = run.join(timeout=90)
    assert not run.running
    assert result is not None, "the run did not stop at the end of its window"
    assert result.ended and result.end_reason == deps.END_OF_WINDOW
    dep = deployment(gov, dep_id)
    assert dep.status == DeploymentStatus.ENDED and dep.end_reason == deps.END_OF_WINDOW
    assert dep.ended_at is not None and dep.ended_at >= dep.planned_end
    trail = entries(gov, dep_id)
    assert [e.action for e in trail][-2:] == ["deployment.start", "deployment.end"]
    end = trail[-1]
    assert end.actor == audit_log.SYSTEM
    counts = json.loads(end.details)["cameras"]["gate"]
    rows = stats(gov, dep_id)
    assert rows["gate"].frames == counts["frames"] > 0
    assert rows["gate"].faces_seen == counts["faces_seen"] > 0
    assert rows["gate"].tracks == counts["tracks"]
    assert counts["seconds"] == audit_log.fmt_float(rows["gate"].seconds, 1)
    # Ended is final: it cannot run again.
    with pytest.raises(RuleError, match="ended"):
        DeploymentRun(gov.system, dep_id, gov.actors["op1"]).run()


def test_a_deployment_stopped_elsewhere_stops_its_run(gov: Gov, face_images, clips):
    dep_id = authorised(gov, face_images, {"gate": clips.empty})
    deps.start(gov.db, gov.actors["op1"], dep_id)
    run = DeploymentRun(gov.system, dep_id, gov.actors["op1"],
                        options=RunOptions(realtime=True, loop=True, workers=1,
                                           status_interval=0.2),
                        on_start=lambda r: deps.stop(gov.db, gov.actors["op2"], dep_id,
                                                     "Called off by the control room"))
    run.start()
    result = run.join(timeout=60)
    assert result is not None and result.ended
    assert result.end_reason == "Called off by the control room"
    assert entries(gov, dep_id)[-1].action == "deployment.run_end"


# -- privacy -----------------------------------------------------------------------------------

def test_a_run_where_nobody_matches_keeps_only_counts(gov: Gov, face_images, clips):
    dep_id = authorised(gov, face_images, {"street": clips.stranger, "yard": clips.empty})
    with gov.db.reading() as s:
        images_before = s.scalar(select(func.count()).select_from(SubjectImage))
    shown: list[int] = []
    deps.start(gov.db, gov.actors["op1"], dep_id)
    run = DeploymentRun(gov.system, dep_id, gov.actors["op1"], options=RunOptions(workers=1),
                        on_alert=lambda row, _alert: shown.append(row))
    result = run.run()  # the files are read to their end: the deployment is paused
    assert not result.ended and shown == []
    assert result.paused and result.pause_reason == "the camera sources ended"
    assert result.summary.faces > 0 and result.summary.embeddings > 0
    dep = deployment(gov, dep_id)
    assert dep.status == DeploymentStatus.PAUSED
    assert dep.pause_reason == "the camera sources ended"
    with gov.db.reading() as s:
        assert s.scalar(select(func.count()).select_from(Alert)) == 0
        assert s.scalar(select(func.count()).select_from(SubjectImage)) == images_before
        assert audit_log.verify(s).ok
    rows = stats(gov, dep_id)
    assert set(rows) == {"street", "yard"}
    assert rows["street"].faces_seen > 0 and rows["street"].frames == 40
    assert rows["yard"].faces_seen == 0
    pause = entries(gov, dep_id)[-1]
    assert pause.action == "deployment.pause"
    details = json.loads(pause.details)
    assert set(details["cameras"]["street"]) == {"frames", "faces_seen", "tracks", "dropped",
                                                 "seconds"}
    if gov.kind == "sqlite":  # nothing like a face image in the database file or its log
        gov.db.checkpoint()
        blob = b"".join(p.read_bytes() for p in gov.data_dir.glob("openlfr.db*"))
        assert b"JFIF" not in blob and b"\x89PNG" not in blob
    assert rows["street"].state == "ended" and rows["street"].state_since is not None
    # Resuming (audited) adds to the counts.
    assert deps.start(gov.db, gov.actors["op2"], dep_id) is True
    assert entries(gov, dep_id)[-1].action == "deployment.resume"
    again = DeploymentRun(gov.system, dep_id, gov.actors["op2"],
                          options=RunOptions(workers=1)).run()
    assert again.paused and stats(gov, dep_id)["street"].frames == 80


# -- the command -------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (["x.avi", "--deployment", "1", "--user", "op1"], "do not give SOURCE"),
    (["--deployment", "1", "--watchlist", "w.watchlist", "--user", "op1"],
     "do not give --watchlist"),
    (["--deployment", "1", "--threshold", "0.5", "--user", "op1"], "do not give --threshold"),
    (["--deployment", "1"], "needs --user"),
    (["x.avi"], "--watchlist FILE is required"),
    ([], "give at least one SOURCE"),
])
def test_watch_deployment_options_are_exclusive(args, message):
    result = CliRunner().invoke(app, ["watch", *args], env={"OPENLFR_USER": ""})
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_sigkill_in_the_middle_of_a_run_loses_no_shown_alert(gov: Gov, face_images, clips):
    dep_id = authorised(gov, face_images, {"gate": clips.obama})
    proc = subprocess.Popen(
        [sys.executable, "-c", "from openlfr.cli import main; main()", "watch",
         "--deployment", str(dep_id), "--user", "op1", "--json", "--realtime", "--loop"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**gov.env(), "PYTHONUNBUFFERED": "1"})
    printed: list[dict] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            event = json.loads(line)
            if event["event"] in ("alert", "alert_update"):
                printed.append(event)
                break
        assert printed, f"no alert was printed: {proc.stderr.read() if proc.poll() else ''}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    fresh = Database(gov.db.url)  # a new connection, as the next process would open it
    try:
        fresh.check()
        with fresh.reading() as s:
            assert audit_log.verify(s).ok
            stored = {a.id: a for a in s.scalars(select(Alert).where(
                Alert.deployment_id == dep_id))}
            for event in printed:
                row = stored[event["alert_row"]]
                assert row.pipeline_id == event["alert_id"] and row.camera == "gate"
                assert row.crop_ct is not None
            dep = s.get(Deployment, dep_id)
            assert dep is not None and dep.status == DeploymentStatus.RUNNING
    finally:
        fresh.dispose()


def test_watch_deployment_readable_output_says_what_was_stored(sqlite_gov: Gov, face_images,
                                                               clips):
    gov = sqlite_gov
    dep_id = authorised(gov, face_images, {"gate": clips.obama})
    result = CliRunner().invoke(app, ["watch", "--deployment", str(dep_id), "--user", "op1"],
                                env=gov.env())
    assert result.exit_code == 0, result.output
    assert "POSSIBLE MATCH" in result.stdout and "stored as alert" in result.stdout
    assert "Summary" in result.stderr and "camera\tstate\tframes" in result.stdout
    assert "is paused (the camera sources ended)" in result.stderr
    with gov.db.reading() as s:
        assert s.scalar(select(func.count()).select_from(Alert)) == 1


def test_watch_deployment_on_a_terminal_shows_the_live_table(sqlite_gov: Gov, face_images,
                                                             clips):
    dep_id = authorised(sqlite_gov, face_images, {"gate": clips.obama})
    result = CliRunner().invoke(app, ["watch", "--deployment", str(dep_id), "--user", "op1"],
                                env={**sqlite_gov.env(), "TTY_COMPATIBLE": "1"})
    assert result.exit_code == 0, result.output
    assert f"deployment {dep_id} — Ctrl-C to pause it" in result.stdout
    assert "stored as alert" in result.stdout and "Summary" in result.stdout
