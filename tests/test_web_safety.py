"""Safety on the console's pages (SQLite and PostgreSQL, FastAPI's TestClient): every
irreversible action asks first and does nothing without ``confirm=yes`` (the page that asks
works without JavaScript); the threshold-override form shows only where an override is
possible; times are entered and shown in the zone of people (``OPENLFR_TIME_ZONE``)."""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
from fastapi.testclient import TestClient

from openlfr.governance import deployments as deps
from openlfr.governance import users as users_svc
from openlfr.governance import watchlists as wls
from openlfr.governance.views import UserView
from openlfr.store.enums import Role
from openlfr.web import tokens
from openlfr.web.app import create_app
from tests.govfix import PASSWORD, Gov, authorise
from tests.govfix import audit_records as actions
from tests.test_gov_deployments import SFACE_FLOOR
from tests.test_web_governance import approved_watchlist, people, post  # noqa: F401

HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">')
ASKED = "Nothing has been done yet."


def confirm_page_form(text: str) -> dict[str, str]:
    """The fields the page that asks sends again (its CSRF token, the action's fields and
    ``confirm=yes``), as a browser would."""
    start = text.index('<section class="card stack" aria-labelledby="confirm-q">')
    return {k: html.unescape(v) for k, v in HIDDEN.findall(text[start:])}


def running_deployment(gov: Gov, wl_id: int, threshold: float | None = None,
                       start: bool = True) -> int:
    now = datetime.now(UTC)
    model_id = wls.show_watchlist(gov.db, gov.actors["au1"], wl_id).model_id
    dep_id = deps.create(gov.db, gov.actors["op1"], deps.Plan(
        name="Cup final", site="City stadium", location="North gate",
        purpose="Find people wanted by the courts", legal_basis="Common law powers",
        alternatives="Patrols do not suffice",
        dpia_ref="DPIA-1", equality_ref="EIA-1", planned_start=now - timedelta(minutes=5),
        planned_end=now + timedelta(hours=4), threshold=threshold or SFACE_FLOOR + 0.05,
        model_id=model_id, signage=True, public_notice=True, watchlist_ids=(wl_id,),
        notice_at=now - timedelta(days=1),
        cameras=(deps.CameraSpec("gate", "0"),)), keyring=gov.system.keyring)
    if start:
        authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)
        deps.start(gov.db, gov.actors["op1"], dep_id)
    return dep_id


def test_every_irreversible_action_asks_first_and_does_nothing_without_yes(
        gov: Gov, people: Callable[[str], TestClient],  # noqa: F811
        face_images: dict[str, Path]) -> None:
    face = face_images["obama"].read_bytes()
    kept = approved_watchlist(gov, face, "stadium")
    gone = approved_watchlist(gov, face, "old list")
    subject_id = wls.show_watchlist(gov.db, gov.actors["au1"], gone).subject_list[0].id
    dep_id = running_deployment(gov, kept)
    admin = gov.actors["admin"]
    for name in ("dawn", "eve"):
        users_svc.add_user(gov.db, admin, name, Role.OPERATOR, PASSWORD)
    eve = dataclasses.replace(gov.actors["op1"], name="eve")
    enrolment = users_svc.totp_begin(gov.system, eve)
    users_svc.totp_confirm(gov.system, eve, pyotp.TOTP(enrolment.secret).now())
    token = tokens.create_token(gov.db, admin, "op1", "camera bridge")[0]

    def user(name: str) -> UserView:
        return next(u for u in users_svc.list_users(gov.db, admin) if u.name == name)

    def token_revoked() -> bool:
        return next(t for t in tokens.list_tokens(gov.db, admin)
                    if t.id == token.id).revoked_at is not None

    wl_url, dep_url = f"/console/watchlists/{gone}", f"/console/deployments/{dep_id}"
    cases: list[tuple[str, str, str, dict[str, object], Callable[[], bool]]] = [
        ("op1", wl_url, f"/console/subjects/{subject_id}/remove",
         {"watchlist_id": gone, "reason": "arrested"},
         lambda: not wls.show_watchlist(gov.db, gov.actors["au1"], gone).subject_list),
        ("ao1", wl_url, f"{wl_url}/destroy", {"reason": "the event is over"},
         lambda: wls.show_watchlist(gov.db, gov.actors["au1"], gone).status == "destroyed"),
        ("op1", dep_url, f"{dep_url}/stop", {"reason": "the match is over"},
         lambda: deps.show(gov.db, gov.actors["au1"], dep_id).status == "ended"),
        ("admin", "/console/users", "/console/users/dawn/role", {"role": "supervisor"},
         lambda: user("dawn").role == Role.SUPERVISOR),
        ("admin", "/console/users", "/console/users/dawn/reset", {},
         lambda: user("dawn").one_time_password),
        ("admin", "/console/users", "/console/users/eve/totp/remove", {},
         lambda: not user("eve").totp),
        ("admin", "/console/users", "/console/users/dawn/active", {"active": "0"},
         lambda: not user("dawn").active),
        ("admin", "/console/users", f"/console/tokens/{token.id}/revoke", {}, token_revoked),
    ]
    for who, page, path, fields, done in cases:
        client = people(who)
        assert 'name="confirm" value=""' in client.get(page).text, page  # the button's field
        before = len(actions(gov, "access.refused"))
        for confirm in ({}, {"confirm": ""}, {"confirm": "no"}, {"confirm": "YES!"}):
            r = post(client, path, {**fields, **confirm}, page=page)
            assert r.status_code == 200 and ASKED in r.text, (path, r.status_code)
            assert not done(), path
        assert len(actions(gov, "access.refused")) == before  # a question, not a refusal
        again = confirm_page_form(r.text)
        assert again.pop("confirm") == "yes" and again.pop("csrf_token")
        assert again == {k: str(v) for k, v in fields.items()}, path
        assert f'action="{path}"' in r.text
        r = client.post(path, data=confirm_page_form(r.text), follow_redirects=False)
        assert r.status_code in (200, 303), (path, r.status_code, r.text[:300])
        assert done(), path
    # reactivating takes nothing away: no question
    r = post(people("admin"), "/console/users/dawn/active", {"active": "1"},
             page="/console/users")
    assert r.status_code == 303 and user("dawn").active


def test_the_override_form_shows_only_where_an_override_is_possible(
        gov: Gov, people: Callable[[str], TestClient],  # noqa: F811
        face_images: dict[str, Path]) -> None:
    wl_id = approved_watchlist(gov, face_images["obama"].read_bytes())
    fine = running_deployment(gov, wl_id, start=False)
    low = running_deployment(gov, wl_id, threshold=SFACE_FLOOR - 0.1, start=False)
    form = 'action="/console/deployments/{}/override-threshold"'
    ao1, ao2, op1 = people("ao1"), people("ao2"), people("op1")
    assert form.format(fine) not in ao1.get(f"/console/deployments/{fine}").text
    assert form.format(low) not in op1.get(f"/console/deployments/{low}").text
    page = ao1.get(f"/console/deployments/{low}").text
    assert form.format(low) in page and "Record the override" in page
    r = post(ao1, f"/console/deployments/{fine}/override-threshold",
             {"reason": "The crowd is small and tested on site"},
             page=f"/console/deployments/{fine}")
    assert r.status_code == 409 and "no override is needed" in r.text
    r = post(ao1, f"/console/deployments/{low}/override-threshold",
             {"reason": "The crowd is small and tested on site"},
             page=f"/console/deployments/{low}")
    assert r.status_code == 303
    assert form.format(low) not in ao1.get(f"/console/deployments/{low}").text  # recorded it
    page = ao2.get(f"/console/deployments/{low}").text
    assert form.format(low) in page and "Confirm the override" in page
    post(ao2, f"/console/deployments/{low}/override-threshold",
         {"reason": "Agreed: the crowd is small today"}, page=f"/console/deployments/{low}")
    for client in (ao1, ao2):
        assert form.format(low) not in client.get(f"/console/deployments/{low}").text


def test_times_are_entered_and_shown_in_the_zone_of_people(
        gov: Gov, face_images: dict[str, Path]) -> None:
    london = dataclasses.replace(gov.system, settings=gov.settings.model_copy(
        update={"time_zone": "Europe/London"}))
    wl_id = approved_watchlist(gov, face_images["obama"].read_bytes())
    with TestClient(create_app(london), base_url="http://testserver") as op1:
        assert op1.post("/api/v1/auth/login",
                        json={"name": "op1", "password": PASSWORD}).status_code == 200
        new = op1.get("/console/deployments/new").text
        assert "Planned start (Europe/London)" in new and "Planned end (Europe/London)" in new
        fields = {"name": "Summer fair", "site": "Park", "location": "Gate", "purpose": "p",
                  "legal_basis": "b", "dpia_ref": "d", "equality_ref": "e",
                  "alternatives": "Patrols do not suffice",
                  "planned_start": "2027-07-01T14:05", "planned_end": "2027-07-01T18:00",
                  "threshold": "", "backend": "sface", "cameras": "gate=0",
                  "watchlist_ids": str(wl_id), "signage": "1", "public_notice": "1",
                  "notice_at": "2027-06-24T09:00"}
        r = post(op1, "/console/deployments", fields, page="/console/deployments/new")
        assert r.status_code == 303, re.findall(r'role="alert"[^>]*>([^<]*)', r.text)
        dep_id = int(r.headers["location"].split("?")[0].rsplit("/", 1)[1])
        view = deps.show(gov.db, gov.actors["au1"], dep_id)
        assert view.planned_start == datetime(2027, 7, 1, 13, 5, tzinfo=UTC)  # stored in UTC
        page = op1.get(f"/console/deployments/{dep_id}").text
        assert "01 Jul 2027 14:05 BST (Europe/London)" in page
        assert 'value="2027-07-01T14:05"' in page  # the edit form, in the same zone
        # the clocks go back on 31 October 2027: 01:30 happens twice; the form is kept
        r = post(op1, "/console/deployments", {**fields, "planned_start": "2027-10-31T01:30"},
                 page="/console/deployments/new")
        assert r.status_code == 400
        assert "Planned_start 2027-10-31 01:30 happens twice in Europe/London" in r.text
        assert 'value="2027-10-31T01:30"' in r.text
        # the audit log shows its times in the zone too
        authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)
        entry = actions(gov, "deployment.authorise")[-1]
    with TestClient(create_app(london), base_url="http://testserver") as au1:
        au1.post("/api/v1/auth/login", json={"name": "au1", "password": PASSWORD})
        audit = au1.get("/console/audit").text
        local = datetime.fromisoformat(entry.time).astimezone(london.settings.zone)
        assert f"{local:%d %b %Y %H:%M:%S} {local:%Z} (Europe/London)" in audit
        # and the public page of the deployment, once authorised
        public = au1.get(f"/public/deployments/{dep_id}").text
        assert "01 Jul 2027, 14:05–18:00 BST (Europe/London)" in public
