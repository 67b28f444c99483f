"""Transparency figures: computed from the data, per deployment and per camera, consistent with
the audit log (and a disagreement is reported); on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from datetime import timedelta

from sqlalchemy import text
from typer.testing import CliRunner

from openlfr.audit import log as audit_log
from openlfr.cli import app
from openlfr.governance import alerts as gov_alerts
from openlfr.governance.retention import run_retention
from openlfr.store.enums import Action, Decision, DeploymentStatus
from openlfr.store.models import CameraStats
from openlfr.transparency import art12_records, check_against_audit, deployment_stats, totals
from tests.govfix import Gov
from tests.test_gov_retention import add_alert, make_deployment, make_watchlist, now_utc


def _scenario(gov: Gov) -> dict[str, int]:
    now = now_utc()
    wl = make_watchlist(gov, subjects=3)
    with gov.db.session() as s:  # one subject expired between approval and authorisation
        audit_log.record(s, "system", "subject.expire", "watchlist", wl, {"subjects": 1,
                                                                           "images": 1})
    dep = make_deployment(gov, [wl], DeploymentStatus.RUNNING, now - timedelta(hours=2),
                          now + timedelta(hours=2), started_at=now - timedelta(hours=1))
    two = make_deployment(gov, [wl], DeploymentStatus.RUNNING, now - timedelta(hours=2),
                          now + timedelta(hours=1), started_at=now - timedelta(hours=1),
                          cameras=("gate",), two_person_rule=True, name="two-person")
    with gov.db.session() as s:
        s.add_all([CameraStats(deployment_id=dep, camera="north", frames=900, faces_seen=120,
                               tracks=40, dropped=3, seconds=36.0),
                   CameraStats(deployment_id=dep, camera="south", frames=800, faces_seen=80,
                               tracks=30, dropped=0, seconds=32.0),
                   CameraStats(deployment_id=two, camera="gate", frames=100, faces_seen=7,
                               tracks=2, dropped=0, seconds=4.0)])
    op1, op2, sv1 = gov.actors["op1"], gov.actors["op2"], gov.actors["sv1"]
    ids = {"dep": dep, "two": two, "wl": wl,
           "confirmed": add_alert(gov, dep, wl, "north", 1),
           "rejected": add_alert(gov, dep, wl, "north", 2),
           "no_action": add_alert(gov, dep, wl, "south", 3),
           "pending": add_alert(gov, dep, wl, "south", 4),
           "two_confirmed": add_alert(gov, two, wl, "gate", 5)}
    gov_alerts.adjudicate(gov.db, op1, ids["confirmed"], Decision.CONFIRM, "looks like him")
    gov_alerts.record_outcome(gov.db, op2, ids["confirmed"], True, Action.ARREST, "warrant")
    gov_alerts.adjudicate(gov.db, op1, ids["rejected"], Decision.REJECT, "different person")
    gov_alerts.adjudicate(gov.db, sv1, ids["no_action"], Decision.NO_ACTION, "left the area")
    gov_alerts.adjudicate(gov.db, op1, ids["two_confirmed"], Decision.CONFIRM)
    gov_alerts.adjudicate(gov.db, sv1, ids["two_confirmed"], Decision.CONFIRM)
    return ids


def test_figures_come_from_the_data(gov: Gov) -> None:
    ids = _scenario(gov)
    with gov.db.reading() as s:
        figures = deployment_stats(s)
        assert check_against_audit(s) == []
    assert [f.deployment_id for f in figures] == [ids["dep"], ids["two"]]
    main, two = figures
    assert (main.alerts, main.confirmed, main.false_alerts, main.no_action, main.pending) == (
        4, 1, 1, 1, 1)
    assert main.outcomes == {"none": 0, "advice": 0, "arrest": 1, "other": 0}
    assert main.engaged == 1
    assert (main.faces_seen, main.frames, main.tracks, main.dropped_frames) == (200, 1700, 70, 3)
    assert main.planned_hours == 4.0 and main.actual_hours is not None
    # time spent analysing (the longest camera, 36 s), not the hour since the start
    assert main.actual_hours == 0.01
    assert main.threshold == 0.5 and main.status == "running"
    # 3 subjects approved, 1 expired before the authorisation
    assert (main.watchlist_size, main.watchlist_size_basis) == (2, "at authorisation (audit)")
    cams = {c.camera: c for c in main.cameras}
    assert set(cams) == {"north", "south"}
    assert (cams["north"].alerts, cams["north"].confirmed, cams["north"].false_alerts,
            cams["north"].faces_seen) == (2, 1, 1, 120)
    assert (cams["south"].alerts, cams["south"].no_action, cams["south"].pending,
            cams["south"].faces_seen) == (2, 1, 1, 80)
    assert (two.alerts, two.confirmed, two.two_person_rule) == (1, 1, True)
    total = totals(figures)
    assert (total.deployments, total.alerts, total.confirmed, total.faces_seen,
            total.cameras) == (2, 5, 2, 207, 3)
    json.dumps([f.to_dict() for f in figures] + [total.to_dict()])  # JSON-ready

    # Retention ends the deployments and destroys the watchlist: the figures stay, and the
    # watchlist size is still the one authorised.
    later = now_utc() + timedelta(days=gov.settings.retention_days + 1)
    report = run_retention(gov.system, now=later)
    assert report.alerts_purged == 5 and report.watchlists_destroyed == [ids["wl"]]
    with gov.db.reading() as s:
        after = deployment_stats(s, ids["dep"])
        assert check_against_audit(s) == []
    assert len(after) == 1
    a = after[0]
    assert (a.alerts, a.confirmed, a.false_alerts, a.no_action, a.pending, a.purged) == (
        4, 1, 1, 1, 1, 4)
    assert a.status == "ended" and a.watchlist_size == 2

    # The Art. 12 record: start, end, reference watchlist, matched inputs, who verified.
    with gov.db.reading() as s:
        (record,) = art12_records(s, ids["two"])
    assert record["start"] and record["end"]
    assert [w["id"] for w in record["reference_watchlists"]] == [ids["wl"]]
    (match,) = record["matched_inputs"]
    assert match["alert"] == ids["two_confirmed"] and match["camera"] == "gate"
    assert [v["user"] for v in match["verified_by"]] == ["op1", "sv1"]
    assert match["audit_seq"] in record["audit_seqs"]
    assert "crop" not in json.dumps(record)


def test_a_disagreement_with_the_audit_log_is_reported(gov: Gov) -> None:
    ids = _scenario(gov)
    with gov.db.engine.begin() as conn:  # the alerts table is not append-only: edit it
        conn.execute(text(f"UPDATE alerts SET status = 'confirmed' WHERE id = {ids['rejected']}"))
        conn.execute(text(f"DELETE FROM alerts WHERE id = {ids['pending']}"))
    with gov.db.reading() as s:
        problems = check_against_audit(s)
    joined = "\n".join(problems)
    assert f"alert {ids['rejected']} is confirmed but the audit log makes it rejected" in joined
    assert f"alert {ids['pending']} is in the audit log but not stored" in joined
    assert f"deployment {ids['dep']}: 3 alert(s) stored but 4 alert.create" in joined


def test_stats_command_is_public_and_checks_the_audit_log(gov: Gov) -> None:
    ids = _scenario(gov)
    env = gov.env()
    env.pop("OPENLFR_PASSWORD")  # no sign-in needed
    runner = CliRunner()
    result = runner.invoke(app, ["stats", "--json"], env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["audit_check"]["consistent"] is True
    assert data["audit_check"]["chain_ok"] is True
    assert data["totals"]["alerts"] == 5
    one = runner.invoke(app, ["stats", "--deployment", str(ids["two"])], env=env)
    assert one.exit_code == 0, one.output
    assert "consistent with the audit log" in one.stdout
    assert re.search(r"\d+ people passing, \d+ faces seen", one.stdout)
    missing = runner.invoke(app, ["stats", "--deployment", "999"], env=env)
    assert missing.exit_code == 2 and "no deployment 999" in missing.output

    with gov.db.engine.begin() as conn:
        conn.execute(text(f"DELETE FROM alerts WHERE id = {ids['pending']}"))
    broken = runner.invoke(app, ["stats"], env=env)
    assert broken.exit_code == 1
    assert "inconsistent with the audit log" in broken.output
