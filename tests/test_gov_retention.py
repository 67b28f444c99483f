"""Retention: alerts purged after the retention period unless held (counts audited, never
content), watchlists destroyed within 24 h of their deployment's end and crypto-shredded; on
SQLite and PostgreSQL. Also the scenario builders the statistics and Art. 12 tests share."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import func, select

from openlfr.audit import log as audit_log
from openlfr.governance import alerts as gov_alerts
from openlfr.governance import deployments as gov_deployments
from openlfr.governance.authz import Forbidden
from openlfr.governance.retention import run_retention
from openlfr.store.crypto import CryptoError
from openlfr.store.enums import (
    Action,
    AlertStatus,
    Category,
    Decision,
    DeploymentStatus,
    WatchlistStatus,
)
from openlfr.store.models import (
    Adjudication,
    Alert,
    Camera,
    DataKey,
    Deployment,
    Outcome,
    Subject,
    SubjectImage,
    Watchlist,
)
from openlfr.video import types as vtypes
from tests.govfix import Gov

MODEL = "sface-2021dec"
SECRET_IMAGE = b"reference image bytes that must be shredded"


def now_utc() -> datetime:
    return datetime.now(UTC)


def make_watchlist(gov: Gov, subjects: int = 2, name: str = "wanted") -> int:
    """An approved watchlist with encrypted reference images, its approval audited with its
    size (as governance.watchlists does)."""
    now = now_utc()
    with gov.db.session() as s:
        key = gov.system.keyring.new_key(s, "watchlist")
        wl = Watchlist(name=name, purpose="find people wanted by a court", status=
                       WatchlistStatus.APPROVED, model_id=MODEL, max_subjects=100,
                       created_by="op1", approved_by="ao1", approved_at=now,
                       data_key_id=key.id)
        s.add(wl)
        s.flush()
        for i in range(subjects):
            subject = Subject(watchlist_id=wl.id, reference=f"{name}-case-{i}",
                              category=Category.WANTED_BY_COURT, reason="arrest warrant",
                              added_by="op1", expires_at=now + timedelta(days=365))
            s.add(subject)
            s.flush()
            img = SubjectImage(subject_id=subject.id, source="custody record", added_by="op1",
                               model_id=MODEL, image_digest="0" * 64, image_ct=b"",
                               template_ct=b"")
            s.add(img)
            s.flush()
            img.image_ct = gov.system.keyring.encrypt(s, key.id, SECRET_IMAGE,
                                                      f"subject-image:{img.id}:image".encode())
            img.template_ct = gov.system.keyring.encrypt(
                s, key.id, np.ones(128, np.float32).tobytes(),
                f"subject-image:{img.id}:template".encode())
        audit_log.record(s, "ao1", "watchlist.approve", "watchlist", wl.id,
                         {"subjects": subjects, "images": subjects, "editors": ["op1"]})
        return wl.id


def make_deployment(gov: Gov, watchlists: list[int], status: DeploymentStatus,
                    start: datetime, end: datetime, started_at: datetime | None = None,
                    ended_at: datetime | None = None, cameras: tuple[str, ...] = ("north",
                                                                                  "south"),
                    two_person_rule: bool = False, name: str = "station") -> int:
    """A deployment row in the given state, authorised by ao2 (audited as governance does)."""
    with gov.db.session() as s:
        key = gov.system.keyring.new_key(s, "deployment")
        dep = Deployment(name=name, site="Central", location="concourse", purpose="wanted",
                         legal_basis="common law", dpia_ref="DPIA-1", equality_ref="EIA-1",
                         planned_start=start, planned_end=end, threshold=0.5, model_id=MODEL,
                         two_person_rule=two_person_rule, signage=True, public_notice=True,
                         status=status, created_by="op1", authorised_by="ao2",
                         authorised_at=start - timedelta(hours=1), started_at=started_at,
                         ended_at=ended_at, data_key_id=key.id,
                         end_reason="ended" if ended_at else None)
        dep.watchlists = [s.get(Watchlist, i) for i in watchlists]  # type: ignore[misc]
        dep.cameras = [Camera(name=c, display=f"{c}.mp4") for c in cameras]
        s.add(dep)
        s.flush()
        audit_log.record(s, "ao2", "deployment.authorise", "deployment", dep.id,
                         {"watchlists": watchlists})
        return dep.id


def subject_and_image(gov: Gov, watchlist_id: int, index: int = 0) -> tuple[int, int]:
    with gov.db.reading() as s:
        subject = s.scalars(select(Subject).where(Subject.watchlist_id == watchlist_id)
                            .order_by(Subject.id)).all()[index]
        return subject.id, subject.images[0].id


def add_alert(gov: Gov, deployment_id: int, watchlist_id: int, camera: str = "north",
              track: int = 1, score: float = 0.71) -> int:
    """One alert through the real recorder (crop encrypted, ``alert.create`` audited)."""
    subject_id, image_id = subject_and_image(gov, watchlist_id)
    recorder = gov_alerts.AlertRecorder(gov.system, deployment_id)
    crop = np.random.default_rng(track).integers(0, 255, (48, 40, 3), dtype=np.uint8)
    pid = f"{camera}-{track}"
    recorder.publish(vtypes.Alert(
        alert_id=pid, camera=camera, track_id=track, subject_id=str(subject_id),
        display_name="x", score=score, threshold=0.5, reference_id=str(image_id),
        model_id=MODEL, frame=10, t=0.4, wall_time=now_utc().timestamp(),
        frame_wall=now_utc().timestamp(), box=(1.0, 2.0, 40.0, 48.0), probe_crop=crop))
    row_id = recorder.stored_id(pid)
    assert row_id is not None
    return row_id


def audit_details(gov: Gov, action: str) -> list[dict]:
    with gov.db.reading() as s:
        return [e.details for e in audit_log.entries(s) if e.action == action]


def all_audit_text(gov: Gov) -> str:
    with gov.db.reading() as s:
        return "\n".join(json.dumps(e.to_dict()) for e in audit_log.entries(s))


# -- alerts --------------------------------------------------------------------------------------

def test_expired_alerts_are_purged_unless_held(gov: Gov) -> None:
    now = now_utc()
    wl = make_watchlist(gov)
    dep = make_deployment(gov, [wl], DeploymentStatus.RUNNING, now - timedelta(hours=1),
                          now + timedelta(hours=2), started_at=now - timedelta(hours=1))
    confirmed = add_alert(gov, dep, wl, track=1)
    rejected = add_alert(gov, dep, wl, track=2)
    held = add_alert(gov, dep, wl, track=3, camera="south")
    op1, sv1 = gov.actors["op1"], gov.actors["sv1"]
    gov_alerts.adjudicate(gov.db, op1, confirmed, Decision.CONFIRM, "SECRET-REASON-ONE")
    gov_alerts.record_outcome(gov.db, op1, confirmed, True, Action.ADVICE, "SECRET-NOTES")
    gov_alerts.adjudicate(gov.db, op1, rejected, Decision.REJECT, "SECRET-REASON-TWO")
    gov_alerts.hold_alert(gov.db, sv1, held, "evidence in court case 12")

    first = run_retention(gov.system, now=now)
    assert first.alerts_purged == 0 and first.deployments_ended == []

    with gov.db.reading() as s:
        crops = [s.get(Alert, a).crop_ct for a in (confirmed, rejected)]  # type: ignore[union-attr]
    later = now + timedelta(days=gov.settings.retention_days + 1)
    report = run_retention(gov.system, now=later)
    assert (report.purges_pending, report.purges_completed) == (0, 0)
    # nothing purged is left in any file of the data directory (database, its log, keys)
    raw = b"".join(p.read_bytes() for p in gov.data_dir.rglob("*") if p.is_file())
    for needle in [*crops, b"SECRET-REASON-ONE", b"SECRET-REASON-TWO", b"SECRET-NOTES"]:
        assert needle and needle not in raw
    assert report.alerts_purged == 2
    assert report.alerts_held == 1
    assert report.alerts_purged_by_deployment == {str(dep): 2}
    assert report.deployments_ended == [dep]  # its window is long over by then
    with gov.db.reading() as s:
        for alert_id, status in ((confirmed, AlertStatus.CONFIRMED),
                                 (rejected, AlertStatus.REJECTED)):
            row = s.get(Alert, alert_id)
            assert row is not None
            assert row.crop_ct is None and row.subject_id is None
            assert row.subject_image_id is None and row.purged_at is not None
            assert row.status == status  # the decision codes stay
        reasons = s.execute(select(Adjudication.decision, Adjudication.reason)
                            .order_by(Adjudication.id)).all()
        assert reasons == [(Decision.CONFIRM, None), (Decision.REJECT, None)]
        outcome = s.scalars(select(Outcome)).one()
        assert (outcome.engaged, outcome.action, outcome.notes) == (True, Action.ADVICE, None)
        kept = s.get(Alert, held)
        assert kept is not None and kept.crop_ct is not None and kept.purged_at is None

    purges = audit_details(gov, "alert.purge")
    assert purges == [{"alerts": 2, "texts_blanked": 3, "older_than": report.purge_cutoff}]
    runs = audit_details(gov, "retention.run")
    assert runs[-1]["alerts_purged"] == 2 and runs[-1]["alerts_held"] == 1
    text = all_audit_text(gov)
    assert "SECRET" not in text  # never content, in no entry at all
    with gov.db.reading() as s:
        assert audit_log.verify(s).ok

    # Released, the held alert goes at the next run; with no crop left, the ended
    # deployment's data key goes too.
    gov_alerts.release_hold(gov.db, sv1, held)
    with gov.db.reading() as s:
        dep_key = s.get(Deployment, dep).data_key_id  # type: ignore[union-attr]
    assert dep_key is not None and gov.system.keyring.store.exists(dep_key)
    again = run_retention(gov.system, now=later)
    assert again.alerts_purged == 1 and again.deployment_keys_destroyed == [dep]
    assert (again.purges_pending, again.purges_completed) == (0, 0)
    assert not gov.system.keyring.store.exists(dep_key)  # its file is gone
    with gov.db.reading() as s:
        d = s.get(Deployment, dep)
        assert d is not None and d.data_key_id is None
        assert s.scalar(select(func.count()).select_from(Alert)
                        .where(Alert.crop_ct.is_not(None))) == 0


def test_a_person_needs_the_retention_permission(gov: Gov) -> None:
    with pytest.raises(Forbidden, match="only an administrator may run the retention purge"):
        run_retention(gov.system, gov.actors["op1"])
    last = audit_details(gov, "access.refused")[-1]
    assert last["attempted"] == "retention.run"
    report = run_retention(gov.system, gov.actors["admin"])
    assert report.alerts_purged == 0
    with gov.db.reading() as s:
        head = audit_log.head(s)
    assert head is not None and (head.action, head.actor) == ("retention.run", "admin")


# -- watchlists ----------------------------------------------------------------------------------

def _shred_evidence(gov: Gov, watchlist_id: int) -> tuple[int, bytes, bytes, int]:
    with gov.db.reading() as s:
        wl = s.get(Watchlist, watchlist_id)
        assert wl is not None and wl.data_key_id is not None
        key = s.get(DataKey, wl.data_key_id)
        assert key is not None and key.wrapped == b""  # the material is in the key store
        wrapped = gov.system.keyring.store.read(key.id)
        assert wrapped is not None
        img = s.scalars(select(SubjectImage).join(Subject)
                        .where(Subject.watchlist_id == watchlist_id)).first()
        assert img is not None
        return wl.data_key_id, wrapped, img.image_ct, img.id


def test_watchlists_are_destroyed_within_24h_of_their_deployment_end(gov: Gov) -> None:
    now = now_utc()
    wl_a, wl_b, wl_shared, wl_old = (make_watchlist(gov, name=n)
                                     for n in ("a", "b", "shared", "old"))
    # A: running, its window ended 10 minutes ago (retention ends it, then destroys wl_a).
    dep_a = make_deployment(gov, [wl_a], DeploymentStatus.RUNNING, now - timedelta(hours=3),
                            now - timedelta(minutes=10), started_at=now - timedelta(hours=3))
    # B: ended two hours ago, with wl_b and wl_shared; C still runs with wl_shared.
    make_deployment(gov, [wl_b, wl_shared], DeploymentStatus.ENDED, now - timedelta(hours=5),
                    now - timedelta(hours=2), started_at=now - timedelta(hours=5),
                    ended_at=now - timedelta(hours=2))
    dep_c = make_deployment(gov, [wl_shared], DeploymentStatus.RUNNING,
                            now - timedelta(hours=1), now + timedelta(hours=5),
                            started_at=now - timedelta(hours=1))
    # D: ended 30 hours ago and nobody ran retention since: destroyed, but reported late.
    make_deployment(gov, [wl_old], DeploymentStatus.ENDED, now - timedelta(hours=40),
                    now - timedelta(hours=30), started_at=now - timedelta(hours=40),
                    ended_at=now - timedelta(hours=30))
    evidence = {wl: _shred_evidence(gov, wl) for wl in (wl_a, wl_b, wl_old)}
    entries_before = len(all_audit_text(gov).splitlines())

    dry = run_retention(gov.system, now=now, dry_run=True)
    assert dry.deployments_ended == [dep_a]
    assert dry.watchlists_destroyed == [wl_a, wl_b, wl_old]
    assert len(all_audit_text(gov).splitlines()) == entries_before  # changed nothing
    with gov.db.reading() as s:
        assert s.get(Watchlist, wl_a).status == WatchlistStatus.APPROVED  # type: ignore[union-attr]

    report = run_retention(gov.system, now=now)
    assert report.deployments_ended == [dep_a]
    assert report.watchlists_destroyed == [wl_a, wl_b, wl_old]
    assert report.watchlists_late == [wl_old]
    assert [(k.watchlist_id, k.waiting_for) for k in report.watchlists_kept] == [
        (wl_shared, [dep_c])]
    with gov.db.reading() as s:
        dep = s.get(Deployment, dep_a)
        assert dep is not None and dep.status == DeploymentStatus.ENDED
        for wl_id, (key_id, _wrapped, sealed, image_id) in evidence.items():
            wl = s.get(Watchlist, wl_id)
            assert wl is not None and wl.status == WatchlistStatus.DESTROYED
            assert wl.data_key_id is None
            assert s.get(DataKey, key_id).destroyed_at is not None  # type: ignore[union-attr]
            assert not gov.system.keyring.store.exists(key_id)
            assert s.get(SubjectImage, image_id) is None
            assert s.scalar(select(func.count()).select_from(Subject)
                            .where(Subject.watchlist_id == wl_id)) == 0
            with pytest.raises(CryptoError):  # nothing left to decrypt it with
                gov.system.keyring.decrypt(s, key_id, sealed,
                                           f"subject-image:{image_id}:image".encode())
        shared = s.get(Watchlist, wl_shared)
        assert shared is not None and shared.status == WatchlistStatus.APPROVED
    # the wrapped keys and the ciphertext are gone from the data directory
    files = [p for p in gov.data_dir.rglob("*") if p.is_file()]
    raw = b"".join(p.read_bytes() for p in files)
    if True:
        for _key_id, wrapped, sealed, _ in evidence.values():
            assert wrapped not in raw and sealed not in raw
    destroyed = audit_details(gov, "watchlist.destroy")
    assert [d["subjects"] for d in destroyed] == [2, 2, 2]
    assert all("case" not in json.dumps(d) for d in destroyed)  # counts, no subject

    # Once C ends, the shared watchlist goes at the next run.
    gov_deployments.stop(gov.db, gov.actors["op1"], dep_c, "crowd dispersed")
    after = run_retention(gov.system, now=now)
    assert after.watchlists_destroyed == [wl_shared] and after.watchlists_kept == []
    with gov.db.reading() as s:
        assert audit_log.verify(s).ok


def test_the_report_says_what_was_done_or_would_be_done() -> None:
    from openlfr.governance.retention import RetentionReport

    def report(dry_run: bool) -> list[str]:
        return RetentionReport(now="t", dry_run=dry_run, retention_days=31,
                               watchlist_destroy_hours=24, purge_cutoff="c",
                               deployments_ended=[3], watchlists_destroyed=[1],
                               subjects_expired=2, alerts_purged=4,
                               deployment_keys_destroyed=[3]).summary()

    done = report(False)
    assert done[:4] == ["ended 1 overdue deployment(s) (3)", "destroyed 1 watchlist(s) (1)",
                        "expired 2 subject(s)",
                        "purged 4 alert(s) older than 31 days (before c); 0 held alert(s) kept"]
    assert done[4].startswith("destroyed the data key of 1 ended deployment(s)")
    dry = report(True)
    assert dry[0] == "would end 1 overdue deployment(s) (3)"
    assert dry[3].startswith("would purge 4 alert(s)") and dry[4].startswith("would destroy")
