"""Every ``/api/v1`` route × every role, on SQLite and PostgreSQL.

The list of routes is read from the app (:data:`openlfr.web.app.ROUTERS`), so it cannot drift:
each route needs a row in :data:`CASES` — the permission it needs (from
:data:`openlfr.governance.authz.PERMISSIONS`, or :data:`ANYONE` / :data:`SIGNED_IN`) and a
request that reaches the permission check — or a reason in :data:`UNDRIVEN`, and
:func:`test_every_route_is_listed` fails when a route appears that is in neither (or a row
names a route that is gone).

A role the permission allows must not get 401 or 403, nor 422 (the request never reached the
check). Objects are mostly made-up ids, so it often gets 404: the permission is checked before
anything is looked up. A role it does not
allow gets 403, and exactly one new audit entry: its ``access.refused``. Refused requests
change nothing, so one installation per database serves the whole module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from openlfr.audit import log as audit_log
from openlfr.governance.authz import PERMISSIONS, Perm
from openlfr.store.enums import Role
from openlfr.web.app import ROUTERS, create_app
from tests.govfix import ACCOUNT, PASSWORD, Gov, bearer_headers
from tests.test_web_core import all_routes

ANYONE = "anyone"  # no sign-in needed (the public API, signing in)
SIGNED_IN = "signed-in"  # any role
NO = 999999  # an id that does not exist


@dataclass(frozen=True)
class Case:
    need: Perm | str
    path: str  # the route's path with its parameters filled in
    json: Any = None
    data: dict[str, Any] | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    params: dict[str, Any] = field(default_factory=dict)


NOT_AN_IMAGE = [("image", ("x.jpg", b"not an image at all", "image/jpeg"))]
SUBJECT = {"reference": "case 1", "category": "wanted_by_court",
           "reason": "Warrant W-77 of the crown court, failing to appear",
           "expires": "30d", "source": "custody record"}
PLAN = {"name": "matrix", "site": "s", "location": "l", "purpose": "p",
        "alternatives": "Patrols do not suffice", "legal_basis": "b",
        "dpia_ref": "d", "equality_ref": "e", "planned_start": "2030-01-01T08:00:00+00:00",
        "planned_end": "2030-01-01T18:00:00+00:00"}

#: (method, route path) → how to drive it.
CASES: dict[tuple[str, str], Case] = {
    # sign-in and who am I
    ("POST", "/api/v1/auth/login"): Case(ANYONE, "/api/v1/auth/login"),  # json: per role
    ("POST", "/api/v1/auth/logout"): Case(SIGNED_IN, "/api/v1/auth/logout"),
    ("GET", "/api/v1/auth/me"): Case(SIGNED_IN, "/api/v1/auth/me"),
    ("GET", "/api/v1/meta"): Case(SIGNED_IN, "/api/v1/meta"),
    # public
    ("GET", "/api/v1/public/deployments"): Case(ANYONE, "/api/v1/public/deployments"),
    ("GET", "/api/v1/public/deployments/{deployment_id}"):
        Case(ANYONE, f"/api/v1/public/deployments/{NO}"),
    ("GET", "/api/v1/public/summary"): Case(ANYONE, "/api/v1/public/summary"),
    ("GET", "/api/v1/public/shared"): Case(ANYONE, "/api/v1/public/shared"),
    # users and tokens
    ("GET", "/api/v1/users"): Case(Perm.USER_MANAGE, "/api/v1/users"),
    ("POST", "/api/v1/users"): Case(Perm.USER_MANAGE, "/api/v1/users", json={
        "name": "matrix-user", "role": "auditor", "password": PASSWORD}),
    ("POST", "/api/v1/users/{name}/deactivate"):
        Case(Perm.USER_MANAGE, "/api/v1/users/nobody-here/deactivate"),
    ("POST", "/api/v1/users/{name}/activate"):
        Case(Perm.USER_MANAGE, "/api/v1/users/nobody-here/activate"),
    ("POST", "/api/v1/users/{name}/role"):
        Case(Perm.USER_MANAGE, "/api/v1/users/nobody-here/role", json={"role": "auditor"}),
    ("POST", "/api/v1/users/{name}/reset"):
        Case(Perm.USER_MANAGE, "/api/v1/users/nobody-here/reset", json={}),
    ("POST", "/api/v1/users/{name}/totp/remove"):
        Case(Perm.USER_MANAGE, "/api/v1/users/nobody-here/totp/remove"),
    ("GET", "/api/v1/roles/totp"): Case(Perm.USER_MANAGE, "/api/v1/roles/totp"),
    ("PUT", "/api/v1/roles/{role}/totp"):
        Case(Perm.SETTINGS, "/api/v1/roles/auditor/totp", json={"totp_required": False}),
    # one's own account (with an API token: 400, a token cannot change them)
    ("POST", "/api/v1/auth/password"): Case(SIGNED_IN, "/api/v1/auth/password", json={
        "current_password": "wrong", "new_password": "whatever"}),
    ("POST", "/api/v1/auth/totp/begin"): Case(SIGNED_IN, "/api/v1/auth/totp/begin"),
    ("POST", "/api/v1/auth/totp/confirm"): Case(SIGNED_IN, "/api/v1/auth/totp/confirm",
                                               json={"code": "123456"}),
    ("GET", "/api/v1/tokens"): Case(Perm.TOKEN_MANAGE, "/api/v1/tokens"),
    ("POST", "/api/v1/tokens"): Case(Perm.TOKEN_MANAGE, "/api/v1/tokens",
                                     json={"user": "nobody-here", "name": "x"}),
    ("POST", "/api/v1/tokens/{token_id}/revoke"):
        Case(Perm.TOKEN_MANAGE, f"/api/v1/tokens/{NO}/revoke"),
    # residents' questions
    ("GET", "/api/v1/questions"): Case(Perm.QUESTION_READ, "/api/v1/questions"),
    ("GET", "/api/v1/questions/{question_id}"):
        Case(Perm.QUESTION_READ, f"/api/v1/questions/{NO}"),
    ("POST", "/api/v1/questions/{question_id}/answer"):
        Case(Perm.QUESTION_ANSWER, f"/api/v1/questions/{NO}/answer", json={"answer": "Yes."}),
    ("POST", "/api/v1/questions/{question_id}/close"):
        Case(Perm.QUESTION_ANSWER, f"/api/v1/questions/{NO}/close"),
    ("POST", "/api/v1/questions/{question_id}/publish"):
        Case(Perm.QUESTION_ANSWER, f"/api/v1/questions/{NO}/publish", json={}),
    ("POST", "/api/v1/questions/{question_id}/unpublish"):
        Case(Perm.QUESTION_ANSWER, f"/api/v1/questions/{NO}/unpublish"),
    # alerts
    ("GET", "/api/v1/alerts"): Case(Perm.ALERT_READ, "/api/v1/alerts"),
    ("GET", "/api/v1/alerts/{alert_id}"): Case(Perm.ALERT_READ, f"/api/v1/alerts/{NO}"),
    ("GET", "/api/v1/alerts/{alert_id}/crop"):
        Case(Perm.ALERT_READ, f"/api/v1/alerts/{NO}/crop"),
    ("GET", "/api/v1/alerts/{alert_id}/reference"):
        Case(Perm.ALERT_READ, f"/api/v1/alerts/{NO}/reference"),
    ("POST", "/api/v1/alerts/{alert_id}/adjudications"):
        Case(Perm.ALERT_ADJUDICATE, f"/api/v1/alerts/{NO}/adjudications",
             json={"decision": "confirm"}),
    ("POST", "/api/v1/alerts/{alert_id}/outcome"):
        Case(Perm.ALERT_ADJUDICATE, f"/api/v1/alerts/{NO}/outcome",
             json={"engaged": False, "action": "none"}),
    ("POST", "/api/v1/alerts/{alert_id}/hold"):
        Case(Perm.ALERT_HOLD, f"/api/v1/alerts/{NO}/hold", json={"reason": "court order"}),
    # watchlists
    ("GET", "/api/v1/watchlists"): Case(Perm.WATCHLIST_READ, "/api/v1/watchlists"),
    ("POST", "/api/v1/watchlists"): Case(Perm.WATCHLIST_EDIT, "/api/v1/watchlists", json={
        "name": "matrix", "purpose": "Find people wanted by the courts"}),
    ("GET", "/api/v1/watchlists/{watchlist_id}"):
        Case(Perm.WATCHLIST_READ, f"/api/v1/watchlists/{NO}"),
    ("POST", "/api/v1/watchlists/{watchlist_id}/subjects"):
        Case(Perm.WATCHLIST_EDIT, f"/api/v1/watchlists/{NO}/subjects", data=SUBJECT,
             files=NOT_AN_IMAGE),
    ("POST", "/api/v1/subjects/{subject_id}/images"):
        Case(Perm.WATCHLIST_EDIT, f"/api/v1/subjects/{NO}/images",
             data={"source": "court file"}, files=NOT_AN_IMAGE),
    ("POST", "/api/v1/subjects/{subject_id}/remove"):
        Case(Perm.WATCHLIST_EDIT, f"/api/v1/subjects/{NO}/remove", json={"reason": "gone"}),
    ("POST", "/api/v1/watchlists/{watchlist_id}/approve"):
        Case(Perm.WATCHLIST_APPROVE, f"/api/v1/watchlists/{NO}/approve"),
    ("POST", "/api/v1/watchlists/{watchlist_id}/destroy"):
        Case(Perm.WATCHLIST_DESTROY, f"/api/v1/watchlists/{NO}/destroy",
             json={"reason": "the event is over"}),
    ("GET", "/api/v1/subject-images/{image_id}"):
        Case(Perm.WATCHLIST_READ, f"/api/v1/subject-images/{NO}"),
    # deployments
    ("GET", "/api/v1/deployments"): Case(Perm.DEPLOYMENT_READ, "/api/v1/deployments"),
    ("POST", "/api/v1/deployments"): Case(Perm.DEPLOYMENT_EDIT, "/api/v1/deployments",
                                          json=PLAN),
    ("GET", "/api/v1/deployments/{deployment_id}"):
        Case(Perm.DEPLOYMENT_READ, f"/api/v1/deployments/{NO}"),
    ("PATCH", "/api/v1/deployments/{deployment_id}"):
        Case(Perm.DEPLOYMENT_EDIT, f"/api/v1/deployments/{NO}", json={"name": "renamed"}),
    ("POST", "/api/v1/deployments/{deployment_id}/authorise"):
        Case(Perm.DEPLOYMENT_AUTHORISE, f"/api/v1/deployments/{NO}/authorise"),
    ("POST", "/api/v1/deployments/{deployment_id}/propose"):
        Case(Perm.DEPLOYMENT_EDIT, f"/api/v1/deployments/{NO}/propose"),
    ("POST", "/api/v1/deployments/{deployment_id}/consultation-response"):
        Case(Perm.DEPLOYMENT_AUTHORISE, f"/api/v1/deployments/{NO}/consultation-response",
             json={"response": "We read every comment and changed the plan."}),
    ("POST", "/api/v1/deployments/{deployment_id}/override-threshold"):
        Case(Perm.THRESHOLD_OVERRIDE, f"/api/v1/deployments/{NO}/override-threshold",
             json={"reason": "tested on site with a small crowd"}),
    ("POST", "/api/v1/deployments/{deployment_id}/start"):
        Case(Perm.DEPLOYMENT_RUN, f"/api/v1/deployments/{NO}/start"),
    ("POST", "/api/v1/deployments/{deployment_id}/resume"):
        Case(Perm.DEPLOYMENT_RUN, f"/api/v1/deployments/{NO}/resume"),
    ("POST", "/api/v1/deployments/{deployment_id}/stop"):
        Case(Perm.DEPLOYMENT_RUN, f"/api/v1/deployments/{NO}/stop", json={"reason": "done"}),
    # the urgent-use path (eu-ai-act)
    ("POST", "/api/v1/deployments/{deployment_id}/urgent"):
        Case(Perm.DEPLOYMENT_RUN, f"/api/v1/deployments/{NO}/urgent",
             json={"justification": "A missing child was seen near the station minutes ago"}),
    ("GET", "/api/v1/deployments/{deployment_id}/urgent"):
        Case(Perm.DEPLOYMENT_READ, f"/api/v1/deployments/{NO}/urgent"),
    ("POST", "/api/v1/deployments/{deployment_id}/urgent/authorise"):
        Case(Perm.DEPLOYMENT_AUTHORISE, f"/api/v1/deployments/{NO}/urgent/authorise"),
    ("POST", "/api/v1/deployments/{deployment_id}/urgent/refuse"):
        Case(Perm.DEPLOYMENT_AUTHORISE, f"/api/v1/deployments/{NO}/urgent/refuse",
             json={"reason": "The situation was not urgent enough."}),
    ("GET", "/api/v1/deployments/{deployment_id}/notifications"):
        Case(Perm.DEPLOYMENT_READ, f"/api/v1/deployments/{NO}/notifications"),
    # the jurisdiction profile
    ("GET", "/api/v1/settings/profile"): Case(SIGNED_IN, "/api/v1/settings/profile"),
    ("PUT", "/api/v1/settings/profile"): Case(Perm.SETTINGS, "/api/v1/settings/profile",
                                              json={"profile": "uk-app"}),
    # the audit log
    ("GET", "/api/v1/audit/entries"): Case(Perm.AUDIT_READ, "/api/v1/audit/entries",
                                           params={"limit": 3}),
    ("GET", "/api/v1/audit/verify"): Case(Perm.AUDIT_READ, "/api/v1/audit/verify"),
    ("POST", "/api/v1/audit/export"): Case(Perm.AUDIT_READ, "/api/v1/audit/export"),
    ("GET", "/api/v1/audit/art12/{deployment_id}"):
        Case(Perm.AUDIT_READ, f"/api/v1/audit/art12/{NO}"),
    # field tests (blue list)
    ("POST", "/api/v1/deployments/{deployment_id}/field-tests"):
        Case(Perm.DEPLOYMENT_EDIT, f"/api/v1/deployments/{NO}/field-tests"),
    ("GET", "/api/v1/field-tests"): Case(Perm.DEPLOYMENT_READ, "/api/v1/field-tests"),
    ("GET", "/api/v1/field-tests/{test_id}"):
        Case(Perm.DEPLOYMENT_READ, f"/api/v1/field-tests/{NO}"),
    ("POST", "/api/v1/field-tests/{test_id}/volunteers"):
        Case(Perm.DEPLOYMENT_EDIT, f"/api/v1/field-tests/{NO}/volunteers",
             data={"label": "V1", "source": "photo taken with consent",
                   "consent_by": "PC Dawn Smith", "consent_at": "2026-01-01T10:00:00+00:00",
                   "consent_reference": "CONSENT-1",
                   "passes": "gate=2030-01-01T09:00:00+00:00/2030-01-01T09:10:00+00:00"},
             files=NOT_AN_IMAGE),
    ("GET", "/api/v1/field-tests/{test_id}/alerts"):
        Case(Perm.ALERT_READ, f"/api/v1/field-tests/{NO}/alerts"),
    ("POST", "/api/v1/field-tests/{test_id}/end"):
        Case(Perm.DEPLOYMENT_RUN, f"/api/v1/field-tests/{NO}/end"),
    # the annual report
    ("GET", "/api/v1/reports/annual/{year}"):
        Case(Perm.AUDIT_READ, "/api/v1/reports/annual/2001"),
    # sites and nodes
    ("GET", "/api/v1/sites"): Case(Perm.DEPLOYMENT_READ, "/api/v1/sites"),
    ("POST", "/api/v1/sites"): Case(Perm.NODE_MANAGE, "/api/v1/sites",
                                    json={"name": "matrix-site"}),
    ("GET", "/api/v1/nodes"): Case(Perm.DEPLOYMENT_READ, "/api/v1/nodes"),
    ("POST", "/api/v1/nodes"): Case(Perm.NODE_MANAGE, "/api/v1/nodes",
                                    json={"site": "nowhere", "name": "matrix-node"}),
    ("GET", "/api/v1/nodes/{name}"): Case(Perm.DEPLOYMENT_READ, "/api/v1/nodes/nobody-here"),
    ("POST", "/api/v1/nodes/{name}/token"):
        Case(Perm.NODE_MANAGE, "/api/v1/nodes/nobody-here/token", json={}),
    ("POST", "/api/v1/nodes/{name}/disable"):
        Case(Perm.NODE_MANAGE, "/api/v1/nodes/nobody-here/disable", json={"reason": "matrix"}),
}

#: Routes this matrix cannot drive, each with the reason.
UNDRIVEN: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/nodes/enrol"): "its credential is a node's one-time enrolment token, "
                                     "not an account: tests/test_nodes.py drives it",
}


def api_routes() -> list[tuple[str, str]]:
    """Every (method, path) under /api/v1 of the app's routers."""
    app = FastAPI()
    for router in ROUTERS:
        app.include_router(router)
    return sorted({(m, p) for p, methods in all_routes(app.routes) if p.startswith("/api/v1/")
                   for m in methods - {"HEAD"}})


ROUTES = [r for r in api_routes() if r in CASES]
MATRIX = [(route, role) for route in ROUTES for role in Role]


def allows(need: Perm | str, role: Role) -> bool:
    return need in (ANYONE, SIGNED_IN) or role in PERMISSIONS[Perm(need)]


@dataclass
class Matrix:
    gov: Gov
    client: TestClient
    bearer: dict[Role, dict[str, str]]


@pytest.fixture(scope="module")
def matrix(install: Gov) -> Iterator[Matrix]:
    bearer = bearer_headers(install, "matrix")
    with TestClient(create_app(install.system), base_url="http://testserver") as client:
        yield Matrix(install, client, bearer)


def _head(gov: Gov) -> audit_log.AuditEntry:
    with gov.db.reading() as s:
        entry = audit_log.head(s)
    assert entry is not None
    return entry


def test_every_route_is_listed(matrix: Matrix) -> None:
    """A new /api/v1 route must be added to CASES (or UNDRIVEN with a reason)."""
    live = sorted({(m, p) for p, methods in all_routes(matrix.client.app.routes)
                   if p.startswith("/api/v1/") for m in methods - {"HEAD"}})
    assert live == api_routes()
    unlisted = [r for r in live if r not in CASES and r not in UNDRIVEN]
    assert not unlisted, f"add these routes to CASES in {__file__}: {unlisted}"
    stale = [r for r in [*CASES, *UNDRIVEN] if r not in live]
    assert not stale, f"these routes no longer exist: {stale}"
    assert not set(CASES) & set(UNDRIVEN)
    assert all(reason.strip() for reason in UNDRIVEN.values())


@pytest.mark.parametrize(("route", "role"), MATRIX,
                         ids=[f"{m} {p} as {r.value}" for (m, p), r in MATRIX])
def test_route_role(matrix: Matrix, route: tuple[str, str], role: Role) -> None:
    method, _ = route
    case = CASES[route]
    name = ACCOUNT[role]
    body = case.json
    headers = matrix.bearer[role]
    if route == ("POST", "/api/v1/auth/login"):
        body, headers = {"name": name, "password": PASSWORD}, {}
    before = _head(matrix.gov).seq
    r = matrix.client.request(method, case.path, json=body, data=case.data,
                              files=case.files, params=case.params, headers=headers)
    matrix.client.cookies.clear()  # a sign-in's session must not leak into the next case
    after = _head(matrix.gov)
    if allows(case.need, role):
        assert r.status_code not in (401, 403), (r.status_code, r.text)
        # 422 would mean the request never reached the permission check: fix the case
        assert r.status_code != 422, (r.status_code, r.text)
        with matrix.gov.db.reading() as s:
            refused = [e for e in audit_log.entries(s) if e.seq > before
                       and e.action == "access.refused"]
        assert refused == []
    else:
        assert r.status_code == 403, (r.status_code, r.text)
        assert r.json()["detail"].startswith("refused:")
        assert after.seq == before + 1, "a refused request changed something"
        assert (after.action, after.actor) == ("access.refused", name)
        assert after.details["role"] == role.value
