"""Reading the audit log by a selection (:class:`openlfr.governance.auditing.AuditFilter`): each
filter against an oracle computed over the whole log, keyset paging both ways across page
boundaries, exports of a selection (JSON lines and CSV) equal to what the pages show, CSV cells
safe from formula injection, the ``audit.export`` entry with its filters, the API's and the
console's same selection; on SQLite and PostgreSQL (``gov``)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from openlfr.audit import AuditEntry
from openlfr.audit import log as audit_log
from openlfr.governance import alerts as svc
from openlfr.governance import auditing
from openlfr.governance.auditing import AuditFilter
from openlfr.governance.authz import Forbidden, Perm, RuleError, require
from openlfr.store.enums import Decision
from openlfr.web.app import create_app
from tests.govfix import Gov, audit_records
from tests.test_gov_alerts import _setup, _stored
from tests.test_web_core import login
from tests.test_web_governance import post


@dataclass
class Log:
    deps: tuple[int, int]
    alerts: tuple[int, int]


def populate(gov: Gov, face_images: dict[str, Path]) -> Log:
    """Two deployments, an alert each (created, decided), a refusal about each alert and
    about each deployment; and an entry naming a deployment whose id starts with the first's
    digits (deployment 1 must not find deployment 12's entries)."""
    one, two = _setup(gov, face_images), _setup(gov, face_images)
    alerts = []
    for st in (one, two):
        alert_id = _stored(gov, st, alert_id=f"cam1:{st.deployment_id}:s")
        svc.adjudicate(gov.db, gov.actors["op1"], alert_id, Decision.REJECT, "not him")
        for perm, kind, target in ((Perm.ALERT_ADJUDICATE, "alert", alert_id),
                                   (Perm.DEPLOYMENT_AUTHORISE, "deployment",
                                    st.deployment_id)):
            with pytest.raises(Forbidden):
                require(gov.db, gov.actors["au1"], perm, kind, str(target))
        alerts.append(alert_id)
    with gov.db.session() as s:
        audit_log.record(s, audit_log.SYSTEM, "alert.purge", "deployment", "12",
                         {"deployment": 12, "purged": 0})
    return Log((one.deployment_id, two.deployment_id), (alerts[0], alerts[1]))


def everything(gov: Gov) -> list[AuditEntry]:
    with gov.db.reading() as s:
        return list(audit_log.entries(s))


def about(dep: int, alerts: tuple[int, ...]) -> Callable[[AuditEntry], bool]:
    def test(e: AuditEntry) -> bool:
        return ((e.object_type == "deployment" and e.object_id == str(dep))
                or (e.object_type == "alert" and int(e.object_id) in alerts)
                or e.details.get("deployment") == dep)
    return test


def walk_older(gov: Gov, chosen: AuditFilter, limit: int) -> list[list[int]]:
    pages, before = [], None
    while True:
        got = auditing.page(gov.db, gov.actors["au1"], before, limit, selection=chosen)
        pages.append([e.seq for e in got.entries])
        if got.next_before is None:
            return pages
        before = got.next_before


def test_each_filter_selects_what_it_says(gov: Gov, face_images: dict[str, Path]) -> None:
    log = populate(gov, face_images)
    every = everything(gov)
    dep1, dep2 = log.deps
    mid = every[len(every) // 2]
    late = every[-3]
    since, until = datetime.fromisoformat(mid.time), datetime.fromisoformat(late.time)
    cases: list[tuple[AuditFilter, Callable[[AuditEntry], bool]]] = [
        (AuditFilter(actor="op1"), lambda e: e.actor == "op1"),
        (AuditFilter(action="alert.adjudicate"), lambda e: e.action == "alert.adjudicate"),
        (AuditFilter(action="alert"), lambda e: e.action.startswith("alert.")),
        (AuditFilter(object_type="alert"), lambda e: e.object_type == "alert"),
        (AuditFilter(object_type="alert", object_id=str(log.alerts[1])),
         lambda e: e.object_type == "alert" and e.object_id == str(log.alerts[1])),
        (AuditFilter(object_id=str(dep2)), lambda e: e.object_id == str(dep2)),
        (AuditFilter(deployment=dep1), about(dep1, (log.alerts[0],))),
        (AuditFilter(deployment=dep2, action="access"),
         lambda e: about(dep2, (log.alerts[1],))(e) and e.action == "access.refused"),
        (AuditFilter(since=since), lambda e: e.time >= mid.time),
        (AuditFilter(since=since, until=until), lambda e: mid.time <= e.time < late.time),
        (AuditFilter(upto=mid.seq, actor="admin"), lambda e: e.seq <= mid.seq
         and e.actor == "admin"),
    ]
    for chosen, oracle in cases:
        want = [e.seq for e in reversed(every) if oracle(e)]
        assert want, chosen  # every case selects something, and not everything
        assert len(want) < len(every), chosen
        got = auditing.page(gov.db, gov.actors["au1"], limit=500, selection=chosen)
        assert [e.seq for e in got.entries] == want, chosen
        assert got.total == len(want)
    # deployment 1's selection: its alert's creation, decision and refusal, the refusal
    # about the deployment; never deployment 2's nor "deployment 12"'s
    mine = auditing.page(gov.db, gov.actors["au1"], selection=AuditFilter(deployment=dep1))
    assert sorted(e.action for e in mine.entries) == [
        "access.refused", "access.refused", "alert.adjudicate", "alert.create"]
    # a filter people typed: the one time format, blanks for "any", plain errors
    typed = AuditFilter.parse(actor=" op1 ", action="", deployment=str(dep1),
                              since="2026-05-01T08:00Z", until="2026-05-01T10:00+01:00")
    assert typed.actor == "op1" and typed.action is None and typed.deployment == dep1
    assert typed.as_dict()["until"] == "2026-05-01T09:00:00.000Z"
    assert AuditFilter.parse(since="2026-05-01T08:00", form=True).since == datetime.fromisoformat(
        "2026-05-01T08:00Z")
    for bad, field in ((dict(since="2026-05-01T08:00"), "since"),
                       (dict(deployment="three"), "deployment"),
                       (dict(since="2026-05-02T00:00Z", until="2026-05-01T00:00Z"), "until")):
        with pytest.raises(RuleError) as err:
            AuditFilter.parse(**bad)  # type: ignore[arg-type]
        assert err.value.field == field
    with pytest.raises(Forbidden):
        auditing.page(gov.db, gov.actors["op1"], selection=AuditFilter(actor="op1"))


def test_paging_both_ways_across_page_boundaries(gov: Gov,
                                                 face_images: dict[str, Path]) -> None:
    populate(gov, face_images)
    au1 = gov.actors["au1"]
    with pytest.raises(Forbidden):  # a fifth: the oldest page is not full
        require(gov.db, gov.actors["op2"], Perm.USER_MANAGE, "user", "op1")
    chosen = AuditFilter(action="access")
    want = [e.seq for e in reversed(everything(gov)) if e.action == "access.refused"]
    assert len(want) >= 5
    pages = walk_older(gov, chosen, 2)
    assert [s for p in pages for s in p] == want
    assert all(len(p) == 2 for p in pages[:-1]) and 1 <= len(pages[-1]) <= 2
    # back again, newer page by newer page, from the oldest: the same pages
    got = auditing.page(gov.db, au1, pages[-2][-1], 2, selection=chosen)
    assert [e.seq for e in got.entries] == pages[-1] and got.next_before is None
    back = [[e.seq for e in got.entries]]
    while got.next_after is not None:
        got = auditing.page(gov.db, au1, limit=2, after=got.next_after, selection=chosen)
        back.append([e.seq for e in got.entries])
        assert got.total == len(want)
    # the newer pages are cut from the oldest end: they hold the same entries, in order
    assert [s for p in reversed(back) for s in p] == want
    assert back[-1][0] == want[0]
    # entries written meanwhile do not move a page already reached by ``before``
    again = auditing.page(gov.db, au1, pages[0][-1], 2, selection=chosen)
    with pytest.raises(Forbidden):
        require(gov.db, au1, Perm.ALERT_HOLD, "alert", "1")
    later = auditing.page(gov.db, au1, pages[0][-1], 2, selection=chosen)
    assert later.entries == again.entries and later.total == again.total + 1
    with pytest.raises(RuleError):
        auditing.page(gov.db, au1, 5, after=2)


def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_selection_exports_match_the_pages_and_are_audited(gov: Gov,
                                                           face_images: dict[str, Path]) -> None:
    log = populate(gov, face_images)
    au1 = gov.actors["au1"]
    chosen = AuditFilter(deployment=log.deps[0])
    shown = [e for p in [auditing.page(gov.db, au1, limit=500, selection=chosen)]
             for e in p.entries]
    head = everything(gov)[-1].seq
    lines = list(auditing.export(gov.db, au1, selection=chosen, out="stdout"))
    assert [json.loads(line) for line in lines] == [e.to_dict() for e in reversed(shown)]
    # each entry's own hash can be checked with the standard library (the chain, only in
    # the whole log: a selection has gaps)
    for line in lines:
        entry = json.loads(line)
        stored = entry.pop("hash")
        body = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(body.encode()).hexdigest() == stored
    record = audit_records(gov, "audit.export")[-1]
    assert record.actor == "au1" and record.object_id == "selection"
    assert json.loads(record.details) == {
        "what": "selection", "format": "jsonl", "out": "stdout",
        "filters": {"deployment": log.deps[0], "upto": head}}

    # the export names the deployment in its filters: it is about it, and selected from now on
    now = auditing.page(gov.db, au1, limit=500, selection=chosen)
    assert [e.seq for e in now.entries] == [head + 1] + [e.seq for e in shown]
    # "this selection" as the page showed it, up to its head
    text = "".join(auditing.export(gov.db, au1, selection=replace(chosen, upto=head),
                                   fmt="csv", out="web"))
    rows = rows_of(text)
    assert rows[0] == list(auditing.CSV_COLUMNS)
    assert [r[0] for r in rows[1:]] == [str(e.seq) for e in reversed(shown)]
    assert [json.loads(r[6]) for r in rows[1:]] == [e.details for e in reversed(shown)]
    assert [r[8] for r in rows[1:]] == [e.hash for e in reversed(shown)]
    assert json.loads(audit_records(gov, "audit.export")[-1].details)["format"] == "csv"

    # "this selection" as the page showed it: the exports written since are not in it
    exports = AuditFilter(action="audit.export", upto=head + 2)
    lines = list(auditing.export(gov.db, au1, selection=exports, out="web"))
    assert [json.loads(x)["seq"] for x in lines] == [head + 1, head + 2]
    assert auditing.export_filename(None, False, selection=chosen, fmt="csv") == (
        "audit-selection.csv")
    # the whole log stays a verifiable chain that covers its own export
    whole = [json.loads(x) for x in auditing.export(gov.db, au1, out="stdout")]
    assert [e["seq"] for e in whole] == list(range(1, len(whole) + 1))
    assert whole[-1]["details"] == {"what": "log", "deployment": None, "out": "stdout"}
    with pytest.raises(RuleError):
        auditing.export(gov.db, au1, selection=chosen, fmt="xlsx", out="web")
    with pytest.raises(RuleError):
        auditing.export(gov.db, au1, art12=True, selection=chosen, out="web")
    with pytest.raises(Forbidden):
        auditing.export(gov.db, gov.actors["op1"], selection=chosen, out="web")


def test_csv_cells_cannot_become_formulas(gov: Gov) -> None:
    hostile = ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]
    with gov.db.session() as s:
        for n, text in enumerate(hostile):
            audit_log.record(s, text, "test.hostile", "thing", text, {"n": n})
    text = "".join(auditing.export(gov.db, gov.actors["au1"], fmt="csv",
                                   selection=AuditFilter(action="test"), out="web"))
    rows = rows_of(text)[1:]
    assert [r[2] for r in rows] == ["'" + h for h in hostile]  # the actor column
    assert [r[5] for r in rows] == ["'" + h for h in hostile]  # the object id column
    for row in rows:
        assert not row[2].startswith(("=", "+", "-", "@", "\t", "\r"))
    assert auditing.safe_cell("plain") == "plain" and auditing.safe_cell("") == ""


def test_api_and_console_give_the_same_selection(gov: Gov,
                                                 face_images: dict[str, Path]) -> None:
    log = populate(gov, face_images)
    dep = log.deps[1]
    with TestClient(create_app(gov.system), base_url="http://testserver") as client:
        csrf = login(client, "au1")
        r = client.get("/api/v1/audit/entries",
                       params={"deployment": dep, "limit": 2, "action": "alert"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["total"] == 2 and body["next_before"] is None
        seqs = [e["seq"] for e in body["entries"]]
        older = client.get("/api/v1/audit/entries",
                           params={"deployment": dep, "limit": 1, "action": "alert"}).json()
        assert older["next_before"] == seqs[0] and older["next_after"] is None
        newer = client.get("/api/v1/audit/entries",
                           params={"deployment": dep, "limit": 1, "action": "alert",
                                   "after": seqs[1]}).json()
        assert [e["seq"] for e in newer["entries"]] == seqs[:1]
        bad = client.get("/api/v1/audit/entries", params={"since": "yesterday"})
        assert bad.status_code in (400, 422) and "since" in bad.text

        api = client.post("/api/v1/audit/export",
                          params={"deployment": dep, "action": "alert", "format": "csv",
                                  "upto": body["head"]},
                          headers={"X-CSRF-Token": csrf})
        assert api.status_code == 200, api.text
        assert api.headers["content-type"].startswith("text/csv")
        assert 'filename="audit-selection.csv"' in api.headers["content-disposition"]
        assert [r[0] for r in rows_of(api.text)[1:]] == [str(s) for s in reversed(seqs)]

        page = client.get("/console/audit", params={"deployment": str(dep), "action": "alert"})
        assert page.status_code == 200
        assert "2 entries selected" in page.text and "Alert decided" in page.text
        assert "Decision" in page.text and "Raw JSON" in page.text
        console = post(client, "/console/audit/export",
                       {"what": "selection", "format": "csv", "upto": str(body["head"]),
                        "f_deployment": str(dep), "f_action": "alert"},
                       page="/console/audit")
        assert console.status_code == 200  # type: ignore[attr-defined]
        assert console.text == api.text  # type: ignore[attr-defined]
        refused = client.get("/console/audit", params={"since": "soon"})
        assert refused.status_code == 400 and "form-error" in refused.text
        assert 'value="soon"' in refused.text
    rows = audit_records(gov, "audit.export")[-2:]
    details = [json.loads(r.details) for r in rows]
    assert details[0] == details[1] == {
        "what": "selection", "format": "csv", "out": "web",
        "filters": {"deployment": dep, "action": "alert", "upto": body["head"]}}


def test_a_selection_export_is_checked_against_the_log(gov: Gov, face_images: dict[str, Path],
                                                       tmp_path: Path) -> None:
    log = populate(gov, face_images)
    au1 = gov.actors["au1"]
    lines = list(auditing.export(gov.db, au1, selection=AuditFilter(deployment=log.deps[1]),
                                 out="stdout"))
    path = tmp_path / "selection.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    checked = auditing.verify_selection(gov.db, au1, path).result
    assert checked.ok and checked.entries == len(lines) == 4

    def forged(n: int, change: Callable[[dict], None], rehash: bool) -> Path:
        entries = [json.loads(x) for x in lines]
        change(entries[n])
        if rehash:
            entry = dict(entries[n])
            entry.pop("hash")
            body = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            entries[n]["hash"] = hashlib.sha256(body.encode()).hexdigest()
        out = tmp_path / f"forged-{n}-{rehash}.jsonl"
        out.write_text("".join(json.dumps(e, sort_keys=True, separators=(",", ":"),
                                          ensure_ascii=False) + "\n" for e in entries))
        return out

    seq = json.loads(lines[2])["seq"]
    for rehash, says in ((False, "edited"), (True, "differs from the log")):
        bad = auditing.verify_selection(
            gov.db, au1, forged(2, lambda e: e.update(actor="someone else"), rehash)).result
        assert not bad.ok and bad.first_bad_seq == seq and says in (bad.problem or "")
    reordered = tmp_path / "reordered.jsonl"
    reordered.write_text(lines[1] + lines[0], encoding="utf-8")
    bad = auditing.verify_selection(gov.db, au1, reordered).result
    assert not bad.ok and "order" in (bad.problem or "")
    with pytest.raises(Forbidden):
        auditing.verify_selection(gov.db, gov.actors["op1"], path)


BIG = "9" * 20


def test_hostile_filters_are_bad_input_never_a_server_error(gov: Gov) -> None:
    with TestClient(create_app(gov.system), base_url="http://testserver") as client:
        login(client, "au1")
        for query in (f"after={BIG}", f"deployment={BIG}", f"upto={BIG}", f"before={BIG}",
                      "actor=a%00b", "object_id=%00", "since=0001-01-01T00:30%2B01:00",
                      "until=9999-12-31T23:30-01:00", f"since={BIG}d", "action=" + "x" * 65):
            api = client.get(f"/api/v1/audit/entries?{query}")
            assert api.status_code in (200, 400, 404, 422), (query, api.status_code, api.text)
            page = client.get(f"/console/audit?{query}")
            assert page.status_code in (200, 400, 404, 422), (query, page.status_code)
            assert "internal error" not in page.text
