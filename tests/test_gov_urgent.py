"""The urgent-use path (``eu-ai-act``): a draft starts without prior
authorisation only with a substantial recorded justification; a 24-hour clock; authorisation by
another authorising officer makes it an ordinary authorised deployment; a refusal or the
deadline ends it at once and deletes its results (alerts, crops, decisions, outcomes, the data
key) keeping counts, audited, the chain still verifying. Under ``uk-app`` there is no such path.
Real SQLite file and real PostgreSQL (``gov``)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from openlfr.audit import log as audit_log
from openlfr.governance import alerts as alerts_svc
from openlfr.governance import deployments as deps
from openlfr.governance import profiles, urgent
from openlfr.governance.authz import Conflict, Forbidden, RuleError
from openlfr.store.crypto import CryptoError
from openlfr.store.enums import Decision, DeploymentStatus
from openlfr.store.models import (
    Adjudication,
    Alert,
    AuditRecord,
    DataKey,
    Deployment,
    Subject,
    UrgentUse,
)
from openlfr.transparency.stats import check_against_audit, deployment_stats
from openlfr.video import types as vtypes
from tests.govfix import DECISION, Gov, ready_to_authorise, run_cli
from tests.test_gov_deployments import approved_watchlist, plan

WHY = ("A child was reported abducted twenty minutes ago near the station; the suspect is "
       "known and on the watchlist, and there is no time to obtain prior authorisation.")
REFUSAL = "The circumstances do not meet the test of urgency for this use."


def eu(gov: Gov) -> None:
    profiles.set_profile(gov.db, gov.actors["admin"], "eu-ai-act")


def eu_plan(p: deps.Plan) -> deps.Plan:
    """``p`` with the references eu-ai-act asks before authorisation."""
    return replace(p, fria_ref="FRIA-2026-3", eu_db_ref="EU-DB-RBI-000123")


def draft(gov: Gov, face: Path, **kwargs: object) -> int:
    """A complete draft whose model has a calibration that answers for its plan (no use, urgent
    or not, on a model's default floor)."""
    wid = approved_watchlist(gov, face)
    dep_id = deps.create(gov.db, gov.actors["op1"], eu_plan(plan((wid,), **kwargs)),  # type: ignore[arg-type]
                         keyring=gov.system.keyring)
    ready_to_authorise(gov.db, gov.actors["ao2"], dep_id)
    return dep_id


def row(gov: Gov, dep_id: int) -> tuple[Deployment, UrgentUse | None]:
    with gov.db.reading() as s:
        dep = s.get(Deployment, dep_id)
        assert dep is not None
        use = s.scalars(select(UrgentUse).where(UrgentUse.deployment_id == dep_id)).first()
        return dep, use


def trail(gov: Gov, dep_id: int) -> list[tuple[str, str, dict]]:
    with gov.db.reading() as s:
        return [(r.action, r.actor, json.loads(r.details)) for r in s.scalars(
            select(AuditRecord).where(AuditRecord.object_type == "deployment",
                                      AuditRecord.object_id == str(dep_id))
            .order_by(AuditRecord.seq))]


def store_alert(gov: Gov, dep_id: int, n: int) -> int:
    """An alert as the live run stores it (a real crop encrypted under the deployment's key)."""
    with gov.db.reading() as s:
        dep = s.get(Deployment, dep_id)
        assert dep is not None
        subject_id = s.scalar(select(Subject.id).where(
            Subject.watchlist_id == dep.watchlists[0].id))
    recorder = alerts_svc.AlertRecorder(gov.system, dep_id)
    crop = np.full((112, 112, 3), 90 + n, dtype=np.uint8)
    now = datetime.now(UTC).timestamp()
    alert = vtypes.Alert(
        alert_id=f"gate-{n}", camera="gate", track_id=n, subject_id=str(subject_id),
        display_name="Case 1", score=0.71, threshold=0.53, reference_id="0",
        model_id=dep.model_id, frame=1, t=0.1, wall_time=now, frame_wall=now,
        box=(1, 2, 3, 4), probe_crop=crop)
    recorder.publish(alert)
    stored = recorder.stored_id(alert.alert_id)
    assert stored is not None
    return stored


# -- starting ----------------------------------------------------------------------------------

def test_uk_app_has_no_urgent_path(gov: Gov, face_images) -> None:
    dep_id = draft(gov, face_images["obama"])
    with pytest.raises(Conflict, match="only under the eu-ai-act profile: under uk-app"):
        urgent.start_urgent(gov.db, gov.system.keyring, gov.actors["op1"], dep_id, WHY)
    dep, use = row(gov, dep_id)
    assert dep.status == DeploymentStatus.DRAFT and use is None
    cli = run_cli(gov, "deployment", "start", dep_id, "--urgent", "--justification", WHY,
                  user="op1")
    assert cli.returncode == 6 and cli.stderr.count("\n") == 1
    assert "only under the eu-ai-act profile" in cli.stderr


@pytest.mark.parametrize("text, message", [
    ("", "the urgency justification is required"),
    ("Urgent.", "must be substantial"),
    ("x" * 60, "must be substantial"),
    ("Because it is urgent\x00 and there is no time at all here", "NUL"),
])
def test_a_justification_must_be_substantial(gov: Gov, face_images, text, message) -> None:
    eu(gov)
    dep_id = draft(gov, face_images["obama"])
    with pytest.raises(RuleError, match=message):
        urgent.start_urgent(gov.db, gov.system.keyring, gov.actors["op1"], dep_id, text)
    assert row(gov, dep_id)[1] is None


def test_urgent_start_runs_a_draft_and_starts_the_clock(gov: Gov, face_images) -> None:
    eu(gov)
    dep_id = draft(gov, face_images["obama"])
    t0 = datetime.now(UTC).replace(microsecond=0)
    view = urgent.start_urgent(gov.db, gov.system.keyring, gov.actors["op1"], dep_id, WHY,
                               now=t0)
    assert view.state == "waiting" and view.started_by == "op1"
    assert view.deadline == t0 + timedelta(hours=24) and view.justification == WHY
    dep, use = row(gov, dep_id)
    assert dep.status == DeploymentStatus.RUNNING and dep.authorised_by is None
    assert dep.data_key_id is not None and use is not None and use.outcome is None
    *_, (action, actor, details), (notified, _, _) = trail(gov, dep_id)
    assert (action, actor) == ("urgent.start", "op1")
    assert notified == "deployment.notification"  # the authorities are notified of the use
    assert details["justification"] == WHY and details["profile"] == "eu-ai-act"
    assert details["deadline"] == (t0 + timedelta(hours=24)).isoformat()
    # Only once, and only a draft.
    with pytest.raises(Conflict, match="already been used urgently"):
        urgent.start_urgent(gov.db, gov.system.keyring, gov.actors["op2"], dep_id, WHY)
    # The console banner lists it with the time left.
    waiting = urgent.waiting(gov.db, gov.actors["au1"], now=t0 + timedelta(hours=1))
    assert [(w.deployment_id, w.seconds_left) for w in waiting] == [(dep_id, 23 * 3600)]


def test_an_urgent_start_still_needs_a_complete_plan_inside_its_window(gov: Gov,
                                                                          face_images) -> None:
    eu(gov)
    now = datetime.now(UTC)
    later = draft(gov, face_images["obama"], start=now + timedelta(hours=1),
                  end=now + timedelta(hours=3))
    with pytest.raises(Conflict, match="may run only from"):
        urgent.start_urgent(gov.db, gov.system.keyring, gov.actors["op1"], later, WHY)
    no_list = deps.create(gov.db, gov.actors["op1"], plan(()), keyring=gov.system.keyring)
    with pytest.raises(Conflict, match="at least one watchlist"):
        urgent.start_urgent(gov.db, gov.system.keyring, gov.actors["op1"], no_list, WHY)
    with pytest.raises(Forbidden):
        urgent.start_urgent(gov.db, gov.system.keyring, gov.actors["au1"], later, WHY)


# -- authorising -------------------------------------------------------------------------------

def test_authorised_in_time_by_another_officer_it_is_an_ordinary_deployment(
        gov: Gov, face_images) -> None:
    eu(gov)
    dep_id = draft(gov, face_images["obama"])
    urgent.start_urgent(gov.db, gov.system.keyring, gov.actors["ao2"], dep_id, WHY)
    alert_id = store_alert(gov, dep_id, 1)
    # Not the officer who started it, nor the deployment's author.
    with pytest.raises(Forbidden, match="another authorising officer"):
        urgent.authorise_urgent(gov.db, gov.actors["ao2"], dep_id, decision=DECISION)
    with pytest.raises(Forbidden):
        urgent.authorise_urgent(gov.db, gov.actors["op2"], dep_id, decision=DECISION)
    view = urgent.authorise_urgent(gov.db, gov.actors["ao1"], dep_id, decision=DECISION)
    assert view.state == "authorised" and view.decided_by == "ao1"
    dep, use = row(gov, dep_id)
    assert dep.status == DeploymentStatus.RUNNING and dep.authorised_by == "ao1"
    assert use is not None and use.results_deleted_at is None
    assert [a for a, _, _ in trail(gov, dep_id)][-3:] == [
        "access.refused", "access.refused", "urgent.authorise"]
    # Nothing expires once authorised; its alerts stay.
    assert urgent.expire_overdue(gov.system, datetime.now(UTC) + timedelta(hours=30)) == []
    with gov.db.reading() as s:
        assert s.get(Alert, alert_id) is not None
    with pytest.raises(Conflict, match="already authorised"):
        urgent.refuse_urgent(gov.system, gov.actors["ao1"], dep_id, REFUSAL)
    # It ends like any deployment.
    deps.stop(gov.db, gov.actors["op1"], dep_id, "Child found safe")
    assert row(gov, dep_id)[0].status == DeploymentStatus.ENDED


def test_authorisation_after_the_deadline_is_refused(gov: Gov, face_images) -> None:
    eu(gov)
    dep_id = draft(gov, face_images["obama"])
    t0 = datetime.now(UTC)
    urgent.start_urgent(gov.db, gov.system.keyring, gov.actors["op1"], dep_id, WHY, now=t0)
    with pytest.raises(Conflict, match="was not authorised by its deadline"):
        urgent.authorise_urgent(gov.db, gov.actors["ao1"], dep_id,
                                now=t0 + timedelta(hours=24, seconds=1), decision=DECISION)


# -- refusal and expiry: stop and delete -------------------------------------------------------

def _results(gov: Gov, dep_id: int, key_id: int) -> tuple[int, int, object, bool]:
    with gov.db.reading() as s:
        alerts = int(s.scalar(select(func.count()).select_from(Alert).where(
            Alert.deployment_id == dep_id)) or 0)
        decisions = int(s.scalar(select(func.count()).select_from(Adjudication)) or 0)
        key = s.get(DataKey, key_id)
        destroyed = key.destroyed_at if key is not None else None
    return alerts, decisions, destroyed, gov.system.keyring.store.exists(key_id)


@pytest.mark.parametrize("how", ["refused", "expired"])
def test_refused_or_expired_it_stops_and_its_results_are_deleted(gov: Gov, face_images,
                                                                 how) -> None:
    eu(gov)
    dep_id = draft(gov, face_images["obama"])
    t0 = datetime.now(UTC)
    urgent.start_urgent(gov.db, gov.system.keyring, gov.actors["op1"], dep_id, WHY, now=t0)
    first = store_alert(gov, dep_id, 1)
    store_alert(gov, dep_id, 2)
    alerts_svc.adjudicate(gov.db, gov.actors["op2"], first, Decision.REJECT,
                          "Not the same person at all")
    key_id = row(gov, dep_id)[0].data_key_id
    assert key_id is not None and gov.system.keyring.store.exists(key_id)
    if how == "refused":
        with pytest.raises(Forbidden):
            urgent.refuse_urgent(gov.system, gov.actors["op1"], dep_id, REFUSAL)
        with pytest.raises(RuleError, match="substantial"):
            urgent.refuse_urgent(gov.system, gov.actors["ao1"], dep_id, "No.")
        view = urgent.refuse_urgent(gov.system, gov.actors["ao1"], dep_id, REFUSAL)
        assert view.refusal_reason == REFUSAL
    else:
        # Not before the deadline; at it, by the program, without anyone acting.
        assert urgent.expire_overdue(gov.system, t0 + timedelta(hours=23, minutes=59)) == []
        assert row(gov, dep_id)[0].status == DeploymentStatus.RUNNING
        assert urgent.expire_overdue(gov.system, t0 + timedelta(hours=24)) == [dep_id]
        view = urgent.urgent_use(gov.db, gov.actors["au1"], dep_id)
        assert view is not None
    assert view.state == how and view.results_deleted_at is not None
    assert view.deleted_counts["alerts"] == 2 and view.deleted_counts["status_rejected"] == 1
    dep, use = row(gov, dep_id)
    assert use is not None and use.outcome == how
    assert dep.status == DeploymentStatus.ENDED and dep.data_key_id is None
    assert "urgent use" in (dep.end_reason or "")
    alerts, decisions, destroyed, key_file = _results(gov, dep_id, key_id)
    assert alerts == 0 and decisions == 0 and destroyed is not None and not key_file
    actions = [a for a, _, _ in trail(gov, dep_id)]
    decided = "urgent.refuse" if how == "refused" else "urgent.expire"
    assert actions[-3:] == [decided, "deployment.end", "urgent.results_delete"]
    deleted = trail(gov, dep_id)[-1][2]
    assert deleted["alerts_deleted"] == 2 and deleted["crops_deleted"] == 2
    assert deleted["adjudications_deleted"] == 1 and deleted["data_key_destroyed"] is True
    with gov.db.reading() as s:
        assert audit_log.verify(s).ok
        # The public figures keep the counts; the check against the log still agrees.
        figures = deployment_stats(s, dep_id)[0]
        assert figures.alerts == 2 and figures.false_alerts == 1
        assert check_against_audit(s) == []
        # No audit entry holds a crop, a template or a name of the watchlist.
        for record in s.scalars(select(AuditRecord)):
            assert "Case 1" not in record.details or record.action == "subject.add"
    # Done is final.
    with pytest.raises(Conflict):
        urgent.authorise_urgent(gov.db, gov.actors["ao2"], dep_id, decision=DECISION)


def test_an_alert_stored_while_the_deletion_committed_is_swept(gov: Gov, face_images) -> None:
    eu(gov)
    dep_id = draft(gov, face_images["obama"])
    urgent.start_urgent(gov.db, gov.system.keyring, gov.actors["op1"], dep_id, WHY)
    recorder = alerts_svc.AlertRecorder(gov.system, dep_id)  # made while the run was live
    urgent.refuse_urgent(gov.system, gov.actors["ao1"], dep_id, REFUSAL)
    # The recorder cannot store any more: the key is destroyed.
    with pytest.raises(CryptoError, match="destroyed"):
        now = datetime.now(UTC).timestamp()
        recorder.publish(vtypes.Alert(
            alert_id="late", camera="gate", track_id=9, subject_id="1", display_name="x",
            score=0.8, threshold=0.5, reference_id="0", model_id="m", frame=1, t=0.1,
            wall_time=now, frame_wall=now, box=(1, 2, 3, 4),
            probe_crop=np.zeros((112, 112, 3), dtype=np.uint8)))
    with gov.db.reading() as s:
        assert s.scalar(select(func.count()).select_from(Alert)) == 0


def test_urgent_uses_of_a_period_for_the_annual_report(gov: Gov, face_images) -> None:
    eu(gov)
    t0 = datetime.now(UTC).replace(microsecond=0)
    a = draft(gov, face_images["obama"])
    b = draft(gov, face_images["obama"])
    urgent.start_urgent(gov.db, gov.system.keyring, gov.actors["op1"], a, WHY, now=t0)
    urgent.start_urgent(gov.db, gov.system.keyring, gov.actors["op1"], b, WHY,
                        now=t0 + timedelta(minutes=1))
    urgent.authorise_urgent(gov.db, gov.actors["ao1"], a, now=t0 + timedelta(hours=2),
                            decision=DECISION)
    urgent.expire_overdue(gov.system, t0 + timedelta(hours=25))
    with gov.db.reading() as s:
        uses = urgent.urgent_uses(s, t0 - timedelta(days=1), t0 + timedelta(days=1))
        assert urgent.urgent_uses(s, t0 + timedelta(days=1), t0 + timedelta(days=2)) == []
    assert [(u.deployment_id, u.outcome, u.justification) for u in uses] == [
        (a, "authorised", WHY), (b, "expired", WHY)]
    assert uses[0].results_deleted_at is None and uses[0].decided_by == "ao1"
    assert uses[1].results_deleted_at == t0 + timedelta(hours=25)
    with pytest.raises(AttributeError):
        uses[0].outcome = "refused"  # type: ignore[misc]


# -- the commands ------------------------------------------------------------------------------

def test_the_commands_start_urgently_authorise_and_refuse(gov: Gov, face_images) -> None:
    eu(gov)
    a = draft(gov, face_images["obama"])
    b = draft(gov, face_images["obama"])
    short = run_cli(gov, "deployment", "start", a, "--urgent", "--justification", "now",
                    user="op1")
    assert short.returncode == 2 and "must be substantial" in short.stderr
    assert short.stderr.count("\n") == 1
    missing = run_cli(gov, "deployment", "start", a, "--urgent", user="op1")
    assert missing.returncode == 2 and "--justification" in missing.stderr
    ok = run_cli(gov, "deployment", "start", a, "--urgent", "--justification", WHY,
                 user="op1")
    assert ok.returncode == 0, ok.stderr
    assert "urgent use" in ok.stderr and "within 24 h" in ok.stderr
    shown = run_cli(gov, "deployment", "show", a, user="au1")
    assert shown.returncode == 0, shown.stderr
    assert "urgent use: started by op1" in shown.stdout and "left to authorise it" in shown.stdout
    data = json.loads(run_cli(gov, "deployment", "show", a, "--json", user="au1").stdout)
    assert data["urgent_use"]["state"] == "waiting" and data["urgent_use"]["justification"] == WHY
    assert DECISION.authority_date is not None
    auth = run_cli(gov, "deployment", "authorise", a, "--representative",
                   "--authority-ref", DECISION.authority_ref, "--authority",
                   DECISION.authority_name, "--authority-date",
                   DECISION.authority_date.isoformat(), "--authority-scope",
                   DECISION.authority_scope, user="ao1")
    assert auth.returncode == 0, auth.stderr
    assert row(gov, a)[1].outcome == "authorised"  # type: ignore[union-attr]
    run_cli(gov, "deployment", "start", b, "--urgent", "--justification", WHY, user="op1")
    no_reason = run_cli(gov, "deployment", "refuse", b, user="ao1")
    assert no_reason.returncode == 2
    refused = run_cli(gov, "deployment", "refuse", b, "--reason", REFUSAL, user="ao1")
    assert refused.returncode == 0, refused.stderr
    assert "results were deleted (0 alert(s))" in refused.stderr
    assert row(gov, b)[0].status == DeploymentStatus.ENDED
    verify = run_cli(gov, "audit", "verify", user="au1")
    assert verify.returncode == 0, verify.stderr


def test_a_retention_run_expires_an_urgent_use_without_a_server(gov: Gov, face_images) -> None:
    from openlfr.governance.retention import run_retention

    eu(gov)
    dep_id = draft(gov, face_images["obama"])
    t0 = datetime.now(UTC)
    urgent.start_urgent(gov.db, gov.system.keyring, gov.actors["op1"], dep_id, WHY, now=t0)
    store_alert(gov, dep_id, 1)
    early = run_retention(gov.system, now=t0 + timedelta(hours=1))
    assert early.urgent_uses_expired == []
    report = run_retention(gov.system, now=t0 + timedelta(hours=24, minutes=1))
    assert report.urgent_uses_expired == [dep_id]
    assert any("urgent use(s) not authorised within 24 h" in line for line in report.summary())
    dep, use = row(gov, dep_id)
    assert dep.status == DeploymentStatus.ENDED and use is not None and use.outcome == "expired"
    with gov.db.reading() as s:
        assert s.scalar(select(func.count()).select_from(Alert)) == 0
