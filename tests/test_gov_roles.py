"""Each role tries each command it may not use and is refused (exit 3), with an audit entry
``access.refused`` of the refusal; on SQLite and PostgreSQL.

The matrix is built from :data:`openlfr.governance.authz.PERMISSIONS`, so it follows the
table: every permission needs a representative command here (or, for the few without a
command yet, the service call that enforces it), and a new permission without one fails
:func:`test_every_permission_is_covered`. Commands run in-process (Typer's test runner) with
the installation in the environment, like a shell would give it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from openlfr.audit import log as audit_log
from openlfr.cli import app
from openlfr.governance import questions
from openlfr.governance.authz import PERMISSIONS, Actor, Forbidden, Perm, require, who_may
from openlfr.governance.floors import record_floor
from openlfr.store.db import Database
from openlfr.store.enums import Role
from tests.govfix import Gov

#: One account per role (from tests.govfix.PEOPLE).
ACCOUNT = {Role.ADMIN: "admin", Role.AUTHORISING_OFFICER: "ao1", Role.OPERATOR: "op1",
           Role.SUPERVISOR: "sv1", Role.AUDITOR: "au1"}

#: A representative command per permission (``--user`` is added). Objects need not exist:
#: the permission is checked before anything is looked up.
COMMANDS: dict[Perm, list[str]] = {
    Perm.USER_MANAGE: ["user", "list"],
    Perm.WATCHLIST_EDIT: ["watchlist", "create", "extra", "--purpose", "a purpose"],
    Perm.WATCHLIST_APPROVE: ["watchlist", "approve", "1"],
    Perm.WATCHLIST_DESTROY: ["watchlist", "destroy", "1", "--reason", "done"],
    Perm.WATCHLIST_READ: ["watchlist", "list"],
    Perm.DEPLOYMENT_EDIT: ["deployment", "edit", "1", "--name", "renamed"],
    Perm.DEPLOYMENT_AUTHORISE: ["deployment", "authorise", "1"],
    Perm.DEPLOYMENT_RUN: ["deployment", "stop", "1", "--reason", "done"],
    Perm.THRESHOLD_OVERRIDE: ["deployment", "override-threshold", "1", "--reason",
                             "why the floor does not fit tonight"],
    Perm.ALERT_READ: ["alerts", "list"],
    Perm.ALERT_ADJUDICATE: ["alerts", "adjudicate", "1", "confirm"],
    Perm.ALERT_HOLD: ["alerts", "hold", "1", "--reason", "court"],
    Perm.RETENTION_RUN: ["retention", "run"],
    Perm.AUDIT_READ: ["audit", "show"],
    Perm.NODE_MANAGE: ["nodes", "add-site", "matrix-site"],
}

#: Permissions with no command of their own yet: the service call that enforces them.
#: (`calibrate` needs a labelled dataset: tests/test_eval_calibrate.py drives its refusal.)
SERVICES: dict[Perm, Callable[[Database, Actor], object]] = {
    Perm.TOKEN_MANAGE: lambda db, actor: require(db, actor, Perm.TOKEN_MANAGE),
    Perm.SETTINGS: lambda db, actor: require(db, actor, Perm.SETTINGS),
    Perm.FLOOR_RECORD: lambda db, actor: record_floor(db, actor, "sface-2021dec", 0.5, {}),
    # Residents' questions are answered in the web console (tests/test_web_public.py).
    Perm.QUESTION_READ: lambda db, actor: questions.list_questions(db, actor),
    Perm.QUESTION_ANSWER: lambda db, actor: questions.answer_question(db, actor, 1, "An answer."),
}

REFUSALS = [(perm, role) for perm, allowed in PERMISSIONS.items() for role in Role
            if role not in allowed]


def test_every_permission_is_covered() -> None:
    everyone = {p for p, roles in PERMISSIONS.items() if roles == frozenset(Role)}
    assert set(Perm) == set(PERMISSIONS)
    uncovered = set(Perm) - set(COMMANDS) - set(SERVICES) - everyone
    assert not uncovered, f"add a representative command for {sorted(uncovered)}"
    assert not set(COMMANDS) & set(SERVICES)


def _last(gov: Gov) -> audit_log.AuditEntry:
    with gov.db.reading() as s:
        entry = audit_log.head(s)
    assert entry is not None
    return entry


@pytest.mark.parametrize(("perm", "role"), REFUSALS,
                         ids=[f"{p.value}-{r.value}" for p, r in REFUSALS])
def test_role_is_refused_and_the_refusal_audited(install: Gov, perm: Perm, role: Role) -> None:
    name = ACCOUNT[role]
    before = _last(install).seq
    if perm in COMMANDS:
        result = CliRunner().invoke(app, [*COMMANDS[perm], "--user", name], env=install.env())
        assert result.exit_code == 3, result.output
        said = " ".join(result.output.split())
        # in words, never the permission's code
        assert "refused" in said and who_may(perm) in said and perm.value not in said
    else:
        with pytest.raises(Forbidden, match=re.escape(who_may(perm))):
            SERVICES[perm](install.db, install.actors[name])
    entry = _last(install)
    assert entry.seq == before + 1  # exactly one entry: the refusal, nothing else
    assert (entry.action, entry.actor) == ("access.refused", name)
    assert entry.details["attempted"] == perm.value
    assert entry.details["role"] == role.value


def test_permitted_roles_pass_the_check(install: Gov) -> None:
    """The other side of the table, for the commands of this area: no refusal."""
    runner = CliRunner()
    for role in PERMISSIONS[Perm.AUDIT_READ]:
        result = runner.invoke(app, ["audit", "show", "--last", "1", "--user", ACCOUNT[role]],
                               env=install.env())
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["retention", "run", "--dry-run", "--json", "--user", "admin"],
                           env=install.env())
    assert result.exit_code == 0, result.output
    with install.db.reading() as s:
        assert audit_log.verify(s).ok


def test_the_refusal_names_the_roles_that_may(install: Gov) -> None:
    runner = CliRunner()
    one = runner.invoke(app, ["retention", "run", "--user", "op1"], env=install.env())
    assert one.exit_code == 3
    assert "only an administrator may run the retention purge: op1 is an operator" in one.stderr
    several = runner.invoke(app, ["alerts", "hold", "1", "--reason", "court", "--user", "op1"],
                            env=install.env())
    assert several.exit_code == 3
    assert ("only a supervisor or an authorising officer may keep an alert past its retention "
            "period" in several.stderr)
    assert "retention.run" not in one.stderr and "authorising_officer" not in several.stderr
