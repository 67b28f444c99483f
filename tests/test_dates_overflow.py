"""Dates that are valid where they were written but fall outside the calendar once converted
to UTC (``0001-01-01T00:30+01:00`` is in the year 0; ``9999-12-31T23:30-01:00`` in the year
10000): a clear 400 on the API and the console, exit 2 on the command line, never a 500 or a
traceback. Every parser of a time: deployment windows (service, API, console, CLI) and
subject expiries (parser, service, API, console, CLI). SQLite and PostgreSQL (``gov``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from openlfr.cli import app as cli_app
from openlfr.governance import deployments as deps
from openlfr.governance import watchlists as wls
from openlfr.governance.authz import RuleError
from openlfr.governance.times import to_utc
from openlfr.web.app import create_app
from tests.govfix import PASSWORD, Gov
from tests.test_gov_deployments import approved_watchlist, plan

EARLY = "0001-01-01T00:30:00+01:00"
LATE = "9999-12-31T23:30-01:00"
META_CSRF = re.compile(r'<meta name="csrf-token" content="([0-9a-f]{64})">')


def test_the_conversion_is_guarded() -> None:
    assert to_utc(datetime(2026, 5, 1, 9, tzinfo=UTC), "start") == datetime(2026, 5, 1, 9,
                                                                             tzinfo=UTC)
    for text, word in ((EARLY, "before"), (LATE, "after")):
        with pytest.raises(RuleError, match=f"start {re.escape(text)}.*{word}"):
            to_utc(datetime.fromisoformat(text), "start", text)
    with pytest.raises(RuleError, match="too far in the future"):
        wls.parse_expiry(LATE)
    with pytest.raises(RuleError, match="in UTC"):
        wls.parse_expiry(EARLY)


def test_the_services_refuse_them(gov: Gov, face_images: dict[str, Path]) -> None:
    wid = approved_watchlist(gov, face_images["obama"])
    now = datetime.now(UTC)
    early, late = datetime.fromisoformat(EARLY), datetime.fromisoformat(LATE)
    for start, end in ((early, now), (now, late)):
        with pytest.raises(RuleError, match="UTC"):
            deps.create(gov.db, gov.actors["op1"], plan((wid,), start=start, end=end),
                        keyring=gov.system.keyring)
    dep_id = deps.create(gov.db, gov.actors["op1"], plan((wid,)), keyring=gov.system.keyring)
    with pytest.raises(RuleError, match="UTC"):
        deps.edit(gov.db, gov.actors["op1"], dep_id, planned_end=late)
    with pytest.raises(RuleError, match="UTC"):
        wls.add_subject(gov.system, gov.actors["op1"], wid, "case 2", "wanted_by_court",
                        "A warrant of the magistrates' court for case two", late,
                        [(face_images["obama2"].read_bytes(), "custody record 2")])


def _deployment_body(wid: int, start: str, end: str) -> dict[str, object]:
    return {"name": "Gate", "site": "Station", "location": "Gate 3",
            "purpose": "Find people wanted by the courts",
            "alternatives": "Patrols do not suffice", "legal_basis": "Common law",
            "dpia_ref": "D-1", "equality_ref": "E-1", "planned_start": start,
            "planned_end": end, "signage": True, "public_notice": True,
            "watchlist_ids": [wid], "cameras": [{"name": "gate", "source": "0"}]}


def test_the_api_and_the_console_answer_400(gov: Gov, face_images: dict[str, Path]) -> None:
    wid = approved_watchlist(gov, face_images["obama"])
    now = datetime.now(UTC)
    soon = (now + timedelta(hours=2)).isoformat()
    from openlfr.web import tokens as tok
    auth = {"Authorization": "Bearer " + tok.create_token(
        gov.db, gov.actors["admin"], "op1", "test")[1]}
    app = create_app(gov.system)
    with TestClient(app) as c:
        for start, end in ((EARLY, soon), (now.isoformat(), LATE)):
            r = c.post("/api/v1/deployments", json=_deployment_body(wid, start, end),
                       headers=auth)
            assert r.status_code == 400, r.text
            assert "UTC" in r.json()["detail"]
        r = c.post("/api/v1/deployments", json=_deployment_body(wid, now.isoformat(), soon),
                   headers=auth)
        assert r.status_code == 201, r.text
        dep_id = r.json()["id"]
        r = c.patch(f"/api/v1/deployments/{dep_id}", json={"planned_end": LATE}, headers=auth)
        assert r.status_code == 400 and "UTC" in r.json()["detail"]
        draft = wls.create_watchlist(gov.system, gov.actors["op1"], "second",
                                     "Locate people wanted by the courts at the station")
        r = c.post(f"/api/v1/watchlists/{draft.id}/subjects", headers=auth, data={
            "reference": "case 9", "category": "wanted_by_court",
            "reason": "A warrant of the magistrates' court for case nine", "expires": LATE,
            "source": "custody record 9"},
            files={"image": ("face.jpg", face_images["obama"].read_bytes(), "image/jpeg")})
        assert r.status_code == 400 and "too far in the future" in r.json()["detail"]
    with TestClient(app) as c:
        assert c.post("/api/v1/auth/login",
                      json={"name": "op1", "password": PASSWORD}).status_code == 200
        token = META_CSRF.search(c.get("/console/deployments/new").text).group(1)  # type: ignore[union-attr]
        form = {"name": "Cup final", "site": "Stadium", "location": "North gate",
                "purpose": "Find people wanted by the courts",
                "alternatives": "Patrols do not suffice", "legal_basis": "Common law",
                "dpia_ref": "DPIA-1", "equality_ref": "EIA-1", "threshold": "",
                "backend": "sface", "signage": "1", "public_notice": "1",
                "watchlist_ids": [str(wid)], "cameras": "gate=0", "csrf_token": token}
        for start, end in ((EARLY, "+2h"), ("now", LATE)):
            r = c.post("/console/deployments", data={**form, "planned_start": start,
                                                    "planned_end": end},
                       follow_redirects=False)
            assert r.status_code == 400, r.text
            assert "UTC" in r.text and 'value="Cup final"' in r.text
        r = c.post(f"/console/watchlists/{draft.id}/subjects", follow_redirects=False, data={
            "reference": "case 9", "category": "wanted_by_court",
            "reason": "A warrant of the magistrates' court for case nine", "expires": LATE,
            "source": ["custody record 9"], "csrf_token": token},
            files=[("image", ("face.jpg", face_images["obama"].read_bytes(), "image/jpeg"))])
        assert r.status_code == 400 and "too far in the future" in r.text


def test_the_command_line_exits_2(gov: Gov, face_images: dict[str, Path]) -> None:
    wid = approved_watchlist(gov, face_images["obama"])
    base = ["deployment", "create", "--alternatives", "Patrols do not suffice",
            "--user", "op1", "--name", "Concourse", "--site", "S",
            "--location", "Gate 3", "--purpose", "Locate people wanted by the courts",
            "--legal-basis", "Common law", "--dpia", "DPIA-1", "--equality", "EIA-1",
            "--signage", "--public-notice", "--watchlist", str(wid), "--camera", "gate=0"]
    runner = CliRunner()
    for start, end in ((EARLY, "+2h"), ("now", LATE)):
        result = runner.invoke(cli_app, [*base, "--start", start, "--end", end],
                               env=gov.env())
        assert result.exit_code == 2, result.output
        assert "UTC" in result.output and "Traceback" not in result.output
    result = runner.invoke(cli_app, [
        "watchlist", "add", str(wid), "case-8", "--category", "wanted_by_court", "--reason",
        "A warrant of the magistrates' court for case eight", "--expires", LATE,
        "--image", str(face_images["obama2"]), "--source", "custody", "--user", "op1"],
        env=gov.env())
    assert result.exit_code == 2, result.output
    assert "too far in the future" in result.output
