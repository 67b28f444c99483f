"""The closed vocabularies stored in the database (roles, states, decisions)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"  # users, settings
    AUTHORISING_OFFICER = "authorising_officer"  # approves watchlists and deployments
    OPERATOR = "operator"  # runs deployments, reviews alerts
    SUPERVISOR = "supervisor"  # second verifier
    AUDITOR = "auditor"  # reads everything, changes nothing


class WatchlistStatus(StrEnum):
    DRAFT = "draft"  # being built, or changed since its approval: not usable
    APPROVED = "approved"
    DESTROYED = "destroyed"


class Category(StrEnum):
    WANTED_BY_COURT = "wanted_by_court"
    SERIOUS_OFFENCE = "suspected_serious_offence"
    MISSING_OR_VULNERABLE = "missing_or_vulnerable"
    RISK_OF_HARM = "risk_of_harm"
    OTHER = "other"


class DeploymentStatus(StrEnum):
    DRAFT = "draft"
    AUTHORISED = "authorised"
    RUNNING = "running"
    PAUSED = "paused"  # its run stopped without ending it (sources ended, server stopped)
    ENDED = "ended"


class DisclosurePurpose(StrEnum):
    """Why data left the system (an export, a crop written to a file): the fixed list an
    export may name, counted on the public pages (never free text: it is published)."""

    AUDIT = "audit"  # audit, oversight, inspection
    INVESTIGATION = "investigation"  # a criminal investigation
    LEGAL_PROCEEDINGS = "legal_proceedings"  # a court, a prosecution, a tribunal
    SUBJECT_ACCESS = "subject_access"  # a person's request for the data about them
    COMPLAINT = "complaint"  # handling a complaint
    OTHER = "other"


class RecipientCategory(StrEnum):
    """Who received it, as a category (never a name): the fixed list an export may name."""

    INTERNAL = "internal"  # the responsible body's own staff
    OVERSIGHT = "oversight"  # an oversight body, an auditor, a regulator
    PROSECUTION = "prosecution"  # prosecutors and courts
    LAW_ENFORCEMENT = "law_enforcement"  # another law-enforcement body
    DATA_SUBJECT = "data_subject"  # the person the data is about
    OTHER = "other"


class AlertStatus(StrEnum):
    PENDING = "pending"  # a possible match nobody has decided on yet
    CONFIRMED = "confirmed"  # confirmed (by two people where the two-person rule applies)
    REJECTED = "rejected"  # a false alert
    NO_ACTION = "no_action"


class Decision(StrEnum):
    CONFIRM = "confirm"
    REJECT = "reject"
    NO_ACTION = "no_action"


class Action(StrEnum):
    NONE = "none"
    ADVICE = "advice"
    ARREST = "arrest"
    OTHER = "other"


def choices(enum: type[StrEnum]) -> str:
    """``a, b or c``: for error messages."""
    values = [m.value for m in enum]
    return ", ".join(values[:-1]) + " or " + values[-1]


class PerceivedEthnicity(StrEnum):
    """An officer's perception of a person's ethnic group after a false alert, recorded for the
    public sector equality duty: the five high-level groups of the 2021 census of England and
    Wales, plus "not recorded". Never the person's own declaration."""

    ASIAN = "asian"  # Asian or Asian British
    BLACK = "black"  # Black, Black British, Caribbean or African
    MIXED = "mixed"  # Mixed or multiple ethnic groups
    WHITE = "white"
    OTHER = "other_ethnic_group"
    NOT_RECORDED = "not_recorded"


class PerceivedSex(StrEnum):
    """An officer's perception of a person's sex after a false alert (equality monitoring)."""

    FEMALE = "female"
    MALE = "male"
    NOT_RECORDED = "not_recorded"


class NodeStatus(StrEnum):
    """Where a node is in its life: added with a one-time enrolment token (``pending``), its
    keys registered (``enrolled``), or disabled and its broker credentials revoked for good
    (``disabled``; a replacement is a new node)."""

    PENDING = "pending"
    ENROLLED = "enrolled"
    DISABLED = "disabled"
