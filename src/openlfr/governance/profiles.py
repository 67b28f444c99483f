"""Jurisdiction profiles: which legal regime's rules this installation enforces.

One installation-wide setting (``installation.profile``), changed only by an administrator and
recorded in the audit log (``profile.change``, with the old and new profile). The rules each
profile adds are enforced where the action happens (authorisation, start, alerts, retention);
this module only names the profiles and holds the setting.

- ``uk-app``: the College of Policing's authorised professional practice for live facial
  recognition (the default).
- ``eu-ai-act``: the EU AI Act's conditions for real-time remote biometric identification.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from openlfr.audit import log as audit_log
from openlfr.errors import InvalidInput
from openlfr.governance.authz import Perm, require
from openlfr.governance.models import Actor
from openlfr.store.db import Database
from openlfr.store.models import Installation


class Profile(StrEnum):
    UK_APP = "uk-app"
    EU_AI_ACT = "eu-ai-act"


DEFAULT_PROFILE = Profile.UK_APP

#: Police ranks of England and Wales, lowest first, with the Metropolitan Police's and the City
#: of London's names for the chief-officer ranks at the same level. ``uk-app`` authorisation
#: needs :data:`LOWEST_AUTHORISING_RANK` or above.
RANKS: tuple[tuple[str, int], ...] = (
    ("constable", 1), ("sergeant", 2), ("inspector", 3), ("chief inspector", 4),
    ("superintendent", 5), ("chief superintendent", 6),
    ("assistant chief constable", 7), ("commander", 7),
    ("deputy chief constable", 8), ("deputy assistant commissioner", 8),
    ("chief constable", 9), ("assistant commissioner", 9),
    ("deputy commissioner", 10), ("commissioner", 11),
)
RANK_LEVEL = dict(RANKS)
LOWEST_AUTHORISING_RANK = "superintendent"
#: The longest time ``uk-app`` keeps an alert no person has held (days): the retention run
#: uses this or ``OPENLFR_RETENTION_DAYS``, whichever is shorter.
UK_APP_ALERT_DAYS = 31
#: The two-person rule is forced on under these profiles.
TWO_PERSON_PROFILES = frozenset({Profile.EU_AI_ACT})

#: What each profile enforces, in words (pages, ``openlfr admin profile``, the README).
RULES: dict[Profile, tuple[str, ...]] = {
    Profile.UK_APP: (
        "the authorising officer's rank is recorded at authorisation, superintendent or above",
        "the authorising officer approves the watchlist criteria for each deployment",
        "advance public notice (published before the window starts), unless a critical-threat "
        "reason is recorded",
        f"alerts are purged after at most {UK_APP_ALERT_DAYS} days unless a person holds them",
    ),
    Profile.EU_AI_ACT: (
        "authorisation records the independent authority's decision: reference, authority, "
        "date, scope",
        "the fundamental rights impact assessment and the EU database registration reference "
        "are required before authorisation",
        "a notification for the market-surveillance and data-protection authorities is "
        "generated at each use",
        "the two-person rule is on for every deployment",
        "the Art. 12 record holds the period of each use",
    ),
}
#: What both profiles enforce.
COMMON_RULES = (
    "no deployment on a model's default floor: a recorded calibration at the plan's watchlist "
    "size and target rate, on data the authorising officer attests is representative; the "
    "floor enforced is the one that holds for the worst-measured group",
)


def parse_rank(text: str | None) -> str:
    """A rank of :data:`RANKS` (case and spaces tidied), or :class:`InvalidInput`."""
    rank = " ".join((text or "").lower().split())
    if not rank:
        raise InvalidInput("the authorising officer's rank is required under the uk-app "
                           f"profile ({LOWEST_AUTHORISING_RANK} or above)", field="rank")
    if rank not in RANK_LEVEL:
        choices = ", ".join(r for r, _ in RANKS)
        raise InvalidInput(f"no police rank {text!r}: choose one of {choices}", field="rank")
    return rank


def rank_problem(rank: str) -> str | None:
    """Why ``rank`` may not authorise under ``uk-app``, or None."""
    if RANK_LEVEL[rank] < RANK_LEVEL[LOWEST_AUTHORISING_RANK]:
        article = "an" if rank[0] in "aeiou" else "a"
        return (f"{article} {rank} may not authorise live facial recognition: the "
                f"authorising officer must be a {LOWEST_AUTHORISING_RANK} or above")
    return None


def parse_profile(text: str) -> Profile:
    """The profile named ``text``, or :class:`InvalidInput` naming the choices."""
    try:
        return Profile(text.strip().lower())
    except ValueError:
        choices = ", ".join(p.value for p in Profile)
        raise InvalidInput(f"no jurisdiction profile {text!r}: choose one of {choices}",
                           field="profile") from None


def _row(session: Session) -> Installation | None:
    return session.scalars(select(Installation).order_by(Installation.id)).first()


def active_profile(session: Session) -> Profile:
    """The profile in force (the default until an administrator chose one)."""
    row = _row(session)
    if row is None or row.profile is None:
        return DEFAULT_PROFILE
    return Profile(row.profile)


def current(db: Database) -> Profile:
    """The profile in force (:func:`active_profile` in a reading session of its own)."""
    with db.reading() as s:
        return active_profile(s)


def rules_of(profile: Profile) -> list[str]:
    """What ``profile`` enforces, in words (its own rules, then both profiles')."""
    return [*RULES[profile], *COMMON_RULES]


def set_profile(db: Database, actor: Actor, profile: Profile | str) -> bool:
    """Choose the profile in force (administrators only). Audited as ``profile.change``.
    Returns False, and records nothing, when it is already in force."""
    chosen = profile if isinstance(profile, Profile) else parse_profile(profile)
    require(db, actor, Perm.SETTINGS, "setting", "profile")
    with db.session() as s:
        row = _row(s)
        before = DEFAULT_PROFILE if row is None or row.profile is None else Profile(row.profile)
        if row is not None and row.profile is not None and before == chosen:
            return False
        if row is None:
            raise InvalidInput("the installation is not set up yet", field="profile")
        row.profile = chosen.value
        audit_log.record(s, actor.name, "profile.change", "setting", "profile",
                         {"from": before.value, "to": chosen.value})
    return True
