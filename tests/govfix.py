"""Fixtures for the governance tests: a fresh installation on SQLite and on PostgreSQL.

Every governance test that takes ``gov`` runs twice: on a real SQLite file in a temporary data
directory, and on a real PostgreSQL database created for the test and dropped after it.
PostgreSQL is reached at ``OPENLFR_TEST_POSTGRES`` (default: the local server's Unix socket as
the current user; `.ci/run` starts one).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, ClassVar

import pytest
from argon2 import PasswordHasher
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from openlfr.config import Settings
from openlfr.governance import deployments as deps
from openlfr.governance import users
from openlfr.governance.authz import Actor
from openlfr.governance.floors import calibration_for, current_floor, record_floor
from openlfr.governance.system import System, initialise
from openlfr.store.crypto import Keyring
from openlfr.store.db import Database, alembic_config
from openlfr.store.enums import Role
from openlfr.store.models import AuditRecord, Deployment

PG_ADMIN_URL = os.environ.get(
    "OPENLFR_TEST_POSTGRES", "postgresql+psycopg://root@/postgres?host=/var/run/postgresql")
PASSWORD = "correct horse battery staple"

#: One account per role, and a second of the roles whose two-person rules need one.
PEOPLE = {
    "admin": Role.ADMIN,
    "ao1": Role.AUTHORISING_OFFICER,
    "ao2": Role.AUTHORISING_OFFICER,
    "op1": Role.OPERATOR,
    "op2": Role.OPERATOR,
    "sv1": Role.SUPERVISOR,
    "au1": Role.AUDITOR,
}
#: The account of each role used where one per role is enough.
ACCOUNT = {Role.ADMIN: "admin", Role.AUTHORISING_OFFICER: "ao1", Role.OPERATOR: "op1",
           Role.SUPERVISOR: "sv1", Role.AUDITOR: "au1"}


@dataclass
class Gov:
    """A fresh installation with one signed-in actor per name in :data:`PEOPLE`."""

    system: System
    kind: str  # "sqlite" | "postgresql"
    actors: dict[str, Actor] = field(default_factory=dict)

    @property
    def db(self) -> Database:
        return self.system.db

    @property
    def settings(self) -> Settings:
        return self.system.settings

    @property
    def data_dir(self) -> Path:
        return self.system.settings.data_dir

    def env(self) -> dict[str, str]:
        """Environment for running the CLI against this installation (password included)."""
        env = dict(os.environ, OPENLFR_DATA_DIR=str(self.data_dir), OPENLFR_PASSWORD=PASSWORD)
        if self.settings.database_url:
            env["OPENLFR_DATABASE_URL"] = self.settings.database_url
        return env


#: The command line as a user runs it: the console script's ``main()``.
CLI = [sys.executable, "-c", "from openlfr.cli import main; main()"]


def run_cli(gov: Gov, *args: object, user: str | None = None,
            **env: str) -> subprocess.CompletedProcess[str]:
    """``openlfr ARGS [--user USER]`` on ``gov``'s installation, in a process of its own (the
    password in the environment, stdin closed, 200 columns, two minutes at most)."""
    cmd = [*CLI, *map(str, args), *(["--user", user] if user else [])]
    return subprocess.run(cmd, env={**gov.env(), "COLUMNS": "200", **env}, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def audit_records(gov: Gov, action: str) -> list[AuditRecord]:
    """The audit log's rows of ``action``, oldest first."""
    with gov.db.reading() as s:
        return list(s.scalars(select(AuditRecord).where(AuditRecord.action == action)
                              .order_by(AuditRecord.seq)))


#: What an authorising officer records with an authorisation in the tests: enough for either
#: profile (``uk-app`` reads the rank and the criteria approval, ``eu-ai-act`` the authority's
#: decision; both the attestation that the calibration's data is representative).
DECISION = deps.Decision(
    rank="superintendent", criteria_approved=True, representative=True,
    authority_ref="AUTH-2026-0042", authority_name="Independent authorisation court",
    authority_date=date(2026, 1, 5),
    authority_scope="Live facial recognition at the planned site and window only")
#: The watchlist size and target rate of the test calibration (:func:`record_calibration`):
#: large and strict enough to answer for every test plan (a larger size and a lower target
#: answer for smaller, looser plans).
CAL_SIZE, CAL_TARGET = 10_000, 0.0001


def calibration_evidence(model_id: str, threshold: float, watchlist_size: int = CAL_SIZE,
                         target_fpir: float = CAL_TARGET, worst: float | None = None
                         ) -> dict[str, Any]:
    """Evidence shaped as ``openlfr calibrate`` records it (the parts authorisation reads:
    watchlist size, target rate, the worst-measured group's floor and the rate curve), with
    made-up but plausible figures: FPIR falls and FNIR rises with the threshold."""
    worst = threshold if worst is None else worst
    curve = []
    for step in range(0, 101):
        t = step / 100
        fpir = min(1.0, 0.02 * 10 ** (-(t - 0.3) * 10)) if t > 0.3 else 0.02
        fnir = min(1.0, max(0.0, (t - 0.2) / 2))
        curve.append({"threshold": f"{t:.2f}", "fpir": f"{fpir:.6g}", "fnir": f"{fnir:.6g}"})
    return {"kind": "openlfr-calibration", "version": 1, "model_id": model_id,
            "threshold": f"{threshold:.6g}", "watchlist_size": watchlist_size,
            "target_fpir": f"{target_fpir:g}",
            "worst_group": {"floor": f"{worst:.6g}", "group": "race=test", "resolved": True},
            "curve": curve, "dataset": {"sha256": "0" * 64, "note": "test fixture"}}


def record_calibration(db: Database, actor: Actor, model_id: str,
                       threshold: float | None = None, **kwargs: Any) -> int:
    """Record a calibration of ``model_id`` (at the model's current floor unless
    ``threshold``): what authorisation needs under every profile. Returns its record id."""
    if threshold is None:
        with db.reading() as s:
            threshold = current_floor(s, model_id).threshold
    floor = record_floor(db, actor, model_id, threshold,
                         calibration_evidence(model_id, threshold, **kwargs))
    assert floor.id is not None
    return floor.id


#: :data:`DECISION` as the console's Authorise form posts it, and as the API's JSON body.
AUTHORISE_FORM: dict[str, str] = {
    "rank": "superintendent", "criteria_approved": "1", "representative": "1",
    "authority_ref": DECISION.authority_ref or "", "authority_name": DECISION.authority_name or "",
    "authority_date": DECISION.authority_date.isoformat() if DECISION.authority_date else "",
    "authority_scope": DECISION.authority_scope or ""}
AUTHORISE_JSON: dict[str, object] = {**AUTHORISE_FORM, "criteria_approved": True,
                                     "representative": True}


def ready_to_authorise(db: Database, actor: Actor, deployment_id: int) -> None:
    """Record the test calibration a deployment's plan needs (:func:`record_calibration`, by
    ``actor``), unless one answers for it already: for tests that authorise through the
    console, the API or the command line."""
    with db.reading() as s:
        dep = s.get(Deployment, deployment_id)
        if dep is None or calibration_for(s, dep.model_id, max(deps.watchlist_size(s, dep), 1),
                                          dep.target_fpir or CAL_TARGET) is not None:
            return
        model_id = dep.model_id
    record_calibration(db, actor, model_id)


def fill_authorisation(page: Any) -> None:
    """Fill a deployment page's Authorise form as :data:`DECISION` (a Playwright page): the
    fields the profile in force shows."""
    if page.locator("#a-rank").count():
        page.select_option("#a-rank", DECISION.rank)
        page.check("input[name=criteria_approved]")
    if page.locator("#a-ref").count():
        page.fill("#a-ref", AUTHORISE_FORM["authority_ref"])
        page.fill("#a-name", AUTHORISE_FORM["authority_name"])
        page.fill("#a-date", AUTHORISE_FORM["authority_date"])
        page.fill("#a-scope", AUTHORISE_FORM["authority_scope"])
    page.check("input[name=representative]")


def authorise(db: Database, keyring: Keyring, actor: Actor, deployment_id: int,
              decision: deps.Decision = DECISION, **kwargs: Any) -> None:
    """Authorise as a test does: :func:`openlfr.governance.deployments.authorise` with
    :data:`DECISION`, after :func:`ready_to_authorise` (by ``actor``). The one way tests
    authorise in-process: the profile's rules apply, and this provides what they need."""
    ready_to_authorise(db, actor, deployment_id)
    deps.authorise(db, keyring, actor, deployment_id, decision=decision, **kwargs)


#: Per test process: an empty database at the newest schema, copied by :func:`installation`
#: instead of migrating every test's database from nothing (the migrations have tests of their
#: own): SQLite's as a file, PostgreSQL's as a template database.
_SCHEMA: dict[str, str] = {}


def _schema(kind: str) -> str:
    if kind not in _SCHEMA:
        if kind == "sqlite":
            path = Path(tempfile.mkdtemp(prefix="openlfr-schema-")) / "openlfr.db"
            db = Database(f"sqlite:///{path}")
            db.upgrade()
            db.dispose()
            if path.with_name(path.name + "-wal").exists():
                return ""  # not folded into the file: migrate as usual
            _SCHEMA[kind] = str(path)
        else:
            name = f"openlfr_schema_{uuid.uuid4().hex[:12]}"
            _admin(f'CREATE DATABASE "{name}"')
            db = Database(make_url(PG_ADMIN_URL).set(database=name).render_as_string(
                hide_password=False))
            db.upgrade()
            db.dispose()
            atexit.register(_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            _SCHEMA[kind] = name
    return _SCHEMA[kind]


def _admin(statement: str) -> None:
    """One statement on PostgreSQL's administrative database, outside a transaction."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(statement))
    finally:
        admin.dispose()


def _pg_database(template: str | None = None) -> Iterator[str]:
    name = f"openlfr_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'
                              + (f' TEMPLATE "{template}"' if template else "")))
    except Exception as exc:  # say what to do, not a wall of driver errors
        admin.dispose()
        pytest.fail(f"PostgreSQL is needed for the governance tests ({PG_ADMIN_URL}): {exc}; "
                    "see .ci/run for how it is installed and started")
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class _HashOnce(PasswordHasher):
    """The test people's password hashed once a test process, at argon2's real cost (about
    0.16 s a hash: seven people took every installation a second to set up). Only
    :func:`make_gov` uses it; every check of a password stays the real one."""

    _made: ClassVar[dict[str, str]] = {}

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        key = password if isinstance(password, str) else password.decode()
        if salt is not None or key != PASSWORD:
            return super().hash(password, salt=salt)
        if key not in self._made:
            self._made[key] = super().hash(password)
        return self._made[key]


def make_gov(kind: str, tmp_path: Path, database_url: str | None) -> Gov:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url)
    system, _ = initialise(settings)
    real = users._hasher
    users._hasher = _HashOnce()
    try:
        users.create_first_admin(system.db, "admin", PASSWORD)
        gov = Gov(system, kind, {"admin": Actor("admin", Role.ADMIN)})
        for name, role in PEOPLE.items():
            if name != "admin":
                gov.actors[name] = users.add_user(system.db, gov.actors["admin"], name, role,
                                                  PASSWORD)
    finally:
        users._hasher = real
    return gov


@contextmanager
def installation(kind: str, tmp_path: Path) -> Iterator[Gov]:
    """A fresh installation on ``kind`` ("sqlite" or "postgresql"), closed after use; a
    PostgreSQL one lives in a database of its own, dropped after use."""
    if kind == "sqlite":
        schema = _schema("sqlite")
        if schema:  # a copy of the migrated, empty file (initialise finds it at the head)
            data = tmp_path / "data"
            data.mkdir(mode=0o700, parents=True, exist_ok=True)
            shutil.copyfile(schema, data / "openlfr.db")
            (data / "openlfr.db").chmod(0o600)
        g = make_gov("sqlite", tmp_path, None)
        try:
            yield g
        finally:
            g.system.close()
        return
    gen = _pg_database(_schema("postgresql"))
    g = make_gov("postgresql", tmp_path, next(gen))
    try:
        yield g
    finally:
        g.system.close()
        for _ in gen:
            pass


def bearer_headers(gov: Gov, label: str) -> dict[Role, dict[str, str]]:
    """An API token for the account of each role in :data:`ACCOUNT`, as request headers."""
    from openlfr.web import tokens  # the web layer only where a test asks for it

    out = {}
    for role, name in ACCOUNT.items():
        _, secret = tokens.create_token(gov.db, gov.actors["admin"], name, f"{label} {name}")
        out[role] = {"Authorization": f"Bearer {secret}"}
    return out


@pytest.fixture(params=["sqlite", "postgresql"])
def gov(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gov]:
    """A fresh installation (data dir, master key, schema, one user per role), run twice:
    on SQLite and on PostgreSQL."""
    with installation(request.param, tmp_path) as g:
        yield g


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def install(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gov]:
    """One installation per database shared by all the tests of a module, for those that
    change nothing another test looks at (the role and route matrices: refusals)."""
    tmp: Path = tmp_path_factory.mktemp(f"install-{request.param}")
    with installation(request.param, tmp) as g:
        yield g


@pytest.fixture()
def sqlite_gov(tmp_path: Path) -> Iterator[Gov]:
    """The SQLite installation alone (for tests about the database file itself)."""
    with installation("sqlite", tmp_path) as g:
        yield g


@contextmanager
def database_at(kind: str, tmp_path: Path, revision: str) -> Iterator[Database]:
    """A new database (``sqlite`` file or ``postgresql``) migrated only up to ``revision``, for
    tests of a later migration on rows already stored; disposed (and dropped) afterwards."""
    from alembic import command

    gen = _pg_database() if kind == "postgresql" else None
    url = next(gen) if gen is not None else f"sqlite:///{tmp_path / 'old.db'}"
    db = Database(url)
    try:
        cfg = alembic_config(url)
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
        yield db
    finally:
        db.dispose()
        if gen is not None:
            for _ in gen:
                pass
