"""Public engagement before and after a deployment: the consultation a plan is put to before it
may be authorised, the less intrusive alternatives it records, and the counts of what was
shared (exports and disclosures, from the audit log) on the public pages. Real SQLite file and
real PostgreSQL (``gov``)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from openlfr.governance import alerts as alert_svc
from openlfr.governance import auditing, questions
from openlfr.governance import deployments as deps
from openlfr.governance import watchlists as wls
from openlfr.governance.authz import Conflict, Forbidden, RuleError
from openlfr.store.models import AuditRecord
from openlfr.transparency import public as public_data
from openlfr.transparency.shared import shared_counts
from tests.govfix import Gov, authorise, database_at
from tests.govfix import run_cli as _cli
from tests.test_gov_alerts import _setup, _stored
from tests.test_gov_deployments import approved_watchlist, plan

RESPONSE = ("We read all 1 comment. Signs will be larger, and the watchlist is limited to "
            "people wanted by the courts.")


def _entries(gov: Gov, action: str) -> list[dict[str, object]]:
    with gov.db.reading() as s:
        return [json.loads(r.details) for r in s.scalars(
            select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.seq))]


def _consulted(gov: Gov, face: Path, days: int = 14) -> int:
    """A complete draft with a consultation period of ``days``, not yet published."""
    wid = approved_watchlist(gov, face)
    return deps.create(gov.db, gov.actors["op1"], replace(plan((wid,)), consultation_days=days),
                       keyring=gov.system.keyring)


def _authorise(gov: Gov, dep_id: int, **kw: object) -> None:
    authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id, **kw)  # type: ignore[arg-type]


def test_authorisation_waits_for_the_period_and_a_response(gov: Gov, face_images) -> None:
    dep_id = _consulted(gov, face_images["obama"])
    with pytest.raises(Conflict, match="has not started: publish the plan as proposed"):
        _authorise(gov, dep_id)

    opened = deps.propose(gov.db, gov.actors["op1"], dep_id)
    assert opened.consultation == "open" and opened.proposed
    assert opened.consultation_ends_at is not None
    assert opened.consultation_ends_at - opened.consultation_opened_at == timedelta(days=14)  # type: ignore[operator]
    # during the period: refused, and no response can be recorded yet
    with pytest.raises(Conflict, match="public consultation runs until"):
        _authorise(gov, dep_id)
    with pytest.raises(Conflict, match="once it has ended"):
        deps.record_response(gov.db, gov.actors["ao1"], dep_id, RESPONSE)

    # a resident comments through the questions form of the public page
    questions.receive_question(gov.db, dep_id, "objection",
                               "Please do not put cameras at the school gate.", None)

    # the period ends (published again 15 days ago: a 14-day period that ended yesterday)
    ended = deps.propose(gov.db, gov.actors["op1"], dep_id,
                         now=datetime.now(UTC) - timedelta(days=15))
    assert ended.consultation == "ended"
    with pytest.raises(Conflict, match="response to the comments of its consultation"):
        _authorise(gov, dep_id)
    with pytest.raises(RuleError, match="at least 20 characters"):
        deps.record_response(gov.db, gov.actors["ao1"], dep_id, "ok")
    with pytest.raises(Forbidden):  # an operator may not
        deps.record_response(gov.db, gov.actors["op1"], dep_id, RESPONSE)

    done = deps.record_response(gov.db, gov.actors["ao1"], dep_id, RESPONSE)
    assert done.consultation == "responded" and done.consultation_response == RESPONSE
    entry = _entries(gov, "deployment.consultation_response")[-1]
    assert entry["chars"] == len(RESPONSE) and RESPONSE not in json.dumps(entry)
    assert entry["comments"] == 1

    _authorise(gov, dep_id)
    shown = deps.show(gov.db, gov.actors["au1"], dep_id)
    assert shown.status == "authorised" and shown.consultation_response == RESPONSE
    authorised = _entries(gov, "deployment.authorise")[-1]
    assert authorised["alternatives"] == "Patrols do not suffice"
    assert authorised["consultation"]["response_by"] == "ao1"  # type: ignore[index]
    proposals = _entries(gov, "deployment.propose")
    assert [p["restarted"] for p in proposals] == [False, True]


def test_a_long_deployment_needs_a_consultation(gov: Gov, face_images) -> None:
    wid = approved_watchlist(gov, face_images["obama"])
    now = datetime.now(UTC)
    long_plan = plan((wid,), start=now - timedelta(minutes=5), end=now + timedelta(days=45))
    dep_id = deps.create(gov.db, gov.actors["op1"], long_plan, keyring=gov.system.keyring)
    with pytest.raises(Conflict, match=r"longer than 30 days \(this one: 45\.0 days\) needs a "
                                       "public consultation"):
        _authorise(gov, dep_id)
    refused = _entries(gov, "deployment.authorise")
    assert refused == []
    # the setting decides the length
    with pytest.raises(Conflict, match="longer than 40 days"):
        _authorise(gov, dep_id, consultation_after_days=40)
    _authorise(gov, dep_id, consultation_after_days=60)
    assert deps.show(gov.db, gov.actors["au1"], dep_id).status == "authorised"


def test_a_short_deployment_needs_none(gov: Gov, face_images) -> None:
    wid = approved_watchlist(gov, face_images["obama"])
    dep_id = deps.create(gov.db, gov.actors["op1"], plan((wid,)), keyring=gov.system.keyring)
    _authorise(gov, dep_id)
    assert deps.show(gov.db, gov.actors["au1"], dep_id).consultation == "none"


def test_alternatives_are_required_and_stay(gov: Gov, face_images) -> None:
    with pytest.raises(RuleError, match="less intrusive alternatives") as refused:
        deps.create(gov.db, gov.actors["op1"], replace(plan(), alternatives="  "),
                    keyring=gov.system.keyring)
    assert refused.value.field == "alternatives"
    dep_id = deps.create(gov.db, gov.actors["op1"], plan(), keyring=gov.system.keyring)
    with pytest.raises(RuleError, match="cannot be removed"):
        deps.edit(gov.db, gov.actors["op1"], dep_id, alternatives="")
    assert deps.edit(gov.db, gov.actors["op1"], dep_id,
                     alternatives="Foot patrols were tried for a month") == ["alternatives"]
    with pytest.raises(RuleError, match="whole number of days from 1 to 365"):
        deps.edit(gov.db, gov.actors["op1"], dep_id, consultation_days=0)
    result = _cli(gov, "deployment", "create", "--user", "op1", "--name", "x", "--start", "now",
                  "--end", "+2h")
    assert result.returncode == 2 and "less intrusive alternatives" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_material_edit_restarts_the_period(gov: Gov, face_images) -> None:
    dep_id = _consulted(gov, face_images["obama"])
    with pytest.raises(Conflict, match="urgency reason"):
        deps.edit(gov.db, gov.actors["op1"], dep_id, urgency_reason="A sudden threat")
        deps.propose(gov.db, gov.actors["op1"], dep_id)
    deps.edit(gov.db, gov.actors["op1"], dep_id, urgency_reason=None)
    deps.propose(gov.db, gov.actors["op1"], dep_id, now=datetime.now(UTC) - timedelta(days=20))
    deps.record_response(gov.db, gov.actors["ao1"], dep_id, RESPONSE)

    # the name is not material: the period and the response stay
    deps.edit(gov.db, gov.actors["op1"], dep_id, name="Concourse, renamed")
    kept = deps.show(gov.db, gov.actors["au1"], dep_id)
    assert kept.consultation == "responded" and kept.consultation_response == RESPONSE

    # where the cameras look is: the period starts again from now, the response is cleared
    deps.edit(gov.db, gov.actors["op1"], dep_id, location="South concourse, gate 9")
    again = deps.show(gov.db, gov.actors["au1"], dep_id)
    assert again.consultation == "open" and again.consultation_response is None
    assert again.consultation_ends_at is not None
    assert again.consultation_ends_at > datetime.now(UTC) + timedelta(days=13)
    assert _entries(gov, "deployment.edit")[-1]["consultation"] == "restarted"
    with pytest.raises(Conflict, match="public consultation runs until"):
        _authorise(gov, dep_id)

    # removing the period withdraws the consultation
    deps.edit(gov.db, gov.actors["op1"], dep_id, consultation_days=None)
    gone = deps.show(gov.db, gov.actors["au1"], dep_id)
    assert gone.consultation == "none" and gone.consultation_opened_at is None
    assert _entries(gov, "deployment.edit")[-1]["consultation"] == "withdrawn"


def test_a_proposed_plan_is_public_and_takes_comments(gov: Gov, face_images) -> None:
    dep_id = _consulted(gov, face_images["obama"])
    assert public_data.get_public(gov.db, dep_id) is None  # a draft not published
    with pytest.raises(Exception, match="no public deployment"):
        questions.receive_question(gov.db, dep_id, "question", "Where are the cameras?", None)
    deps.propose(gov.db, gov.actors["op1"], dep_id)
    questions.receive_question(gov.db, dep_id, "question", "Where are the cameras exactly?",
                               None)
    shown = public_data.get_public(gov.db, dep_id)
    assert shown is not None and shown.status == "proposed" and shown.consultation_open
    assert shown.alternatives == "Patrols do not suffice"
    assert shown.consultation_comments == 1 and shown.figures is None
    assert shown.consultation_response is None
    listed = {d.id: d.status for d in public_data.list_public(gov.db)}
    assert listed[dep_id] == "proposed"
    assert shown.as_json()["consultation_ends_at"] is not None


def test_shared_counts_match_the_audit_entries(gov: Gov, face_images, tmp_path: Path) -> None:
    st = _setup(gov, face_images)
    alert_id = _stored(gov, st)
    au1, ao1 = gov.actors["au1"], gov.actors["ao1"]
    # exports, with and without a purpose and a recipient category
    list(auditing.export(gov.db, au1, out="web", purpose="audit", recipient="oversight"))
    list(auditing.export(gov.db, au1, out="web", purpose="audit", recipient="oversight"))
    list(auditing.export(gov.db, au1, art12=True, deployment=st.deployment_id, out="f.jsonl",
                         purpose="legal_proceedings", recipient="prosecution"))
    list(auditing.export(gov.db, au1, out="stdout"))
    list(auditing.export(gov.db, au1, out="web", fmt="csv", purpose="complaint",
                         recipient="data_subject",
                         selection=auditing.AuditFilter(deployment=st.deployment_id)))
    with pytest.raises(RuleError, match="recipient: 'the press' is not one of") as bad:
        auditing.export(gov.db, au1, out="web", recipient="the press")
    assert bad.value.field == "recipient"
    # the alert's crop viewed twice and written to a file once; a reference image viewed
    for _ in range(2):
        alert_svc.alert_crop(gov.system, ao1, alert_id)
    alert_svc.alert_crop(gov.system, ao1, alert_id, out="file", purpose="investigation",
                         recipient="law_enforcement")
    wid = approved_watchlist(gov, face_images["obama"])
    image_id = wls.show_watchlist(gov.db, au1, wid).subject_list[0].images[0].id
    wls.subject_image(gov.system, ao1, image_id)
    deps.record_preview_view(gov.db, gov.actors["op1"], st.deployment_id, "gate")

    with gov.db.reading() as s:
        shared = shared_counts(s, [st.deployment_id])
    overall = {(c.what, c.purpose, c.recipient): c.count for c in shared.overall}
    assert overall == {
        ("audit_export", "audit", "oversight"): 2,
        ("audit_export", "not_stated", "not_stated"): 1,
        ("audit_export", "complaint", "data_subject"): 1,
        ("art12_export", "legal_proceedings", "prosecution"): 1,
        ("alert_image_viewed", "not_stated", "internal"): 2,
        ("alert_image_exported", "investigation", "law_enforcement"): 1,
        ("reference_image_viewed", "not_stated", "internal"): 1,
        ("live_preview_opened", "not_stated", "internal"): 1,
    }
    # the same totals as the audit log's entries of those actions
    counted = {"audit.export": 5, "alert.view_crop": 3, "subject_image.view": 1,
               "preview.view": 1}
    for action, n in counted.items():
        assert len(_entries(gov, action)) == n, action
    assert sum(overall.values()) == sum(counted.values())
    mine = {(c.what, c.purpose, c.recipient): c.count for c in shared.of(st.deployment_id)}
    assert mine == {
        ("audit_export", "complaint", "data_subject"): 1,  # the selection about it
        ("art12_export", "legal_proceedings", "prosecution"): 1,
        ("alert_image_viewed", "not_stated", "internal"): 2,
        ("alert_image_exported", "investigation", "law_enforcement"): 1,
        ("live_preview_opened", "not_stated", "internal"): 1,
    }
    # the command line records the same fields
    out = tmp_path / "log.jsonl"
    result = _cli(gov, "audit", "export", "--user", "au1", "--out", str(out), "--purpose",
                  "complaint", "--recipient", "data_subject")
    assert result.returncode == 0, result.stderr
    assert _entries(gov, "audit.export")[-1]["purpose"] == "complaint"
    result = _cli(gov, "audit", "export", "--user", "au1", "--purpose", "gossip")
    assert result.returncode == 2 and "purpose: 'gossip' is not one of" in result.stderr
    # and `openlfr stats` prints the same counts
    result = _cli(gov, "stats", "--json")
    with gov.db.reading() as s:
        again = shared_counts(s).overall
    assert json.loads(result.stdout)["shared"]["overall"] == [c.model_dump() for c in again]
    assert sum(c.count for c in again) == sum(counted.values()) + 1


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_migration_keeps_stored_deployments(kind: str, tmp_path: Path) -> None:
    """0009 adds the columns in place: a stored deployment and its cameras and questions stay,
    with no consultation and no alternatives (an old plan is not refused for it until it is
    authorised again)."""
    with database_at(kind, tmp_path, "0008") as db:
        when = datetime(2026, 11, 1, 8, 0)
        with db.engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO deployments (id, name, site, location, purpose, legal_basis, "
                "dpia_ref, equality_ref, planned_start, planned_end, threshold, model_id, "
                "two_person_rule, signage, public_notice, status, created_by, created_at) "
                "VALUES (7, 'Old', 's', 'l', 'p', 'b', 'd', 'e', :t, :t2, 0.5, 'sface', "
                ":no, :yes, :yes, 'authorised', 'op1', :t)"),
                {"t": when, "t2": when + timedelta(hours=2), "no": False, "yes": True})
            conn.execute(text("INSERT INTO cameras (deployment_id, name, display) "
                              "VALUES (7, 'gate', '0')"))
            conn.execute(text("INSERT INTO public_questions (deployment_id, kind, text, "
                              "created_at, status, reference) VALUES (7, 'question', "
                              "'Why here?', :t, 'open', 'Q-0000-0001')"), {"t": when})
        db.upgrade()
        with db.engine.connect() as conn:
            row = conn.execute(text(
                "SELECT name, status, alternatives, consultation_days, consultation_opened_at, "
                "consultation_response FROM deployments WHERE id = 7")).one()
            counts = [conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                      for t in ("cameras", "public_questions")]
        assert tuple(row) == ("Old", "authorised", None, None, None, None)
        assert counts == [1, 1]


def test_a_deployment_authorised_before_alternatives_still_starts(gov: Gov, face_images) -> None:
    """A deployment authorised before alternatives were recorded (a row from before 0009)
    still starts; a draft of that age lists them among what it lacks."""
    wid = approved_watchlist(gov, face_images["obama"])
    old = deps.create(gov.db, gov.actors["op1"], plan((wid,)), keyring=gov.system.keyring)
    draft = deps.create(gov.db, gov.actors["op1"], plan((wid,)), keyring=gov.system.keyring)
    _authorise(gov, old)
    with gov.db.engine.begin() as conn:  # as the migration leaves rows stored before it
        conn.execute(text("UPDATE deployments SET alternatives = NULL"))
    deps.start(gov.db, gov.actors["op1"], old)
    assert deps.show(gov.db, gov.actors["au1"], old).status == "running"
    lacking = deps.show(gov.db, gov.actors["au1"], draft).missing
    assert deps.ALTERNATIVES_LABEL in lacking
    with pytest.raises(Conflict, match="less intrusive alternatives"):
        _authorise(gov, draft)
