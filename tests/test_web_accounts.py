"""Accounts through the web app, on SQLite and PostgreSQL: the forced change of a one-time
password, changing one's password, resets and role changes, deactivation for good, the TOTP
second factor at sign-in, the per-role rule; CSRF tokens bound to the session, the Origin
check, ``__Host-`` cookies and HSTS over HTTPS."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pyotp
import pytest
from fastapi.testclient import TestClient

from openlfr.governance import users
from tests.govfix import PASSWORD, Gov
from tests.test_web_core import META_CSRF, audit_actions, login, make_token, page_token

NEW = "plum orchard lantern velvet"


@pytest.fixture()
def admin(app: object) -> Iterator[tuple[TestClient, str]]:
    with TestClient(app, base_url="http://testserver") as c:  # type: ignore[arg-type]
        yield c, login(c, "admin")


def client_of(app: object, base: str = "http://testserver") -> TestClient:
    return TestClient(app, base_url=base)  # type: ignore[arg-type]


def test_a_reset_forces_a_change_before_anything_else(
        gov: Gov, app: object, admin: tuple[TestClient, str]) -> None:
    c, csrf = admin
    with client_of(app) as op:
        login(op, "op1")
        r = c.post("/api/v1/users/op1/reset", json={}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, r.text
        one_time = r.json()["one_time_password"]
        assert op.get("/api/v1/alerts").status_code == 401  # the reset ended its session
        assert one_time not in str([e.details for e in audit_actions(gov, "user.reset")])

        r = op.post("/api/v1/auth/login", json={"name": "op1", "password": one_time})
        assert r.status_code == 200 and r.json()["must"] == "password"
        op_csrf = r.json()["csrf_token"]
        refused = op.get("/api/v1/alerts")
        assert refused.status_code == 403
        assert refused.json()["detail"].startswith("your password is a one-time password: "
                                                   "change it first")
        assert op.get("/api/v1/auth/me").json()["must"] == "password"
        page = op.get("/console/alerts", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/account/password"
        form = op.get("/account/password")
        assert form.status_code == 200 and "one-time password" in form.text
        token = META_CSRF.search(form.text).group(1)  # type: ignore[union-attr]
        assert token == op_csrf
        r = op.post("/account/password", data={"csrf_token": token, "current": one_time,
                                                "new": "password1234", "repeat": "password1234"})
        assert r.status_code == 400 and "too easy to guess" in r.text
        r = op.post("/account/password", data={"csrf_token": token, "current": one_time,
                                                "new": NEW, "repeat": NEW},
                    follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/console?done=account"
        assert op.get("/api/v1/alerts").status_code == 200
        assert "Your account is updated." in op.get("/console?done=account").text
    assert [json.loads(e.details)["was_one_time"]
            for e in audit_actions(gov, "user.password")] == [True]


def test_change_my_password_through_the_api(gov: Gov, app: object) -> None:
    with client_of(app) as op, client_of(app) as other:
        csrf = login(op, "op1")
        login(other, "op1")  # a second browser
        h = {"X-CSRF-Token": csrf}
        r = op.post("/api/v1/auth/password", headers=h,
                    json={"current_password": "not my password", "new_password": NEW})
        assert r.status_code == 401 and r.json()["detail"] == "the current password is wrong"
        r = op.post("/api/v1/auth/password", headers=h,
                    json={"current_password": PASSWORD, "new_password": "short"})
        assert r.status_code == 400 and "at least 12 characters" in r.json()["detail"]
        r = op.post("/api/v1/auth/password", headers=h,
                    json={"current_password": PASSWORD, "new_password": NEW})
        assert r.status_code == 200 and r.json() == {"name": "op1", "changed": True,
                                                     "must": None}
        assert op.get("/api/v1/auth/me").status_code == 200  # this session goes on
        assert other.get("/api/v1/auth/me").status_code == 401  # the other one ended
        r = op.post("/api/v1/auth/login", json={"name": "op1", "password": PASSWORD})
        assert r.status_code == 401
        login(op, "op1", NEW)
        # wrong current passwords count against the name's sign-in limit
        csrf = login(op, "op2")
        for _ in range(5):
            op.post("/api/v1/auth/password", headers={"X-CSRF-Token": csrf},
                    json={"current_password": "guess guess guess", "new_password": NEW})
        r = op.post("/api/v1/auth/password", headers={"X-CSRF-Token": csrf},
                    json={"current_password": PASSWORD, "new_password": NEW})
        assert r.status_code == 429


def test_deactivation_and_role_change_end_sessions_and_tokens_for_good(
        gov: Gov, app: object, admin: tuple[TestClient, str]) -> None:
    c, csrf = admin
    h = {"X-CSRF-Token": csrf}
    with client_of(app) as op:
        login(op, "op1")
        token = {"Authorization": f"Bearer {make_token(c, csrf, 'op1')}"}
        assert c.post("/api/v1/users/op1/deactivate", headers=h).status_code == 200
        assert c.post("/api/v1/users/op1/activate", headers=h).status_code == 200
        assert op.get("/api/v1/auth/me").status_code == 401
        assert op.get("/api/v1/auth/me", headers=token).status_code == 401

        login(op, "op1")
        token = {"Authorization": f"Bearer {make_token(c, csrf, 'op1')}"}
        r = c.post("/api/v1/users/op1/role", json={"role": "auditor"}, headers=h)
        assert r.status_code == 200 and r.json() == {"name": "op1", "role": "auditor"}
        assert op.get("/api/v1/auth/me").status_code == 401
        assert op.get("/api/v1/auth/me", headers=token).status_code == 401
        login(op, "op1")
        assert op.get("/api/v1/auth/me").json()["role"] == "auditor"
    r = c.post("/api/v1/users/admin/role", json={"role": "auditor"}, headers=h)
    assert r.status_code == 400 and "your own role" in r.json()["detail"]
    entry = audit_actions(gov, "user.role")[-1]
    assert (entry.actor, entry.object_id) == ("admin", "op1")


def test_totp_enrolment_and_sign_in(gov: Gov, app: object) -> None:
    with client_of(app) as op:
        csrf = login(op, "op1")
        h = {"X-CSRF-Token": csrf}
        r = op.post("/api/v1/auth/totp/begin", headers=h)
        assert r.status_code == 200
        secret = r.json()["secret"]
        assert r.json()["uri"].startswith("otpauth://totp/openlfr:op1?secret=" + secret)
        totp = pyotp.TOTP(secret)
        r = op.post("/api/v1/auth/totp/confirm", headers=h, json={"code": "000000"
                    if totp.now() != "000000" else "111111"})
        assert r.status_code == 401
        code = totp.now()
        r = op.post("/api/v1/auth/totp/confirm", headers=h, json={"code": code})
        assert r.status_code == 200 and r.json()["totp"] is True
        op.cookies.clear()

        r = op.post("/api/v1/auth/login", json={"name": "op1", "password": PASSWORD})
        assert r.status_code == 401 and "second factor" in r.json()["detail"]
        r = op.post("/api/v1/auth/login", json={"name": "op1", "password": PASSWORD,
                                                "code": code})
        assert r.status_code == 401 and "already used" in r.json()["detail"]
        # the login page asks for the code, then accepts the next one
        token = page_token(op)
        r = op.post("/login", data={"name": "op1", "password": PASSWORD, "csrf_token": token})
        assert r.status_code == 401 and 'autocomplete="one-time-code"' in r.text
        assert re.search(r'<input id="code"[^>]*required', r.text)
        nxt = totp.at(time.time() + users.TOTP_STEP)
        r = op.post("/login", data={"name": "op1", "password": PASSWORD, "code": nxt,
                                    "csrf_token": token}, follow_redirects=False)
        assert r.status_code == 303, r.text
        assert op.get("/api/v1/auth/me").json()["name"] == "op1"
    begun = audit_actions(gov, "user.totp.begin")
    assert begun and secret not in str([(e.details, e.object_id) for e in begun])


def test_a_role_that_requires_totp_sends_its_sessions_to_enrol(
        gov: Gov, app: object, admin: tuple[TestClient, str]) -> None:
    c, csrf = admin
    r = c.put("/api/v1/roles/supervisor/totp", json={"totp_required": True},
              headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200
    assert c.get("/api/v1/roles/totp").json()["supervisor"] is True
    with client_of(app) as sv:
        login(sv, "sv1")
        refused = sv.get("/api/v1/alerts")
        assert refused.status_code == 403 and "second factor" in refused.json()["detail"]
        page = sv.get("/console", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/account/totp"
        enrol = sv.get("/account/totp")
        token = META_CSRF.search(enrol.text).group(1)  # type: ignore[union-attr]
        shown = sv.post("/account/totp/begin", data={"csrf_token": token})
        m = re.search(r'id="totp-secret" type="text" readonly value="([A-Z2-7]+)"', shown.text)
        assert shown.status_code == 200 and m
        r = sv.post("/account/totp/confirm", data={"csrf_token": token,
                                                   "code": pyotp.TOTP(m.group(1)).now()},
                    follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/console?done=account"
        assert sv.get("/api/v1/alerts").status_code == 200
    entry = audit_actions(gov, "role.totp_required")[-1]
    assert (entry.actor, entry.object_id, json.loads(entry.details)) == (
        "admin", "supervisor", {"from": False, "to": True})


def test_console_reset_shows_the_one_time_password_once(
        gov: Gov, app: object, admin: tuple[TestClient, str]) -> None:
    c, _ = admin
    token = page_token(c, "/console/users")
    r = c.post("/console/users/op1/reset", data={"csrf_token": token, "confirm": "yes"})
    assert r.status_code == 200
    m = re.search(r'id="reset-pw" type="text" readonly value="([^"]+)"', r.text)
    assert m
    assert m.group(1) not in c.get("/console/users").text
    r = c.post("/console/users/op2/role", data={"csrf_token": token, "role": "supervisor",
                                                "confirm": "yes"},
               follow_redirects=False)
    assert r.status_code == 303
    assert users.pending_step(gov.db, "op1") == users.PENDING_PASSWORD
    assert [json.loads(e.details)["to"] for e in audit_actions(gov, "user.role")] == [
        "supervisor"]


# -- CSRF, Origin, cookies and HSTS -------------------------------------------------------------

def test_a_csrf_token_works_only_with_its_own_session(app: object) -> None:
    with client_of(app) as op, client_of(app) as ao:
        op_csrf = login(op, "op1")
        login(ao, "ao1")
        # ao1's browser, carrying op1's nonce cookie and token (planted by an attacker who
        # got them with a session of their own): refused
        ao.cookies.delete("openlfr_csrf")
        ao.cookies.set("openlfr_csrf", op.cookies["openlfr_csrf"])
        r = ao.post("/api/v1/auth/logout", headers={"X-CSRF-Token": op_csrf})
        assert r.status_code == 403 and "CSRF" in r.json()["detail"]
        # and a token from before sign-in (bound to no session) does not work after it
        with client_of(app) as fresh:
            before = page_token(fresh)
            nonce = fresh.cookies["openlfr_csrf"]
            login(fresh, "op2")
            fresh.cookies.delete("openlfr_csrf")
            fresh.cookies.set("openlfr_csrf", nonce)  # the nonce of before, kept
            r = fresh.post("/api/v1/auth/logout", headers={"X-CSRF-Token": before})
            assert r.status_code == 403
        r = op.post("/api/v1/auth/logout", headers={"X-CSRF-Token": op_csrf})
        assert r.status_code == 200


@pytest.mark.parametrize(("header", "value", "ok"), [
    ("origin", "http://testserver", True),
    ("origin", "https://evil.example", False),
    ("origin", "http://testserver.evil.example", False),
    ("origin", "null", False),
    ("origin", "http://testserver:8080", False),
    ("referer", "http://testserver/console/users", True),
    ("referer", "https://evil.example/page", False),
])
def test_state_changes_from_another_origin_are_refused(
        gov: Gov, admin: tuple[TestClient, str], header: str, value: str, ok: bool) -> None:
    c, csrf = admin
    body = {"name": "newop", "role": "operator", "password": NEW}
    r = c.post("/api/v1/users", json=body, headers={"X-CSRF-Token": csrf, header: value})
    if ok:
        assert r.status_code == 201, r.text
    else:
        assert r.status_code == 403 and "cross-site" in r.json()["detail"]
        assert "newop" not in [u["name"] for u in c.get("/api/v1/users").json()]
    # the sign-in form is checked too
    token = page_token(c, "/login")
    r = c.post("/login", data={"name": "op1", "password": PASSWORD, "csrf_token": token},
               headers={header: value}, follow_redirects=False)
    assert r.status_code == (303 if ok else 403)


def test_https_uses_host_cookies_and_hsts(app: object) -> None:
    with client_of(app, "https://testserver") as c:
        r = c.post("/api/v1/auth/login", json={"name": "op1", "password": PASSWORD})
        assert r.status_code == 200
        cookies = r.headers.get_list("set-cookie")
        session = next(x for x in cookies if x.startswith("__Host-openlfr_session="))
        assert "secure" in session.lower() and "path=/" in session.lower()
        assert "domain" not in session.lower()
        assert any(x.startswith("__Host-openlfr_csrf=") and "secure" in x.lower()
                   for x in cookies)
        assert r.headers["strict-transport-security"] == "max-age=31536000"
        csrf = r.json()["csrf_token"]
        assert c.get("/api/v1/auth/me").json()["name"] == "op1"
        r = c.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200
        gone = r.headers["set-cookie"]
        assert gone.startswith("__Host-openlfr_session=") and "secure" in gone.lower()
    with client_of(app) as plain:
        r = plain.get("/public")
        assert "strict-transport-security" not in r.headers
        r = plain.post("/api/v1/auth/login", json={"name": "op1", "password": PASSWORD})
        assert "__Host-" not in r.headers["set-cookie"]
