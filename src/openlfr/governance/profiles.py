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
