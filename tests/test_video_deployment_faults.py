"""A deployment with a working camera and one whose URL hangs (a local server on 127.0.0.1
that accepts and never answers): the run starts, the good camera is analysed and its alert
stored, and the bad one is retried, shown ``connecting`` then ``reconnecting`` with its error,
while the run goes on (SQLite and PostgreSQL)."""

from __future__ import annotations

import time

from openlfr.governance import deployments as deps
from openlfr.governance.live import DeploymentRun, RunOptions
from openlfr.store.enums import DeploymentStatus
from openlfr.video.sources import SourceState
from tests.govfix import Gov
from tests.test_gov_live import authorised, deployment, entries
from tests.test_video_faults import HangingServer
from tests.videoclips import wait_for as _wait_for


def test_a_hanging_camera_does_not_stop_the_deployments_other_camera(gov: Gov, face_images,
                                                                      clips):
    shown: list[int] = []
    with HangingServer() as hanging:
        dep_id = authorised(gov, face_images, {"gate": clips.obama, "side": hanging.url})
        deps.start(gov.db, gov.actors["op1"], dep_id)  # the state; the run follows it
        run = DeploymentRun(gov.system, dep_id, gov.actors["op1"],
                            options=RunOptions(workers=2),
                            on_alert=lambda row, _alert: shown.append(row))
        started = time.time()
        run.start()
        try:
            # The good camera is analysed to its end while the other one is still trying.
            _wait_for(lambda: any(f.camera == "gate" and f.frames == 40 for f in run.figures()))
            assert shown, "the good camera's alert was not stored"
            assert run.states()["side"] in (SourceState.CONNECTING, SourceState.RECONNECTING)
            # The hanging one gives up waiting for an answer and is retried; the run goes on
            # although the file has ended.
            _wait_for(lambda: run.states().get("side") == SourceState.RECONNECTING)
            side = next(s.status() for s in run.sources if s.name == "side")
            assert f"side: cannot open {hanging.url}" in side.error
            assert started <= side.since <= time.time()
            assert run.states()["gate"] == SourceState.ENDED
            assert run.running and run.join(timeout=0.5) is None
            assert deployment(gov, dep_id).status == DeploymentStatus.RUNNING
        finally:
            run.stop()
            result = run.join(timeout=60)
    assert result is not None and not result.ended
    by_camera = {f.camera: f for f in result.summary.cameras}
    assert by_camera["gate"].frames == 40 and by_camera["gate"].alerts == 1
    assert by_camera["side"].frames == 0 and by_camera["side"].state == "stopped"
    assert len(hanging.accepted) >= 1
    assert entries(gov, dep_id)[-1].action == "deployment.pause"
