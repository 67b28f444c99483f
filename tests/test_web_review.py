"""Defects found by a security review of the web layer, each with the test that pins its fix:
rate limits that a forged header or concurrent requests could get past, a live stream that
outlived a revoked token or a signed-out session, and bad input answered with a 500."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from openlfr.governance.authz import Actor
from openlfr.governance.users import AuthError
from openlfr.store.enums import Role
from openlfr.web import events, tokens
from openlfr.web.app import create_app
from openlfr.web.routes import auth as auth_routes
from tests.govfix import PASSWORD, Gov
from tests.test_web_core import login, page_token

# -- rate limits ------------------------------------------------------------------------------

def test_forwarded_for_cannot_be_forged_past_the_address_limit(sqlite_gov: Gov) -> None:
    """Behind a proxy the client's own X-Forwarded-For entries come first and the proxy adds
    the address it saw last: only that one counts, so a new forged address with every request
    does not reset the per-address limit."""
    app = create_app(sqlite_gov.system, trust_proxy=True)
    with TestClient(app, base_url="http://testserver") as c:
        for i in range(20):  # 20 names, so the per-name limit (5) is never reached
            r = c.post("/api/v1/auth/login", json={"name": f"nobody{i}", "password": "x" * 12},
                       headers={"x-forwarded-for": f"10.9.{i}.1, 203.0.113.7"})
            assert r.status_code == 401, r.text
        r = c.post("/api/v1/auth/login", json={"name": "op1", "password": PASSWORD},
                   headers={"x-forwarded-for": "10.99.99.99, 203.0.113.7"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        # another client behind the same proxy is not affected
        r = c.post("/api/v1/auth/login", json={"name": "op1", "password": PASSWORD},
                   headers={"x-forwarded-for": "203.0.113.8"})
        assert r.status_code == 200, r.text
        # the limit was counted against the proxy-added address, not the forged ones
        assert app.state.web.limits.login_ip.blocked("203.0.113.7")
        assert not app.state.web.limits.login_ip.blocked("10.99.99.99")


def test_concurrent_sign_ins_do_not_get_past_the_name_limit(
        sqlite_gov: Gov, monkeypatch: pytest.MonkeyPatch) -> None:
    """Password checks are slow: requests sent at the same time must not all pass the limit
    check before the first failure is counted."""
    checked: list[str] = []
    lock = threading.Lock()

    def slow_wrong(system: Any, name: str, password: str, code: str | None = None) -> Actor:
        with lock:
            checked.append(name)
        time.sleep(0.4)
        raise AuthError("wrong user name or password, or the account is inactive")

    monkeypatch.setattr(auth_routes, "authenticate", slow_wrong)
    statuses: list[int] = []
    with TestClient(create_app(sqlite_gov.system), base_url="http://testserver") as c:
        def attempt() -> None:
            r = c.post("/api/v1/auth/login", json={"name": "op1", "password": "guess" * 3})
            with lock:
                statuses.append(r.status_code)

        threads = [threading.Thread(target=attempt) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert len(checked) == 5, checked  # the per-name limit, however the requests interleave
    assert sorted(statuses) == [401] * 5 + [429] * 7


def test_a_successful_sign_in_does_not_use_up_the_address_limit(client: TestClient) -> None:
    for _ in range(25):
        login(client, "op1")
    r = client.post("/api/v1/auth/login", json={"name": "op2", "password": "wrong" * 3})
    assert r.status_code == 401


# -- the live alert stream --------------------------------------------------------------------

def _end_after(app: Any, seconds: float) -> threading.Thread:
    """Close the app's alert broker after ``seconds`` (so a stream that should have ended
    cannot hang the test; it then ends with "the server is stopping")."""
    def go() -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.05)
        b = getattr(app.state, "alert_broker", None)
        if b is not None:
            b.close()

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def test_the_stream_ends_when_its_api_token_is_revoked(
        sqlite_gov: Gov, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "SESSION_RECHECK", 0.1)
    admin = Actor("admin", Role.ADMIN)
    info, secret = tokens.create_token(sqlite_gov.db, admin, "op1", "alert screen")
    app = create_app(sqlite_gov.system)

    def revoke_when_subscribed() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            b = getattr(app.state, "alert_broker", None)
            if b is not None and b.subscribers:
                time.sleep(0.2)
                tokens.revoke_token(sqlite_gov.db, admin, info.id)
                return
            time.sleep(0.05)

    with TestClient(app, base_url="http://testserver") as c:
        revoker = threading.Thread(target=revoke_when_subscribed, daemon=True)
        revoker.start()
        guard = _end_after(app, 8)
        r = c.get("/console/alerts/stream", headers={"Authorization": f"Bearer {secret}"})
        revoker.join()
    assert r.status_code == 200
    assert '"reason":"signed out"' in r.text, r.text[-300:]
    assert guard.is_alive()  # ended by the revocation, not by the guard


def test_a_steady_flow_of_alerts_does_not_delay_the_sign_out_check(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "SESSION_RECHECK", 0.2)

    async def run() -> list[str]:
        broker = events.AlertBroker(db=None)  # type: ignore[arg-type]
        sub = broker.subscribe(Actor("op1", Role.OPERATOR))
        stop = asyncio.Event()

        async def flood() -> None:  # an event every 20 ms, faster than any check interval
            n = 0
            while not stop.is_set():
                n += 1
                sub.queue.put_nowait({"type": "alert", "id": n, "deployment_id": 1})
                await asyncio.sleep(0.02)

        feeder = asyncio.create_task(flood())
        out: list[str] = []

        async def read() -> None:
            async for chunk in events.stream(broker, sub, None, lambda: False):
                out.append(chunk)

        try:
            await asyncio.wait_for(read(), timeout=5)
        finally:
            stop.set()
            await feeder
        return out

    out = asyncio.run(run())
    assert out[-1].startswith("event: bye") and "signed out" in out[-1]


# -- bad input is a clear answer, never a 500 -------------------------------------------------

BIG = "9" * 20


def test_out_of_range_ids_and_nul_characters_are_bad_input(gov: Gov, client: TestClient
                                                            ) -> None:
    csrf = login(client, "admin")
    h = {"X-CSRF-Token": csrf}
    for path in (f"/api/v1/deployments/{BIG}", f"/api/v1/deployments/{2 ** 31}",
                 f"/api/v1/questions/{BIG}", f"/api/v1/audit/entries?before={BIG}",
                 f"/api/v1/audit/art12/{BIG}", f"/api/v1/public/deployments/{BIG}",
                 f"/api/v1/questions?deployment_id={BIG}"):
        r = client.get(path, headers=h)
        assert r.status_code in (400, 404), (path, r.status_code, r.text)
        assert isinstance(r.json()["detail"], str)
    for path in (f"/public/deployments/{BIG}", f"/console/deployments/{BIG}",
                 f"/console/audit?before={BIG}"):
        r = client.get(path)
        assert r.status_code in (400, 404), (path, r.status_code)
        assert "text/html" in r.headers["content-type"] and "internal error" not in r.text
    r = client.post(f"/api/v1/tokens/{BIG}/revoke", headers=h)
    assert r.status_code in (400, 404)
    # PostgreSQL refuses NUL characters in text: that is the caller's mistake, not ours
    r = client.post("/api/v1/users/%00/deactivate", headers=h)
    assert r.status_code in (400, 404), r.text
    r = client.post("/api/v1/tokens", headers=h, json={"user": "op1", "name": "n\x00"})
    assert r.status_code in (201, 400), r.text
    client.cookies.clear()
    r = client.post("/api/v1/auth/login", json={"name": "a\x00b", "password": "x" * 12})
    assert r.status_code in (400, 401), r.text


def test_a_start_time_too_far_ahead_is_shown_on_the_form(client: TestClient) -> None:
    login(client, "op1")
    token = page_token(client, "/console/deployments/new")
    r = client.post("/console/deployments", data={
        "csrf_token": token, "name": "x", "planned_start": "+99999999999d",
        "planned_end": "now"})
    assert r.status_code == 400
    assert "too far in the future" in r.text


def test_a_body_without_a_length_over_the_limit_is_413(client: TestClient) -> None:
    def chunks(n: int) -> Iterator[bytes]:
        for _ in range(n):
            yield b"x" * 1024

    r = client.post("/api/v1/auth/login", content=chunks(100),
                    headers={"content-type": "application/json"})
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    r = client.post("/public/deployments/1/questions", content=chunks(100),
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
    # under the limit, the same way of sending is read as usual
    r = client.post("/api/v1/auth/login", content=chunks(1),
                    headers={"content-type": "application/json"})
    assert r.status_code == 422
