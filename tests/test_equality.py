"""Equality monitoring of false alerts: the outcome form's rules (service, console, API, CLI),
the yearly aggregates with small-number suppression, the comparison with the measured
false-match rates, and that no public page holds a record about one person."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from openlfr.audit import log as audit_log
from openlfr.governance import alerts as svc
from openlfr.governance import floors
from openlfr.governance.authz import RuleError
from openlfr.store.enums import Action, AlertStatus, Decision, PerceivedEthnicity, PerceivedSex
from openlfr.store.models import Alert, Deployment, Outcome
from openlfr.transparency import public as public_data
from openlfr.transparency.equality import FEWER, NOT_BROKEN_DOWN, WITHHELD, suppress
from openlfr.transparency.stats import check_against_audit
from openlfr.web.app import create_app
from tests.govfix import Gov
from tests.govfix import run_cli as _cli
from tests.test_gov_alerts import _setup, _stored
from tests.test_web_core import login
from tests.test_web_public import SUBJECT_REF, Demo, populate

Stop = svc.FalseAlertStop


# -- suppression (no database) ------------------------------------------------------------------

@pytest.mark.parametrize(("counts", "shown"), [
    ([0, 0, 0], [0, 0, 0]),
    ([7, 0, 0], [7, 0, 0]),
    ([7, 2, 2], [7, FEWER, FEWER]),  # two hidden: their sum is known, not each
    ([7, 9, 1], [WITHHELD, 9, FEWER]),  # one hidden: the next smallest too
    ([6, 1, 0], [WITHHELD, FEWER, 0]),
    ([3, 0, 0], [NOT_BROKEN_DOWN] * 3),  # fewer than 5 in all: no breakdown, zeros neither
    ([1, 1, 1], [NOT_BROKEN_DOWN] * 3),
    ([5, 0], [5, 0]),
])
def test_small_numbers_are_suppressed(counts: list[int], shown: list[object]) -> None:
    assert suppress(counts) == shown


# -- the outcome form's rules -------------------------------------------------------------------

def _details(gov: Gov, alert_id: int) -> dict[str, object]:
    with gov.db.reading() as s:
        found = [e.details for e in audit_log.entries(s)
                 if e.action == "alert.outcome" and e.object_id == str(alert_id)]
    assert len(found) == 1
    return found[0]


def test_stop_and_perception_only_after_a_false_alert(gov: Gov,
                                                      face_images: dict[str, Path]) -> None:
    st = _setup(gov, face_images)
    op = gov.actors["op1"]
    rejected = _stored(gov, st)
    confirmed = _stored(gov, st, alert_id="b", track=2)
    other = _stored(gov, st, alert_id="c", track=3)
    svc.adjudicate(gov.db, op, rejected, Decision.REJECT, "not the person")
    svc.adjudicate(gov.db, op, confirmed, Decision.CONFIRM)
    svc.adjudicate(gov.db, op, other, Decision.CONFIRM)

    # a false alert's outcome must say whether the person was stopped
    with pytest.raises(RuleError, match="whether the person was stopped"):
        svc.record_outcome(gov.db, op, rejected, True, Action.NONE)
    # a confirmed alert (the subject) records no stop nor perception
    with pytest.raises(RuleError, match="only after a false alert"):
        svc.record_outcome(gov.db, op, other, True, Action.ARREST,
                           stop=Stop(False, ethnicity=PerceivedEthnicity.WHITE))
    with pytest.raises(RuleError, match="'not the subject' is for confirmed"):
        svc.record_outcome(gov.db, op, rejected, True, Action.NONE, not_subject=True,
                           stop=Stop(False))
    with pytest.raises(RuleError, match="only once engaged"):
        svc.record_outcome(gov.db, op, confirmed, False, Action.NONE, not_subject=True,
                           stop=Stop(False))
    # bounds of the stop's length
    for minutes, message in ((None, "is required when"), (0, "from 1 to 480"),
                             (481, "from 1 to 480"), (-5, "from 1 to 480")):
        with pytest.raises(RuleError, match=message) as exc:
            svc.record_outcome(gov.db, op, rejected, True, Action.NONE,
                               stop=Stop(True, minutes))
        assert exc.value.field == "stop_minutes"
    with pytest.raises(RuleError, match="only when the person was stopped"):
        svc.record_outcome(gov.db, op, rejected, True, Action.NONE, stop=Stop(False, 10))
    with pytest.raises(RuleError, match="stopped was engaged"):
        svc.record_outcome(gov.db, op, rejected, False, Action.NONE, stop=Stop(True, 10))
    with pytest.raises(RuleError, match="unknown perceived ethnicity"):
        svc.stop_from_form("yes", "10", "martian", "")
    with pytest.raises(RuleError, match="whole number"):
        svc.stop_from_form("yes", "ten", "", "")
    with pytest.raises(RuleError, match="say whether the person was stopped"):
        svc.stop_from_form("", "", "white", "")
    assert svc.stop_from_form("", "", "", "") is None
    assert svc.stop_from_form("yes", "12", "Black, Black British, Caribbean or African",
                              "female") == Stop(True, 12, PerceivedEthnicity.BLACK,
                                                PerceivedSex.FEMALE)
    assert svc.get_alert(gov.db, op, rejected).outcome is None  # nothing half-recorded

    view = svc.record_outcome(gov.db, op, rejected, True, Action.NONE, stop=Stop(
        True, 12, PerceivedEthnicity.BLACK, PerceivedSex.FEMALE))
    o = view.outcome
    assert o is not None and o.false_alert and o.stopped and o.stop_minutes == 12
    assert o.perceived_ethnicity == PerceivedEthnicity.BLACK
    assert o.perceived_sex == PerceivedSex.FEMALE
    view = svc.record_outcome(gov.db, op, confirmed, True, Action.NONE, not_subject=True,
                              stop=Stop(False))
    assert view.outcome is not None and view.outcome.not_subject and not view.outcome.stopped
    plain = svc.record_outcome(gov.db, op, other, True, Action.ARREST).outcome
    assert plain is not None and not plain.false_alert and plain.stopped is None

    # the audit log says that a perception was recorded, never which
    details = _details(gov, rejected)
    assert details["stopped"] is True and details["stop_minutes"] == 12
    assert details["equality_recorded"] is True
    text = json.dumps(details).lower()
    assert "black" not in text and "female" not in text
    assert _details(gov, confirmed)["equality_recorded"] is False
    assert "stopped" not in _details(gov, other)
    with gov.db.reading() as s:
        assert audit_log.verify(s).ok
        assert check_against_audit(s) == []


def test_the_cli_records_a_false_alert_stop(gov: Gov, face_images: dict[str, Path]) -> None:
    st = _setup(gov, face_images)
    row = _stored(gov, st)
    svc.adjudicate(gov.db, gov.actors["op1"], row, Decision.REJECT, "wrong person")
    base = ["alerts", "outcome", str(row), "--action", "none", "--engaged"]
    bad = _cli(gov, *base, "--stopped", "yes", "--stop-minutes", "9999", user="op1")
    assert bad.returncode == 2 and "from 1 to 480" in bad.stderr
    assert "Traceback" not in bad.stderr
    bad = _cli(gov, *base, "--stopped", "yes", "--stop-minutes", "5",
               "--perceived-ethnicity", "purple", user="op1")
    assert bad.returncode == 2 and "unknown perceived ethnicity" in bad.stderr
    ok = _cli(gov, *base, "--stopped", "yes", "--stop-minutes", "5",
              "--perceived-ethnicity", "asian", "--perceived-sex", "male", user="op1")
    assert ok.returncode == 0, ok.stderr
    o = svc.get_alert(gov.db, gov.actors["op1"], row).outcome
    assert o is not None and o.stop_minutes == 5 and o.perceived_ethnicity == "asian"


# -- console and API ----------------------------------------------------------------------------

@pytest.fixture()
def client(gov: Gov) -> Iterator[TestClient]:
    with TestClient(create_app(gov.system), base_url="http://testserver") as c:
        yield c


def test_the_api_and_the_console_form(gov: Gov, face_images: dict[str, Path],
                                      client: TestClient) -> None:
    st = _setup(gov, face_images)
    op = gov.actors["op1"]
    rejected = _stored(gov, st)
    confirmed = _stored(gov, st, alert_id="b", track=2)
    svc.adjudicate(gov.db, op, rejected, Decision.REJECT, "not the person")
    svc.adjudicate(gov.db, op, confirmed, Decision.CONFIRM)
    token = login(client, "op1")
    headers = {"x-csrf-token": token}
    url = f"/api/v1/alerts/{rejected}/outcome"
    r = client.post(url, json={"engaged": True, "action": "none", "stopped": True,
                               "stop_minutes": 0}, headers=headers)
    assert r.status_code == 422
    r = client.post(url, json={"engaged": True, "action": "none"}, headers=headers)
    assert r.status_code == 400 and "stopped" in r.text
    r = client.post(f"/api/v1/alerts/{confirmed}/outcome", json={
        "engaged": True, "action": "arrest", "stopped": False}, headers=headers)
    assert r.status_code == 400 and "only after a false alert" in r.text

    page = client.get(f"/console/alerts/{rejected}").text
    assert "Outcome of the false alert" in page and "Perceived ethnic group" in page
    assert "public sector equality duty" in page and "not what they declared" in page
    for group in ("Asian or Asian British", "Black, Black British, Caribbean or African",
                  "Mixed or multiple ethnic groups", "White", "Other ethnic group"):
        assert group in page
    form = {"csrf_token": token, "engaged": "yes", "action": "none", "stopped": "yes",
            "stop_minutes": "500", "perceived_ethnicity": "mixed", "perceived_sex": "male"}
    r = client.post(f"/console/alerts/{rejected}/outcome", data=form)
    assert r.status_code == 400 and "from 1 to 480" in r.text
    r = client.post(f"/console/alerts/{rejected}/outcome", data={**form, "stop_minutes": "7"},
                    follow_redirects=False)
    assert r.status_code == 303
    page = client.get(f"/console/alerts/{rejected}").text
    assert "stopped for 7 minutes" in page and "Mixed or multiple ethnic groups" in page
    assert "Outcome of the false alert" not in page  # once


# -- the yearly aggregates and the public pages -------------------------------------------------

def _false_alerts(gov: Gov, demo: Demo, rows: list[tuple[str | None, str | None, int | None]]
                  ) -> None:
    """Rejected alerts of the ended deployment with outcomes (ethnicity, sex, stop minutes)."""
    with gov.db.session() as s:
        dep = s.get(Deployment, demo.ended)
        assert dep is not None
        start = dep.started_at or datetime.now(UTC)
        template = s.query(Alert).filter(Alert.deployment_id == dep.id).first()
        assert template is not None
        for i, (ethnicity, sex, minutes) in enumerate(rows):
            a = Alert(deployment_id=dep.id, camera="cam-north", track_id=100 + i,
                      pipeline_id=f"q{i}", subject_id=template.subject_id,
                      watchlist_id=template.watchlist_id, score=0.6, threshold=0.48,
                      model_id=dep.model_id, seen_at=start + timedelta(minutes=i),
                      status=AlertStatus.REJECTED, decided_at=start + timedelta(hours=1))
            s.add(a)
            s.flush()
            s.add(Outcome(alert_id=a.id, engaged=minutes is not None, action=Action.NONE,
                          recorded_by="op1", stopped=minutes is not None, stop_minutes=minutes,
                          perceived_ethnicity=ethnicity, perceived_sex=sex))


def _by(rows: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {r["code"]: r for r in rows}


def test_the_summary_publishes_suppressed_counts_beside_the_measured_rates(
        gov: Gov, client: TestClient) -> None:
    demo = populate(gov.db)  # its ended deployment has 2 false alerts with no outcome
    _false_alerts(gov, demo, [("white", "male", 37)] * 6 + [("white", "female", None)]
                  + [("black", "male", 3), ("black", "female", 4), ("mixed", "male", 10)])
    floors.record_floor(gov.db, gov.actors["admin"], "sface-2021dec", 0.5, {
        "dataset": {"identities": 900},
        "fairness": {"attributes": {"race": {"groups": {
            "White": {"fmr": "0.0001"}, "Black": {"fmr": "0.0008"},
            "Indian": {"fmr": None}}}}}})

    s = public_data.year_summary(gov.db, demo.year)
    q = s.equality
    assert q is not None and q.false_alerts == 12 and q.stopped == 9
    assert q.with_outcome == 10
    eth = _by([r.__dict__ for r in q.ethnicity])
    assert eth["white"]["false_alerts"] == 7 and eth["white"]["stopped"] == 6
    assert eth["black"]["false_alerts"] == FEWER and eth["not_recorded"]["false_alerts"] == FEWER
    assert eth["black"]["stopped"] == FEWER and eth["mixed"]["stopped"] == FEWER
    assert eth["asian"]["false_alerts"] == 0
    sex = _by([r.__dict__ for r in q.sex])
    assert sex["male"]["false_alerts"] == 8 and sex["female"]["false_alerts"] == FEWER
    assert sex["not_recorded"]["false_alerts"] == FEWER
    assert dict(q.stop_lengths) == {"up to 5 minutes": FEWER, "6 to 15 minutes": FEWER,
                                    "16 to 30 minutes": 0, "over 30 minutes": 6}
    (model,) = q.models
    words = " ".join(model.sentences())
    assert "highest for Black" in words and "lowest for White" in words
    assert "8.0 times as high" in words and "900 people" in words

    page = client.get(f"/public/summary?year={demo.year}").text
    assert "False alerts by group (equality monitoring)" in page
    assert "Black, Black British, Caribbean or African" in page and FEWER in page
    assert "not about the same groups" in page and "officer&#39;s perception" in page
    assert "highest for Black" in page
    # never a record about one person: no subject, minute, time or alert of anyone
    for leak in (SUBJECT_REF, "37 minutes", "cam-north", "op1", "q0"):
        assert leak not in page
    data = client.get(f"/public/summary.json?year={demo.year}").json()
    text = json.dumps(data)
    assert data["equality"]["false_alerts"] == 12
    assert "stop_minutes" not in text and "37" not in text and SUBJECT_REF not in text
    rows = list(csv.DictReader(io.StringIO(
        client.get(f"/public/equality.csv?year={demo.year}").text)))
    white = next(r for r in rows if r["group"] == "White")
    assert white["false_alerts"] == "7" and white["stopped"] == "6"
    assert all(set(r) == {"breakdown", "group", "false_alerts", "stopped"} for r in rows)


def test_a_few_false_alerts_are_not_broken_down(gov: Gov, client: TestClient) -> None:
    demo = populate(gov.db)
    _false_alerts(gov, demo, [("asian", "female", 20)])
    page = client.get(f"/public/summary?year={demo.year}").text
    assert "Asian or Asian British" in page and NOT_BROKEN_DOWN in page
    q = public_data.year_summary(gov.db, demo.year).equality
    assert q is not None
    assert {r.false_alerts for r in q.ethnicity} == {NOT_BROKEN_DOWN}
    assert "no false-match rates per group are recorded" in " ".join(q.models[0].sentences())
