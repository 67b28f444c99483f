"""The audit service (:mod:`openlfr.governance.auditing`) that the JSON API, the console and
``openlfr audit`` share: one ``audit.export`` entry per export, with the same details from
every front end, written before the data is read; paging; a corrupt checkpoint fails the
check. SQLite and PostgreSQL (``gov``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from openlfr.governance import auditing
from openlfr.governance.authz import Forbidden, NotFound, RuleError
from openlfr.store.models import AuditRecord
from openlfr.web.app import create_app
from tests.govfix import Gov
from tests.test_gov_alerts import _setup
from tests.test_web_core import login
from tests.test_web_governance import post

CLI = [sys.executable, "-c", "from openlfr.cli import main; main()"]


def exports(gov: Gov) -> list[AuditRecord]:
    with gov.db.reading() as s:
        return list(s.scalars(select(AuditRecord).where(AuditRecord.action == "audit.export")
                              .order_by(AuditRecord.seq)))


def test_every_front_end_records_the_same_export(gov: Gov, face_images: dict[str, Path],
                                                 tmp_path: Path) -> None:
    dep_id = _setup(gov, face_images).deployment_id
    with TestClient(create_app(gov.system), base_url="http://testserver") as client:
        csrf = login(client, "au1")
        api = client.post(f"/api/v1/audit/export?art12=true&deployment={dep_id}",
                          headers={"X-CSRF-Token": csrf})
        assert api.status_code == 200, api.text
        assert 'filename="art12-' in api.headers["content-disposition"]
        page = post(client, "/console/audit/export", {"what": "art12",
                                                      "deployment": str(dep_id)},
                    page="/console/audit")
        assert page.status_code == 200  # type: ignore[attr-defined]
        assert page.text == api.text  # type: ignore[attr-defined]
    out = tmp_path / "art12.jsonl"
    done = subprocess.run([*CLI, "audit", "export", "--art12", str(dep_id), "--out", str(out),
                           "--user", "au1"], env=gov.env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.read_text() == api.text
    rows = exports(gov)
    assert len(rows) == 3  # one entry per export, whoever asked
    details = [json.loads(r.details) for r in rows]
    assert [d.pop("out") for d in details] == ["web", "web", "art12.jsonl"]
    assert details == [{"what": "art12", "deployment": dep_id}] * 3
    assert {(r.actor, r.object_type, r.object_id) for r in rows} == {("au1", "audit", "art12")}


def test_export_covers_itself_and_refuses_before_recording(gov: Gov) -> None:
    au1 = gov.actors["au1"]
    lines = list(auditing.export(gov.db, au1, out="stdout"))
    last = json.loads(lines[-1])
    assert last["action"] == "audit.export"
    assert last["details"] == {"what": "log", "deployment": None, "out": "stdout"}
    with pytest.raises(NotFound):
        auditing.export(gov.db, au1, art12=True, deployment=999, out="web")
    with pytest.raises(RuleError):
        auditing.export(gov.db, au1, deployment=1, out="web")
    with pytest.raises(Forbidden):
        auditing.export(gov.db, gov.actors["op1"], out="web")
    assert len(exports(gov)) == 1


def test_paging_and_a_corrupt_checkpoint(gov: Gov, tmp_path: Path) -> None:
    au1 = gov.actors["au1"]
    first = auditing.page(gov.db, au1, limit=3)
    assert [e.seq for e in first.entries] == [first.total, first.total - 1, first.total - 2]
    older = auditing.page(gov.db, au1, before=first.next_before, limit=3)
    assert older.entries[0].seq == first.entries[-1].seq - 1
    newest = auditing.newest(gov.db, au1, 2)
    assert [e.seq for e in newest] == [first.total - 1, first.total]
    bad = tmp_path / "checkpoint.json"
    bad.write_text("{not a checkpoint")
    checked = auditing.verify(gov.db, au1, bad)
    assert not checked.result.ok and checked.checkpoint is None
    assert auditing.verify(gov.db, au1).as_dict()["ok"] is True
    with pytest.raises(Forbidden):
        auditing.page(gov.db, gov.actors["op1"])
