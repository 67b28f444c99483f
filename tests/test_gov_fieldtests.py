"""Field tests (blue list): planning, volunteers, test alerts kept out of the operational queue,
the report with its intervals and suppression, the end that destroys the volunteers' data, and
a real live run of a clip. Real SQLite and PostgreSQL (``gov``), real models, real photos."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import pytest
from sqlalchemy import select

from openlfr.audit import log as audit_log
from openlfr.governance import alerts as alerts_svc
from openlfr.governance import deployments as deps
from openlfr.governance import fieldtests as ft
from openlfr.governance import watchlists
from openlfr.governance.authz import Conflict, Forbidden, RuleError
from openlfr.governance.live import DeploymentRun, RunOptions
from openlfr.store.enums import Action, AlertStatus, Decision, DeploymentStatus, WatchlistStatus
from openlfr.store.models import (
    Alert,
    Deployment,
    FieldTest,
    FieldTestPass,
    FieldTestVolunteer,
    Subject,
    SubjectImage,
    Watchlist,
)
from openlfr.transparency.stats import check_against_audit
from openlfr.video.types import Alert as PipelineAlert
from tests.govfix import Gov, authorise
from tests.test_gov_deployments import approved_watchlist, plan

NOW = datetime.now(UTC)


def planned(gov: Gov, face_images, cameras: dict[str, object] | None = None
            ) -> tuple[int, int]:
    """An authorised deployment (operational list: obama) with a planned field test."""
    wid = approved_watchlist(gov, face_images["obama"])
    specs = tuple(deps.CameraSpec(n, str(p)) for n, p in
                  (cameras or {"gate": "/nonexistent/gate.avi"}).items())
    dep_id = deps.create(gov.db, gov.actors["op1"], plan((wid,), cameras=specs),
                         keyring=gov.system.keyring)
    authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)
    view = ft.plan_field_test(gov.system, gov.actors["op1"], dep_id)
    return dep_id, view.id


def passes(camera: str = "gate", start: float = -1, minutes: float = 10) -> list[ft.PassSpec]:
    now = datetime.now(UTC)
    return [ft.PassSpec(camera, now + timedelta(minutes=start),
                        now + timedelta(minutes=start + minutes))]


def volunteer(gov: Gov, test_id: int, face: Path, label: str = "V1",
              **kwargs: object) -> ft.VolunteerView:
    args: dict[str, object] = {"passes": passes(), "age_band": "25-34", "sex": "male",
                               "ethnicity": "white"}
    args.update(kwargs)
    return ft.add_volunteer(gov.system, gov.actors["op1"], test_id, label, face.read_bytes(),
                            f"photo taken with consent ({face.name})", "PC Dawn Smith",
                            datetime.now(UTC) - timedelta(days=1), "CONSENT-2026-001",
                            **args)  # type: ignore[arg-type]


def go_live(gov: Gov, dep_id: int, test_id: int) -> None:
    """Approve the test watchlist, authorise again and start."""
    test = ft.show_field_test(gov.db, gov.actors["op1"], test_id)
    assert test.watchlist_id is not None
    watchlists.approve_watchlist(gov.db, gov.actors["ao2"], test.watchlist_id)
    authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)
    deps.start(gov.db, gov.actors["op1"], dep_id)


def pipeline_alert(gov: Gov, subject_id: int, face: Path, track: int = 1,
                   camera: str = "gate", latency: float | None = 1.5) -> PipelineAlert:
    with gov.db.reading() as s:
        image_id = s.scalar(select(SubjectImage.id).where(SubjectImage.subject_id == subject_id))
    crop = cv2.imread(str(face))
    assert crop is not None
    now = datetime.now(UTC).timestamp()
    return PipelineAlert(alert_id=f"{camera}:{track}:{subject_id}", camera=camera,
                         track_id=track, subject_id=str(subject_id), display_name="x",
                         score=0.7, threshold=0.5, reference_id=str(image_id),
                         model_id="sface", frame=3, t=0.1, wall_time=now, frame_wall=now,
                         box=(1, 2, 30, 40), probe_crop=crop[:120, :100].copy(),
                         latency=latency)


def operational_subject(gov: Gov, dep_id: int) -> int:
    with gov.db.reading() as s:
        dep = s.get(Deployment, dep_id)
        assert dep is not None
        tests = {t.watchlist_id for t in s.scalars(select(FieldTest))}
        wl = next(w for w in dep.watchlists if w.id not in tests)
        return s.scalars(select(Subject.id).where(Subject.watchlist_id == wl.id)).one()


# -- planning ----------------------------------------------------------------------------------

def test_planning_a_field_test_attaches_a_test_watchlist_and_sends_the_plan_back(gov: Gov,
                                                                                  face_images):
    dep_id, test_id = planned(gov, face_images)
    with gov.db.reading() as s:
        dep = s.get(Deployment, dep_id)
        test = s.get(FieldTest, test_id)
        assert dep is not None and test is not None
        assert dep.status == DeploymentStatus.DRAFT and dep.authorised_by is None
        assert test.watchlist_id in {w.id for w in dep.watchlists}
    assert [r.action for r in audit_records_of(gov, "field_test", test_id)] == ["fieldtest.plan"]
    with pytest.raises(Conflict, match="already has a planned field test"):
        ft.plan_field_test(gov.system, gov.actors["op1"], dep_id)
    with pytest.raises(Forbidden):
        ft.plan_field_test(gov.system, gov.actors["au1"], dep_id)


def audit_records_of(gov: Gov, kind: str, object_id: int) -> list:
    with gov.db.reading() as s:
        return [e for e in audit_log.entries(s)
                if e.object_type == kind and e.object_id == str(object_id)]


@pytest.mark.parametrize(("change", "message"), [
    ({"passes": []}, "at least one planned pass"),
    ({"passes": passes("door")}, "camera 'door' is not in the plan"),
    ({"passes": [ft.PassSpec("gate", NOW, NOW)]}, "end must be after its start"),
    ({"passes": passes(start=60 * 24 * 3)}, "outside the deployment's window"),
    ({"ethnicity": "martian"}, "ethnic group 'martian'"),
    ({"age_band": "12"}, "age band '12'"),
    ({"sex": "x"}, "sex 'x'"),
])
def test_bad_volunteers_are_refused_naming_the_field_and_nothing_is_added(
        sqlite_gov: Gov, face_images, change, message):
    gov = sqlite_gov
    _dep_id, test_id = planned(gov, face_images)
    with pytest.raises(RuleError, match=message):
        volunteer(gov, test_id, face_images["biden"], **change)
    with gov.db.reading() as s:
        assert s.scalars(select(FieldTestVolunteer)).all() == []
        assert s.scalars(select(Subject).join(Watchlist).where(
            Watchlist.name.like("Field test%"))).all() == []


def test_a_volunteer_photo_without_one_face_adds_nothing(sqlite_gov: Gov, face_images,
                                                          no_face_path):
    _dep_id, test_id = planned(sqlite_gov, face_images)
    with pytest.raises(RuleError, match="no_face"):
        volunteer(sqlite_gov, test_id, no_face_path)
    with sqlite_gov.db.reading() as s:
        assert s.scalars(select(FieldTestVolunteer)).all() == []


def test_the_audit_log_holds_no_self_declared_attribute(gov: Gov, face_images):
    _dep_id, test_id = planned(gov, face_images)
    vol = volunteer(gov, test_id, face_images["biden"], ethnicity="black", sex="female")
    assert vol.ethnicity == "black" and vol.sex == "female" and vol.enrolled
    entry = audit_records_of(gov, "field_test", test_id)[-1]
    assert entry.action == "fieldtest.volunteer_add" and entry.details["self_declared"] is True
    with gov.db.reading() as s:
        text = " ".join(e.details_json if hasattr(e, "details_json") else str(e.details)
                        for e in audit_log.entries(s))
    assert "black" not in text and "female" not in text and "V1" not in text


# -- test alerts -------------------------------------------------------------------------------

def test_test_alerts_are_marked_when_recorded_and_never_reach_the_operational_queue(
        gov: Gov, face_images):
    dep_id, test_id = planned(gov, face_images)
    vol = volunteer(gov, test_id, face_images["biden"])
    go_live(gov, dep_id, test_id)
    with gov.db.reading() as s:
        vol_subject = s.get(FieldTestVolunteer, vol.id).subject_id  # type: ignore[union-attr]
    shown: list[int] = []
    recorder = alerts_svc.AlertRecorder(gov.system, dep_id,
                                        on_stored=lambda row, _a: shown.append(row))
    recorder.publish(pipeline_alert(gov, vol_subject, face_images["biden"], track=1))
    recorder.publish(pipeline_alert(gov, operational_subject(gov, dep_id),
                                    face_images["obama"], track=2))
    test_row = recorder.stored_id(f"gate:1:{vol_subject}")
    op_row = recorder.stored_id(f"gate:2:{operational_subject(gov, dep_id)}")
    assert test_row is not None and op_row is not None
    assert shown == [op_row]  # the test alert was stored but never handed on
    queue = alerts_svc.search_alerts(gov.db, gov.actors["op1"])
    assert [a.id for a in queue.items] == [op_row] and queue.total == 1
    view = ft.test_alerts(gov.db, gov.actors["op1"], test_id)
    assert [(a.id, a.volunteer, a.in_pass, a.latency) for a in view] == [
        (test_row, "V1", True, 1.5)]
    with pytest.raises(Conflict, match="field-test alert"):
        alerts_svc.adjudicate(gov.db, gov.actors["op1"], test_row, Decision.CONFIRM)
    with pytest.raises(Conflict, match="never be decided or lead to an outcome"):
        alerts_svc.record_outcome(gov.db, gov.actors["op1"], test_row, True, Action.ADVICE)
    create = [e for e in audit_records_of(gov, "alert", test_row) if e.action == "alert.create"]
    assert create[0].details["field_test"] == test_id
    with gov.db.reading() as s:
        assert check_against_audit(s) == []


def test_ending_a_test_stores_the_report_and_destroys_the_volunteers_data(gov: Gov,
                                                                          face_images):
    dep_id, test_id = planned(gov, face_images, {"gate": "/x/gate.avi", "hall": "/x/hall.avi"})
    v1 = volunteer(gov, test_id, face_images["biden"], label="V1",
                   passes=passes("gate") + passes("hall"))
    volunteer(gov, test_id, face_images["obama3"], label="V2", sex="female", ethnicity="")
    go_live(gov, dep_id, test_id)
    with gov.db.reading() as s:
        subject = s.get(FieldTestVolunteer, v1.id).subject_id  # type: ignore[union-attr]
        wl_id = s.get(FieldTest, test_id).watchlist_id  # type: ignore[union-attr]
    recorder = alerts_svc.AlertRecorder(gov.system, dep_id)
    recorder.publish(pipeline_alert(gov, subject, face_images["biden"], latency=2.0))
    recorder.publish(pipeline_alert(gov, operational_subject(gov, dep_id),
                                    face_images["obama"], track=5, camera="hall"))
    op_row = recorder.stored_id(f"hall:5:{operational_subject(gov, dep_id)}")
    assert op_row is not None
    alerts_svc.adjudicate(gov.db, gov.actors["op1"], op_row, Decision.REJECT,
                          reason="not the same person at all")
    with pytest.raises(Forbidden):
        ft.end_field_test(gov.system, gov.actors["au1"], test_id)
    done = ft.end_field_test(gov.system, gov.actors["op1"], test_id)
    report = done.report
    # V1: 2 passes (gate alerted, hall not); V2: 1 pass, not alerted
    assert (report.overall.passes, report.overall.tpir.k, report.overall.volunteers) == (3, 1, 2)
    low, high = report.overall.tpir.low, report.overall.tpir.high
    assert low is not None and high is not None and 0.008 < low < 0.009 and 0.90 < high < 0.91
    assert report.overall.median_seconds == 2.0 and report.overall.within.k == 1
    assert report.overall.operational.k == 1  # the rejected alert at the hall during V1's pass
    assert (report.operational.total, report.operational.false_alerts) == (1, 1)
    by_label = {v.label: v.figures for v in report.volunteers}
    assert by_label["V1"].tpir.k == 1 and by_label["V1"].passes == 2
    assert by_label["V2"].tpir.k == 0
    # groups of fewer than 5 volunteers: not broken down
    assert report.groups and all(g.figures is None for g in report.groups)
    assert done.crops_purged == 1 and done.watchlist_destroyed
    with gov.db.reading() as s:
        wl = s.get(Watchlist, wl_id)
        assert wl is not None and wl.status == WatchlistStatus.DESTROYED
        assert s.scalars(select(FieldTestVolunteer.subject_id)).all() == [None, None]
        test_alert = s.scalars(select(Alert).where(Alert.field_test_id == test_id)).one()
        assert test_alert.crop_ct is None and test_alert.purged_at is not None
        assert check_against_audit(s) == []
        assert audit_log.verify(s).ok
    actions = [e.action for e in audit_records_of(gov, "field_test", test_id)]
    assert actions == ["fieldtest.plan", "fieldtest.volunteer_add",
                       "fieldtest.volunteer_add", "access.refused", "fieldtest.end"]
    assert [e.actor for e in audit_records_of(gov, "watchlist", wl_id or 0)
            if e.action == "watchlist.destroy"] == ["system"]
    with pytest.raises(Conflict, match="already ended"):
        ft.end_field_test(gov.system, gov.actors["op1"], test_id)
    shown = ft.show_field_test(gov.db, gov.actors["au1"], test_id)
    assert shown.status == ft.ENDED and shown.report == report
    # the public form and the yearly summary: aggregate only
    with gov.db.reading() as s:
        public = ft.public_reports(s, dep_id)
        now = datetime.now(UTC)
        year = ft.fieldtest_summary(s, now - timedelta(days=1), now + timedelta(days=1))
        before = ft.fieldtest_summary(s, now - timedelta(days=2), now - timedelta(days=1))
    assert public == year and len(year) == 1 and year[0].volunteers == ()
    assert year[0].overall == report.overall and before == []
    assert "V1" not in year[0].markdown(public=True) and "V1" in report.markdown()


def test_groups_of_five_or_more_volunteers_are_published_and_the_others_withheld():
    dep = Deployment(id=1, name="d", model_id="sface", threshold=0.5)
    now = datetime.now(UTC)
    test = FieldTest(id=7, deployment_id=1)
    vols = []
    for i in range(6):
        v = FieldTestVolunteer(id=i + 1, label=f"V{i}", sex="female" if i < 5 else "male",
                               age_band=None, ethnicity="asian")
        v.passes = [FieldTestPass(camera="gate", starts_at=now, ends_at=now
                                  + timedelta(minutes=1))]
        vols.append(v)
    test.volunteers = vols
    hits = [Alert(field_test_id=7, field_volunteer_id=i + 1, camera="gate",
                  seen_at=now + timedelta(seconds=30), latency=1.0 + i,
                  status=AlertStatus.PENDING) for i in range(3)]
    # an earlier alert of volunteer 1 from a track whose face never met the enrolment policy
    # (no latency): the pass's time is that of its earliest alert that has one
    hits.append(Alert(field_test_id=7, field_volunteer_id=1, camera="gate",
                      seen_at=now + timedelta(seconds=10), latency=None,
                      status=AlertStatus.PENDING))
    # volunteer 2's alert knows when its track entered the view: that time counts
    hits[1].in_view = 4.5
    report = ft.compute_report(test, dep, hits, now)
    assert report.volunteers[0].figures.median_seconds == 1.0
    assert report.volunteers[1].figures.median_seconds == 4.5
    assert report.test_alerts == 4 and report.test_alerts_outside_passes == 0
    groups = {(g.attribute, g.group): g for g in report.groups}
    # female 5, male 1: the 1 is hidden, and so is the 5 (else the total gives it away)
    assert groups[("sex", "male")].figures is None and groups[("sex", "male")].shown != 1
    assert groups[("sex", "female")].figures is None
    ethnic = groups[("ethnicity", "asian")]
    assert ethnic.shown == 6 and ethnic.figures is not None
    assert (ethnic.figures.tpir.k, ethnic.figures.tpir.n) == (3, 6)
    assert groups[("age_band", "not_declared")].figures is not None
    assert report.overall.within.k == 3 and report.overall.max_seconds == 4.5
    again = ft.FieldTestReport.from_json(report.as_json())
    assert again == report


# -- a real live run ---------------------------------------------------------------------------

def test_a_live_run_records_the_volunteer_as_a_test_alert_only(gov: Gov, face_images, clips):
    """A clip of the volunteer walking in (built from the fixtures' photos), a real run."""
    dep_id, test_id = planned(gov, face_images, {"gate": clips.stranger})
    volunteer(gov, test_id, face_images["biden"])
    go_live(gov, dep_id, test_id)
    shown: list[int] = []
    result = DeploymentRun(gov.system, dep_id, gov.actors["op1"],
                           options=RunOptions(workers=1),
                           on_alert=lambda row, _a: shown.append(row)).run()
    assert result.summary.alerts >= 1 and shown == []
    view = ft.test_alerts(gov.db, gov.actors["op1"], test_id)
    assert view and all(a.volunteer == "V1" and a.in_pass for a in view)
    queue = alerts_svc.search_alerts(gov.db, gov.actors["op1"])
    assert queue.total == 0 and queue.items == ()
    done = ft.end_field_test(gov.system, gov.actors["op1"], test_id)
    assert (done.report.overall.tpir.k, done.report.overall.tpir.n) == (1, 1)
    assert done.report.overall.timed == 1
    # the time to alert is from the first frame of the track: the person entering the view
    with gov.db.reading() as s:
        (row,) = s.scalars(select(Alert).where(Alert.field_test_id == test_id)).all()
        assert row.in_view is not None and row.in_view >= (row.latency or 0.0)
    assert done.report.overall.median_seconds == pytest.approx(row.in_view, abs=1e-3)
