"""Alerts and human review: stored encrypted and audited, decided by people (two-person rule),
outcomes, holds, role refusals; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import func, select

from openlfr.audit import log as audit_log
from openlfr.governance import alerts as svc
from openlfr.governance.authz import SYSTEM_ACTOR, Forbidden, NotFound, RuleError
from openlfr.store.crypto import CryptoError
from openlfr.store.enums import Action, AlertStatus, Category, Decision, WatchlistStatus
from openlfr.store.models import Alert as AlertRow
from openlfr.store.models import Deployment, Subject, SubjectImage, Watchlist
from openlfr.video.types import Alert
from tests.govfix import Gov
from tests.govfix import run_cli as _cli

NOW = datetime.now(UTC)


@dataclass
class Setup:
    deployment_id: int
    subject_id: int
    image_id: int
    watchlist_id: int
    crop: np.ndarray


def _setup(gov: Gov, face_images: dict[str, Path], two_person_rule: bool = False) -> Setup:
    """A deployment (with its data key) and a watchlist subject with one reference image,
    straight through the models."""
    ks = gov.system.keyring
    with gov.db.session() as s:
        wl_key = ks.new_key(s, "watchlist")
        wl = Watchlist(name="wl", purpose="test", model_id="sface", max_subjects=10,
                       created_by="op1", data_key_id=wl_key.id,
                       status=WatchlistStatus.APPROVED, approved_by="ao1", approved_at=NOW)
        s.add(wl)
        s.flush()
        subject = Subject(watchlist_id=wl.id, reference="CASE-17", category=Category.OTHER,
                          reason="test", added_by="op1", expires_at=NOW + timedelta(days=30))
        s.add(subject)
        s.flush()
        image = SubjectImage(subject_id=subject.id, source="test", added_by="op1",
                             model_id="sface", image_digest="0" * 64, image_ct=b"x" * 40,
                             template_ct=b"y" * 40)
        s.add(image)
        dep_key = ks.new_key(s, "deployment")
        dep = Deployment(name="Test deployment", site="site", location="here", purpose="test",
                         legal_basis="test", dpia_ref="D1", equality_ref="E1",
                         planned_start=NOW - timedelta(hours=1),
                         planned_end=NOW + timedelta(hours=1), threshold=0.36,
                         model_id="sface", created_by="op1", two_person_rule=two_person_rule,
                         data_key_id=dep_key.id)
        dep.watchlists = [wl]  # the recorder stores alerts only of the deployment's subjects
        s.add(dep)
        s.flush()
        ids = (dep.id, subject.id, image.id, wl.id)
    img = cv2.imread(str(face_images["obama"]))
    assert img is not None
    h, w = img.shape[:2]
    crop = img[h // 4: h // 4 + 120, w // 3: w // 3 + 100].copy()
    return Setup(*ids, crop)


def _alert(st: Setup, alert_id: str = "cam1:1:s", revision: int = 0, score: float = 0.5,
           crop: np.ndarray | None = None, track: int = 1) -> Alert:
    return Alert(alert_id=alert_id, camera="cam1", track_id=track, subject_id=str(st.subject_id),
                 display_name="CASE-17", score=score, threshold=0.36,
                 reference_id=str(st.image_id), model_id="sface", frame=10, t=0.4,
                 wall_time=NOW.timestamp(), frame_wall=NOW.timestamp(), box=(1, 2, 30, 40),
                 probe_crop=st.crop if crop is None else crop, revision=revision)


def _stored(gov: Gov, st: Setup, **kw: object) -> int:
    rec = svc.AlertRecorder(gov.system, st.deployment_id)
    alert = _alert(st, **kw)  # type: ignore[arg-type]
    rec.publish(alert)
    row_id = rec.stored_id(alert.alert_id)
    assert row_id is not None
    return row_id


def _actions(gov: Gov) -> list[tuple[str, str, str]]:
    with gov.db.reading() as s:
        return [(e.actor, e.action, e.object_id) for e in audit_log.entries(s)]


def _verify(gov: Gov) -> None:
    with gov.db.reading() as s:
        result = audit_log.verify(s)
    assert result.ok, result.problem


# -- recording ---------------------------------------------------------------------------------

def test_alert_is_stored_audited_and_then_shown(gov: Gov, face_images: dict[str, Path]) -> None:
    st = _setup(gov, face_images)
    seen: list[tuple[int, str, AlertStatus]] = []

    def on_stored(row_id: int, alert: Alert) -> None:
        with gov.db.reading() as s:  # committed before it is shown
            row = s.get(AlertRow, row_id)
            assert row is not None
            seen.append((row_id, alert.alert_id, row.status))

    rec = svc.AlertRecorder(gov.system, st.deployment_id, on_stored)
    rec.publish(_alert(st))
    assert len(seen) == 1
    row_id = seen[0][0]
    assert seen[0][1:] == ("cam1:1:s", AlertStatus.PENDING)

    view = svc.get_alert(gov.db, gov.actors["op1"], row_id)
    assert view.kind == "possible match"
    assert (view.subject_id, view.subject_image_id, view.watchlist_id) == (
        st.subject_id, st.image_id, st.watchlist_id)
    assert view.subject_reference == "CASE-17"
    assert view.status == AlertStatus.PENDING and view.has_crop
    assert abs(view.seen_at.timestamp() - NOW.timestamp()) < 1e-3
    assert view.model_dump(mode="json")["kind"] == "possible match"

    with gov.db.reading() as s:
        entry = [e for e in audit_log.entries(s) if e.action == "alert.create"][-1]
    assert entry.object_id == str(row_id)
    assert entry.details["score"] == "0.5000" and entry.details["threshold"] == "0.3600"
    assert entry.details["camera"] == "cam1" and entry.details["track"] == 1
    assert entry.details["subject"] == str(st.subject_id)

    # a better shot updates the same row; the crop is re-encrypted
    better = st.crop[::-1].copy()
    rec.publish(_alert(st, revision=1, score=0.7, crop=better))
    assert [x[0] for x in seen] == [row_id, row_id]
    view = svc.get_alert(gov.db, gov.actors["op1"], row_id)
    assert view.revision == 1 and abs(view.score - 0.7) < 1e-9
    jpeg = svc.alert_crop(gov.system, gov.actors["op1"], row_id)
    assert jpeg == svc.encode_crop(better)
    with gov.db.reading() as s:
        assert s.scalar(select(func.count()).select_from(AlertRow)) == 1
    assert ("system", "alert.update", str(row_id)) in _actions(gov)
    assert ("op1", "alert.view_crop", str(row_id)) in _actions(gov)

    # once someone has decided on it, the evidence no longer changes
    svc.adjudicate(gov.db, gov.actors["op1"], row_id, Decision.CONFIRM)
    rec.publish(_alert(st, revision=2, score=0.9))
    assert len(seen) == 2
    assert svc.get_alert(gov.db, gov.actors["op1"], row_id).revision == 1
    _verify(gov)


def test_crop_is_stored_only_encrypted(sqlite_gov: Gov, face_images: dict[str, Path]) -> None:
    gov = sqlite_gov
    st = _setup(gov, face_images)
    row_id = _stored(gov, st)
    jpeg = svc.encode_crop(st.crop)
    raw = st.crop.tobytes()
    row_bytes = st.crop[60].tobytes()  # one row of pixels
    db_file = gov.data_dir / "openlfr.db"
    wal = gov.data_dir / "openlfr.db-wal"
    blobs = [db_file.read_bytes(), wal.read_bytes() if wal.exists() else b""]
    for blob in blobs:
        assert jpeg not in blob
        assert jpeg[len(jpeg) // 2: len(jpeg) // 2 + 64] not in blob
        assert raw not in blob and row_bytes not in blob
    gov.db.checkpoint()
    assert jpeg[len(jpeg) // 2: len(jpeg) // 2 + 64] not in db_file.read_bytes()
    assert row_bytes not in db_file.read_bytes()
    # the round trip gives back exactly the JPEG, which decodes to the crop's size
    data = svc.alert_crop(gov.system, gov.actors["sv1"], row_id)
    assert data == jpeg
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == st.crop.shape
    assert float(np.abs(decoded.astype(int) - st.crop.astype(int)).mean()) < 8


def test_crop_is_bound_to_its_row(gov: Gov, face_images: dict[str, Path]) -> None:
    st = _setup(gov, face_images)
    first = _stored(gov, st, alert_id="a")
    second = _stored(gov, st, alert_id="b", track=2)
    with gov.db.session() as s:  # move one alert's ciphertext to another row
        a, b = s.get(AlertRow, first), s.get(AlertRow, second)
        assert a is not None and b is not None
        b.crop_ct = a.crop_ct
    with pytest.raises(CryptoError):
        svc.alert_crop(gov.system, gov.actors["op1"], second)


def test_a_failed_store_is_raised_and_never_shown(gov: Gov, face_images: dict[str, Path],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    st = _setup(gov, face_images)
    shown: list[int] = []
    rec = svc.AlertRecorder(gov.system, st.deployment_id, lambda i, a: shown.append(i))
    with gov.db.session() as s:  # the deployment's key is gone (crypto-shredded)
        dep = s.get(Deployment, st.deployment_id)
        assert dep is not None
        gov.system.keyring.destroy(s, dep.data_key_id)
    with pytest.raises(CryptoError):
        rec.publish(_alert(st))
    assert shown == []
    assert "NOT stored" in caplog.text
    with gov.db.reading() as s:
        assert s.scalar(select(func.count()).select_from(AlertRow)) == 0
    with pytest.raises(NotFound):
        svc.AlertRecorder(gov.system, 9999)
    _verify(gov)


def test_publish_is_thread_safe(gov: Gov, face_images: dict[str, Path]) -> None:
    st = _setup(gov, face_images)
    shown: list[int] = []
    rec = svc.AlertRecorder(gov.system, st.deployment_id, lambda i, a: shown.append(i))

    def camera(n: int) -> None:
        for k in range(3):
            rec.publish(_alert(st, alert_id=f"cam{n}:{k}:s", track=k))
            rec.publish(_alert(st, alert_id=f"cam{n}:{k}:s", track=k, revision=1, score=0.6))

    threads = [threading.Thread(target=camera, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(shown) == 18 and len(set(shown)) == 9
    rows = svc.list_alerts(gov.db, gov.actors["au1"], st.deployment_id)
    assert len(rows) == 9 and all(r.revision == 1 for r in rows)
    _verify(gov)


# -- deciding ----------------------------------------------------------------------------------

def test_two_person_rule(gov: Gov, face_images: dict[str, Path]) -> None:
    st = _setup(gov, face_images, two_person_rule=True)
    row_id = _stored(gov, st)
    view = svc.adjudicate(gov.db, gov.actors["op1"], row_id, Decision.CONFIRM)
    assert view.status == AlertStatus.PENDING and view.confirmed_by == ["op1"]
    assert view.confirmations == 1

    with pytest.raises(Forbidden, match="already confirmed"):
        svc.adjudicate(gov.db, gov.actors["op1"], row_id, Decision.CONFIRM)
    assert ("op1", "access.refused", str(row_id)) in _actions(gov)
    assert svc.get_alert(gov.db, gov.actors["op1"], row_id).status == AlertStatus.PENDING

    view = svc.adjudicate(gov.db, gov.actors["sv1"], row_id, Decision.CONFIRM, "same person")
    assert view.status == AlertStatus.CONFIRMED and view.decided_at is not None
    assert [(a.user, a.decision) for a in view.adjudications] == [
        ("op1", Decision.CONFIRM), ("sv1", Decision.CONFIRM)]
    with pytest.raises(RuleError, match="already decided"):
        svc.adjudicate(gov.db, gov.actors["op2"], row_id, Decision.REJECT, "late")

    # a confirmation, then a reject by someone else: rejected (any dissent decides)
    other = _stored(gov, st, alert_id="cam1:2:s", track=2)
    svc.adjudicate(gov.db, gov.actors["op1"], other, Decision.CONFIRM)
    view = svc.adjudicate(gov.db, gov.actors["op2"], other, Decision.REJECT, "not him")
    assert view.status == AlertStatus.REJECTED
    _verify(gov)


def test_without_the_rule_one_decision_decides(gov: Gov, face_images: dict[str, Path]) -> None:
    st = _setup(gov, face_images)
    row_id = _stored(gov, st)
    view = svc.adjudicate(gov.db, gov.actors["op1"], row_id, Decision.CONFIRM)
    assert view.status == AlertStatus.CONFIRMED
    with pytest.raises(RuleError, match="already decided"):
        svc.adjudicate(gov.db, gov.actors["op1"], row_id, Decision.CONFIRM)
    with pytest.raises(NotFound):
        svc.adjudicate(gov.db, gov.actors["op1"], 999, Decision.CONFIRM)
    with pytest.raises(RuleError, match="person"):
        svc.adjudicate(gov.db, SYSTEM_ACTOR, row_id, Decision.CONFIRM)


@pytest.mark.parametrize("decision", [Decision.REJECT, Decision.NO_ACTION])
def test_reasons_are_required(gov: Gov, face_images: dict[str, Path],
                              decision: Decision) -> None:
    st = _setup(gov, face_images)
    row_id = _stored(gov, st)
    for reason in (None, "", "   "):
        with pytest.raises(RuleError, match="reason"):
            svc.adjudicate(gov.db, gov.actors["op1"], row_id, decision, reason)
    view = svc.adjudicate(gov.db, gov.actors["op1"], row_id, decision, "  different person  ")
    assert view.status == {Decision.REJECT: AlertStatus.REJECTED,
                           Decision.NO_ACTION: AlertStatus.NO_ACTION}[decision]
    assert view.adjudications[0].reason == "different person"
    assert view.adjudications[0].user == "op1"
    with gov.db.reading() as s:
        entry = [e for e in audit_log.entries(s) if e.action == "alert.adjudicate"][-1]
    assert entry.details["reason_given"] is True
    assert "different person" not in json.dumps(entry.details)


def test_outcome_only_on_confirmed_and_once(gov: Gov, face_images: dict[str, Path]) -> None:
    st = _setup(gov, face_images)
    pending = _stored(gov, st)
    with pytest.raises(RuleError, match="only for confirmed"):
        svc.record_outcome(gov.db, gov.actors["op1"], pending, True, Action.ADVICE)
    rejected = _stored(gov, st, alert_id="x", track=2)
    svc.adjudicate(gov.db, gov.actors["op1"], rejected, Decision.REJECT, "wrong person")
    with pytest.raises(RuleError, match="whether the person was stopped"):  # a false alert
        svc.record_outcome(gov.db, gov.actors["op1"], rejected, False, Action.NONE)

    svc.adjudicate(gov.db, gov.actors["op2"], pending, Decision.CONFIRM)
    with pytest.raises(RuleError, match="engaged"):
        svc.record_outcome(gov.db, gov.actors["op1"], pending, False, Action.ARREST)
    view = svc.record_outcome(gov.db, gov.actors["op1"], pending, True, Action.ADVICE, "talked")
    assert view.outcome is not None and view.outcome.action == Action.ADVICE
    assert view.outcome.recorded_by == "op1" and view.outcome.engaged
    with pytest.raises(RuleError, match="already has an outcome"):
        svc.record_outcome(gov.db, gov.actors["op2"], pending, True, Action.OTHER)
    assert ("op1", "alert.outcome", str(pending)) in _actions(gov)
    _verify(gov)


def test_no_outcome_after_the_purge(gov: Gov, face_images: dict[str, Path]) -> None:
    # Retention purges an alert once; notes written after it would never be blanked.
    st = _setup(gov, face_images)
    row_id = _stored(gov, st)
    svc.adjudicate(gov.db, gov.actors["op1"], row_id, Decision.CONFIRM)
    with gov.db.session() as s:
        row = s.get(AlertRow, row_id)
        assert row is not None
        row.purged_at = datetime.now(UTC)
    with pytest.raises(RuleError, match="purged"):
        svc.record_outcome(gov.db, gov.actors["op1"], row_id, True, Action.ADVICE, "J. Doe")
    assert svc.get_alert(gov.db, gov.actors["op1"], row_id).outcome is None


def test_hold_and_release(gov: Gov, face_images: dict[str, Path]) -> None:
    st = _setup(gov, face_images)
    row_id = _stored(gov, st)
    with pytest.raises(RuleError, match="reason"):
        svc.hold_alert(gov.db, gov.actors["sv1"], row_id, " ")
    view = svc.hold_alert(gov.db, gov.actors["sv1"], row_id, "complaint received")
    assert view.held_reason == "complaint received" and view.held_by == "sv1"
    with pytest.raises(RuleError, match="already held"):
        svc.hold_alert(gov.db, gov.actors["ao1"], row_id, "again")
    view = svc.release_hold(gov.db, gov.actors["ao1"], row_id)
    assert view.held_reason is None
    with pytest.raises(RuleError, match="not held"):
        svc.release_hold(gov.db, gov.actors["ao1"], row_id)
    actions = _actions(gov)
    assert ("sv1", "alert.hold", str(row_id)) in actions
    assert ("ao1", "alert.release", str(row_id)) in actions


def test_roles_are_refused_and_audited(gov: Gov, face_images: dict[str, Path]) -> None:
    st = _setup(gov, face_images)
    row_id = _stored(gov, st)
    refusals = [
        ("au1", lambda a: svc.adjudicate(gov.db, a, row_id, Decision.CONFIRM)),
        ("ao1", lambda a: svc.adjudicate(gov.db, a, row_id, Decision.CONFIRM)),
        ("admin", lambda a: svc.adjudicate(gov.db, a, row_id, Decision.CONFIRM)),
        ("op1", lambda a: svc.hold_alert(gov.db, a, row_id, "keep")),
        ("op1", lambda a: svc.release_hold(gov.db, a, row_id)),
        ("au1", lambda a: svc.record_outcome(gov.db, a, row_id, False, Action.NONE)),
        ("admin", lambda a: svc.list_alerts(gov.db, a)),
        ("admin", lambda a: svc.alert_crop(gov.system, a, row_id)),
    ]
    for name, call in refusals:
        before = len(_actions(gov))
        with pytest.raises(Forbidden):
            call(gov.actors[name])
        after = _actions(gov)
        assert len(after) == before + 1 and after[-1][:2] == (name, "access.refused")
    assert svc.get_alert(gov.db, gov.actors["au1"], row_id).status == AlertStatus.PENDING
    assert not svc.get_alert(gov.db, gov.actors["au1"], row_id).adjudications
    _verify(gov)


# -- the command line --------------------------------------------------------------------------

def test_cli_review(gov: Gov, face_images: dict[str, Path], tmp_path: Path) -> None:
    st = _setup(gov, face_images, two_person_rule=True)
    row_id = _stored(gov, st)

    bad = _cli(gov, "alerts", "adjudicate", str(row_id), "reject", "--user", "op1")
    assert bad.returncode == 2 and "reason" in bad.stderr and "Traceback" not in bad.stderr
    bad = _cli(gov, "alerts", "adjudicate", str(row_id), "maybe", "--user", "op1")
    assert bad.returncode == 2 and "unknown decision" in bad.stderr
    refused = _cli(gov, "alerts", "adjudicate", str(row_id), "confirm", "--user", "au1")
    assert refused.returncode == 3 and "refused" in refused.stderr

    ok = _cli(gov, "alerts", "adjudicate", str(row_id), "confirm", "--user", "op1")
    assert ok.returncode == 0, ok.stderr
    assert "possible match" in ok.stdout and "1/2" in ok.stderr

    crop_file = tmp_path / "review.jpg"
    shown = _cli(gov, "alerts", "show", str(row_id), "--user", "sv1", "--crop-out",
                 str(crop_file))
    assert shown.returncode == 0, shown.stderr
    assert "possible match" in shown.stdout and "op1" in shown.stdout
    assert crop_file.read_bytes() == svc.encode_crop(st.crop)
    assert crop_file.stat().st_mode & 0o777 == 0o600

    listed = _cli(gov, "alerts", "list", "--user", "au1", "--json")
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert data[0]["id"] == row_id and data[0]["kind"] == "possible match"
    assert data[0]["status"] == "pending"
    assert "crop_ct" not in listed.stdout
    missing = _cli(gov, "alerts", "show", "4242", "--user", "au1")
    assert missing.returncode == 5 and "no alert 4242" in missing.stderr  # not found
    no_deployment = _cli(gov, "alerts", "list", "--deployment", "4242", "--user", "au1")
    assert no_deployment.returncode == 5  # a mistyped id (not found), not "no alerts"
    assert no_deployment.stderr.strip() == "error: no deployment 4242"
    none_pending = _cli(gov, "alerts", "list", "--deployment", str(st.deployment_id),
                        "--status", "rejected", "--user", "au1")
    assert none_pending.returncode == 0 and "no alerts" in none_pending.stderr
    _verify(gov)
