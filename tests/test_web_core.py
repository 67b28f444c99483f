"""The web core: sign-in and sessions, CSRF, API tokens, refusals, security headers, errors.

Runs on SQLite and PostgreSQL (the ``gov`` fixture) with FastAPI's TestClient."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.routing import BaseRoute

from openlfr.web.app import ANONYMOUS_API, create_app
from tests.govfix import PASSWORD, Gov
from tests.govfix import audit_records as audit_actions

META_CSRF = re.compile(r'<meta name="csrf-token" content="([0-9a-f]{64})">')


def page_token(client: TestClient, path: str = "/login") -> str:
    r = client.get(path)
    assert r.status_code == 200, r.text
    m = META_CSRF.search(r.text)
    assert m, "no CSRF token on the page"
    return m.group(1)


def login(client: TestClient, name: str, password: str = PASSWORD) -> str:
    """Sign in through the JSON API; returns the CSRF token of the session."""
    r = client.post("/api/v1/auth/login", json={"name": name, "password": password})
    assert r.status_code == 200, r.text
    return str(r.json()["csrf_token"])


def make_token(client: TestClient, csrf: str, user: str, role: str | None = None) -> str:
    body = {"user": user, "name": f"integration for {user}"}
    if role:
        body["role"] = role
    r = client.post("/api/v1/tokens", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


# -- sessions ---------------------------------------------------------------------------------

def test_login_page_session_and_logout(gov: Gov, client: TestClient) -> None:
    token = page_token(client)
    r = client.post("/login", data={"name": "ao1", "password": PASSWORD, "next": "/console"},
                    follow_redirects=False)
    assert r.status_code == 403 and "CSRF" in r.text  # no token: refused
    r = client.post("/login", data={"name": "ao1", "password": PASSWORD, "next": "/console",
                                    "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console"
    cookie = r.headers["set-cookie"].lower()
    assert "openlfr_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    home = client.get("/console")
    assert home.status_code == 200 and "ao1" in home.text
    # the nonce was rotated at sign-in: the token from before no longer works
    r = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 403
    r = client.post("/logout", data={"csrf_token": META_CSRF.search(home.text).group(1)},
                    follow_redirects=False)
    assert r.status_code == 303
    r = client.get("/console", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=/console")
    assert [e.actor for e in audit_actions(gov, "auth.login")] == ["ao1"]
    assert [e.actor for e in audit_actions(gov, "auth.logout")] == ["ao1"]


def test_open_redirect_refused(client: TestClient) -> None:
    token = page_token(client)
    r = client.post("/login", data={"name": "ao1", "password": PASSWORD, "csrf_token": token,
                                    "next": "//evil.example/x"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console"


def test_wrong_password_audited_and_rate_limited(gov: Gov, client: TestClient) -> None:
    token = page_token(client)
    before = len(audit_actions(gov, "auth.failed"))
    for _ in range(5):
        r = client.post("/login", data={"name": "op1", "password": "wrong password!",
                                        "csrf_token": token})
        assert r.status_code == 401
        assert "wrong user name or password" in r.text.lower()
    assert len(audit_actions(gov, "auth.failed")) == before + 5
    # the name is now locked: even the right password is not checked
    r = client.post("/login", data={"name": "op1", "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 429 and "too many failed sign-ins" in r.text.lower()
    r = client.post("/api/v1/auth/login", json={"name": "OP1", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert r.json()["detail"].startswith("too many failed sign-ins")
    assert len(audit_actions(gov, "auth.failed")) == before + 5
    # another name from the same address is still let in (under the per-address limit)
    assert login(client, "op2")


def test_api_login_wrong_password(gov: Gov, client: TestClient) -> None:
    r = client.post("/api/v1/auth/login", json={"name": "nobody", "password": "x" * 12})
    assert r.status_code == 401 and "wrong user name or password" in r.json()["detail"]
    assert audit_actions(gov, "auth.failed")


def test_csrf_required_for_session_changes(gov: Gov, client: TestClient) -> None:
    csrf = login(client, "admin")
    body = {"name": "newop", "role": "operator", "password": PASSWORD}
    r = client.post("/api/v1/users", json=body)
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    r = client.post("/api/v1/users", json=body, headers={"X-CSRF-Token": "0" * 64})
    assert r.status_code == 403
    r = client.post("/api/v1/users", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text
    # reading needs no token
    names = [u["name"] for u in client.get("/api/v1/users").json()]
    assert "newop" in names
    me = client.get("/api/v1/auth/me").json()
    assert me["name"] == "admin" and me["via"] == "session" and me["csrf_token"] == csrf


def test_deactivated_user_session_ends(gov: Gov, client: TestClient) -> None:
    from openlfr.governance import users
    login(client, "op1")
    assert client.get("/api/v1/auth/me").status_code == 200
    users.set_active(gov.db, gov.actors["admin"], "op1", False)
    assert client.get("/api/v1/auth/me").status_code == 401


# -- tokens -----------------------------------------------------------------------------------

def test_token_auth_scope_and_revocation(gov: Gov, client: TestClient) -> None:
    csrf = login(client, "admin")
    op_token = make_token(client, csrf, "op1")
    ao_as_auditor = make_token(client, csrf, "ao1", "auditor")  # auditor ⊂ authorising officer
    r = client.post("/api/v1/tokens", json={"user": "op1", "name": "x", "role": "admin"},
                    headers={"X-CSRF-Token": csrf})
    assert r.status_code == 400 and "cannot have the role admin" in r.json()["detail"]
    listed = client.get("/api/v1/tokens").json()
    assert {t["user"] for t in listed} == {"op1", "ao1"}
    assert all("token" not in t and "hash" not in str(t) for t in listed)
    client.cookies.clear()  # from here on, tokens only

    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {op_token}"}).json()
    assert me == {"name": "op1", "role": "operator", "via": "token",
                  "permissions": me["permissions"], "csrf_token": None, "must": None}
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {ao_as_auditor}"})
    assert me.json()["role"] == "auditor"
    # a token needs no CSRF token (no ambient credential), and its role decides
    r = client.post("/api/v1/questions/1/answer", json={"answer": "x"},
                    headers={"Authorization": f"Bearer {ao_as_auditor}"})
    assert r.status_code == 403

    # the token is stored hashed
    from openlfr.store.models import ApiToken
    with gov.db.reading() as s:
        hashes = list(s.scalars(select(ApiToken.token_hash)))
    assert op_token not in hashes and all(len(h) == 64 for h in hashes)

    csrf = login(client, "admin")
    token_id = next(t["id"] for t in listed if t["user"] == "op1")
    r = client.post(f"/api/v1/tokens/{token_id}/revoke", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["revoked_at"]
    client.cookies.clear()
    r = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {op_token}"})
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    r = client.get("/api/v1/auth/me", headers={"Authorization": "Bearer olfr_made-up"})
    assert r.status_code == 401
    assert [e.object_id for e in audit_actions(gov, "token.revoke")] == [str(token_id)]
    assert len(audit_actions(gov, "token.create")) == 2


def test_token_of_deactivated_user_refused(gov: Gov, client: TestClient) -> None:
    from openlfr.governance import users
    csrf = login(client, "admin")
    token = make_token(client, csrf, "sv1")
    client.cookies.clear()
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/auth/me", headers=auth).status_code == 200
    users.set_active(gov.db, gov.actors["admin"], "sv1", False)
    assert client.get("/api/v1/auth/me", headers=auth).status_code == 401


# -- refusals ---------------------------------------------------------------------------------

def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def all_routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, set[str]]]:
    """(path, methods) of every APIRoute of the app, also inside included routers (which recent
    FastAPI keeps as one entry pointing at the router instead of copying its routes)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, set(route.methods)
        inner = getattr(route, "original_router", None)
        if inner is not None:
            extra = getattr(getattr(route, "include_context", None), "prefix", "") or ""
            yield from all_routes(inner.routes, prefix + extra)


def test_anonymous_refused_on_every_private_api_route(client: TestClient) -> None:
    checked = 0
    for path, methods in all_routes(client.app.routes):
        if path == "/api/docs":  # a page: anonymous callers are sent to the login page
            assert client.get(path, follow_redirects=False).status_code == 303
            continue
        if not path.startswith("/api/") or path.startswith(ANONYMOUS_API):
            continue
        for method in sorted(methods - {"HEAD"}):
            r = client.request(method, _fill(path), json={}, follow_redirects=False)
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            assert r.headers.get("www-authenticate") == "Bearer"
            checked += 1
    assert checked >= 12
    # and the public ones really are public
    assert client.get("/api/v1/public/deployments").status_code == 200


def test_role_refused_with_403_and_audited(gov: Gov, client: TestClient) -> None:
    csrf = login(client, "admin")
    tokens = {name: make_token(client, csrf, name) for name in ("op1", "au1", "sv1")}
    client.cookies.clear()
    cases = [("op1", "GET", "/api/v1/users"), ("au1", "POST", "/api/v1/tokens"),
             ("sv1", "GET", "/api/v1/tokens"), ("op1", "GET", "/api/v1/questions")]
    before = len(audit_actions(gov, "access.refused"))
    for name, method, path in cases:
        body = {"user": "op1", "name": "x"} if method == "POST" else None
        r = client.request(method, path, json=body,
                           headers={"Authorization": f"Bearer {tokens[name]}"})
        assert r.status_code == 403, (name, path, r.text)
        assert r.json()["detail"].startswith("refused:")
    refused = audit_actions(gov, "access.refused")
    assert len(refused) == before + len(cases)
    assert [e.actor for e in refused[-len(cases):]] == [c[0] for c in cases]


# -- headers, docs, errors --------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/public", "/login", "/api/v1/public/deployments",
                                  "/static/style.css", "/no/such/page", "/api/v1/users"])
def test_security_headers(client: TestClient, path: str) -> None:
    r = client.get(path)
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "same-origin"
    assert r.headers["x-frame-options"] == "DENY"


def test_no_inline_script_or_style(client: TestClient) -> None:
    for path in ("/public", "/login", "/public/summary"):
        html = client.get(path).text
        assert "<script>" not in html and "<style" not in html and " style=" not in html
        assert re.search(r"\son[a-z]+=", html) is None  # no inline event handlers
        assert "http://" not in html.replace("http://www.w3.org", "")
        assert "https://" not in html


def test_api_docs_and_schema(client: TestClient) -> None:
    assert client.get("/api/docs", follow_redirects=False).status_code == 303
    assert client.get("/api/openapi.json").status_code == 401
    assert client.get("/docs").status_code == 404  # FastAPI's CDN-based pages are off
    login(client, "au1")
    schema = client.get("/api/openapi.json").json()
    assert "/api/v1/questions" in schema["paths"] and "/api/v1/public/summary" in schema["paths"]
    page = client.get("/api/docs")
    assert page.status_code == 200 and "/api/v1/tokens/{token_id}/revoke" in page.text


def test_bad_input_is_a_clear_answer(client: TestClient) -> None:
    login(client, "ao1")
    r = client.get("/api/v1/questions/not-a-number")
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)
    r = client.get("/api/v1/questions/999")
    assert r.status_code == 404 and r.json() == {"detail": "no question 999"}
    r = client.get("/api/v1/questions?status=bogus")
    assert r.status_code == 400 and "unknown status" in r.json()["detail"]
    r = client.post("/api/v1/auth/login", content=b"{not json",
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)
    r = client.get("/public/deployments/abc")
    assert r.status_code == 400 and "text/html" in r.headers["content-type"]
    r = client.post("/api/v1/auth/login", content=b"x" * 100_000,
                    headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = client.get("/nothing-here")
    assert r.status_code == 404 and "no such page" in r.text.lower()


def test_background_jobs_run_the_retention_schedule(gov: Gov) -> None:
    from openlfr.web.jobs import BackgroundJobs
    jobs = BackgroundJobs(gov.system, retention_every=3600, tick=0.05)
    with TestClient(create_app(gov.system, jobs)) as c:  # the app starts and stops the jobs
        assert c.get("/healthz").json() == {"status": "ok"}
        for _ in range(100):
            if jobs.last_retention_report is not None:
                break
            time.sleep(0.05)
        assert jobs.running
    assert not jobs.running
    assert jobs.last_retention_report is not None
    runs = audit_actions(gov, "retention.run")
    assert len(runs) == 1 and runs[0].actor == "system"  # once: the next is an hour away
