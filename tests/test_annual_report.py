"""The annual report (``openlfr report annual``, the console's downloads, the API): made from a
year of real data, made through the services (a deployment run on clips by the real live run,
alerts stored by the real recorder, decisions, outcomes with equality monitoring, residents'
questions, a threshold changed and overridden below the floor, a floor recorded, the
jurisdiction profile changed), on SQLite and PostgreSQL; the JSON, CSV and HTML files hold the
same figures; small counts about people are suppressed; bad input is one clear line; making it
is audited."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import cv2
import pytest

from openlfr.audit import log as audit_log
from openlfr.errors import InvalidInput
from openlfr.governance import alerts as alert_svc
from openlfr.governance import deployments as deps
from openlfr.governance import questions
from openlfr.governance.floors import record_floor
from openlfr.governance.live import DeploymentRun, RunOptions
from openlfr.governance.profiles import set_profile
from openlfr.governance.views import label, words
from openlfr.store.enums import Action, Decision, PerceivedEthnicity, PerceivedSex
from openlfr.store.models import Subject, SubjectImage
from openlfr.transparency import annual
from openlfr.transparency.equality import FEWER, suppress
from openlfr.transparency.public import year_summary
from openlfr.video.types import Alert
from tests.govfix import Gov, audit_records, authorise, run_cli
from tests.test_gov_deployments import SFACE_FLOOR, approved_watchlist, model_id, plan
from tests.test_web_home import codes_in

YEAR = datetime.now(UTC).year
OVERRIDE = ("The camera looks down a long corridor: faces are small and scores lower; the "
            "watchlist is short and every alert is reviewed by two officers.")


@dataclass
class Made:
    ran: int  # the deployment run on the clips, ended
    waiting: int  # authorised below the floor with an override, not run
    run_alerts: int  # alerts of the live run
    outcomes: dict[str, int]
    engaged: int


def _extra_alert(gov: Gov, dep_id: int, n: int, crop: Any) -> int:
    """One more possible match of the deployment's subject, stored by the real recorder."""
    with gov.db.reading() as s:
        subject = s.query(Subject).first()
        image = s.query(SubjectImage).filter_by(subject_id=subject.id).first()
        ids = (subject.id, image.id)
    now = datetime.now(UTC)
    recorder = alert_svc.AlertRecorder(gov.system, dep_id)
    alert = Alert(alert_id=f"extra:{n}", camera="gate", track_id=100 + n,
                  subject_id=str(ids[0]), display_name="Case 1", score=0.6,
                  threshold=SFACE_FLOOR + 0.05, reference_id=str(ids[1]), model_id=model_id(),
                  frame=n, t=float(n), wall_time=now.timestamp(), frame_wall=now.timestamp(),
                  box=(1, 2, 60, 60), probe_crop=crop, revision=0)
    recorder.publish(alert)
    row = recorder.stored_id(alert.alert_id)
    assert row is not None
    return row


def populate(gov: Gov, face_images: dict[str, Path], clips: Any) -> Made:
    a = gov.actors
    db, keyring = gov.db, gov.system.keyring
    record_floor(db, a["ao1"], model_id(), SFACE_FLOOR,
                 {"note": "calibrated on the force's own test photos"})
    wid = approved_watchlist(gov, face_images["obama"])
    specs = (deps.CameraSpec("gate", str(clips.obama)),
             deps.CameraSpec("street", str(clips.stranger)))
    ran = deps.create(db, a["op1"], plan((wid,), cameras=specs), keyring=keyring)
    authorise(db, keyring, a["ao1"], ran)
    deps.start(db, a["op1"], ran)
    shown: list[int] = []
    DeploymentRun(gov.system, ran, a["op1"], options=RunOptions(workers=1),
                  on_alert=lambda row, _alert: shown.append(row)).run()
    run_alerts = sorted(set(shown))
    assert run_alerts, "the watchlisted person walking in gave no alert"
    image = cv2.imread(str(face_images["obama2"]))
    crop = cv2.resize(image[:160, :160].copy(), (112, 112))
    extra = [_extra_alert(gov, ran, n, crop) for n in range(8)]
    op1, op2 = a["op1"], a["op2"]
    Stop = alert_svc.FalseAlertStop
    for row in run_alerts:  # confirmed (two people), the person arrested
        alert_svc.adjudicate(db, op1, row, Decision.CONFIRM)
        alert_svc.adjudicate(db, op2, row, Decision.CONFIRM)
        alert_svc.record_outcome(db, op1, row, True, Action.ARREST)
    # confirmed, but the person spoken to was not the subject: a false alert, stopped
    alert_svc.adjudicate(db, op1, extra[0], Decision.CONFIRM)
    alert_svc.adjudicate(db, op2, extra[0], Decision.CONFIRM)
    alert_svc.record_outcome(db, op1, extra[0], True, Action.NONE, not_subject=True,
                             stop=Stop(True, 10, PerceivedEthnicity.WHITE, PerceivedSex.MALE))
    for n, row in enumerate(extra[1:6]):  # five rejected: three stopped, two not engaged
        alert_svc.adjudicate(db, op1, row, Decision.REJECT, "not the person on the list")
        if n < 3:
            alert_svc.record_outcome(db, op1, row, True, Action.NONE, stop=Stop(
                True, 12, PerceivedEthnicity.BLACK, PerceivedSex.FEMALE))
        else:
            alert_svc.record_outcome(db, op1, row, False, Action.NONE, stop=Stop(False))
    alert_svc.adjudicate(db, op1, extra[6], Decision.NO_ACTION, "left before anyone arrived")
    # extra[7] stays pending
    deps.stop(db, op1, ran, "The operation is over")

    # residents: two questions (one answered and published, one open), an objection closed
    q1 = questions.receive_question(db, ran, "question", "How long are the images kept?",
                                    None)
    questions.receive_question(db, ran, "question", "Who decided to put the cameras here?",
                               "someone@example.org")
    o1 = questions.receive_question(db, ran, "objection", "I object to being scanned at all.",
                                    None)
    questions.answer_question(db, a["ao1"], q1.id, "Thirty-one days, then deleted.")
    questions.publish_answer(db, a["ao1"], q1.id)
    questions.close_question(db, a["sv1"], o1.id)

    # a second deployment: its threshold lowered below the floor, overridden, authorised
    waiting = deps.create(db, op1, plan((wid,), start=datetime.now(UTC) + timedelta(hours=1),
                                         end=datetime.now(UTC) + timedelta(hours=3)),
                          keyring=keyring)
    deps.edit(db, op2, waiting, threshold=SFACE_FLOOR - 0.02)
    deps.override_threshold(db, a["ao1"], waiting, OVERRIDE)
    deps.override_threshold(db, a["ao2"], waiting, "=HYPERLINK(\"x\") " + OVERRIDE)
    authorise(db, keyring, a["ao1"], waiting)
    assert set_profile(db, a["admin"], "eu-ai-act")
    n_run = len(run_alerts)
    return Made(ran, waiting, n_run,
                outcomes={"none": 6, "advice": 0, "arrest": n_run, "other": 0},
                engaged=n_run + 1 + 3)


# -- reading the three files ------------------------------------------------------------------

def csv_values(text: str) -> dict[tuple[str, str, str, str], str]:
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == annual.CSV_COLUMNS
    return {(r[0], r[1], r[2], r[3]): r[4] for r in rows[1:]}


class _Cells(HTMLParser):
    """The HTML report's figures and table cells, by section, table, row and field."""

    def __init__(self) -> None:
        super().__init__()
        self.where: list[tuple[str, str]] = []  # (tag, section/table) stack for data-*
        self.section = self.table = self.row = ""
        self.field: str | None = None
        self.cells: dict[tuple[str, str, str, str], str] = {}
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = {k: v or "" for k, v in attrs}
        if "data-table" in d:
            self.section, self.table = d["data-section"], d["data-table"]
        if "data-row" in d:
            self.row = d["data-row"]
        if "data-field" in d:
            self.field = d["data-field"]
            self.text = ""
            if self.table == "figures":
                self.row = ""

    def handle_data(self, data: str) -> None:
        if self.field is not None:
            self.text += data

    def handle_endtag(self, tag: str) -> None:
        if self.field is not None and tag in ("td", "dd", "tr"):
            self.cells[(self.section, self.table, self.row, self.field)] = self.text.strip()
            self.field = None


def html_cells(text: str) -> dict[tuple[str, str, str, str], str]:
    parser = _Cells()
    parser.feed(text)
    return parser.cells


def shown(value: object) -> str:
    """How the printed page shows a value (numbers with thousands separators)."""
    return str(annual._shown(value))  # type: ignore[arg-type]


def check_agree(report: dict[str, Any], csv_text: str, html_text: str,
                skip: frozenset[str] = frozenset()) -> int:
    """Every figure and table cell of the JSON is in the CSV (exactly) and on the printed
    page (as shown there), but the figures named in ``skip``; the number of values
    compared."""
    in_csv, in_html = csv_values(csv_text), html_cells(html_text)
    n = 0
    for key in ("year", "generated_by", "audit_seq", "profile"):
        assert in_csv[("report", "", "", key)] == str(report[key])
    for sec in report["sections"]:
        for k, v in sec["figures"].items():
            if k in skip:
                continue
            assert in_csv[(sec["key"], "figures", "", k)] == annual._cell(v), (sec["key"], k)
            assert in_html[(sec["key"], "figures", "", k)] == shown(v), (sec["key"], k)
            n += 1
        for t, rows in sec["tables"].items():
            for i, row in enumerate(rows, 1):
                for k, v in row.items():
                    assert in_csv[(sec["key"], t, str(i), k)] == annual.safe_cell(
                        annual._cell(v)), (sec["key"], t, i, k)
                    # field names and codes are in words on the page
                    on_page = (label(v) if k == "field" else words(v)
                               if k in annual.CODE_COLUMNS else shown(v))
                    assert in_html[(sec["key"], t, str(i), k)] == on_page, (t, i, k)
                    n += 1
    return n


def figures(report: dict[str, Any], section: str) -> dict[str, Any]:
    return next(s for s in report["sections"] if s["key"] == section)["figures"]


def table(report: dict[str, Any], section: str, key: str) -> list[dict[str, Any]]:
    return next(s for s in report["sections"] if s["key"] == section)["tables"][key]


# -- the tests --------------------------------------------------------------------------------

def test_the_annual_report_of_a_year_of_real_data(gov: Gov, face_images, clips,
                                                  tmp_path: Path) -> None:
    made = populate(gov, face_images, clips)
    out = tmp_path / "reports"
    done = run_cli(gov, "report", "annual", "--year", YEAR, "--out", out, "--json",
                   user="au1")
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    assert sorted(Path(p).name for p in said["files"]) == [
        f"annual-report-{YEAR}.{x}" for x in ("csv", "html", "json")]
    report = json.loads((out / f"annual-report-{YEAR}.json").read_text(encoding="utf-8"))
    csv_text = (out / f"annual-report-{YEAR}.csv").read_text(encoding="utf-8")
    html_text = (out / f"annual-report-{YEAR}.html").read_text(encoding="utf-8")
    assert check_agree(report, csv_text, html_text) > 300
    assert report["format"] == annual.REPORT_FORMAT and report["year"] == YEAR
    assert report["generated_by"] == "au1" and report["profile"] == "eu-ai-act"
    assert [s["key"] for s in report["sections"]] == [k for k, _ in annual.SECTIONS]

    # the totals are the yearly summary's, and the tables' own figures
    summary = year_summary(gov.db, YEAR)
    t = summary.totals
    assert summary.deployment_ids == [made.ran]
    people = figures(report, "people")
    assert people["people_passing"] == t.people_passing > 0
    assert people["faces_seen"] == t.faces_seen > people["people_passing"]
    cams = table(report, "people", "cameras")
    assert {c["camera"] for c in cams if c["deployment"] == made.ran} == {"gate", "street"}
    assert sum(c["people_passing"] for c in cams if c["in_totals"]) == t.people_passing
    assert sum(c["faces_seen"] for c in cams if c["in_totals"]) == t.faces_seen
    al = figures(report, "alerts")
    assert al["alerts"] == made.run_alerts + 8 == t.alerts
    assert (al["confirmed"], al["false_alerts"], al["no_action"], al["pending"]) == (
        made.run_alerts + 1, 5, 1, 1)
    assert al["false_alert_rate"] == pytest.approx(5 / t.people_passing)
    months = table(report, "alerts", "months")
    assert sum(m["alerts"] for m in months) == al["alerts"]
    assert months[datetime.now(UTC).month - 1]["alerts"] == al["alerts"]

    # outcomes: about people, suppressed as one column (and the people engaged)
    oc = figures(report, "outcomes")
    counts = [made.outcomes[x.value] for x in Action]
    assert [r["count"] for r in table(report, "outcomes", "actions")] == suppress(counts)
    assert FEWER in [r["count"] for r in table(report, "outcomes", "actions")]
    assert oc["engaged"] == annual.count_shown(made.engaged)
    assert f"outcomes,actions,3,count,{FEWER}" in csv_text.replace("\r\n", "\n")

    # deployments and their authorisation basis
    dep_rows = {d["id"]: d for d in table(report, "deployments", "deployments")}
    ran, waiting = dep_rows[made.ran], dep_rows[made.waiting]
    assert ran["in_totals"] is True and waiting["in_totals"] is False
    assert waiting["not_counted_why"] == "authorised, has not run yet"
    assert ran["authorised_by"] == waiting["authorised_by"] == "ao1"
    assert ran["profile_at_authorisation"] == "uk-app"  # changed to eu-ai-act only later
    assert figures(report, "deployments")["profile_now"] == "eu-ai-act"
    assert figures(report, "deployments")["profile_changes"] == 1
    assert ran["status"] == "ended" and ran["floor_source"] == "calibrated"
    assert waiting["threshold_override"] is True
    assert (waiting["override_recorded_by"], waiting["override_confirmed_by"]) == ("ao1",
                                                                                   "ao2")
    auth = [r for r in table(report, "deployments", "authorisations")
            if r["deployment"] == made.ran]
    fields = {r["field"]: r["value"] for r in auth}
    assert fields["legal_basis"] == "Common law policing powers"
    assert fields["cameras.1.name"] == "gate" and fields["override"] is False
    seq = ran["authorisation_audit_seq"]
    assert next(r.seq for r in audit_records(gov, "deployment.authorise")) == seq
    assert ">Floor source<" in html_text and ">floor_source<" not in html_text
    assert codes_in(html_text) == []  # no stored code on the printed page, only words

    # equality: the yearly summary's, suppressed
    eq = figures(report, "equality")
    assert eq["false_alerts"] == summary.equality.false_alerts == 6  # 5 rejected, 1 not subject
    black = next(r for r in table(report, "equality", "ethnicity") if r["group"] == "black")
    assert black["false_alerts"] == FEWER

    # residents' questions
    by_kind = {r["kind"]: r for r in table(report, "questions", "by_kind")}
    q, o = by_kind["question"], by_kind["objection"]
    assert (q["received"], q["answered"], q["open"], q["published"]) == (2, 1, 1, 1)
    assert (o["received"], o["answered"], o["closed_unanswered"]) == (1, 0, 1)
    assert figures(report, "questions")["received"] == 3

    # thresholds: the floor recorded, the change, the override recorded and confirmed
    th = figures(report, "thresholds")
    # two floors: the one recorded first, and the calibration authorisation needs
    assert (th["floors_recorded"], th["threshold_changes"], th["overrides_recorded"],
            th["overrides_confirmed"]) == (2, 1, 1, 1)
    changes = table(report, "thresholds", "changes")
    edit = next(c for c in changes if c["action"] == "Deployment edited")
    assert edit["deployment"] == made.waiting and edit["by"] == "op2"
    assert float(edit["previous"]) == pytest.approx(SFACE_FLOOR + 0.05)
    assert float(edit["threshold"]) == pytest.approx(SFACE_FLOOR - 0.02)
    confirm = next(c for c in changes if c["action"] == "Threshold override confirmed")
    assert confirm["by"] == "ao2" and confirm["reason"].startswith("=HYPERLINK")
    # a formula in a cell is neutralised in the CSV
    assert "'=HYPERLINK" in csv_text and '\r\n=HYPERLINK' not in csv_text

    # field tests and urgent uses: sections whether or not those services exist
    for key in ("field_tests", "urgent_uses"):
        assert any(s["key"] == key for s in report["sections"])

    # checked against the audit log; the making of it audited
    integ = figures(report, "integrity")
    assert integ["chain_ok"] is True and integ["figures_agree"] is True
    made_entries = audit_records(gov, annual.REPORT_ACTION)
    assert len(made_entries) == 1 and made_entries[0].actor == "au1"
    details = json.loads(made_entries[0].details)
    assert details["year"] == YEAR and details["formats"] == ["json", "csv", "html"]
    assert made_entries[0].seq == report["audit_seq"]
    with gov.db.reading() as s:
        assert audit_log.verify(s).ok
    # the printed page: its own print styles, every section
    assert "@media print" in html_text and "@page" in html_text
    assert html_text.count('class="report-section"') == len(annual.SECTIONS)


def test_the_api_and_the_console_give_the_same_report(gov: Gov, client) -> None:
    from tests.govfix import bearer_headers

    heads = bearer_headers(gov, "report")
    from openlfr.store.enums import Role

    got = client.get(f"/api/v1/reports/annual/{YEAR}", headers=heads[Role.AUDITOR])
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["year"] == YEAR and body["generated_by"] == "au1"
    as_csv = client.get(f"/api/v1/reports/annual/{YEAR}?format=csv",
                        headers=heads[Role.AUTHORISING_OFFICER])
    as_html = client.get(f"/api/v1/reports/annual/{YEAR}?format=html",
                         headers=heads[Role.AUTHORISING_OFFICER])
    assert as_csv.status_code == as_html.status_code == 200
    assert as_csv.headers["content-disposition"].endswith(f'annual-report-{YEAR}.csv"')
    assert as_html.headers["content-type"].startswith("text/html")
    for bad, message in (("1999", "from 2000"), (str(YEAR + 1), "from 2000"),
                         ("20x6", "four digits")):
        r = client.get(f"/api/v1/reports/annual/{bad}", headers=heads[Role.AUDITOR])
        assert r.status_code in (400, 422) and message in r.json()["detail"], r.text
    r = client.get(f"/api/v1/reports/annual/{YEAR}?format=xml", headers=heads[Role.AUDITOR])
    assert r.status_code in (400, 422) and "choose from json, csv, html" in r.json()["detail"]
    refused = client.get(f"/api/v1/reports/annual/{YEAR}", headers=heads[Role.OPERATOR])
    assert refused.status_code == 403
    made = audit_records(gov, annual.REPORT_ACTION)
    assert [json.loads(m.details)["out"] for m in made] == ["api", "api", "api"]
    assert [m.actor for m in made] == ["au1", "ao1", "ao1"]


def test_bad_input_on_the_command_line(gov: Gov, tmp_path: Path) -> None:
    for args, message in ((["--year", "1999"], "choose a year from 2000"),
                          (["--year", str(YEAR + 1)], f"choose a year from 2000 to {YEAR}"),
                          (["--year", "last"], "a year is four digits"),
                          (["--year", str(YEAR), "--format", "pdf"], "format pdf"),
                          (["--year", str(YEAR), "--out", str(tmp_path / "f.txt")],
                           "not a folder")):
        (tmp_path / "f.txt").write_text("x")
        r = run_cli(gov, "report", "annual", *args, user="au1")
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    refused = run_cli(gov, "report", "annual", "--year", YEAR, "--out", tmp_path, user="op1")
    assert refused.returncode == 3 and "audit" in refused.stderr
    assert audit_records(gov, annual.REPORT_ACTION) == []  # nothing made, nothing recorded
    # an empty year is a report too (everything zero, nothing to suppress)
    ok = run_cli(gov, "report", "annual", "--year", "2001", "--out", tmp_path, "--format",
                 "json", user="ao1")
    assert ok.returncode == 0, ok.stderr
    report = json.loads((tmp_path / "annual-report-2001.json").read_text())
    assert figures(report, "alerts")["alerts"] == 0
    assert table(report, "deployments", "deployments") == []


def test_the_year_is_checked_before_anything() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    assert annual.check_year(" 2026 ", now) == 2026
    for bad in ("", "26x", "-2026", "1999", "2027", "99999999", "²⁰²⁶", "٢٠٢٦"):
        with pytest.raises(InvalidInput) as exc:
            annual.check_year(bad, now)
        assert exc.value.field == "year"


def test_the_field_tests_and_urgent_uses_of_the_year(gov: Gov, face_images) -> None:
    """A field test ended and an urgent use refused this year are in the report: the test's
    figures overall and per group (each group of one volunteer not shown), never a
    volunteer's label; the urgent use with its outcome and the deletion of its results."""
    from openlfr.governance import fieldtests as ft
    from openlfr.governance import urgent
    from tests.test_gov_fieldtests import go_live, planned, volunteer
    from tests.test_gov_urgent import REFUSAL, WHY, draft, eu

    empty = annual.build_report(gov.db, YEAR).as_json()
    for key, said in (("field_tests", "No field test ended"),
                      ("urgent_uses", "No urgent use was started")):
        sec = next(s for s in empty["sections"] if s["key"] == key)
        assert sec["figures"]["recorded"] == 0 and sec["tables"] == {}
        assert sec["notes"] == [f"{said} in {YEAR}."]

    dep_id, test_id = planned(gov, face_images)
    volunteer(gov, test_id, face_images["biden"], label="Volunteer Quill")
    go_live(gov, dep_id, test_id)
    ft.end_field_test(gov.system, gov.actors["op1"], test_id)
    eu(gov)
    used = draft(gov, face_images["obama"])
    urgent.start_urgent(gov.db, gov.system.keyring, gov.actors["op1"], used, WHY)
    urgent.refuse_urgent(gov.system, gov.actors["ao1"], used, REFUSAL)

    report = annual.build_report(gov.db, YEAR)
    data = report.as_json()
    assert figures(data, "field_tests")["recorded"] == 1
    rows = table(data, "field_tests", "results")
    assert rows[0]["who"] == "All volunteers" and rows[0]["field_test"] == test_id
    assert (rows[0]["volunteers"], rows[0]["passes"]) == (1, 1)
    assert rows[0]["tpir"].startswith("0 of 1")  # nobody walked past: the pass was missed
    assert len(rows) > 1 and all(r["tpir"] == "not shown" for r in rows[1:])
    assert {r["who"].split(": ")[0] for r in rows[1:]} <= {"Age band", "Sex", "Ethnic group"}
    u = figures(data, "urgent_uses")
    assert (u["recorded"], u["refused"], u["authorised"], u["expired"]) == (1, 1, 0, 0)
    (use,) = table(data, "urgent_uses", "uses")
    assert use["deployment"] == used and use["outcome"] == "refused"
    assert use["decided_by"] == "ao1" and use["results_deleted_at"] is not None
    html_text, csv_text = report.to_html(), report.to_csv()
    assert "Volunteer Quill" not in html_text + csv_text + json.dumps(data)
    check_agree(data, csv_text, html_text)


def test_the_console_page_and_its_downloads(gov: Gov, client) -> None:
    from tests.test_web_core import login

    login(client, "op1")
    assert client.get("/console/reports").status_code == 403  # operators may not
    assert client.get(f"/console/reports/annual/{YEAR}/json").status_code == 403
    client.cookies.clear()
    login(client, "ao1")
    page = client.get("/console/reports")
    assert page.status_code == 200
    for fmt in annual.FORMATS:
        assert f'href="/console/reports/annual/{YEAR}/{fmt}"' in page.text
    got = client.get(f"/console/reports/annual/{YEAR}/csv")
    assert got.status_code == 200
    assert got.headers["content-disposition"] == (
        f'attachment; filename="annual-report-{YEAR}.csv"')
    assert csv_values(got.text)[("report", "", "", "generated_by")] == "ao1"
    for bad, message in (("ninety", "four digits"), ("1999", "from 2000")):
        r = client.get(f"/console/reports/annual/{bad}/json")
        assert r.status_code in (400, 422) and message in r.text
    r = client.get(f"/console/reports/annual/{YEAR}/pdf")
    assert r.status_code in (400, 422) and "choose from json, csv, html" in r.text
    made = audit_records(gov, annual.REPORT_ACTION)
    assert [(m.actor, json.loads(m.details)["out"]) for m in made] == [("ao1", "web")]
