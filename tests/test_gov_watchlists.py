"""Governed watchlists in the database (issue #4, point 3): approval by someone who did not
build it, re-approval after a change, subject rules, enrolment checks, the size limit,
crypto-shredding on destruction, expiry; on SQLite and PostgreSQL, with real faces."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from openlfr.audit import log as audit_log
from openlfr.cli import app
from openlfr.governance import watchlists as wls
from openlfr.governance.authz import SYSTEM_ACTOR, Forbidden, NotFound, RuleError
from openlfr.store.crypto import CryptoError, load_master_key, open_sealed
from openlfr.store.enums import Category, WatchlistStatus
from openlfr.store.models import DataKey, Subject, SubjectImage, Watchlist
from openlfr.vision.engine import get_engine
from openlfr.vision.imageio import load_image
from openlfr.watchlist.enrol import assess
from tests.govfix import Gov
from tests.govfix import run_cli as _cli

REASON = "Wanted on warrant W-77 issued by the crown court on 1 March"
PURPOSE = "Find people wanted by the courts at the city centre event"


def _future(days: int = 30) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


def _imgs(face_images: dict[str, Path], *names: str) -> list[tuple[bytes, str]]:
    return [(face_images[n].read_bytes(), f"custody photo {n}") for n in names]


def _create(gov: Gov, who: str = "op1", **kw: object) -> int:
    info = wls.create_watchlist(gov.system, gov.actors[who], "city centre", PURPOSE, **kw)
    return info.id


def _add(gov: Gov, wl_id: int, face_images: dict[str, Path], *names: str, who: str = "op1",
         reference: str = "case-1", **kw: object) -> wls.SubjectInfo:
    args: dict[str, object] = {"category": Category.WANTED_BY_COURT, "reason": REASON,
                               "expires_at": _future()}
    args.update(kw)
    return wls.add_subject(gov.system, gov.actors[who], wl_id, reference,
                           images=_imgs(face_images, *names), **args)  # type: ignore[arg-type]


def _actions(gov: Gov) -> list[audit_log.AuditEntry]:
    with gov.db.reading() as s:
        return list(audit_log.entries(s))


def _counts(gov: Gov, wl_id: int) -> tuple[int, int]:
    with gov.db.reading() as s:
        subjects = s.scalar(select(func.count()).select_from(Subject)
                            .where(Subject.watchlist_id == wl_id))
        images = s.scalar(select(func.count()).select_from(SubjectImage).join(Subject)
                          .where(Subject.watchlist_id == wl_id))
    return int(subjects or 0), int(images or 0)


def _gallery(gov: Gov, *ids: int):
    with gov.db.reading() as s:
        return wls.deployment_gallery(s, gov.system.keyring, list(ids))


def test_two_person_approval_and_reapproval_after_a_change(gov: Gov, face_images) -> None:
    wl_id = _create(gov, "ao1")  # an authorising officer builds it ...
    obama = _add(gov, wl_id, face_images, "obama", "obama2", who="op1", reference="B. Obama")
    assert [len(obama.images)] == [2]

    with pytest.raises(RuleError, match="draft, not approved"):
        _gallery(gov, wl_id)
    # the role
    with pytest.raises(Forbidden, match="only an authorising officer may approve a watchlist"):
        wls.approve_watchlist(gov.db, gov.actors["op2"], wl_id)
    with pytest.raises(Forbidden, match="ao1 built or changed watchlist"):  # ... not approve it
        wls.approve_watchlist(gov.db, gov.actors["ao1"], wl_id)
    last = _actions(gov)[-1]
    assert (last.actor, last.action, last.object_type, last.object_id) == (
        "ao1", "access.refused", "watchlist", str(wl_id))
    assert last.details["attempted"] == "watchlist.approve"

    info = wls.approve_watchlist(gov.db, gov.actors["ao2"], wl_id)
    assert (info.status, info.approved_by, set(info.editors)) == ("approved", "ao2",
                                                                  {"ao1", "op1"})

    gallery, names = _gallery(gov, wl_id)
    assert names == {str(obama.id): "B. Obama"}
    assert set(gallery.reference_ids) == {str(i.id) for i in obama.images}
    engine = get_engine("sface")
    probe = assess(engine, load_image(face_images["obama3"])).template
    assert probe is not None
    best = gallery.search_one(probe, k=1)[0]
    assert best.subject_id == str(obama.id) and best.score > engine.default_threshold

    # Any change after approval withdraws it; the one who changed it becomes an editor.
    _add(gov, wl_id, face_images, "biden", who="ao2", reference="J. Biden")
    with gov.db.reading() as s:
        wl = s.get(Watchlist, wl_id)
        assert wl is not None
        assert (wl.status, wl.approved_by) == (WatchlistStatus.DRAFT, None)
    with pytest.raises(RuleError, match="not approved"):
        _gallery(gov, wl_id)
    for who in ("ao2", "ao1"):  # editor, author: neither may approve
        with pytest.raises(Forbidden, match=f"{who} built or changed"):
            wls.approve_watchlist(gov.db, gov.actors[who], wl_id)
    entries = _actions(gov)
    refused = [e for e in entries if e.action == "access.refused"
               and e.details["attempted"] == "watchlist.approve"]
    assert [e.actor for e in refused] == ["op2", "ao1", "ao2", "ao1"]
    adds = [e for e in entries if e.action == "subject.add"]
    assert [e.details["approval_withdrawn"] for e in adds] == [False, True]
    for e in entries:  # no name, reason or bytes in the log
        assert "Obama" not in json.dumps(e.details) and REASON not in json.dumps(e.details)
    with gov.db.reading() as s:
        assert audit_log.verify(s).ok


def test_subject_rules_and_bad_images_add_nothing(gov: Gov, face_images, no_face_path,
                                                  truncated_path) -> None:
    wl_id = _create(gov)
    before = len(_actions(gov))
    cases: list[tuple[dict[str, object], str]] = [
        ({"reason": "because"}, "reason for inclusion is required, at least 20"),
        ({"reason": "   "}, "reason for inclusion is required"),
        ({"category": "nosy neighbour"}, "unknown category 'nosy neighbour'"),
        ({"expires_at": None}, "an expiry is required"),
        ({"expires_at": datetime.now(UTC) - timedelta(minutes=1)}, "not in the future"),
        ({"expires_at": datetime(2099, 1, 1)}, "give a timezone"),
        ({"is_minor": True}, "justification for including an under-18 subject is required"),
        ({"is_minor": True, "minor_justification": "young"}, "at least 20 characters"),
    ]
    for kw, message in cases:
        with pytest.raises(RuleError, match=message):
            _add(gov, wl_id, face_images, "obama", **kw)
    bad_images = [
        ([(no_face_path.read_bytes(), "coffee")], r"image 1 \(coffee\): no_face"),
        ([(face_images["obama"].read_bytes(), "ok"),
          (face_images["group"].read_bytes(), "crowd")], r"image 2 \(crowd\): multiple_faces"),
        ([(truncated_path.read_bytes(), "cut")], r"image 1 \(cut\): unreadable: corrupt"),
        ([(b"not an image", "text")], r"image 1 \(text\): unreadable: not an image"),
        ([(face_images["obama"].read_bytes(), "a"),
          (face_images["obama"].read_bytes(), "b")], r"image 2 \(b\): duplicate"),
        ([(face_images["obama"].read_bytes(), " ")], "source of the image is required"),
        ([], "at least one image"),
    ]
    for images, message in bad_images:
        with pytest.raises(RuleError, match=message):
            wls.add_subject(gov.system, gov.actors["op1"], wl_id, "case-9",
                            Category.RISK_OF_HARM, REASON, _future(), images)
    assert _counts(gov, wl_id) == (0, 0)
    assert len(_actions(gov)) == before  # nothing was written, not even an audit entry

    with pytest.raises(Forbidden):
        _add(gov, wl_id, face_images, "obama", who="au1")
    with pytest.raises(NotFound):
        _add(gov, 999, face_images, "obama")

    minor = _add(gov, wl_id, face_images, "obama", is_minor=True, category="missing",
                 minor_justification="Missing 15-year-old at risk of serious harm, case M-3")
    assert (minor.is_minor, minor.category) == (True, "missing_or_vulnerable")
    extended = wls.add_image(gov.system, gov.actors["op2"], minor.id,
                             _imgs(face_images, "obama2"))
    assert len(extended.images) == 2
    with pytest.raises(RuleError, match="duplicate"):
        wls.add_image(gov.system, gov.actors["op2"], minor.id, _imgs(face_images, "obama2"))
    assert _counts(gov, wl_id) == (1, 2)


def test_size_limit(gov: Gov, face_images) -> None:
    with pytest.raises(RuleError, match="above the configured limit of 5000"):
        _create(gov, max_subjects=5001)
    wl_id = _create(gov, max_subjects=1)
    _add(gov, wl_id, face_images, "obama")
    with pytest.raises(RuleError, match=f"watchlist {wl_id} is full: 1 subjects, its limit is 1"):
        _add(gov, wl_id, face_images, "biden", reference="case-2")
    assert _counts(gov, wl_id) == (1, 1)


def test_destroy_leaves_nothing_that_can_decrypt(gov: Gov, face_images) -> None:
    wl_id = _create(gov)
    other_id = _create(gov)  # its key stays: it must not open the destroyed list's data
    _add(gov, wl_id, face_images, "obama", "obama2")
    _add(gov, wl_id, face_images, "biden", reference="case-2")
    _add(gov, other_id, face_images, "obama3")
    wls.approve_watchlist(gov.db, gov.actors["ao1"], wl_id)
    with gov.db.reading() as s:
        wl = s.get(Watchlist, wl_id)
        assert wl is not None
        key_id = wl.data_key_id
        assert s.get(DataKey, key_id).wrapped == b""  # type: ignore[union-attr]
    wrapped = gov.system.keyring.store.read(key_id)  # the key lives in the key store only
    assert wrapped is not None
    with gov.db.reading() as s:
        copies = [(ct, f"subject-image:{img.id}:{part}".encode())
                  for img in s.scalars(select(SubjectImage).join(Subject)
                                       .where(Subject.watchlist_id == wl_id))
                  for part, ct in (("image", img.image_ct), ("template", img.template_ct))]
    assert len(copies) == 6
    # the copies are real: the key opens them now
    with gov.db.reading() as s:
        assert gov.system.keyring.decrypt(s, key_id, *copies[0]) == \
            face_images["obama"].read_bytes()

    with pytest.raises(Forbidden):
        wls.destroy_watchlist(gov.system, gov.actors["op1"], wl_id, "done")
    with pytest.raises(RuleError, match="reason"):
        wls.destroy_watchlist(gov.system, gov.actors["ao1"], wl_id, " ")
    result = wls.destroy_watchlist(gov.system, gov.actors["ao2"], wl_id, "deployment ended")
    assert (result.subjects, result.images, result.key_destroyed) == (2, 3, True)
    assert (result.destroyed, result.purge_pending) == (True, False)
    assert not gov.system.keyring.store.exists(key_id)
    assert _counts(gov, wl_id) == (0, 0)
    last = _actions(gov)[-1]
    assert (last.action, last.details) == ("watchlist.destroy", {
        "subjects": 2, "images": 3, "key_destroyed": True, "reason": "deployment ended"})

    master = load_master_key(gov.settings.master_key_path)
    with gov.db.reading() as s:
        wl = s.get(Watchlist, wl_id)
        assert wl is not None and wl.status == WatchlistStatus.DESTROYED
        assert wl.data_key_id is None
        record = s.get(DataKey, key_id)  # the record stays, without material
        assert record is not None and record.destroyed_at is not None and record.wrapped == b""
        rows = s.scalars(select(DataKey).where(DataKey.destroyed_at.is_(None))).all()
    assert rows  # the other watchlist's key
    candidates = [master]
    for row in rows:
        held = gov.system.keyring.store.read(row.id)
        assert held is not None
        candidates.append(open_sealed(master, held,
                                      f"openlfr/data-key/{row.purpose}".encode()))
    for key in candidates:
        for ct, aad in copies:
            with pytest.raises(CryptoError):
                open_sealed(key, ct, aad)
    if gov.kind == "sqlite":
        for name in ("openlfr.db", "openlfr.db-wal"):
            path = gov.data_dir / name
            if path.exists():
                blob = path.read_bytes()
                assert wrapped not in blob, name
                assert all(ct not in blob for ct, _ in copies), name
    with pytest.raises(RuleError, match="destroyed"):
        _gallery(gov, wl_id)
    with pytest.raises(RuleError, match="already destroyed"):
        wls.destroy_watchlist(gov.system, SYSTEM_ACTOR, wl_id, "again")
    with pytest.raises(RuleError, match="destroyed"):
        _add(gov, wl_id, face_images, "obama")


def test_expiry_removal_reading_and_the_system_actor(gov: Gov, face_images) -> None:
    wl_id = _create(gov)
    obama = _add(gov, wl_id, face_images, "obama", reference="case-1")
    biden = _add(gov, wl_id, face_images, "biden", reference="case-2")
    wls.approve_watchlist(gov.db, gov.actors["ao1"], wl_id)

    # The console may view a reference image: decrypted, audited.
    image_id = obama.images[0].id
    assert wls.subject_image(gov.system, gov.actors["au1"], image_id) == \
        face_images["obama"].read_bytes()
    last = _actions(gov)[-1]
    assert (last.actor, last.action, last.object_id) == ("au1", "subject_image.view",
                                                         str(image_id))
    with pytest.raises(Forbidden):
        wls.subject_image(gov.system, gov.actors["admin"], image_id)
    shown = wls.show_watchlist(gov.db, gov.actors["au1"], wl_id).model_dump(mode="json")
    assert [s["reference"] for s in shown["subject_list"]] == ["case-1", "case-2"]
    assert shown["subject_list"][0]["images"][0]["source"] == "custody photo obama"
    assert "template" not in json.dumps(shown) and "image_ct" not in json.dumps(shown)
    listed = wls.list_watchlists(gov.db, gov.actors["op2"])
    assert [(w.id, w.status, w.subjects, w.images) for w in listed] == [
        (wl_id, "approved", 2, 2)]

    # An expired subject leaves the gallery at once and is removed by the expiry run,
    # without withdrawing the approval.
    with gov.db.session() as s:
        row = s.get(Subject, obama.id)
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    gallery, names = _gallery(gov, wl_id)
    assert names == {str(biden.id): "case-2"} and len(gallery) == 1
    with pytest.raises(Forbidden):
        wls.expire_subjects(gov.db, gov.actors["op1"])
    assert wls.expire_subjects(gov.db, SYSTEM_ACTOR).subjects == 1
    assert wls.expire_subjects(gov.db, SYSTEM_ACTOR).subjects == 0
    last = _actions(gov)[-1]
    assert (last.actor, last.action, last.details) == ("system", "subject.expire",
                                                       {"subjects": 1, "images": 1})
    assert _counts(gov, wl_id) == (1, 1)
    assert wls.show_watchlist(gov.db, gov.actors["au1"], wl_id).status == "approved"

    # A person removing a subject changes the list: back to draft.
    assert wls.remove_subject(gov.db, gov.actors["op2"], biden.id,
                              "arrested at home on 2 May").as_dict() == {
        "subjects": 1, "images": 1, "destroyed": True, "purge_pending": False}
    info = wls.show_watchlist(gov.db, gov.actors["au1"], wl_id)
    assert (info.status, info.subjects, "op2" in info.editors) == ("draft", 0, True)
    # The reason may name the person: the log, kept for ever, says only that one was given.
    removed = _actions(gov)[-1]
    assert (removed.action, removed.details["reason_given"]) == ("subject.remove", True)
    assert "arrested" not in json.dumps(removed.details)
    with pytest.raises(NotFound):
        wls.remove_subject(gov.db, gov.actors["op2"], biden.id)

    # The retention runner destroys as the program itself.
    result = wls.destroy_watchlist(gov.system, SYSTEM_ACTOR, wl_id, "deployment ended 24 h ago")
    assert result.key_destroyed
    assert _actions(gov)[-1].actor == "system"
    with gov.db.reading() as s:
        assert audit_log.verify(s).ok


def test_expiry_parsing() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert wls.parse_expiry("90d", now) == now + timedelta(days=90)
    assert wls.parse_expiry("2w", now) == now + timedelta(weeks=2)
    assert wls.parse_expiry("2026-03-01", now) == datetime(2026, 3, 2, tzinfo=UTC)
    assert wls.parse_expiry("2026-03-01T10:00+01:00", now) == datetime(2026, 3, 1, 9,
                                                                         tzinfo=UTC)
    with pytest.raises(RuleError, match="duration such as 90d"):
        wls.parse_expiry("soon", now)
    for far in ("99999999999d", "9999-12-31", "3000000d"):  # not an OverflowError traceback
        with pytest.raises(RuleError, match="too far"):
            wls.parse_expiry(far, now)


def _invoke(gov: Gov, *args: object, user: str | None = None) -> Result:
    """The same command line in this process (the face models stay loaded: faster)."""
    argv = [*map(str, args), *(["--user", user] if user else [])]
    return CliRunner().invoke(app, argv, env=gov.env())


def test_cli(gov: Gov, face_images, no_face_path) -> None:
    created = _cli(gov, "watchlist", "create", "city", "--purpose", PURPOSE, "--json",
                   user="op1")
    assert created.returncode == 0, created.stderr
    wl_id = json.loads(created.stdout)["id"]
    bad = _invoke(gov, "watchlist", "add", wl_id, "case-7", "--category", "wanted_by_court",
                  "--reason", REASON, "--expires", "30d", "--image", face_images["obama"],
                  "--image", no_face_path, "--source", "custody", user="op1")
    assert bad.exit_code == 2, bad.output
    assert "image 2 (custody): no_face" in bad.output and "Traceback" not in bad.output
    past = _invoke(gov, "watchlist", "add", wl_id, "case-7", "--category", "wanted_by_court",
                   "--reason", REASON, "--expires", "2020-01-01", "--image",
                   face_images["obama"], "--source", "custody", user="op1")
    assert past.exit_code == 2 and "not in the future" in past.output
    added = _invoke(gov, "watchlist", "add", wl_id, "case-7", "--category", "wanted_by_court",
                    "--reason", REASON, "--expires", "30d", "--image", face_images["obama"],
                    "--source", "custody record 7", "--json", user="op1")
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["images"][0]["source"] == "custody record 7"
    own = _invoke(gov, "watchlist", "approve", wl_id, user="op1")
    assert own.exit_code == 3 and "refused" in own.output
    ok = _invoke(gov, "watchlist", "approve", wl_id, user="ao1")
    assert ok.exit_code == 0, ok.output
    listed = _invoke(gov, "watchlist", "list", "--json", user="au1")
    assert [w["status"] for w in json.loads(listed.stdout)] == ["approved"]
    shown = _cli(gov, "watchlist", "show", wl_id, "--json", user="au1")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert (data["status"], data["approved_by"], data["subjects"]) == ("approved", "ao1", 1)
    assert data["subject_list"][0]["reference"] == "case-7"
    missing = _invoke(gov, "watchlist", "show", "nowhere.watchlist")
    assert missing.exit_code == 2 and "no such watchlist file" in missing.output
