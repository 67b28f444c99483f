"""The console's home page service (:mod:`openlfr.governance.dashboard`): each person sees what
waits for *them* — the alerts they may still decide, the watchlists and deployments they could
approve or authorise (never their own), open residents' questions, running deployments with
camera health, the audit chain's last check — and nothing their role may not read; the number
of queries does not grow with the number of items. Real SQLite file and real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import event

from openlfr.governance import auditing, dashboard, questions, watchlists
from openlfr.governance import deployments as deps
from openlfr.store.enums import AlertStatus, Decision
from openlfr.store.models import Adjudication, Alert, CameraStats
from tests.govfix import Gov, authorise
from tests.test_gov_deployments import REASON, approved_watchlist, plan


def draft_watchlist(gov: Gov, face: Path, builder: str, name: str) -> int:
    info = watchlists.create_watchlist(gov.system, gov.actors[builder], name,
                                       "Locate people wanted by the courts at the station")
    watchlists.add_subject(gov.system, gov.actors[builder], info.id, f"Case {name}",
                           "wanted_by_court", REASON, datetime.now(UTC) + timedelta(days=30),
                           [(face.read_bytes(), "custody record")])
    return info.id


def add_alerts(gov: Gov, dep_id: int, n: int, status: AlertStatus = AlertStatus.PENDING,
               **extra: Any) -> list[int]:
    now = datetime.now(UTC)
    with gov.db.session() as s:
        rows = [Alert(deployment_id=dep_id, camera="gate", track_id=i, pipeline_id=f"t{i}",
                      score=0.61, threshold=0.48, model_id="sface", status=status,
                      seen_at=now - timedelta(minutes=n - i), **extra) for i in range(n)]
        s.add_all(rows)
        s.flush()
        return [r.id for r in rows]


@dataclass
class World:
    wl_by_op1: int
    wl_by_ao2: int
    draft_by_ao2: int
    draft_by_op1_edited_by_ao1: int
    running: int
    pending: list[int]
    confirmed_by_op1: int


def build(gov: Gov, face: Path) -> World:
    """Watchlists and deployments waiting for approval by one officer and not the other; a
    running deployment with a live and a retrying camera; pending alerts, one confirmed once
    by op1 (two-person rule), one decided, one purged; two questions, one closed."""
    wl_op1 = draft_watchlist(gov, face, "op1", "built by op1")
    wl_ao2 = draft_watchlist(gov, face, "ao2", "built by ao2")
    approved = approved_watchlist(gov, face)  # approved: waits for nobody
    cams = (deps.CameraSpec("gate", "/nonexistent/gate.avi"),
            deps.CameraSpec("yard", "/nonexistent/yard.avi"))
    kr = gov.system.keyring
    by_ao2 = deps.create(gov.db, gov.actors["ao2"], plan((approved,)), keyring=kr)
    by_op1 = deps.create(gov.db, gov.actors["op1"], plan((approved,)), keyring=kr)
    deps.edit(gov.db, gov.actors["ao1"], by_op1, keyring=kr, location="South concourse")
    incomplete = deps.create(gov.db, gov.actors["op1"], plan((), cameras=()), keyring=kr)
    assert deps.show(gov.db, gov.actors["ao1"], incomplete).missing  # waits for nobody yet
    running = deps.create(gov.db, gov.actors["op1"], plan((approved,), cameras=cams),
                          keyring=kr)
    authorise(gov.db, kr, gov.actors["ao1"], running)
    deps.start(gov.db, gov.actors["op1"], running)
    now = datetime.now(UTC)
    with gov.db.session() as s:
        s.add(CameraStats(deployment_id=running, camera="gate", frames=300, seconds=20.0,
                          state="running", state_since=now, updated_at=now))
        s.add(CameraStats(deployment_id=running, camera="yard", frames=0, seconds=0.0,
                          state="reconnecting", state_since=now, updated_at=now,
                          last_error="cannot open the source"))
    pending = add_alerts(gov, running, 7)
    once = add_alerts(gov, running, 1)[0]
    with gov.db.session() as s:
        s.add(Adjudication(alert_id=once, user_name="op1", decision=Decision.CONFIRM))
    add_alerts(gov, running, 1, AlertStatus.REJECTED, decided_at=now)
    add_alerts(gov, running, 1, purged_at=now)
    q1 = questions.submit_question(gov.db, running, "question", "Is my face kept?", None)
    questions.submit_question(gov.db, running, "objection", "I object to this.", None)
    questions.close_question(gov.db, gov.actors["ao1"], q1)
    return World(wl_op1, wl_ao2, by_ao2, by_op1, running, pending, once)


def test_each_person_sees_their_own_work(gov: Gov, face_images: dict[str, Path]) -> None:
    w = build(gov, face_images["obama"])

    op1 = dashboard.home(gov.db, gov.actors["op1"])
    sv1 = dashboard.home(gov.db, gov.actors["sv1"])
    assert op1.alerts is not None and sv1.alerts is not None
    # op1 already confirmed one: it waits for a second person, not for op1
    assert op1.alerts.count == 7 and sv1.alerts.count == 8
    assert [a.id for a in op1.alerts.newest] == sorted(w.pending, reverse=True)[:5]
    assert w.confirmed_by_op1 == sv1.alerts.newest[0].id
    assert (sv1.alerts.newest[0].confirmations, sv1.alerts.newest[0].confirmations_needed) \
        == (1, 2)
    assert op1.alerts.newest[0].url == f"/console/alerts/{op1.alerts.newest[0].id}"
    # an operator approves nothing, reads no question and no audit
    assert op1.approvals is None and op1.questions is None and op1.audit is None
    assert op1.waiting == 7

    ao1 = dashboard.home(gov.db, gov.actors["ao1"])
    ao2 = dashboard.home(gov.db, gov.actors["ao2"])
    assert ao1.alerts is None  # an officer reads alerts but does not decide them
    assert ao1.approvals is not None and ao2.approvals is not None
    mine1 = {(i.kind, i.id, i.task) for i in ao1.approvals.items}
    mine2 = {(i.kind, i.id, i.task) for i in ao2.approvals.items}
    # never what they built, created or changed; never an incomplete draft
    assert mine1 == {("watchlist", w.wl_by_op1, "approve"), ("watchlist", w.wl_by_ao2, "approve"),
                     ("deployment", w.draft_by_ao2, "authorise")}
    assert mine2 == {("watchlist", w.wl_by_op1, "approve"),
                     ("deployment", w.draft_by_op1_edited_by_ao1, "authorise")}
    assert (ao1.approvals.watchlists, ao1.approvals.deployments) == (2, 1)
    assert {i.url for i in ao2.approvals.items} == {
        f"/console/watchlists/{w.wl_by_op1}",
        f"/console/deployments/{w.draft_by_op1_edited_by_ao1}"}

    # one open question of two
    assert ao1.questions is not None and ao1.questions.count == 1
    assert ao1.questions.newest[0].kind == "objection"
    assert ao1.waiting == 3 + 1

    # running deployments, with each camera's health
    assert ao1.deployments is not None and op1.deployments == ao1.deployments
    (run,) = ao1.deployments
    assert run.id == w.running and run.status == "running"
    cams = {c.name: c for c in run.cameras}
    assert cams["gate"].state == "live" and cams["gate"].fps == 15.0
    assert not cams["gate"].fps_now  # no run in this process: the average
    assert cams["yard"].state == "retrying" and cams["yard"].fps is None
    assert cams["yard"].error == "cannot open the source"
    assert run.cameras_in("live") == 1 and run.cameras_in("retrying") == 1

    # measured now, when this process runs it
    figures = [SimpleNamespace(camera="gate", fps_in=12.34)]
    now = dashboard.home(gov.db, gov.actors["op1"],
                         {w.running: SimpleNamespace(figures=lambda: figures)})
    assert now.deployments is not None
    gate = next(c for c in now.deployments[0].cameras if c.name == "gate")
    assert gate.fps == 12.3 and gate.fps_now

    # paused: every camera says so
    deps.pause(gov.db, gov.actors["op1"], w.running, "the server stopped")
    paused = dashboard.home(gov.db, gov.actors["op1"]).deployments
    assert paused is not None and {c.state for c in paused[0].cameras} == {"paused"}


def test_roles_see_only_what_they_may_read(gov: Gov) -> None:
    parts = ("alerts", "approvals", "questions", "audit")
    expected = {"op1": {"alerts"}, "sv1": {"alerts", "questions"},
                "ao1": {"approvals", "questions", "audit"}, "au1": {"questions", "audit"},
                "admin": {"questions", "audit"}}
    for name, shown in expected.items():
        view = dashboard.home(gov.db, gov.actors[name])
        assert {p for p in parts if getattr(view, p) is not None} == shown, name
        assert view.deployments == ()  # everyone reads deployments; none runs
        assert view.waiting == 0


def test_the_last_check_of_the_audit_chain(gov: Gov, tmp_path: Path) -> None:
    au1 = gov.actors["au1"]
    home = dashboard.home(gov.db, au1)
    assert home.audit is not None and home.audit.last is None
    checked = auditing.verify(gov.db, au1)
    last = dashboard.home(gov.db, gov.actors["ao1"]).audit
    assert last is not None and last.last is not None
    assert (last.last.by, last.last.ok, last.last.entries, last.last.checkpoint) == (
        "au1", True, checked.result.entries, False)
    assert (datetime.now(UTC) - last.last.at).total_seconds() < 60
    # a check that fails is recorded as failed
    bad = tmp_path / "bad.checkpoint"
    bad.write_text("not a checkpoint")
    assert not auditing.verify(gov.db, gov.actors["admin"], bad).result.ok
    failed = auditing.last_verification(gov.db, au1)
    assert failed is not None and (failed.by, failed.ok, failed.checkpoint) == (
        "admin", False, True)
    # and the chain, with its records of checks, still verifies
    assert auditing.verify(gov.db, au1).result.ok


@contextmanager
def counted(gov: Gov) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(str(args[2]))

    event.listen(gov.db.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(gov.db.engine, "before_cursor_execute", count)


def test_queries_do_not_grow_with_the_items(gov: Gov, face_images: dict[str, Path]) -> None:
    w = build(gov, face_images["obama"])
    actors = [gov.actors[n] for n in ("op1", "sv1", "ao1", "au1")]
    with counted(gov) as before:
        for a in actors:
            dashboard.home(gov.db, a)
    # ten times the alerts, more watchlists, drafts and questions
    add_alerts(gov, w.running, 70)
    for i in range(3):
        draft_watchlist(gov, face_images["obama"], "op2", f"more {i}")
        deps.create(gov.db, gov.actors["ao2"], plan(()), keyring=gov.system.keyring)
        questions.submit_question(gov.db, w.running, "question", f"Question {i}?", None)
    with counted(gov) as after:
        for a in actors:
            dashboard.home(gov.db, a)
    assert len(after) == len(before), (len(before), len(after))
    sv1 = dashboard.home(gov.db, gov.actors["sv1"])
    assert sv1.alerts is not None and sv1.alerts.count == 78 and len(sv1.alerts.newest) == 5
