"""The rules of the jurisdiction profiles at authorisation (and at each start under eu-ai-act):
uk-app's rank, watchlist criteria and advance notice; eu-ai-act's authority decision,
assessment, registration, notification of each use and two-person rule; in both, a recorded
calibration at the plan's size and target, attested representative, whose worst-group floor
holds. Real SQLite file and real PostgreSQL (``gov``), the commands and the API."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from openlfr.audit import log as audit_log
from openlfr.errors import Conflict, InvalidInput
from openlfr.governance import deployments as deps
from openlfr.governance import profiles
from openlfr.governance.retention import retention_days
from openlfr.store.enums import DeploymentStatus
from openlfr.store.models import Deployment
from openlfr.transparency.art12 import art12_records
from tests.govfix import (
    DECISION,
    Gov,
    audit_records,
    authorise,
    bearer_headers,
    record_calibration,
    run_cli,
)
from tests.test_gov_deployments import SFACE_FLOOR, approved_watchlist, model_id, plan


def _draft(gov: Gov, face: Path, **changes: object) -> int:
    return deps.create(gov.db, gov.actors["op1"],
                       replace(plan((approved_watchlist(gov, face),)), **changes),  # type: ignore[arg-type]
                       keyring=gov.system.keyring)


def _refused(gov: Gov, dep_id: int, decision: deps.Decision, *needles: str) -> str:
    """Authorising ``dep_id`` with ``decision`` is refused naming every needle; it stays a
    draft."""
    with pytest.raises(Conflict) as info:
        deps.authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id,
                       decision=decision)
    message = str(info.value)
    for needle in needles:
        assert needle in message, message
    with gov.db.reading() as s:
        assert s.get(Deployment, dep_id).status == DeploymentStatus.DRAFT  # type: ignore[union-attr]
    return message


def _status(gov: Gov, dep_id: int) -> DeploymentStatus:
    with gov.db.reading() as s:
        return s.get(Deployment, dep_id).status  # type: ignore[union-attr]


# -- both profiles: the calibration --------------------------------------------------------------

def test_the_default_floor_is_not_enough(gov: Gov, face_images) -> None:
    dep_id = _draft(gov, face_images["obama"])
    _refused(gov, dep_id, DECISION, "has no recorded calibration at a watchlist size of at "
             "least 1 and a target rate of at most 0.01", "default floor is not enough")
    # one at a smaller watchlist, or at a looser target, does not answer for the plan
    big = _draft(gov, face_images["obama"], target_fpir=0.001)
    record_calibration(gov.db, gov.actors["ao2"], model_id(), watchlist_size=1,
                       target_fpir=0.01)
    _refused(gov, big, DECISION, "target rate of at most 0.001")
    record_calibration(gov.db, gov.actors["ao2"], model_id(), watchlist_size=1,
                       target_fpir=0.001)
    deps.authorise(gov.db, gov.system.keyring, gov.actors["ao1"], big, decision=DECISION)
    assert _status(gov, big) == DeploymentStatus.AUTHORISED


def test_representative_attested_and_worst_group_floor_enforced(gov: Gov, face_images) -> None:
    threshold = SFACE_FLOOR + 0.05
    dep_id = _draft(gov, face_images["obama"])
    # the calibration's own floor is below the threshold, its worst group's is above it
    cal = record_calibration(gov.db, gov.actors["ao2"], model_id(), threshold=SFACE_FLOOR,
                             worst=threshold + 0.02)
    _refused(gov, dep_id, replace(DECISION, representative=False),
             f"must attest that the data of calibration {cal} is representative",
             f"below the calibrated floor {threshold + 0.02:.4f}")
    view = deps.show(gov.db, gov.actors["au1"], dep_id)
    assert view.calibration_id == cal and view.calibration_floor == pytest.approx(
        threshold + 0.02)
    deps.edit(gov.db, gov.actors["op1"], dep_id, threshold=threshold + 0.03)
    deps.authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id, decision=DECISION)
    details = audit_records(gov, "deployment.authorise")[-1].details
    entry = json.loads(details)
    assert entry["calibration"]["id"] == cal and entry["calibration"]["representative"]
    assert entry["calibration"]["floor"] == audit_log.fmt_float(threshold + 0.02)


def test_the_plan_shows_expected_false_alerts_and_misses(gov: Gov, face_images) -> None:
    dep_id = _draft(gov, face_images["obama"])
    record_calibration(gov.db, gov.actors["ao2"], model_id())
    view = deps.show(gov.db, gov.actors["au1"], dep_id)
    # the fixture's curve at the plan's threshold (floor + 0.05, rounded down to 0.53)
    t = int((SFACE_FLOOR + 0.05) * 100 + 1e-6) / 100
    fpir = 0.02 * 10 ** (-(t - 0.3) * 10)
    assert view.expected_false_alerts_per_10k == pytest.approx(fpir * 10_000, rel=1e-3)
    t_up = -(-round((SFACE_FLOOR + 0.05) * 1e6) // 10_000) / 100
    assert view.expected_miss_rate == pytest.approx((t_up - 0.2) / 2, rel=1e-3)
    assert (view.watchlist_size, view.target_fpir) == (1, deps.DEFAULT_TARGET_FPIR)


# -- uk-app --------------------------------------------------------------------------------------

def test_uk_app_rank(gov: Gov, face_images) -> None:
    dep_id = _draft(gov, face_images["obama"])
    record_calibration(gov.db, gov.actors["ao2"], model_id())
    _refused(gov, dep_id, replace(DECISION, rank=None),
             "missing: the authorising officer's rank (superintendent or above)")
    _refused(gov, dep_id, replace(DECISION, rank="Chief  Inspector"),
             "a chief inspector may not authorise live facial recognition: the authorising "
             "officer must be a superintendent or above")
    with pytest.raises(InvalidInput, match="no police rank 'general'"):
        deps.authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id,
                       decision=replace(DECISION, rank="general"))
    deps.authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id,
                   decision=replace(DECISION, rank="Chief Superintendent"))
    view = deps.show(gov.db, gov.actors["au1"], dep_id)
    assert view.authorised_rank == "chief superintendent" and view.criteria_approved
    entry = json.loads(audit_records(gov, "deployment.authorise")[-1].details)
    assert entry["profile"] == "uk-app" and entry["rank"] == "chief superintendent"
    assert entry["criteria"] == [{"watchlist": view.watchlists[0].id, "name": "wanted",
                                  "purpose": "Locate people wanted by the courts at the "
                                             "station",
                                  "categories": {"wanted_by_court": 1}}]


def test_uk_app_criteria_and_advance_notice(gov: Gov, face_images) -> None:
    now = datetime.now(UTC)
    record_calibration(gov.db, gov.actors["ao2"], model_id())
    dep_id = _draft(gov, face_images["obama"], notice_at=None)
    _refused(gov, dep_id, replace(DECISION, criteria_approved=False),
             "must approve the watchlist criteria for this deployment",
             "missing: the date of the advance public notice, or a critical-threat reason")
    late = _draft(gov, face_images["obama"], notice_at=now)  # after the start (now - 5 min)
    _refused(gov, late, DECISION, "must be published before the window starts")
    # a critical-threat reason stands in for the notice
    deps.edit(gov.db, gov.actors["op1"], dep_id,
              urgency_reason="Credible threat of an imminent attack at the station today")
    deps.authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id, decision=DECISION)
    entry = json.loads(audit_records(gov, "deployment.authorise")[-1].details)
    assert entry["critical_threat"] is True


def test_uk_app_caps_the_alert_retention_period(gov: Gov) -> None:
    assert retention_days(gov.db, 90) == profiles.UK_APP_ALERT_DAYS == 31
    assert retention_days(gov.db, 7) == 7
    profiles.set_profile(gov.db, gov.actors["admin"], "eu-ai-act")
    assert retention_days(gov.db, 90) == 90


# -- eu-ai-act -----------------------------------------------------------------------------------

def test_eu_ai_act_authority_assessment_registration(gov: Gov, face_images) -> None:
    profiles.set_profile(gov.db, gov.actors["admin"], "eu-ai-act")
    record_calibration(gov.db, gov.actors["ao2"], model_id())
    dep_id = _draft(gov, face_images["obama"], two_person_rule=False, notice_at=None)
    no_authority = replace(DECISION, rank=None, criteria_approved=False, authority_ref=None)
    message = _refused(gov, dep_id, no_authority,
                       "missing: the fundamental rights impact assessment reference; the EU "
                       "database registration reference",
                       "missing: the independent authority's decision (reference, authority, "
                       "date and scope)")
    assert "rank" not in message and "notice" not in message  # not uk-app's rules
    deps.edit(gov.db, gov.actors["op1"], dep_id, fria_ref="FRIA-2026-3",
              eu_db_ref="EU-DB-RBI-000123")
    decision = replace(DECISION, rank=None, criteria_approved=False)
    deps.authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id, decision=decision)
    view = deps.show(gov.db, gov.actors["au1"], dep_id)
    assert view.two_person_rule  # forced on
    assert (view.authority_ref, view.authority_date) == ("AUTH-2026-0042", "2026-01-05")
    entry = json.loads(audit_records(gov, "deployment.authorise")[-1].details)
    assert entry["two_person_rule_forced"] is True and entry["authority"]["scope"]

    # each use (each start, each resume) generates a notification
    assert deps.notifications(gov.db, gov.actors["au1"], dep_id) == []
    deps.start(gov.db, gov.actors["op1"], dep_id)
    deps.pause(gov.db, gov.actors["op1"], dep_id, "the server stopped")
    deps.start(gov.db, gov.actors["op1"], dep_id)
    sent = deps.notifications(gov.db, gov.actors["au1"], dep_id)
    assert len(sent) == 2
    body = sent[0]["body"]
    assert body["recipients"] == ["market surveillance authority",
                                  "national data protection authority"]
    assert (body["fria_ref"], body["eu_db_ref"]) == ("FRIA-2026-3", "EU-DB-RBI-000123")
    assert body["authorisation"]["authority_reference"] == "AUTH-2026-0042"
    assert body["deployment"]["id"] == dep_id and body["cameras"] == ["gate"]
    assert len(audit_records(gov, "deployment.notification")) == 2
    # Art. 12(3): the period of each use, and the authority's decision
    with gov.db.reading() as s:
        record = art12_records(s, dep_id)[0]
    assert [(u["started_by"], u["end_reason"]) for u in record["uses"]] == [
        ("op1", "the server stopped"), ("op1", None)]
    assert record["authority_decision"]["reference"] == "AUTH-2026-0042"
    assert record["fria_ref"] == "FRIA-2026-3"


def test_no_notification_under_uk_app(gov: Gov, face_images) -> None:
    dep_id = _draft(gov, face_images["obama"])
    authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)
    deps.start(gov.db, gov.actors["op1"], dep_id)
    assert deps.notifications(gov.db, gov.actors["au1"], dep_id) == []


# -- the command line and the API ----------------------------------------------------------------

def test_cli_profile_and_authorise(gov: Gov, face_images) -> None:
    shown = run_cli(gov, "admin", "profile")
    assert shown.returncode == 0 and "jurisdiction profile: uk-app (the default)" in shown.stdout
    assert "superintendent or above" in shown.stdout
    bad = run_cli(gov, "admin", "profile", "us-federal", "--user", "admin")
    assert bad.returncode == 2 and "choose one of uk-app, eu-ai-act" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    refused = run_cli(gov, "admin", "profile", "eu-ai-act", "--user", "ao1")
    assert refused.returncode == 3 and "Traceback" not in refused.stderr

    dep_id = _draft(gov, face_images["obama"])
    record_calibration(gov.db, gov.actors["ao2"], model_id())
    low = run_cli(gov, "deployment", "authorise", dep_id, "--user", "ao1", "--rank",
                  "inspector", "--approve-criteria", "--representative")
    assert low.returncode == 6 and "an inspector may not authorise" in low.stderr, low
    assert "Traceback" not in low.stderr and len(low.stderr.strip().splitlines()) == 1
    ok = run_cli(gov, "deployment", "authorise", dep_id, "--user", "ao1", "--rank",
                 "superintendent", "--approve-criteria", "--representative")
    assert ok.returncode == 0, ok.stderr
    shown = run_cli(gov, "deployment", "show", dep_id, "--user", "au1")
    assert "false alerts per 10,000 people passing" in shown.stdout, shown.stdout
    assert "by ao1 (superintendent); watchlist criteria approved" in shown.stdout

    changed = run_cli(gov, "admin", "profile", "eu-ai-act", "--user", "admin", "--json")
    assert changed.returncode == 0, changed.stderr
    out = json.loads(changed.stdout)
    assert out["profile"] == "eu-ai-act" and out["changed"] and out["default"] == "uk-app"
    eu = _draft(gov, face_images["obama"], fria_ref="FRIA-1", eu_db_ref="EUDB-1")
    bad_date = run_cli(gov, "deployment", "authorise", eu, "--user", "ao1",
                       "--authority-date", "5 January")
    assert bad_date.returncode == 2 and "--authority-date takes a date" in bad_date.stderr
    done = run_cli(gov, "deployment", "authorise", eu, "--user", "ao1", "--representative",
                   "--authority-ref", "AUTH-9", "--authority", "Court of Appeal",
                   "--authority-date", "2026-02-01", "--authority-scope", "This site only")
    assert done.returncode == 0, done.stderr


def test_api_profile_and_authorise(gov: Gov, client: TestClient, face_images) -> None:
    auth = bearer_headers(gov, "profile")
    from openlfr.store.enums import Role

    r = client.get("/api/v1/settings/profile", headers=auth[Role.AUDITOR])
    assert r.status_code == 200 and r.json()["profile"] == "uk-app"
    r = client.put("/api/v1/settings/profile", json={"profile": "eu-ai-act"},
                   headers=auth[Role.AUTHORISING_OFFICER])
    assert r.status_code == 403
    r = client.put("/api/v1/settings/profile", json={"profile": "mars"},
                   headers=auth[Role.ADMIN])
    assert r.status_code in (400, 422) and "choose one of" in r.text

    dep_id = _draft(gov, face_images["obama"])
    record_calibration(gov.db, gov.actors["ao2"], model_id())
    url = f"/api/v1/deployments/{dep_id}/authorise"
    r = client.post(url, headers=auth[Role.AUTHORISING_OFFICER],
                    json={"rank": "sergeant", "criteria_approved": True,
                          "representative": True})
    assert r.status_code == 409 and "a sergeant may not authorise" in r.text
    r = client.post(url, headers=auth[Role.AUTHORISING_OFFICER],
                    json={"rank": "superintendent", "criteria_approved": True,
                          "representative": True})
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["authorised_rank"] == "superintendent"
    assert view["expected_false_alerts_per_10k"] > 0 and 0 < view["expected_miss_rate"] < 1

    r = client.put("/api/v1/settings/profile", json={"profile": "eu-ai-act"},
                   headers=auth[Role.ADMIN])
    assert r.status_code == 200 and r.json()["changed"]
    eu = _draft(gov, face_images["obama"], fria_ref="FRIA-1", eu_db_ref="EUDB-1")
    r = client.post(f"/api/v1/deployments/{eu}/authorise",
                    headers=auth[Role.AUTHORISING_OFFICER],
                    json={"representative": True, "authority_ref": "A-1",
                          "authority_name": "Court", "authority_date": "2026-02-01",
                          "authority_scope": "Here only"})
    assert r.status_code == 200, r.text
    r = client.post(f"/api/v1/deployments/{eu}/start", headers=auth[Role.OPERATOR])
    assert r.status_code == 200, r.text
    r = client.get(f"/api/v1/deployments/{eu}/notifications", headers=auth[Role.AUDITOR])
    assert r.status_code == 200 and len(r.json()) == 1
    assert r.json()[0]["body"]["authorisation"]["authority_date"] == date(2026, 2, 1).isoformat()



def test_settings_page_shows_the_profile(gov: Gov, client: TestClient) -> None:
    from tests.govfix import PASSWORD

    assert client.post("/api/v1/auth/login",
                       json={"name": "au1", "password": PASSWORD}).status_code == 200
    page = client.get("/console/settings").text
    assert "In force: <strong>uk-app</strong> (the default)" in page
    assert "superintendent or above" in page and "Only an administrator" in page
    assert 'name="profile"' not in page  # no form for an auditor
    profiles.set_profile(gov.db, gov.actors["admin"], "eu-ai-act")
    page = client.get("/console/settings").text
    assert "In force: <strong>eu-ai-act</strong>." in page
