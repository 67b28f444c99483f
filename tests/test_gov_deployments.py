"""Deployments (issue 4, point 4): the life cycle draft → authorised → running → ended, the
two-person rule of authorisation, the threshold floor and its override, re-authorisation after
any change, the window, and the commands. Real SQLite file and real PostgreSQL (``gov``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from openlfr.audit import log as audit_log
from openlfr.errors import InvalidInput
from openlfr.governance import deployments as deps
from openlfr.governance import watchlists
from openlfr.governance.authz import SYSTEM_ACTOR, Forbidden, RuleError
from openlfr.governance.floors import record_floor
from openlfr.store.enums import DeploymentStatus
from openlfr.store.models import AuditRecord, DataKey, Deployment
from openlfr.vision.registry import BACKENDS
from tests.govfix import Gov, authorise, record_calibration
from tests.govfix import run_cli as _cli

REASON = "Wanted on a warrant issued by the magistrates' court (test case 1)."
#: The sface model's floor, as its spec declares it.
SFACE_FLOOR: float = BACKENDS["sface"].default_floor or 0.0


def approved_watchlist(gov: Gov, face: Path, builder: str = "op1",
                       approver: str = "ao2") -> int:
    """A watchlist of one subject (the face in ``face``), built by ``builder`` and approved
    by ``approver``."""
    info = watchlists.create_watchlist(gov.system, gov.actors[builder], "wanted",
                                       "Locate people wanted by the courts at the station")
    watchlists.add_subject(gov.system, gov.actors[builder], info.id, "Case 1",
                           "wanted_by_court", REASON,
                           datetime.now(UTC) + timedelta(days=30),
                           [(face.read_bytes(), f"custody record ({face.name})")])
    watchlists.approve_watchlist(gov.db, gov.actors[approver], info.id)
    return info.id


def model_id() -> str:
    from openlfr.vision import get_engine

    return get_engine("sface").model_id


def plan(watchlist_ids: tuple[int, ...] = (), cameras: tuple[deps.CameraSpec, ...] = (
        deps.CameraSpec("gate", "/nonexistent/gate.avi"),), start: datetime | None = None,
         end: datetime | None = None, threshold: float | None = None) -> deps.Plan:
    now = datetime.now(UTC)
    start = start or now - timedelta(minutes=5)
    try:
        notice: datetime | None = start - timedelta(days=1)  # a day ahead (uk-app)
    except OverflowError:  # a start at the edge of the calendar (tests of refusals)
        notice = None
    return deps.Plan(
        alternatives="Patrols do not suffice", notice_at=notice,
        name="Station concourse", site="Central station", location="North concourse, gate 3",
        purpose="Locate people wanted by the courts", legal_basis="Common law policing powers",
        dpia_ref="DPIA-2026-014", equality_ref="EIA-2026-009",
        planned_start=start or now - timedelta(minutes=5),
        planned_end=end or now + timedelta(hours=2),
        threshold=SFACE_FLOOR + 0.05 if threshold is None else threshold,
        model_id=model_id(), two_person_rule=True, signage=True, public_notice=True,
        watchlist_ids=watchlist_ids, cameras=cameras)


def make_authorised(gov: Gov, face: Path, **kwargs: object) -> int:
    wid = approved_watchlist(gov, face)
    dep_id = deps.create(gov.db, gov.actors["op1"], plan((wid,), **kwargs),
            keyring=gov.system.keyring)  # type: ignore[arg-type]
    authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)
    return dep_id


def actions(gov: Gov, dep_id: int) -> list[tuple[str, str]]:
    with gov.db.reading() as s:
        return [(r.action, r.actor) for r in s.scalars(select(AuditRecord).where(
            AuditRecord.object_type == "deployment", AuditRecord.object_id == str(dep_id))
            .order_by(AuditRecord.seq))]


def status(gov: Gov, dep_id: int) -> DeploymentStatus:
    with gov.db.reading() as s:
        dep = s.get(Deployment, dep_id)
        assert dep is not None
        return dep.status


def refusals(gov: Gov) -> list[dict]:
    with gov.db.reading() as s:
        return [json.loads(r.details) for r in s.scalars(
            select(AuditRecord).where(AuditRecord.action == "access.refused"))]


# -- the two-person rule -----------------------------------------------------------------------

def test_authorisation_refuses_the_author_and_audits_it(gov: Gov, face_images):
    wid = approved_watchlist(gov, face_images["obama"])
    dep_id = deps.create(gov.db, gov.actors["ao1"], plan((wid,)), keyring=gov.system.keyring)
    with pytest.raises(Forbidden, match="another authorising officer"):
        authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)
    assert status(gov, dep_id) == DeploymentStatus.DRAFT
    refused = refusals(gov)
    assert refused and refused[-1]["attempted"] == "deployment.authorise"
    # Someone who edited it is an author too.
    deps.edit(gov.db, gov.actors["ao2"], dep_id, location="South concourse, gate 1")
    with pytest.raises(Forbidden):
        authorise(gov.db, gov.system.keyring, gov.actors["ao2"], dep_id)
    assert len(refusals(gov)) == 2
    # Operators may not authorise at all (also audited).
    with pytest.raises(Forbidden):
        authorise(gov.db, gov.system.keyring, gov.actors["op2"], dep_id)
    assert len(refusals(gov)) == 3
    with gov.db.reading() as s:
        assert audit_log.verify(s).ok


def test_authorisation_by_another_officer_creates_the_data_key(gov: Gov, face_images):
    dep_id = make_authorised(gov, face_images["obama"])
    with gov.db.reading() as s:
        dep = s.get(Deployment, dep_id)
        assert dep is not None
        assert dep.status == DeploymentStatus.AUTHORISED and dep.authorised_by == "ao1"
        key = s.get(DataKey, dep.data_key_id)
        assert key is not None and key.purpose == "deployment"
    assert [a for a, _ in actions(gov, dep_id)] == ["deployment.create",
                                                    "deployment.authorise"]


# -- the threshold floor -----------------------------------------------------------------------

def test_an_override_is_possible_exactly_where_the_rule_allows_it(gov: Gov, face_images):
    """override_chance (what the deployment page asks before showing the form) and
    override_threshold answer by one rule: role, status, below the floor, neither an author
    nor the officer who recorded it, not already confirmed."""
    from openlfr.errors import Conflict

    wid = approved_watchlist(gov, face_images["obama"])
    good = "Missing child: more false alerts are accepted for a few hours"

    def check(name: str, dep_id: int, possible: bool, why: str = "",
              confirms: bool = False) -> None:
        chance = deps.override_chance(gov.db, gov.actors[name], dep_id)
        assert (chance.possible, chance.confirms) == (possible, confirms), (name, chance)
        if not possible:
            assert why in (chance.why_not or ""), chance
            with pytest.raises((Conflict, Forbidden), match=why):
                deps.override_threshold(gov.db, gov.actors[name], dep_id, good)

    at_floor = deps.create(gov.db, gov.actors["op1"], plan((wid,)), keyring=gov.system.keyring)
    check("ao1", at_floor, False, "is not below the default floor")
    check("op1", at_floor, False, "authorising")
    low = deps.create(gov.db, gov.actors["op1"], plan((wid,), threshold=SFACE_FLOOR - 0.1),
                      keyring=gov.system.keyring)
    check("op2", low, False, "authorising")
    check("ao1", low, True)
    deps.edit(gov.db, gov.actors["ao1"], low, name="Station concourse, evening")
    check("ao1", low, False, "ao1 created or changed deployment")  # now an author
    deps.override_threshold(gov.db, gov.actors["ao2"], low, good)
    check("ao2", low, False, "a second, different authorising officer must confirm it")
    check("ao1", low, False, "ao1 created or changed deployment")
    low2 = deps.create(gov.db, gov.actors["op1"], plan((wid,), threshold=SFACE_FLOOR - 0.1),
                       keyring=gov.system.keyring)
    deps.override_threshold(gov.db, gov.actors["ao2"], low2, good)
    check("ao1", low2, True, confirms=True)
    deps.override_threshold(gov.db, gov.actors["ao1"], low2, good)
    check("ao1", low2, False, "already recorded by ao2 and confirmed by ao1")
    check("ao2", low2, False, "already recorded by ao2 and confirmed by ao1")
    authorise(gov.db, gov.system.keyring, gov.actors["ao1"], low2)
    deps.start(gov.db, gov.actors["op1"], low2)
    check("ao1", low2, False, "is running: its threshold can no longer be changed")
    # the refused attempts are audited (op1, op2: role; ao1 twice: author), the questions not
    reasons = [r["reason"] for r in refusals(gov)]
    assert len(reasons) == 4 and reasons[2] == reasons[3] == (
        f"ao1 created or changed deployment {low} and may not override its threshold floor")


def test_threshold_below_the_floor_needs_a_recorded_override(gov: Gov, face_images):
    wid = approved_watchlist(gov, face_images["obama"])
    low = SFACE_FLOOR - 0.1
    dep_id = deps.create(gov.db, gov.actors["op1"], plan((wid,), threshold=low),
            keyring=gov.system.keyring)
    with pytest.raises(RuleError, match="below the calibrated floor"):
        authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)
    assert status(gov, dep_id) == DeploymentStatus.DRAFT
    # Operators may not override; an override needs a reason.
    with pytest.raises(Forbidden):
        deps.override_threshold(gov.db, gov.actors["op2"], dep_id, "busy event")
    with pytest.raises(RuleError, match="reason"):
        deps.override_threshold(gov.db, gov.actors["ao2"], dep_id, "  ")
    # ... of at least a sentence: 20 characters and 3 words
    for short in ("busy event", "Overcrowded-platform-tonight", "too short a b"):
        with pytest.raises(RuleError, match="at least a sentence: 20 characters and 3 words"):
            deps.override_threshold(gov.db, gov.actors["ao2"], dep_id, short)
    deps.override_threshold(gov.db, gov.actors["ao2"], dep_id,
                            "Missing child: more false alerts are accepted for a few hours")
    # One officer is not enough below the floor: a second, different one must confirm.
    with pytest.raises(RuleError, match="second authorising officer"):
        authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)
    with pytest.raises(RuleError, match="second, different authorising officer"):
        deps.override_threshold(gov.db, gov.actors["ao2"], dep_id,
                                "I confirm my own override, which is not allowed")
    deps.override_threshold(gov.db, gov.actors["ao1"], dep_id,
                            "Confirmed: the child's life is at risk tonight")
    authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)
    assert status(gov, dep_id) == DeploymentStatus.AUTHORISED
    with gov.db.reading() as s:
        entry = s.scalars(select(AuditRecord).where(
            AuditRecord.action == "deployment.threshold_override")).one()
        details = json.loads(entry.details)
        confirm = json.loads(s.scalars(select(AuditRecord.details).where(
            AuditRecord.action == "deployment.threshold_override_confirm")).one())
    assert details["floor"] == f"{SFACE_FLOOR:.4f}"
    assert details["threshold"] == f"{low:.4f}" and details["below_floor"] is True
    assert confirm["recorded_by"] == "ao2" and confirm["below_floor"] is True
    assert deps.show(gov.db, gov.actors["op1"], dep_id).threshold_override_confirmed_by == "ao1"
    # Changing the threshold drops the override: it was given for that threshold.
    deps.edit(gov.db, gov.actors["op1"], dep_id, threshold=low - 0.01)
    assert status(gov, dep_id) == DeploymentStatus.DRAFT
    with pytest.raises(RuleError, match="floor"):
        authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)


def test_a_calibrated_floor_raised_after_authorisation_stops_the_start(gov: Gov, face_images):
    dep_id = make_authorised(gov, face_images["obama"])
    record_floor(gov.db, gov.actors["ao2"], model_id(), 0.9, {"note": "test"})
    with pytest.raises(RuleError, match="calibrated floor"):
        deps.start(gov.db, gov.actors["op1"], dep_id)
    assert status(gov, dep_id) == DeploymentStatus.AUTHORISED


# -- changes need re-authorisation -------------------------------------------------------------

def test_a_change_after_authorisation_needs_a_new_authorisation(gov: Gov, face_images):
    dep_id = make_authorised(gov, face_images["obama"])
    assert deps.edit(gov.db, gov.actors["op2"], dep_id, location="Same place") == ["location"]
    assert status(gov, dep_id) == DeploymentStatus.DRAFT
    with pytest.raises(RuleError, match="only an authorised or paused deployment"):
        deps.start(gov.db, gov.actors["op1"], dep_id)
    authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)
    assert status(gov, dep_id) == DeploymentStatus.AUTHORISED
    # No change, no entry.
    assert deps.edit(gov.db, gov.actors["op2"], dep_id, location="Same place") == []
    assert status(gov, dep_id) == DeploymentStatus.AUTHORISED
    trail = [a for a, _ in actions(gov, dep_id)]
    assert trail == ["deployment.create", "deployment.authorise", "deployment.edit",
                     "deployment.authorise"]


def test_a_watchlist_changed_after_authorisation_stops_the_start(gov: Gov, face_images):
    dep_id = make_authorised(gov, face_images["obama"])
    with gov.db.reading() as s:
        dep = s.get(Deployment, dep_id)
        assert dep is not None
        wid = dep.watchlists[0].id
    watchlists.add_subject(gov.system, gov.actors["op1"], wid, "Case 2", "wanted_by_court",
                           REASON, datetime.now(UTC) + timedelta(days=30),
                           [(face_images["biden"].read_bytes(), "custody record")])
    with pytest.raises(RuleError, match="not approved"):
        deps.start(gov.db, gov.actors["op1"], dep_id)


# -- rules of a draft and of authorisation -----------------------------------------------------

def test_authorisation_needs_every_field_and_an_approved_watchlist(gov: Gov, face_images):
    draft = deps.create(gov.db, gov.actors["op1"], deps.Plan(
        alternatives="Patrols do not suffice",
        name="Sketch", site="", location="", purpose="", legal_basis="", dpia_ref="",
        equality_ref="", planned_start=datetime.now(UTC),
        planned_end=datetime.now(UTC) + timedelta(hours=1), threshold=0.6,
        model_id=model_id()), keyring=gov.system.keyring)
    with pytest.raises(RuleError) as info:
        authorise(gov.db, gov.system.keyring, gov.actors["ao1"], draft)
    message = str(info.value)
    for needed in ("the legal basis", "data protection impact assessment",
                   "equality impact assessment", "at least one camera", "at least one watchlist",
                   "signage and a public notice"):
        assert needed in message
    unapproved = watchlists.create_watchlist(gov.system, gov.actors["op1"], "draft list",
                                             "Locate people wanted by the courts").id
    dep_id = deps.create(gov.db, gov.actors["op1"], plan((unapproved,)), keyring=gov.system.keyring)
    with pytest.raises(RuleError, match="not approved"):
        authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)


@pytest.mark.parametrize(("change", "message"), [
    ({"planned_end": datetime.now(UTC) - timedelta(hours=3)}, "must come after"),
    ({"planned_start": datetime(2026, 1, 1)}, "timezone"),
    ({"threshold": 1.5}, "between -1 and 1"),
    ({"model_id": "nope-1"}, "unknown model"),
    ({"cameras": (deps.CameraSpec("a b", "x.avi"),)}, "camera name"),
    ({"cameras": (deps.CameraSpec("a", "x.avi"), deps.CameraSpec("a", "y.avi"))}, "unique"),
])
def test_bad_plans_are_refused_with_a_clear_message(gov: Gov, change, message):
    from dataclasses import replace

    with pytest.raises(InvalidInput, match=message):  # RuleError, or the one range check
        deps.create(gov.db, gov.actors["op1"], replace(plan(), **change),
                keyring=gov.system.keyring)


def test_window_over_cannot_be_authorised_and_end_overdue_stops(gov: Gov, face_images):
    wid = approved_watchlist(gov, face_images["obama"])
    now = datetime.now(UTC)
    past = deps.create(gov.db, gov.actors["op1"], plan(
        (wid,), start=now - timedelta(hours=3), end=now - timedelta(hours=1)),
                keyring=gov.system.keyring)
    with pytest.raises(RuleError, match="window ended"):
        authorise(gov.db, gov.system.keyring, gov.actors["ao1"], past)
    later = deps.create(gov.db, gov.actors["op1"], plan(
        (wid,), start=now + timedelta(hours=1), end=now + timedelta(hours=2)),
                keyring=gov.system.keyring)
    authorise(gov.db, gov.system.keyring, gov.actors["ao1"], later)
    with pytest.raises(RuleError, match="may run only from"):
        deps.start(gov.db, gov.actors["op1"], later)
    running = deps.create(gov.db, gov.actors["op1"], plan((wid,)), keyring=gov.system.keyring)
    authorise(gov.db, gov.system.keyring, gov.actors["ao1"], running)
    assert deps.start(gov.db, gov.actors["op1"], running) is False
    assert deps.start(gov.db, gov.actors["op2"], running) is False  # running: nothing changes
    assert actions(gov, running)[-1] == ("deployment.start", "op1")
    # A run that stops without ending it pauses it; a person resumes it (audited).
    assert deps.pause(gov.db, SYSTEM_ACTOR, running, "the server stopped") is True
    assert deps.pause(gov.db, SYSTEM_ACTOR, running, "again") is False  # not running: recorded
    assert [a for a, _ in actions(gov, running)[-2:]] == ["deployment.pause",
                                                          "deployment.run_end"]
    with pytest.raises(RuleError, match="only a paused deployment"):
        deps.resume(gov.db, gov.actors["op1"], later)
    with pytest.raises(Forbidden):
        deps.resume(gov.db, gov.actors["au1"], running)
    deps.resume(gov.db, gov.actors["op2"], running)
    assert actions(gov, running)[-1] == ("deployment.resume", "op2")
    assert deps.show(gov.db, gov.actors["au1"], running).status == "running"
    # A paused deployment is ended at the end of its window like a running one.
    deps.pause(gov.db, SYSTEM_ACTOR, running, "the camera sources ended")
    assert deps.end_overdue(gov.db, now + timedelta(minutes=30)) == []
    assert deps.end_overdue(gov.db, now + timedelta(hours=3)) == [later, running]
    with gov.db.reading() as s:
        for dep_id in (later, running):
            dep = s.get(Deployment, dep_id)
            assert dep is not None and dep.status == DeploymentStatus.ENDED
            assert dep.end_reason == deps.END_OF_WINDOW and dep.ended_at is not None
    assert actions(gov, running)[-1] == ("deployment.end", SYSTEM_ACTOR.name)
    with pytest.raises(RuleError, match="no longer be changed"):
        deps.edit(gov.db, gov.actors["op1"], running, location="elsewhere")
    with pytest.raises(RuleError, match="already ended"):
        deps.stop(gov.db, gov.actors["op1"], running, "again")


def test_manual_stop_needs_a_reason_and_the_run_permission(gov: Gov, face_images):
    dep_id = make_authorised(gov, face_images["obama"])
    deps.start(gov.db, gov.actors["op1"], dep_id)
    with pytest.raises(Forbidden):
        deps.stop(gov.db, gov.actors["au1"], dep_id, "auditors cannot stop")
    with pytest.raises(RuleError, match="reason"):
        deps.stop(gov.db, gov.actors["op1"], dep_id, "")
    deps.stop(gov.db, gov.actors["op1"], dep_id, "Crowd dispersed early")
    view = deps.show(gov.db, gov.actors["au1"], dep_id)
    assert view.status == "ended" and view.end_reason == "Crowd dispersed early"
    with gov.db.reading() as s:
        assert audit_log.verify(s).ok


# -- the commands ------------------------------------------------------------------------------

def test_the_commands_create_authorise_show_start_stop(gov: Gov, face_images):
    wid = approved_watchlist(gov, face_images["obama"])
    created = _cli(gov, "deployment", "create", "--alternatives",
                   "Patrols do not suffice", "--user", "op1", "--name", "Concourse",
                   "--site", "Central station", "--location", "Gate 3", "--purpose",
                   "Locate people wanted by the courts", "--legal-basis", "Common law",
                   "--dpia", "DPIA-1", "--equality", "EIA-1", "--start", "now", "--end", "+2h",
                   "--signage", "--public-notice", "--two-person-rule", "--watchlist", wid,
                   "--camera", "gate=rtsp://user:secret@10.0.0.5/stream", "--notice-at",
                   (datetime.now(UTC) - timedelta(days=1)).isoformat(), "--json")
    assert created.returncode == 0, created.stderr
    view = json.loads(created.stdout)
    dep_id = view["id"]
    assert view["status"] == "draft" and view["threshold"] == SFACE_FLOOR
    assert view["cameras"] == [{"name": "gate", "source": "rtsp://***@10.0.0.5/stream",
                                "state": None, "state_since": None, "last_error": None,
                                "frames": 0, "seconds": 0.0, "zones": [], "masks": [],
                                "node": None, "node_site": None}]
    refused = _cli(gov, "deployment", "authorise", dep_id, "--user", "op1")
    assert refused.returncode == 3 and "refused" in refused.stderr
    assert "Traceback" not in refused.stderr
    record_calibration(gov.db, gov.actors["ao2"], model_id())
    assert _cli(gov, "deployment", "authorise", dep_id, "--user", "ao1", "--rank",
                "superintendent", "--approve-criteria", "--representative").returncode == 0
    assert _cli(gov, "deployment", "start", dep_id, "--user", "op2").returncode == 0
    listed = _cli(gov, "deployment", "list", "--user", "au1", "--json", "--status", "running")
    assert [d["id"] for d in json.loads(listed.stdout)] == [dep_id]
    no_reason = _cli(gov, "deployment", "stop", dep_id, "--user", "op1", "--reason", " ")
    assert no_reason.returncode == 2 and "reason" in no_reason.stderr
    assert _cli(gov, "deployment", "stop", dep_id, "--user", "op1", "--reason",
                "Event over").returncode == 0
    shown = _cli(gov, "deployment", "show", dep_id, "--user", "au1")
    assert shown.returncode == 0 and "Event over" in shown.stdout
    with gov.db.reading() as s:
        details = " ".join(r.details for r in s.scalars(select(AuditRecord)))
    assert "secret" not in details  # camera credentials never reach the audit log


@pytest.mark.parametrize(("args", "message"), [
    (["--start", "tomorrow", "--end", "+2h"], "not a date and time"),
    (["--start", "2026-05-01T08:00", "--end", "+2h"], "give a timezone"),
    (["--start", "now", "--end", "+2h", "--camera", "nocolon"], "NAME=SOURCE"),
    (["--start", "now", "--end", "+2h", "--watchlist", "999"], "watchlist 999 does not exist"),
    (["--start", "+2h", "--end", "now"], "must come after"),
    (["--start", "now", "--end", "+9999999d"], "too far in the future"),
    (["--start", "now", "--end", "+99999999999d"], "too far in the future"),
])
def test_bad_command_input_is_one_clear_line(gov: Gov, args, message):
    result = _cli(gov, "deployment", "create", "--alternatives",
                  "Patrols do not suffice", "--user", "op1", "--name", "x", *args)
    assert result.returncode == (5 if "999" in args else 2), result.stderr  # 5: not found
    assert message in result.stderr and "Traceback" not in result.stderr
    missing = _cli(gov, "deployment", "show", "4242", "--user", "au1")
    assert missing.returncode == 5 and "does not exist" in missing.stderr
