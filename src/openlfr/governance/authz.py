"""Who may do what: one table of permissions, used by the command line and the web API alike.

Services call :func:`require` before they change anything. A refusal is itself audited
(``access.refused``, in a transaction of its own, since the refused one is rolled back) and
raised as :class:`Forbidden`. The governance errors are :mod:`openlfr.errors` kinds:
:class:`RuleError` an invalid input, :class:`Conflict` a rule broken by an object's current state
(a :class:`RuleError` too, so a page that shows rule breaks shows it), :class:`Forbidden` and
:class:`NotFound` the tree's own classes under their old names.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from openlfr import errors
from openlfr.audit import log as audit_log
from openlfr.governance.views import PERM_WORDS, join_words, role_words
from openlfr.store.db import Database
from openlfr.store.enums import Role


class Perm(StrEnum):
    USER_MANAGE = "user.manage"
    TOKEN_MANAGE = "token.manage"
    SETTINGS = "settings.change"
    WATCHLIST_EDIT = "watchlist.edit"  # create, add and remove subjects
    WATCHLIST_APPROVE = "watchlist.approve"
    WATCHLIST_DESTROY = "watchlist.destroy"
    WATCHLIST_READ = "watchlist.read"
    DEPLOYMENT_EDIT = "deployment.edit"  # create a draft, cameras, watchlists
    DEPLOYMENT_AUTHORISE = "deployment.authorise"
    DEPLOYMENT_RUN = "deployment.run"  # start and stop
    DEPLOYMENT_READ = "deployment.read"
    THRESHOLD_OVERRIDE = "threshold.override"
    FLOOR_RECORD = "floor.record"
    ALERT_READ = "alert.read"
    ALERT_ADJUDICATE = "alert.adjudicate"  # confirm / reject / no action, outcomes
    ALERT_HOLD = "alert.hold"  # keep an alert past the retention period
    RETENTION_RUN = "retention.run"
    AUDIT_READ = "audit.read"  # verify, export, checkpoint
    STATS_READ = "stats.read"
    QUESTION_READ = "question.read"  # residents' questions and objections
    QUESTION_ANSWER = "question.answer"
    NODE_MANAGE = "node.manage"  # sites and nodes: add, enrolment tokens, disable


A, AO, OP, SV, AU = (Role.ADMIN, Role.AUTHORISING_OFFICER, Role.OPERATOR, Role.SUPERVISOR,
                     Role.AUDITOR)
EVERYONE = frozenset(Role)

PERMISSIONS: dict[Perm, frozenset[Role]] = {
    Perm.USER_MANAGE: frozenset({A}),
    Perm.TOKEN_MANAGE: frozenset({A}),
    Perm.SETTINGS: frozenset({A}),
    Perm.WATCHLIST_EDIT: frozenset({OP, SV, AO}),
    Perm.WATCHLIST_APPROVE: frozenset({AO}),
    Perm.WATCHLIST_DESTROY: frozenset({AO}),
    Perm.WATCHLIST_READ: frozenset({OP, SV, AO, AU}),
    Perm.DEPLOYMENT_EDIT: frozenset({OP, SV, AO}),
    Perm.DEPLOYMENT_AUTHORISE: frozenset({AO}),
    Perm.DEPLOYMENT_RUN: frozenset({OP, SV, AO}),
    Perm.DEPLOYMENT_READ: EVERYONE,
    Perm.THRESHOLD_OVERRIDE: frozenset({AO}),
    Perm.FLOOR_RECORD: frozenset({AO, A}),
    Perm.ALERT_READ: frozenset({OP, SV, AO, AU}),
    Perm.ALERT_ADJUDICATE: frozenset({OP, SV}),
    Perm.ALERT_HOLD: frozenset({SV, AO}),
    Perm.RETENTION_RUN: frozenset({A}),
    Perm.AUDIT_READ: frozenset({AU, A, AO}),
    Perm.STATS_READ: EVERYONE,
    Perm.QUESTION_READ: frozenset({AO, SV, A, AU}),
    Perm.QUESTION_ANSWER: frozenset({AO, SV, A}),
    Perm.NODE_MANAGE: frozenset({A}),
}


@dataclass(frozen=True, slots=True)
class Actor:
    """An authenticated person (or the program itself, ``system``) acting in one request."""

    name: str
    role: Role | None  # None for the system

    @property
    def is_system(self) -> bool:
        return self.role is None


SYSTEM_ACTOR = Actor(audit_log.SYSTEM, None)


Forbidden = errors.Forbidden
NotFound = errors.NotFound


class RuleError(errors.InvalidInput):
    """The request breaks a governance rule (not a permission matter): e.g. approving a
    watchlist that has no subject."""


class Conflict(RuleError, errors.Conflict):
    """A rule broken by the object's current state (an alert already decided, a deployment
    not paused, a watchlist not approved): the web answers 409, the CLI exits 6."""


#: The order roles are named in, in a refusal: those closest to the cameras first.
ROLE_ORDER = (OP, SV, AO, AU, A)


def who_may(perm: Perm) -> str:
    """In words, who may do what ``perm`` allows: ``only an authorising officer may authorise
    a deployment``; ``everyone may read deployments``."""
    roles = PERMISSIONS[perm]
    if roles == EVERYONE:
        return f"everyone may {PERM_WORDS[perm.value]}"
    names = [role_words(r, article=True) for r in ROLE_ORDER if r in roles]
    return f"only {join_words(names)} may {PERM_WORDS[perm.value]}"


def allowed(actor: Actor, perm: Perm) -> bool:
    return actor.is_system or (actor.role is not None and actor.role in PERMISSIONS[perm])


def refuse(db: Database, actor: Actor, what: str, why: str, object_type: str = "permission",
           object_id: str = "") -> Forbidden:
    """Audit a refusal (own transaction) and return the exception to raise."""
    with db.session() as s:
        audit_log.record(s, actor.name, "access.refused", object_type, object_id or what,
                         {"attempted": what, "role": str(actor.role), "reason": why})
    return Forbidden(why)


def require(db: Database, actor: Actor, perm: Perm, object_type: str = "permission",
            object_id: str = "") -> None:
    """Raise :class:`Forbidden` (audited) unless ``actor``'s role grants ``perm``."""
    if allowed(actor, perm):
        return
    raise refuse(db, actor, perm.value,
                 f"{who_may(perm)}: {actor.name} is {role_words(actor.role, article=True)}",
                 object_type, object_id)
