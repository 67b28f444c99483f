"""One view per entity: the JSON of the CLI's ``--json`` equals the JSON API's answer for the
same data; no secret reaches a page or the API; listing deployments, watchlists and alerts
takes a fixed number of SQL statements, whatever the number of rows. SQLite and PostgreSQL
(``gov``)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event, select

from openlfr.governance import alerts as alert_svc
from openlfr.governance import deployments as deps
from openlfr.governance import watchlists as wls
from openlfr.governance.views import UserView
from openlfr.store.enums import Decision
from openlfr.store.models import User
from openlfr.web.app import create_app
from tests.govfix import Gov
from tests.test_gov_alerts import _setup, _stored
from tests.test_web_core import login

CLI = [sys.executable, "-c", "from openlfr.cli import main; main()"]
SECRET_FIELDS = ("password_hash", "totp_secret", "totp_last_step", "password_changed_at")


def cli_json(gov: Gov, *args: object) -> Any:
    done = subprocess.run([*CLI, *map(str, args), "--json"], env=gov.env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_cli_json_is_the_api_json(gov: Gov, face_images: dict[str, Path]) -> None:
    st = _setup(gov, face_images, two_person_rule=True)
    first = _stored(gov, st)
    _stored(gov, st, alert_id="cam1:2:s", track=2, score=0.61)
    alert_svc.adjudicate(gov.db, gov.actors["op1"], first, Decision.CONFIRM)
    wl_id = wls.create_watchlist(gov.system, gov.actors["op2"], "city centre",
                                 "Find people wanted by the courts").id
    with TestClient(create_app(gov.system), base_url="http://testserver") as client:
        def api(who: str, path: str) -> Any:
            login(client, who)
            r = client.get(path)
            assert r.status_code == 200, r.text
            return r.json()

        pairs = [
            ("op1", f"/api/v1/alerts?deployment_id={st.deployment_id}",
             ["alerts", "list", "--deployment", st.deployment_id]),
            ("op1", f"/api/v1/alerts/{first}", ["alerts", "show", first]),
            ("au1", "/api/v1/deployments", ["deployment", "list"]),
            ("au1", f"/api/v1/deployments/{st.deployment_id}",
             ["deployment", "show", st.deployment_id]),
            ("au1", "/api/v1/watchlists", ["watchlist", "list"]),
            ("au1", f"/api/v1/watchlists/{wl_id}", ["watchlist", "show", wl_id]),
            ("admin", "/api/v1/users", ["user", "list"]),
        ]
        for who, path, command in pairs:
            from_api = api(who, path)
            from_cli = cli_json(gov, *command, "--user", who)
            assert from_cli == from_api, (path, command)
    alerts = cli_json(gov, "alerts", "list", "--user", "op1")
    assert [a["id"] for a in alerts] == [first + 1, first]
    assert alerts[1]["confirmations"] == 1 and alerts[1]["confirmations_needed"] == 2
    assert alerts[1]["deployment"] == "Test deployment"  # the API's name of the field
    for a in alerts:
        assert a["kind"] == "possible match"
        assert a["crop_url"] == f"/api/v1/alerts/{a['id']}/crop"  # the crop stays behind it
        assert not any("crop_ct" in k or "template" in k for k in a)


def test_no_secret_reaches_the_users_page_or_the_api(gov: Gov) -> None:
    from openlfr.web.routes import console_governance

    assert not set(SECRET_FIELDS) & set(UserView.model_fields)
    shown: list[dict[str, Any]] = []
    real = console_governance._users_ctx

    def spy(request: Any, actor: Any) -> dict[str, Any]:
        ctx = real(request, actor)
        shown.append(ctx)
        return ctx

    console_governance._users_ctx = spy  # type: ignore[assignment]
    try:
        with TestClient(create_app(gov.system), base_url="http://testserver") as client:
            login(client, "admin")
            page = client.get("/console/users")
            assert page.status_code == 200, page.text
            assert "ao1" in page.text
            listed = client.get("/api/v1/users")
            assert listed.status_code == 200
    finally:
        console_governance._users_ctx = real  # type: ignore[assignment]
    assert shown and shown[0]["users"]
    for u in shown[0]["users"]:
        assert isinstance(u, UserView)
        for name in SECRET_FIELDS:
            assert not hasattr(u, name), name
    with gov.db.reading() as s:
        hashes = list(s.scalars(select(User.password_hash)))
    for row in listed.json():
        assert set(row) == set(UserView.model_fields)
        assert not set(SECRET_FIELDS) & set(row)
    body = listed.text + json.dumps([u.model_dump(mode="json") for u in shown[0]["users"]])
    assert hashes and not any(h in body for h in hashes)


@contextmanager
def counted(gov: Gov) -> Iterator[list[str]]:
    """The SQL statements run on the database while the block runs."""
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(gov.db.engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        event.remove(gov.db.engine, "before_cursor_execute", seen)


def _deployment(gov: Gov, n: int, wl: wls.WatchlistView) -> None:
    now = datetime.now(UTC)
    plan = deps.Plan(
        alternatives="Patrols do not suffice",
        name=f"Event {n}", site="Stadium", location="North gate", purpose="Find people "
        "wanted by the courts", legal_basis="Police Act", dpia_ref="DPIA-1",
        equality_ref="EIA-1", planned_start=now + timedelta(hours=1),
        planned_end=now + timedelta(hours=5), threshold=0.5, model_id=wl.model_id,
        watchlist_ids=(wl.id,),
        cameras=(deps.CameraSpec("gate", "rtsp://user:secret@10.0.0.5/s"),
                 deps.CameraSpec("yard", f"rtsp://10.0.0.6/{n}")))
    deps.create(gov.db, gov.actors["op1"], plan, gov.system.keyring)


def test_listing_takes_a_fixed_number_of_statements(gov: Gov,
                                                    face_images: dict[str, Path]) -> None:
    wl = wls.create_watchlist(gov.system, gov.actors["op2"], "city centre",
                              "Find people wanted by the courts")
    st = _setup(gov, face_images)
    au1 = gov.actors["au1"]
    counts: dict[str, list[int]] = {"deployments": [], "watchlists": [], "alerts": []}
    made = 0
    for size in (1, 20):
        while made < size:
            made += 1
            _deployment(gov, made, wl)
            wls.create_watchlist(gov.system, gov.actors["op2"], f"list {made}",
                                 "Find people wanted by the courts")
            _stored(gov, st, alert_id=f"cam1:{made}:s", track=made)
        with counted(gov) as statements:
            listed = deps.list_deployments(gov.db, au1)
        assert len(listed) == size + 1  # and _setup's
        assert all(len(d.cameras) == 2 and len(d.watchlists) == 1 for d in listed[1:])
        counts["deployments"].append(len(statements))
        with counted(gov) as statements:
            assert len(wls.list_watchlists(gov.db, au1)) == size + 2
        counts["watchlists"].append(len(statements))
        with counted(gov) as statements:
            assert len(alert_svc.list_alerts(gov.db, gov.actors["op1"])) == size
        counts["alerts"].append(len(statements))
    print(f"statements for 1 and 20 rows ({gov.kind}): {counts}")
    for what, (one, twenty) in counts.items():
        assert twenty == one, (what, one, twenty)
