"""The one error tree (:mod:`openlfr.errors`) and its two mappings: HTTP statuses (one handler
in the web app) and exit codes (one group in the CLI). An unexpected exception, a bare
``ValueError`` included, is a logged 500 / exit 1 without detail; altered ciphertext is an
integrity failure, logged on the server, never the caller's 400. The routes and commands
that reach the services run on SQLite and PostgreSQL (``gov``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from openlfr import errors
from openlfr.cli import app as cli_app
from openlfr.cli.common import EXIT_CODES, CommandGroup
from openlfr.governance.authz import Conflict, NotFound, RuleError
from openlfr.store.crypto import CryptoError, MasterKeyError
from openlfr.store.db import StoreError
from openlfr.store.enums import Role
from openlfr.store.models import Alert as AlertRow
from openlfr.store.models import SubjectImage
from openlfr.video.sources import SourceError
from openlfr.vision.imageio import ImageBusy, ImageError
from openlfr.vision.registry import ModelError
from openlfr.web.app import create_app
from openlfr.web.problems import INTEGRITY, INTERNAL, STATUS
from tests.govfix import Gov, bearer_headers
from tests.test_gov_alerts import _setup, _stored

#: One instance of each kind, and what the web and the CLI answer.
KINDS = [
    (errors.InvalidInput("bad value", field="x"), 400, 2),
    (errors.Unauthenticated("wrong name or password"), 401, 4),
    (errors.Forbidden("not for your role"), 403, 3),
    (errors.NotFound("no such thing"), 404, 5),
    (errors.Conflict("already decided"), 409, 6),
    (errors.IntegrityFailure("decryption failed"), 500, 7),
    (errors.Unavailable("busy", retry_after=7), 503, 8),
]


def test_the_classes_of_each_layer_are_kinds_of_the_tree() -> None:
    expected = {
        RuleError: errors.InvalidInput, SourceError: errors.InvalidInput,
        ImageError: errors.InvalidInput, ModelError: errors.InvalidInput,
        MasterKeyError: errors.InvalidInput, Conflict: errors.Conflict,
        NotFound: errors.NotFound, CryptoError: errors.IntegrityFailure,
        ImageBusy: errors.Unavailable, StoreError: errors.Unavailable,
    }
    for cls, kind in expected.items():
        assert not issubclass(cls, ValueError), cls
        assert errors.kind(cls("x") if cls is not ImageError else cls("a", "b")) is kind, cls
    assert errors.kind(ValueError("a bug")) is None
    # a governance conflict is a rule break too (pages that show rule breaks show it), but
    # the conflict is what it is answered as
    assert issubclass(Conflict, RuleError) and STATUS[errors.Conflict] == 409
    assert set(STATUS) == set(EXIT_CODES) == set(errors.KINDS)


# -- the web -----------------------------------------------------------------------------------

def _raising_app(gov: Gov, exc: BaseException) -> FastAPI:
    app = create_app(gov.system)

    def boom() -> None:
        raise exc

    app.add_api_route("/api/v1/test-raise", boom)
    app.add_api_route("/console/test-raise", boom)
    return app


@pytest.mark.parametrize(("exc", "status", "_code"), KINDS)
def test_each_kind_has_its_status(gov: Gov, exc: errors.OpenLFRError, status: int,
                                  _code: int, caplog: pytest.LogCaptureFixture) -> None:
    with TestClient(_raising_app(gov, exc), raise_server_exceptions=False) as client, \
            caplog.at_level(logging.ERROR, logger="openlfr.web"):
        r = client.get("/api/v1/test-raise")
        page = client.get("/console/test-raise")
    assert r.status_code == page.status_code == status
    detail = r.json()["detail"]
    if status == 500:  # an integrity failure: logged, no detail for the caller
        assert detail == INTEGRITY and str(exc) not in r.text
        assert any(str(exc) in rec.getMessage() for rec in caplog.records)
    else:
        assert str(exc) in detail and str(exc).lower() in page.text.lower()
    if status == 503:
        assert r.headers["Retry-After"] == "7"


@pytest.mark.parametrize("exc", [ValueError("secret internals of a bug"),
                                 KeyError("secret internals of a bug"),
                                 errors.OpenLFRError("secret internals of a bug")])
def test_an_unexpected_exception_is_a_logged_500_without_detail(
        gov: Gov, exc: Exception, caplog: pytest.LogCaptureFixture) -> None:
    with TestClient(_raising_app(gov, exc), raise_server_exceptions=False) as client, \
            caplog.at_level(logging.ERROR, logger="openlfr.web"):
        r = client.get("/api/v1/test-raise")
    assert r.status_code == 500
    assert r.json() == {"detail": INTERNAL} and "secret" not in r.text
    assert any(rec.exc_info and rec.exc_info[1] is exc for rec in caplog.records)


@pytest.fixture()
def client(gov: Gov) -> Iterator[TestClient]:
    with TestClient(create_app(gov.system), base_url="http://testserver") as c:
        yield c


def test_the_services_say_what_kind_and_the_app_answers(
        gov: Gov, client: TestClient, face_images: dict[str, Path]) -> None:
    """Bad input 400 naming the field, no such object 404, a refused role 403, a state that
    does not allow it 409: the service raises the kind, no route guesses."""
    h = bearer_headers(gov, "errors")
    op, ao = h[Role.OPERATOR], h[Role.AUTHORISING_OFFICER]
    st = _setup(gov, face_images)
    alert_id = _stored(gov, st)
    r = client.get("/api/v1/alerts?status=maybe", headers=op)
    assert r.status_code == 400 and "status 'maybe' is not one of" in r.json()["detail"]
    assert client.get("/api/v1/alerts/999999", headers=op).status_code == 404
    assert client.get("/api/v1/users", headers=op).status_code == 403
    # an outcome before a decision: the alert's state is in the way
    r = client.post(f"/api/v1/alerts/{alert_id}/outcome", headers=op,
                    json={"engaged": True, "action": "advice"})
    assert r.status_code == 409 and "only for confirmed alerts" in r.json()["detail"]
    r = client.post(f"/api/v1/alerts/{alert_id}/adjudications", headers=op,
                    json={"decision": "confirm"})
    assert r.status_code == 201, r.text
    r = client.post(f"/api/v1/alerts/{alert_id}/adjudications", headers=ao,
                    json={"decision": "reject", "reason": "not him"})
    assert r.status_code in (403, 409)  # an officer may not decide; an operator would get 409
    r = client.post(f"/api/v1/alerts/{alert_id}/adjudications", headers=op,
                    json={"decision": "reject", "reason": "not him"})
    assert r.status_code == 409 and "already decided" in r.json()["detail"]
    # a broken rule names the field, not a command-line flag
    r = client.post(f"/api/v1/alerts/{alert_id}/outcome", headers=op,
                    json={"engaged": False, "action": "advice"})
    assert r.status_code == 400 and "engaged" in r.json()["detail"]
    assert "--" not in r.json()["detail"]
    r = client.post(f"/api/v1/alerts/{alert_id}/outcome", headers=op,
                    json={"engaged": True, "action": "advice"})
    assert r.status_code == 201, r.text
    r = client.post(f"/api/v1/alerts/{alert_id}/outcome", headers=op,
                    json={"engaged": True, "action": "advice"})
    assert r.status_code == 409 and "already has an outcome" in r.json()["detail"]


def test_altered_ciphertext_is_a_logged_integrity_failure(
        gov: Gov, client: TestClient, face_images: dict[str, Path],
        caplog: pytest.LogCaptureFixture) -> None:
    """Not the caller's mistake: never a 400, and the server's log says what failed."""
    h = bearer_headers(gov, "integrity")
    st = _setup(gov, face_images)
    alert_id = _stored(gov, st)
    r = client.get(f"/api/v1/alerts/{alert_id}/crop", headers=h[Role.OPERATOR])
    assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
    with gov.db.session() as s:
        row = s.get(AlertRow, alert_id)
        assert row is not None and row.crop_ct is not None
        row.crop_ct = row.crop_ct[:-1] + bytes([row.crop_ct[-1] ^ 1])  # one bit changed
        img = s.get(SubjectImage, st.image_id)
        assert img is not None
        img.image_ct = b"\x00" * 60  # never the sealed image
    with caplog.at_level(logging.ERROR, logger="openlfr.web"):
        crop = client.get(f"/api/v1/alerts/{alert_id}/crop", headers=h[Role.OPERATOR])
        image = client.get(f"/api/v1/subject-images/{st.image_id}",
                           headers=h[Role.AUTHORISING_OFFICER])
    for r in (crop, image):
        assert r.status_code == 500 and r.json() == {"detail": INTEGRITY}
    logged = [rec.getMessage() for rec in caplog.records]
    assert any("integrity failure" in m and "crop" in m for m in logged), logged
    assert any("decryption failed" in m and "subject-images" in m for m in logged), logged


# -- the command line ---------------------------------------------------------------------------

def _cli_raising(exc: BaseException) -> typer.Typer:
    app = typer.Typer(cls=CommandGroup, pretty_exceptions_enable=False)

    @app.command()
    def boom() -> None:
        raise exc

    @app.command()
    def other() -> None:  # two commands: boom is a subcommand, as in openlfr
        pass

    return app


@pytest.mark.parametrize(("exc", "_status", "code"), KINDS)
def test_each_kind_has_its_exit_code(exc: errors.OpenLFRError, _status: int,
                                     code: int) -> None:
    result = CliRunner().invoke(_cli_raising(exc), ["boom"])
    assert result.exit_code == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(exc) in lines[0]


def test_an_unexpected_exception_exits_1_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    app = _cli_raising(ValueError("a bug's message"))
    monkeypatch.delenv("OPENLFR_DEBUG", raising=False)
    result = CliRunner().invoke(app, ["boom"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: internal error (ValueError); set OPENLFR_DEBUG=1 to see where"]
    debug = CliRunner().invoke(app, ["boom"], env={"OPENLFR_DEBUG": "1"})
    assert debug.exit_code == 1 and "Traceback" in debug.stderr
    assert "a bug's message" in debug.stderr


def test_the_commands_exit_with_the_kind_of_the_service_error(gov: Gov) -> None:
    """Real commands, one mapping: not found 5, a conflict 6, bad input 2."""
    env = dict(gov.env(), COLUMNS="200")

    def run(*args: str, user: str = "admin") -> tuple[int, str]:
        result = CliRunner().invoke(cli_app, [*args, "--user", user], env=env)
        return result.exit_code, result.stderr.strip()

    code, err = run("deployment", "show", "999")
    assert code == 5 and "deployment 999 does not exist" in err
    code, err = run("watchlist", "create", "WL", "--purpose",
                    "finding missing people near the station", user="op1")
    assert code == 0, err
    code, err = run("watchlist", "approve", "1", user="ao1")
    assert code == 6 and "no subject" in err
    code, err = run("deployment", "create", "--alternatives",
                    "Patrols do not suffice", "--name", "x", "--start", "2026-05-01T08:00",
                    "--end", "+2h", user="op1")
    assert code == 2 and "give a timezone" in err
