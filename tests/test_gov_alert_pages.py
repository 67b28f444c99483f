"""Alerts at volume: one filter and keyset pages (none lost past 200), and views of an alert's
card counted per session with one audit entry (race-safe); on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from openlfr.governance import alerts as svc
from openlfr.governance.authz import Forbidden, RuleError
from openlfr.store.enums import AlertStatus
from openlfr.store.models import Alert as AlertRow
from openlfr.store.models import AlertViewRecord, Deployment
from tests.govfix import Gov, audit_records, run_cli
from tests.test_gov_alerts import Setup, _setup, _stored, _verify

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
CAMERAS = ("gate", "hall", "exit")
STATUSES = (AlertStatus.PENDING, AlertStatus.PENDING, AlertStatus.CONFIRMED,
            AlertStatus.REJECTED, AlertStatus.NO_ACTION)


def _many(gov: Gov, st: Setup, n: int = 230) -> tuple[int, list[dict[str, object]]]:
    """``n`` alerts on ``st``'s deployment and a few on a second one, straight through the
    models (no crops): camera, status, score and time vary with the number."""
    rows: list[dict[str, object]] = []
    with gov.db.session() as s:
        dep = s.get(Deployment, st.deployment_id)
        assert dep is not None
        other = Deployment(name="Second deployment", site="site", location="there",
                           purpose="test", legal_basis="test", dpia_ref="D2",
                           equality_ref="E2", planned_start=dep.planned_start,
                           planned_end=dep.planned_end, threshold=0.36, model_id="sface",
                           created_by="op1", two_person_rule=False,
                           data_key_id=dep.data_key_id)
        s.add(other)
        s.flush()
        other_id = other.id
        for i in range(n + 7):
            dep_id = other_id if i % 37 == 5 else st.deployment_id
            row = dict(deployment_id=dep_id, camera=CAMERAS[i % 3], track_id=i,
                       pipeline_id=f"p{i}", subject_id=st.subject_id, score=0.36 + (i % 50) / 100,
                       threshold=0.36, model_id="sface", revision=0,
                       seen_at=T0 + timedelta(minutes=i), status=STATUSES[i % 5])
            s.add(AlertRow(**row))
            rows.append(row)
        s.flush()
        ids = [r.id for r in s.scalars(select(AlertRow).order_by(AlertRow.id))]
    for row, rid in zip(rows, ids, strict=True):
        row["id"] = rid
    return other_id, rows


def _walk(gov: Gov, where: svc.AlertFilter, limit: int) -> list[int]:
    """Every alert matching ``where``, page by page from the newest, checking each page."""
    op = gov.actors["op1"]
    seen: list[int] = []
    page = svc.search_alerts(gov.db, op, where, limit=limit)
    assert page.newer is None and page.start == (1 if page.total else 0)
    while True:
        assert len(page.items) <= limit
        assert page.start == len(seen) + 1 or not page.items
        seen += [a.id for a in page.items]
        if page.older is None:
            break
        assert len(page.items) == limit  # only the last page is short
        page = svc.search_alerts(gov.db, op, where, before=page.older, limit=limit)
        assert page.newer is not None
    assert len(seen) == page.total
    return seen


def test_pages_hold_every_alert_past_200(gov: Gov, face_images: dict[str, Path]) -> None:
    st = _setup(gov, face_images)
    _, rows = _many(gov, st)
    mine = [r for r in rows if r["deployment_id"] == st.deployment_id]
    assert len(mine) > 200
    where = svc.AlertFilter(deployment_id=st.deployment_id)
    seen = _walk(gov, where, 50)
    assert seen == sorted((int(r["id"]) for r in mine), reverse=True)  # none lost, no repeat
    # and back up: the newer pages lead to the newest one, the same alerts
    op = gov.actors["op1"]
    last = svc.search_alerts(gov.db, op, where, before=seen[-50], limit=50)
    back: list[int] = []
    page = last
    while page.newer is not None:
        page = svc.search_alerts(gov.db, op, where, after=page.newer, limit=50)
        back = [a.id for a in page.items] + back
    assert page.start == 1 and back[:50] == seen[:50]
    # the old shorthand keeps its shape: the newest, at most `limit`
    assert [a.id for a in svc.list_alerts(gov.db, op, st.deployment_id, limit=10)] == seen[:10]
    with pytest.raises(RuleError) as bad:
        svc.search_alerts(gov.db, op, where, limit=svc.MAX_PAGE + 1)
    assert bad.value.field == "limit"


def test_each_filter_selects_exactly_its_alerts(gov: Gov, face_images: dict[str, Path]) -> None:
    st = _setup(gov, face_images)
    other_id, rows = _many(gov, st, 120)
    since, until = T0 + timedelta(minutes=30), T0 + timedelta(minutes=90)
    cases = [
        (dict(deployment=str(other_id)), lambda r: r["deployment_id"] == other_id),
        (dict(camera="hall"), lambda r: r["camera"] == "hall"),
        (dict(status="pending"), lambda r: r["status"] == AlertStatus.PENDING),
        (dict(status="decided"), lambda r: r["status"] != AlertStatus.PENDING),
        (dict(status="no action"), lambda r: r["status"] == AlertStatus.NO_ACTION),
        (dict(since=since.isoformat(), until=until.isoformat()),
         lambda r: since <= r["seen_at"] < until),  # type: ignore[operator]
        (dict(min_score="0.5", max_score="0.6"),
         lambda r: 0.5 <= r["score"] <= 0.6),  # type: ignore[operator]
        (dict(deployment=str(st.deployment_id), camera="gate", status="confirmed",
              min_score="0.4"),
         lambda r: (r["deployment_id"] == st.deployment_id and r["camera"] == "gate"
                    and r["status"] == AlertStatus.CONFIRMED
                    and r["score"] >= 0.4)),  # type: ignore[operator]
    ]
    for given, keep in cases:
        where = svc.alert_filter(**given)
        expected = sorted((int(r["id"]) for r in rows if keep(r)), reverse=True)
        assert expected, given  # each case selects something, and not everything
        assert len(expected) < len(rows), given
        assert _walk(gov, where, 7) == expected, given
    # the console's form: a zoneless time is UTC
    form, errors = svc.parse_filter(since="2026-06-01T08:30", form=True)
    assert not errors and form.since == since


@pytest.mark.parametrize("given, field", [
    (dict(deployment="abc"), "deployment"),
    (dict(status="maybe"), "status"),
    (dict(since="yesterday"), "since"),
    (dict(until="2026-06-01T08:00"), "until"),  # no zone: refused outside a form
    (dict(min_score="high"), "min_score"),
    (dict(max_score="nan"), "max_score"),
    (dict(min_score="2"), "min_score"),
    (dict(min_score="0.6", max_score="0.5"), "max_score"),
    (dict(since="2026-06-02T00:00Z", until="2026-06-01T00:00Z"), "until"),
    (dict(camera="x" * 101), "camera"),
])
def test_a_bad_filter_names_its_field(given: dict[str, str], field: str) -> None:
    with pytest.raises(RuleError) as exc:
        svc.alert_filter(**given)
    assert exc.value.field == field
    assert field.split("_")[0] in str(exc.value)
    # the console keeps the rest of the filter
    kept, errors = svc.parse_filter(**given, camera="gate") if "camera" not in given else (
        svc.parse_filter(**given))
    assert [e.field for e in errors] == [field]
    if "camera" not in given:
        assert kept.camera == "gate"


def test_a_card_view_is_audited_once_per_session(gov: Gov,
                                                 face_images: dict[str, Path]) -> None:
    st = _setup(gov, face_images)
    one = svc.get_alert(gov.db, gov.actors["op1"], _stored(gov, st))
    two = svc.get_alert(gov.db, gov.actors["op1"], _stored(gov, st, alert_id="cam1:2:s",
                                                           track=2))
    op1, op2 = gov.actors["op1"], gov.actors["op2"]
    for _ in range(5):  # five reloads of a queue of two cards
        svc.record_views(gov.db, op1, [one, two], "session-A")
    svc.record_views(gov.db, op1, [one], "session-B")  # signed in again
    svc.record_views(gov.db, op2, [one], "session-C")
    views = audit_records(gov, "alert.view")
    assert sorted((e.actor, e.object_id) for e in views) == sorted(
        [("op1", str(one.id)), ("op1", str(two.id)), ("op1", str(one.id)),
         ("op2", str(one.id))])
    counts = svc.alert_view_counts(gov.db, gov.actors["au1"], one.id)
    assert [(c.user, c.sessions, c.views) for c in counts] == [("op1", 2, 6), ("op2", 1, 1)]
    assert all(c.first_at.tzinfo is not None and c.first_at <= c.last_at for c in counts)
    with gov.db.reading() as s:  # the session's secret is not kept
        digests = set(s.scalars(select(AlertViewRecord.session_digest)))
    assert "session-A" not in digests and len(digests) == 3
    with pytest.raises(Forbidden):  # view counts are audit data
        svc.alert_view_counts(gov.db, op1, one.id)
    _verify(gov)


def test_two_requests_at_once_write_one_entry(gov: Gov, face_images: dict[str, Path]) -> None:
    st = _setup(gov, face_images)
    shown = [svc.get_alert(gov.db, gov.actors["op1"],
                           _stored(gov, st, alert_id=f"cam1:{i}:s", track=i)) for i in (1, 2, 3)]
    n = 6
    start = threading.Barrier(n)
    failures: list[BaseException] = []

    def view(k: int) -> None:
        try:
            start.wait()
            # the same cards, in different orders (a queue and single cards at once)
            svc.record_views(gov.db, gov.actors["op1"], shown[k % 3:] + shown[:k % 3], "S")
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=view, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures
    entries = audit_records(gov, "alert.view")
    assert sorted(e.object_id for e in entries) == sorted(str(a.id) for a in shown)
    with gov.db.reading() as s:
        assert sorted(s.scalars(select(AlertViewRecord.count))) == [n] * 3
    _verify(gov)


def test_the_database_refuses_a_second_row_for_one_session(gov: Gov,
                                                          face_images: dict[str, Path]) -> None:
    """The unique constraint itself (what makes the count race-safe even for a writer outside
    the services' serialised transactions)."""
    st = _setup(gov, face_images)
    alert_id = _stored(gov, st)
    svc.record_views(gov.db, gov.actors["op1"], [svc.get_alert(gov.db, gov.actors["op1"],
                                                               alert_id)], "S")
    with pytest.raises(IntegrityError), gov.db.session() as s:
        s.add(AlertViewRecord(session_digest=svc.session_digest("S"), user_name="op1",
                              alert_id=alert_id, count=1))
        s.flush()


def test_images_on_a_card_enlarged_or_opened(gov: Gov, face_images: dict[str, Path]) -> None:
    st = _setup(gov, face_images)
    op1 = gov.actors["op1"]
    view = svc.get_alert(gov.db, op1, _stored(gov, st))

    def count(action: str) -> int:
        return len(audit_records(gov, action))

    # a crop asked for "on its card" without the card shown in this session: audited
    assert svc.alert_image(gov.system, op1, view.id, "crop", "card", "S")[:2] == b"\xff\xd8"
    assert count("alert.view_crop") == 1
    svc.record_views(gov.db, op1, [view], "S")
    for _ in range(3):  # the card's own images: counted with the card's view, not again
        svc.alert_image(gov.system, op1, view.id, "crop", "card", "S")
    assert count("alert.view_crop") == 1 and count("alert.view") == 1
    # another person's session does not cover op1's, nor op1's another session
    svc.alert_image(gov.system, op1, view.id, "crop", "card", "other session")
    assert count("alert.view_crop") == 2
    # enlarging and opening on its own: always on record
    svc.alert_image(gov.system, op1, view.id, "crop", "enlarge", "S")
    svc.alert_image(gov.system, op1, view.id, "crop", "enlarge", "S")
    enlarged = audit_records(gov, "alert.enlarge")
    assert [(e.actor, e.object_id) for e in enlarged] == [("op1", str(view.id))] * 2
    assert '"image":"crop"' in enlarged[0].details
    svc.alert_image(gov.system, op1, view.id, "crop", "open", "S")
    assert count("alert.view_crop") == 3
    with pytest.raises(RuleError):
        svc.alert_image(gov.system, op1, view.id, "crop", "peek", "S")
    _verify(gov)


def test_cli_filters_and_pages(gov: Gov, face_images: dict[str, Path]) -> None:
    st = _setup(gov, face_images)
    _, rows = _many(gov, st, 60)
    hall = sorted((int(r["id"]) for r in rows if r["camera"] == "hall"
                   and r["deployment_id"] == st.deployment_id), reverse=True)
    r = run_cli(gov, "alerts", "list", "--deployment", st.deployment_id, "--camera", "hall",
                "--limit", "5", "--json", user="op1")
    assert r.returncode == 0, r.stderr
    assert [a["id"] for a in json.loads(r.stdout)] == hall[:5]
    assert f"of {len(hall)}" in r.stderr and f"--before {hall[4]}" in r.stderr
    r = run_cli(gov, "alerts", "list", "--deployment", st.deployment_id, "--camera", "hall",
                "--limit", "5", "--before", hall[4], "--json", user="op1")
    assert [a["id"] for a in json.loads(r.stdout)] == hall[5:10]
    bad = run_cli(gov, "alerts", "list", "--since", "08:00", user="op1")
    assert bad.returncode == 2 and "since" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
