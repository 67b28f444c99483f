"""Fuzzing the JSON API from its own OpenAPI schema (schemathesis), as every role.

The app is built as in the other web tests (a real SQLite data directory, one account and one API
token per role, from :mod:`tests.govfix`), with a few objects to find (a watchlist, deployments, a
resident's question). The schema is the one the app serves at ``/api/openapi.json``. For every
operation of it and every role (and an anonymous caller), schemathesis generates valid and
invalid requests; each answer must

* not be a server error (5xx),
* have a status the schema documents for that operation,
* carry a content type the schema documents, and
* match the schema documented for its status.

The list of operations is read from the app's routers, so it cannot drift: an operation left out
must be in :data:`SKIPPED` with its reason, and :func:`test_every_operation_is_fuzzed` checks that.

Bounded for CI: ``OPENLFR_FUZZ_EXAMPLES`` examples per operation and role (default 6),
derandomised (the same requests on every run) with no deadline. ``OPENLFR_FUZZ_SEED=N`` draws
other requests instead; ``benchmarks/fuzz_api.py --examples 500`` is the long run.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import ASGIClient
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from openlfr.governance import deployments, questions, users
from openlfr.governance import watchlists as wls
from openlfr.store.enums import Role
from openlfr.web.app import ROUTERS, create_app
from tests.govfix import ACCOUNT, Gov, authorise, bearer_headers, installation
from tests.test_gov_deployments import approved_watchlist, plan

EXAMPLES = int(os.environ.get("OPENLFR_FUZZ_EXAMPLES", "6"))
SEED = os.environ.get("OPENLFR_FUZZ_SEED")
#: Where to write how often each operation answered each status, per caller (JSON), if set.
REPORT = os.environ.get("OPENLFR_FUZZ_REPORT")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]

#: Operations not fuzzed, each with the reason (none at present). The console's pages, the
#: alert stream (``/console/alerts/stream``, server-sent events that never end) and the
#: transparency pages are not in the OpenAPI schema: tests/test_web_*.py drive them.
SKIPPED: dict[tuple[str, str], str] = {}

#: Who calls: each role with its own token, and nobody (``None``).
CALLERS: list[Role | None] = [*Role, None]


def schema_operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every operation of the OpenAPI schema of the app's routers."""
    app = FastAPI()
    for router in ROUTERS:
        app.include_router(router)
    return sorted((method.upper(), path) for path, ops in app.openapi()["paths"].items()
                  for method in ops)


OPERATIONS = [op for op in schema_operations() if op not in SKIPPED]
RUNS = [(op, caller) for op in OPERATIONS for caller in CALLERS]


@dataclass
class Fuzz:
    gov: Gov
    schema: schemathesis.BaseSchema
    client: ASGIClient
    bearer: dict[Role, dict[str, str]]
    #: "METHOD path" → caller → status → count
    answers: dict[str, dict[str, Counter[int]]] = field(default_factory=dict)


def _seed(gov: Gov, face: Path) -> None:
    """Objects for the fuzzer to find (it tries small numbers often): watchlists 1 (approved,
    one subject with one image) and 2 (empty), deployments 1 (authorised, public) and 2
    (a draft) and question 1."""
    ao1, ao2, op1 = (gov.actors[n] for n in ("ao1", "ao2", "op1"))
    approved = approved_watchlist(gov, face)
    wls.create_watchlist(gov.system, op1, "empty", "Find people wanted by the courts")
    start = datetime.now(UTC) + timedelta(days=30)
    public = deployments.create(gov.db, ao1, plan((approved,), start=start,
                                                  end=start + timedelta(hours=8)),
                                keyring=gov.system.keyring)
    authorise(gov.db, gov.system.keyring, ao2, public)
    deployments.create(gov.db, op1, plan((), start=start, end=start + timedelta(hours=8)),
                       keyring=gov.system.keyring)
    questions.submit_question(gov.db, public, "question", "Where will the cameras be?", None)


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory,
         face_images: dict[str, Path]) -> Iterator[Fuzz]:
    tmp: Path = tmp_path_factory.mktemp("api-fuzz")
    with installation("sqlite", tmp) as gov:
        _seed(gov, face_images["obama"])
        bearer = bearer_headers(gov, "fuzz")
        app = create_app(gov.system)
        schema = schemathesis.openapi.from_asgi("/api/openapi.json", app,
                                                headers=bearer[Role.ADMIN])
        with ASGIClient(app) as client:
            fuzz = Fuzz(gov, schema, client, bearer)
            yield fuzz
        if REPORT:
            Path(REPORT).write_text(json.dumps(fuzz.answers, indent=1, sort_keys=True))


@pytest.fixture()
def caller_headers(fuzz: Fuzz, request: pytest.FixtureRequest) -> dict[str, str]:
    """The caller's headers, its account active and its token unrevoked (an admin's fuzzing
    may deactivate accounts and revoke tokens: put them back, so every run signs in)."""
    role: Role | None = request.param
    if role is None:
        return {}
    name = ACCOUNT[role]
    if fuzz.client.get("/api/v1/auth/me", headers=fuzz.bearer[role]).status_code != 200:
        users.set_active(fuzz.gov.db, fuzz.gov.actors["admin"], name, True)
        fuzz.bearer.update(bearer_headers(fuzz.gov, "fuzz again"))
    assert fuzz.client.get("/api/v1/auth/me", headers=fuzz.bearer[role]).status_code == 200
    return fuzz.bearer[role]


def test_every_operation_is_fuzzed(fuzz: Fuzz) -> None:
    """The schema the app serves has exactly the operations fuzzed here (or skipped, with a
    reason)."""
    served = sorted((method.upper(), path) for path, ops in fuzz.schema.raw_schema["paths"]
                    .items() for method in ops)
    assert served == schema_operations()
    assert len(served) >= 40
    stale = [op for op in SKIPPED if op not in served]
    assert not stale, f"these operations no longer exist: {stale}"
    assert all(reason.strip() for reason in SKIPPED.values())


@pytest.mark.parametrize(("operation", "caller_headers"), RUNS, indirect=["caller_headers"],
                         ids=[f"{m} {p} as {c.value if c else 'anonymous'}"
                              for (m, p), c in RUNS])
def test_fuzz(fuzz: Fuzz, operation: tuple[str, str], caller_headers: dict[str, str],
              request: pytest.FixtureRequest) -> None:
    method, path = operation
    role: Role | None = request.node.callspec.params["caller_headers"]
    caller = role.value if role else "anonymous"
    answers = fuzz.answers.setdefault(f"{method} {path}", {}).setdefault(caller, Counter())
    op = fuzz.schema[path][method]
    strategy = st.one_of(op.as_strategy(GenerationMode.POSITIVE),
                         op.as_strategy(GenerationMode.NEGATIVE))

    @settings(max_examples=EXAMPLES, derandomize=SEED is None, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        response = case.call(session=fuzz.client, headers=caller_headers)
        answers[response.status_code] += 1
        case.validate_response(response, checks=CHECKS, headers=caller_headers)

    if SEED is not None:
        run = seed(int(SEED))(run)
    run()


# -- known hostile values ------------------------------------------------------------------

PLAN = {"name": "known", "site": "s", "location": "l", "purpose": "p",
        "alternatives": "Patrols do not suffice", "legal_basis": "b",
        "dpia_ref": "d", "equality_ref": "e", "planned_start": "2030-01-01T08:00:00+00:00",
        "planned_end": "2030-01-01T18:00:00+00:00"}

#: Requests known to break the API (found by this fuzzer or by review), sent on every run
#: beside the generated ones: (operation, caller, path parameters, body, status expected or
#: None for "any but 5xx").
KNOWN = [
    pytest.param(("POST", "/api/v1/deployments"), Role.OPERATOR, {},
                 {**PLAN, "planned_start": "0001-01-01T00:30:00+01:00"}, 400,
                 id="planned start 0001-01-01T00:30+01:00"),
    pytest.param(("POST", "/api/v1/deployments"), Role.OPERATOR, {},
                 {**PLAN, "planned_end": "9999-12-31T23:30:00-01:00"}, 400,
                 id="planned end 9999-12-31T23:30-01:00"),
    pytest.param(("PATCH", "/api/v1/deployments/{deployment_id}"), Role.OPERATOR,
                 {"deployment_id": 2}, {"planned_end": "9999-12-31T23:30:00-01:00"}, 400,
                 id="edited end 9999-12-31T23:30-01:00"),
    pytest.param(("POST", "/api/v1/watchlists"), Role.OPERATOR, {},
                 {"name": "nul\u0000name", "purpose": "Find people wanted by the courts"}, 400,
                 id="NUL in a watchlist name"),
    pytest.param(("POST", "/api/v1/watchlists"), Role.OPERATOR, {},
                 {"name": "bidi\u202ename", "purpose": "Find people wanted by the courts"}, 400,
                 id="bidi override in a watchlist name"),
    pytest.param(("POST", "/api/v1/deployments"), Role.OPERATOR, {},
                 {**PLAN, "planned_start": "+99999999999999d"}, 422,
                 id="a relative start is not ISO 8601"),
]


@pytest.mark.parametrize(("operation", "role", "path_parameters", "body", "expected"), KNOWN)
def test_known_hostile_values(fuzz: Fuzz, operation: tuple[str, str], role: Role,
                              path_parameters: dict[str, int], body: dict[str, object],
                              expected: int | None) -> None:
    method, path = operation
    case = fuzz.schema[path][method].Case(path_parameters=path_parameters, body=body,
                                          media_type="application/json")
    headers = fuzz.bearer[role]
    response = case.call(session=fuzz.client, headers=headers)
    case.validate_response(response, checks=CHECKS, headers=headers)
    if expected is not None:
        assert response.status_code == expected, response.text
