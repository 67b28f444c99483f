"""The urgent-use path on the web and live (``eu-ai-act``): the console's
forms (the confirm pattern), the clock on the deployment page and the home page's banner, the
JSON API, the public page once it ends; and a real live run of ``openlfr serve``'s background
jobs on a clip made from the photo fixtures, stopped by the deadline without anyone acting, its
alerts and crops gone from the database and the key store. SQLite and PostgreSQL (``gov``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from openlfr.audit import log as audit_log
from openlfr.governance import deployments as deps
from openlfr.governance import profiles, urgent
from openlfr.store.enums import DeploymentStatus
from openlfr.store.models import Alert, DataKey, Deployment, UrgentUse
from openlfr.transparency.stats import check_against_audit, deployment_stats
from openlfr.web.app import create_app
from openlfr.web.jobs import BackgroundJobs
from tests.govfix import AUTHORISE_FORM, AUTHORISE_JSON, PASSWORD, Gov, ready_to_authorise
from tests.test_gov_deployments import approved_watchlist, plan
from tests.test_gov_urgent import REFUSAL, WHY, draft, eu, eu_plan
from tests.test_web_governance import people, post  # noqa: F401 (people: a fixture)


def status(gov: Gov, dep_id: int) -> Deployment:
    with gov.db.reading() as s:
        dep = s.get(Deployment, dep_id)
        assert dep is not None
        return dep


def test_console_under_uk_app_offers_no_urgent_start_and_refuses_one(
        gov: Gov, face_images, people) -> None:  # noqa: F811
    dep_id = draft(gov, face_images["obama"])
    op = people("op1")
    page = op.get(f"/console/deployments/{dep_id}").text
    assert "urgent-start" not in page
    r = post(op, f"/console/deployments/{dep_id}/urgent-start",
             {"justification": WHY, "confirm": "yes"})
    assert r.status_code == 409  # type: ignore[attr-defined]
    assert "only under the eu-ai-act profile" in r.text  # type: ignore[attr-defined]
    assert status(gov, dep_id).status == DeploymentStatus.DRAFT


def test_console_start_authorise_with_the_clock_and_banner(gov: Gov, face_images,
                                                           people) -> None:  # noqa: F811
    eu(gov)
    dep_id = draft(gov, face_images["obama"])
    op = people("op1")
    page = op.get(f"/console/deployments/{dep_id}").text
    assert 'id="urgent-start"' in page and 'data-confirm="Start this deployment now' in page
    # Without the confirmation nothing happens: a page asks.
    asked = post(op, f"/console/deployments/{dep_id}/urgent-start", {"justification": WHY})
    assert asked.status_code == 200 and "This cannot be undone" in asked.text  # type: ignore
    assert status(gov, dep_id).status == DeploymentStatus.DRAFT
    short = post(op, f"/console/deployments/{dep_id}/urgent-start",
                 {"justification": "It is urgent.", "confirm": "yes"})
    assert short.status_code == 400 and "must be substantial" in short.text  # type: ignore
    done = post(op, f"/console/deployments/{dep_id}/urgent-start",
                {"justification": WHY, "confirm": "yes"})
    assert done.status_code == 303, done.text  # type: ignore[attr-defined]
    assert status(gov, dep_id).status == DeploymentStatus.RUNNING
    page = op.get(f"/console/deployments/{dep_id}?done=urgent_started").text
    assert 'id="urgent-clock"' in page and "23 h 59 min" in page and WHY in page
    assert "not yet: an urgent use" in page
    assert "Authorise the urgent use" not in page  # an operator cannot
    home = people("au1").get("/console").text
    assert 'id="urgent-banner"' in home and "23 h 59 min" in home
    # The officer who would authorise sees both decisions.
    ao = people("ao1")
    page = ao.get(f"/console/deployments/{dep_id}").text
    assert "Authorise the urgent use" in page and "Refuse and delete its results" in page
    r = post(ao, f"/console/deployments/{dep_id}/urgent-authorise", AUTHORISE_FORM)
    assert r.status_code == 303  # type: ignore[attr-defined]
    page = ao.get(f"/console/deployments/{dep_id}").text
    assert 'id="urgent-clock"' not in page and "authorised: ao1" in page
    assert 'id="urgent-banner"' not in people("au1").get("/console").text
    assert status(gov, dep_id).authorised_by == "ao1"


def test_console_refusal_deletes_and_the_public_page_says_so(gov: Gov, face_images,
                                                             people) -> None:  # noqa: F811
    eu(gov)
    dep_id = draft(gov, face_images["obama"])
    urgent.start_urgent(gov.db, gov.system.keyring, gov.actors["op1"], dep_id, WHY)
    anyone = TestClient(create_app(gov.system))
    assert anyone.get(f"/public/deployments/{dep_id}").status_code == 404  # not while running
    ao = people("ao1")
    asked = post(ao, f"/console/deployments/{dep_id}/urgent-refuse", {"reason": REFUSAL})
    assert asked.status_code == 200 and "This cannot be undone" in asked.text  # type: ignore
    assert status(gov, dep_id).status == DeploymentStatus.RUNNING
    r = post(ao, f"/console/deployments/{dep_id}/urgent-refuse",
             {"reason": REFUSAL, "confirm": "yes"})
    assert r.status_code == 303  # type: ignore[attr-defined]
    assert status(gov, dep_id).status == DeploymentStatus.ENDED
    page = ao.get(f"/console/deployments/{dep_id}").text
    assert 'id="urgent-deleted"' in page and REFUSAL in page
    assert "no: an urgent use, refused" in page
    public = anyone.get(f"/public/deployments/{dep_id}")
    assert public.status_code == 200
    assert 'id="urgent-use"' in public.text and "Authorisation was refused" in public.text
    assert "was deleted" in public.text
    data = anyone.get(f"/api/v1/public/deployments/{dep_id}")
    assert data.status_code == 200
    assert data.json()["urgent_use"]["outcome"] == "refused"
    assert data.json()["urgent_use"]["justification"] == WHY
    assert anyone.get("/public/deployments.csv").status_code == 200
    # The audit log page names the new actions in words.
    audit = people("au1").get("/console/audit").text
    assert "Urgent use refused" in audit and "Results of an urgent use deleted" in audit


def test_the_api_starts_shows_authorises_and_refuses(gov: Gov, face_images, people) -> None:  # noqa: F811
    eu(gov)
    a = draft(gov, face_images["obama"])
    b = draft(gov, face_images["obama"])
    op = people("op1")
    csrf = op.post("/api/v1/auth/login", json={"name": "op1", "password": PASSWORD}
                   ).json()["csrf_token"]
    h = {"X-CSRF-Token": csrf}
    assert op.get(f"/api/v1/deployments/{a}/urgent").status_code == 404
    bad = op.post(f"/api/v1/deployments/{a}/urgent", json={"justification": "now"}, headers=h)
    assert bad.status_code in (400, 422) and "substantial" in bad.text
    r = op.post(f"/api/v1/deployments/{a}/urgent", json={"justification": WHY}, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "waiting" and 0 < r.json()["seconds_left"] <= 24 * 3600
    assert op.get(f"/api/v1/deployments/{a}/urgent").json()["started_by"] == "op1"
    op.post(f"/api/v1/deployments/{b}/urgent", json={"justification": WHY}, headers=h)
    ao = people("ao1")
    csrf = ao.post("/api/v1/auth/login", json={"name": "ao1", "password": PASSWORD}
                   ).json()["csrf_token"]
    h = {"X-CSRF-Token": csrf}
    r = ao.post(f"/api/v1/deployments/{a}/urgent/authorise", json=AUTHORISE_JSON, headers=h)
    assert r.status_code == 200 and r.json()["state"] == "authorised", r.text
    again = ao.post(f"/api/v1/deployments/{a}/urgent/authorise", json=AUTHORISE_JSON,
                    headers=h)
    assert again.status_code == 409
    r = ao.post(f"/api/v1/deployments/{b}/urgent/refuse", json={"reason": REFUSAL}, headers=h)
    assert r.status_code == 200 and r.json()["state"] == "refused", r.text
    assert r.json()["results_deleted_at"]


# -- a real live run, stopped by the deadline --------------------------------------------------

LIVE = {"realtime": True, "loop": True, "workers": 1, "flush_interval": 0.5}


def wait_for(what: str, cond: Callable[[], object], timeout: float) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - t0


def test_a_live_run_stops_at_the_deadline_and_its_results_are_gone(gov: Gov, face_images,
                                                                    clips) -> None:
    profiles.set_profile(gov.db, gov.actors["admin"], "eu-ai-act")
    wid = approved_watchlist(gov, face_images["obama"])
    dep_id = deps.create(gov.db, gov.actors["op1"],
                         eu_plan(plan((wid,), cameras=(deps.CameraSpec("gate",
                                                                       str(clips.obama)),))),
                         keyring=gov.system.keyring)
    ready_to_authorise(gov.db, gov.actors["ao2"], dep_id)
    jobs = BackgroundJobs(gov.system, tick=3600, retention_every=1e9, run_options=LIVE)
    jobs.start()
    try:
        urgent.start_urgent(gov.db, gov.system.keyring, gov.actors["op1"], dep_id, WHY)
        assert wait_for("a live run", lambda: dep_id in jobs.runs, 60.0) >= 0
        run = jobs.runs[dep_id]

        def alerts() -> int:
            with gov.db.reading() as s:
                return int(s.scalar(select(func.count()).select_from(Alert).where(
                    Alert.deployment_id == dep_id)) or 0)

        wait_for("an alert of the watchlisted person", lambda: alerts() > 0, 120.0)
        key_id = status(gov, dep_id).data_key_id
        assert key_id is not None and gov.system.keyring.store.exists(key_id)
        # The deadline comes (as if 24 hours had passed): nobody acts.
        deadline = datetime.now(UTC) + timedelta(seconds=1)
        with gov.db.session() as s:
            s.execute(update(UrgentUse).where(UrgentUse.deployment_id == dep_id)
                      .values(deadline=deadline))
        stopped = wait_for("the run stopped", lambda: not run.running, 30.0)
        after = (datetime.now(UTC) - deadline).total_seconds()
        assert after < 10.0, f"the run stopped {after:.1f} s after the deadline"
        assert stopped < 12.0
    finally:
        jobs.stop()
    dep = status(gov, dep_id)
    assert dep.status == DeploymentStatus.ENDED and dep.data_key_id is None
    with gov.db.reading() as s:
        assert s.scalar(select(func.count()).select_from(Alert)) == 0
        key = s.get(DataKey, key_id)
        assert key is not None and key.destroyed_at is not None and key.wrapped == b""
        use = s.scalars(select(UrgentUse)).one()
        assert use.outcome == "expired" and use.results_deleted_at is not None
        kept = urgent.deleted_counts(s)[dep_id]
        assert kept["alerts"] >= 1
        assert deployment_stats(s, dep_id)[0].alerts == kept["alerts"]
        assert deployment_stats(s, dep_id)[0].tracks > 0  # people passing: a count, kept
        assert check_against_audit(s) == []
        assert audit_log.verify(s).ok
    assert not gov.system.keyring.store.exists(key_id)
