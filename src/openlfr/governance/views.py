"""What the services hand out about each entity: one frozen Pydantic view per entity, the same
for every front end.

The services build these from their database rows (never handing out a row); the JSON API uses
them as ``response_model`` (so the OpenAPI schema documents them), the console's templates read
their fields, and the CLI's ``--json`` prints ``view.model_dump(mode="json")`` — so the JSON of
``openlfr alerts list --json`` and ``GET /api/v1/alerts`` is the same, field for field.

A view never holds biometric data (templates, crops, frames: images stay behind their own
audited routes, a view says only whether there is one) nor a secret (password hashes, TOTP
secrets, camera credentials: a camera's source is its redacted display form).

* :class:`DeploymentView` (with :class:`CameraView` and :class:`WatchlistRef`), and
  :class:`SharedCount` (what was shared, counted from the audit log)
* :class:`WatchlistView`, :class:`WatchlistDetail` (with its :class:`SubjectView` list and
  each subject's :class:`ImageView`)
* :class:`AlertView` (with :class:`AdjudicationView` and :class:`OutcomeView`), a page of them
  (:class:`AlertPage`) and who viewed one (:class:`AlertViewCount`)
* :class:`UserView`
* :class:`QuestionView`
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from openlfr.redact import redact_personal
from openlfr.store.enums import (
    Action,
    AlertStatus,
    Category,
    Decision,
    PerceivedEthnicity,
    PerceivedSex,
    Role,
)

#: How an alert is presented, everywhere: the system never says "match".
LABEL = "possible match"


# -- words for codes ----------------------------------------------------------------------------
# What people read instead of the codes the program stores and checks (``authorising_officer``,
# ``no_action``, ``watchlist.read``): one table, used by the pages (the ``words`` filter), by
# the refusals of :mod:`openlfr.governance.authz`, and by any front end that shows a code.

#: Each role, as a noun.
ROLE_WORDS: dict[str, str] = {
    Role.ADMIN: "administrator",
    Role.AUTHORISING_OFFICER: "authorising officer",
    Role.OPERATOR: "operator",
    Role.SUPERVISOR: "supervisor",
    Role.AUDITOR: "auditor",
}

#: What each permission lets a person do (it follows "may": "may authorise a deployment").
PERM_WORDS: dict[str, str] = {
    "user.manage": "manage user accounts",
    "token.manage": "manage API tokens",
    "settings.change": "change the settings",
    "watchlist.edit": "build and change watchlists",
    "watchlist.approve": "approve a watchlist",
    "watchlist.destroy": "destroy a watchlist",
    "watchlist.read": "read watchlists",
    "deployment.edit": "plan and change a deployment",
    "deployment.authorise": "authorise a deployment",
    "deployment.run": "start, pause and stop a deployment",
    "deployment.read": "read deployments",
    "threshold.override": "override a threshold floor",
    "floor.record": "record a model's threshold floor",
    "alert.read": "read alerts",
    "alert.adjudicate": "decide on an alert and record its outcome",
    "alert.hold": "keep an alert past its retention period",
    "retention.run": "run the retention purge",
    "audit.read": "read, verify and export the audit log",
    "stats.read": "read the statistics",
    "question.read": "read residents' questions",
    "question.answer": "answer residents' questions",
    "node.manage": "add and disable sites and nodes",
}

#: The words of a watchlist subject's category.
CATEGORY_WORDS: dict[str, str] = {
    Category.WANTED_BY_COURT: "Wanted by a court",
    Category.SERIOUS_OFFENCE: "Suspected of a serious offence",
    Category.MISSING_OR_VULNERABLE: "Missing or vulnerable person",
    Category.RISK_OF_HARM: "Risk of harm to self or others",
    Category.OTHER: "Other (explain in the reason)",
}

#: Audit actions and the keys of their details, as headings (capitalised).
ACTION_WORDS: dict[str, str] = {
    "profile.change": "Jurisdiction profile changed",
    "access.refused": "Access refused",
    "alert.adjudicate": "Alert decided",
    "alert.create": "Possible match recorded",
    "alert.update": "Possible match updated",
    "alert.hold": "Alert held past retention",
    "alert.release": "Alert hold released",
    "alert.outcome": "Outcome recorded",
    "alert.purge": "Alerts purged",
    "alert.view_crop": "Probe image viewed",
    "audit.checkpoint": "Audit checkpoint signed",
    "audit.export": "Audit log exported",
    "auth.failed": "Sign-in failed",
    "auth.login": "Signed in",
    "auth.logout": "Signed out",
    "deployment.authorise": "Deployment authorised",
    "deployment.cameras_sealed": "Camera addresses sealed",
    "deployment.create": "Deployment planned",
    "deployment.edit": "Deployment edited",
    "deployment.end": "Deployment ended",
    "deployment.gallery_reload": "Watchlist reloaded",
    "deployment.key_destroy": "Deployment key destroyed",
    "deployment.threshold_override": "Threshold override recorded",
    "deployment.threshold_override_confirm": "Threshold override confirmed",
    "deployment.pause": "Deployment paused",
    "deployment.resume": "Deployment resumed",
    "deployment.run_end": "Run ended",
    "deployment.start": "Deployment started",
    "fieldtest.end": "Field test ended",
    "fieldtest.plan": "Field test planned",
    "fieldtest.volunteer_add": "Field-test volunteer added",
    "urgent.start": "Urgent use started without prior authorisation",
    "urgent.authorise": "Urgent use authorised",
    "urgent.refuse": "Urgent use refused",
    "urgent.expire": "Urgent use not authorised within 24 hours",
    "urgent.results_delete": "Results of an urgent use deleted",
    "deployment.notification": "Notification of use generated",
    "floor.record": "Threshold floor recorded",
    "keys.move": "Keys moved",
    "model.add": "Model added",
    "model.remove": "Model removed",
    "preview.view": "Camera preview viewed",
    "purge.complete": "Purge completed",
    "purge.pending": "Purge scheduled",
    "question.answer": "Question answered",
    "question.close": "Question closed",
    "question.publish": "Question published",
    "question.received": "Question received",
    "question.unpublish": "Question withdrawn",
    "report.annual": "Annual report made",
    "retention.run": "Retention run",
    "role.totp_required": "Second factor rule changed",
    "subject.add": "Subject added",
    "subject.expire": "Subjects expired",
    "subject.remove": "Subject removed",
    "subject_image.add": "Reference image added",
    "subject_image.view": "Reference image viewed",
    "token.create": "API token created",
    "token.revoke": "API token revoked",
    "user.activate": "Account activated",
    "user.create": "Account created",
    "user.deactivate": "Account deactivated",
    "user.password": "Password changed",
    "user.reset": "Password reset",
    "user.role": "Role changed",
    "user.totp.begin": "Second factor set-up begun",
    "user.totp.enable": "Second factor enabled",
    "user.totp.remove": "Second factor removed",
    "watchlist.approve": "Watchlist approved",
    "watchlist.create": "Watchlist created",
    "watchlist.destroy": "Watchlist destroyed",
    "site.add": "Site added",
    "node.add": "Node added",
    "node.token": "Node enrolment token issued",
    "node.enrol": "Node enrolled",
    "node.disable": "Node disabled",
    "node.desired_state": "Desired state sent to a node",
    "node.message_refused": "Message from a node refused",
    "node.run_started": "Node started a run",
    "node.run_stopped": "Node stopped a run",
    "node.gallery_reloaded": "Node reloaded a gallery",
    "node.lease_lost": "Node lost its lease",
    "node.event": "Node event",
    # detail keys and object types
    "api_token": "API token",
    "data_keys": "Data keys",
    "dpia_ref": "DPIA reference",
    "object_id": "Object",
    "object_type": "Object type",
    "pipeline_id": "Pipeline id",
    "subject_image": "Reference image",
    "threshold_floor": "Threshold floor",
    "two_person_rule": "Two-person rule",
    "not_subject": "Not the subject", "stopped": "Person stopped",
    "stop_minutes": "Stop (minutes)", "equality_recorded": "Perceived ethnicity or sex recorded",
    "upto": "Up to entry",
    "field_test": "Field test", "self_declared": "Self-declared attributes given",
    "crops_purged": "Crops purged", "test_alerts": "Test alerts",
    "not_declared": "Not declared",
    "alerts_deleted": "Alerts deleted", "crops_deleted": "Probe images deleted",
    "adjudications_deleted": "Decisions deleted", "outcomes_deleted": "Outcomes deleted",
    "alert_views_deleted": "Alert views deleted", "data_key_destroyed": "Data key destroyed",
    "alert_ids": "Alerts", "urgent_use": "Urgent use",
}

#: Statuses, decisions, outcomes and states whose code is not already a word.
STATE_WORDS: dict[str, str] = {
    AlertStatus.NO_ACTION: "no action",
    Decision.NO_ACTION: "no action",
    Action.NONE: "no action",
    # the alert queue's status filters and an alert's decisions
    "pending": "waiting for a decision", "rejected": "false alert", "decided": "decided",
    "confirm": "confirmed", "reject": "rejected (false alert)",
    # how an urgent use ended (governance.urgent)
    "waiting": "waiting for authorisation", "expired": "not authorised within 24 hours",
}

#: The census (England and Wales 2021) high-level ethnic groups, as the outcome form and the
#: public equality figures name them: an officer's perception, never the person's declaration.
ETHNICITY_WORDS: dict[str, str] = {
    PerceivedEthnicity.ASIAN: "Asian or Asian British",
    PerceivedEthnicity.BLACK: "Black, Black British, Caribbean or African",
    PerceivedEthnicity.MIXED: "Mixed or multiple ethnic groups",
    PerceivedEthnicity.WHITE: "White",
    PerceivedEthnicity.OTHER: "Other ethnic group",
    PerceivedEthnicity.NOT_RECORDED: "Not recorded",
}

#: Why data left the system, and who received it (exports and disclosures, counted on the
#: public pages).
PURPOSE_WORDS: dict[str, str] = {
    "audit": "audit and oversight", "investigation": "an investigation",
    "legal_proceedings": "legal proceedings", "subject_access": "a subject access request",
    "complaint": "a complaint", "other": "another purpose", "not_stated": "not stated",
}
RECIPIENT_WORDS: dict[str, str] = {
    "internal": "the responsible body's own staff", "oversight": "an oversight body",
    "prosecution": "prosecutors or courts", "law_enforcement": "another law-enforcement body",
    "data_subject": "the person the data is about", "other": "another recipient",
    "not_stated": "not stated",
}
#: Every code with its words.
WORDS: dict[str, str] = {**PURPOSE_WORDS, **RECIPIENT_WORDS,
                         **ACTION_WORDS, **STATE_WORDS, **ROLE_WORDS,
                         **{k: v[:1].lower() + v[1:] for k, v in CATEGORY_WORDS.items()},
                         **ETHNICITY_WORDS,
                         "not_recorded": "not recorded"}


def words(code: object) -> str:
    """The words for a stored code (a role, permission, status, decision, category…): from
    :data:`WORDS`, else the code with ``_`` and ``.`` read as spaces, so a code never reaches a
    page as it is stored. ``None`` is an empty string."""
    if code is None:
        return ""
    key = code.value if isinstance(code, StrEnum) else str(code)
    found = WORDS.get(key)
    if found is not None:
        return found
    return key.replace("_", " ").replace(".", " ")


def label(code: object) -> str:
    """A code's words as a heading or the start of a sentence: :func:`words`, capitalised."""
    text = words(code)
    return text[:1].upper() + text[1:]


def with_article(noun: str) -> str:
    """``an operator``, ``a supervisor``."""
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def role_words(role: object, article: bool = False) -> str:
    """A role as a noun (``authorising officer``), with its article if asked."""
    noun = words(role)
    return with_article(noun) if article else noun


def join_words(items: list[str], last: str = "or") -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {last} " + items[-1]


class View(BaseModel):
    """Frozen; built from a row's attributes (``model_validate(row, from_attributes=True)``)
    or field by field."""

    model_config = ConfigDict(frozen=True, from_attributes=True)


# -- deployments ------------------------------------------------------------------------------

class CameraView(View):
    name: str
    source: str = Field(description="The source's display form: credentials removed.")
    state: str | None = Field(default=None, description=(
        "In the latest run: connecting, live, retrying, failed, ended, stopped; unknown when "
        "a running deployment's state is stale; null before any run."))
    state_since: datetime | None = None
    last_error: str | None = Field(default=None, description="Without credentials.")
    frames: int = 0
    seconds: float = Field(default=0.0, description="Time spent analysing frames.")
    zones: tuple[tuple[tuple[float, float], ...], ...] = Field(default=(), description=(
        "Analysis zones: polygons of [x, y] points from 0 to 1 across the frame; a face is "
        "analysed only when its box centre lies in one (none: the whole frame)."))
    masks: tuple[tuple[tuple[float, float], ...], ...] = Field(default=(), description=(
        "Privacy masks: polygons blacked out before anything sees the frame; never analysed."))
    node: str | None = Field(default=None, description=(
        "The node that runs this camera; none: the centre itself."))
    node_site: str | None = Field(default=None, description="The site of that node.")


class WatchlistRef(View):
    id: int
    name: str
    status: str


class DeploymentView(View):
    id: int
    name: str
    status: str = Field(description="draft, authorised, running, paused or ended")
    site: str
    location: str
    purpose: str
    legal_basis: str
    dpia_ref: str
    equality_ref: str
    planned_start: datetime | None
    planned_end: datetime | None
    threshold: float
    model_id: str
    floor: float = Field(description="The model's current floor (calibrated or default).")
    floor_source: str
    threshold_override_reason: str | None
    threshold_override_by: str | None
    threshold_override_confirmed_by: str | None = None
    two_person_rule: bool
    signage: bool
    public_notice: bool
    urgency_reason: str | None
    created_by: str
    created_at: datetime | None
    authorised_by: str | None
    authorised_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    pause_reason: str | None = None
    watchlists: tuple[WatchlistRef, ...]
    cameras: tuple[CameraView, ...]
    cameras_live: int = 0
    missing: tuple[str, ...] = Field(description="What a draft still lacks to be authorised.")
    alternatives: str | None = Field(default=None, description=(
        "The less intrusive alternatives considered, and why they do not suffice."))
    consultation_days: int | None = Field(default=None, description=(
        "The public consultation's length in days; null: none."))
    consultation_opened_at: datetime | None = Field(default=None, description=(
        "When the plan was published as proposed (the consultation opened)."))
    consultation_ends_at: datetime | None = None
    consultation_response: str | None = Field(default=None, description=(
        "The authorising officer's response to the comments (published)."))
    consultation_response_by: str | None = None
    consultation_response_at: datetime | None = None
    consultation: str = Field(default="none", description=(
        "none, planned (not published yet), open, ended (awaiting a response) or responded"))
    notice_at: datetime | None = Field(default=None, description=(
        "When the advance public notice was published (uk-app)."))
    lease_seconds: int = Field(default=60, description=(
        "How long a lease the centre grants a node running its cameras, in seconds."))
    target_fpir: float | None = Field(default=None, description=(
        "The false-positive identification rate the plan aims at (per person passing)."))
    fria_ref: str | None = Field(default=None, description=(
        "The fundamental rights impact assessment reference (eu-ai-act)."))
    eu_db_ref: str | None = Field(default=None, description=(
        "The EU database registration reference (eu-ai-act)."))
    authorised_rank: str | None = Field(default=None, description=(
        "The authorising officer's rank at authorisation (uk-app)."))
    criteria_approved: bool = Field(default=False, description=(
        "Whether the watchlist criteria were approved for this deployment (uk-app)."))
    authority_ref: str | None = None
    authority_name: str | None = None
    authority_date: str | None = None
    authority_scope: str | None = None
    watchlist_size: int = Field(default=0, description="Subjects in its watchlists.")
    calibration_id: int | None = Field(default=None, description=(
        "The recorded calibration that answers for the plan's watchlist size and target "
        "rate; null: none yet."))
    calibration_floor: float | None = Field(default=None, description=(
        "That calibration's floor (the one that holds for its worst-measured group)."))
    expected_false_alerts_per_10k: float | None = Field(default=None, description=(
        "False alerts expected per 10,000 people passing at its threshold."))
    expected_miss_rate: float | None = Field(default=None, description=(
        "The share of watchlisted people passing expected to be missed at its threshold."))

    @property
    def proposed(self) -> bool:
        """A draft published as proposed (its consultation opened)."""
        return self.status == "draft" and self.consultation_opened_at is not None


class SharedCount(View):
    """How often data left the system (or was looked at) in one way, for one purpose, to one
    category of recipient: counted from the audit log (:mod:`openlfr.transparency.shared`)."""

    what: str = Field(description="e.g. audit_export, art12_export, alert_image_viewed, "
                                  "alert_image_exported")
    purpose: str = Field(description="a DisclosurePurpose, or not_stated")
    recipient: str = Field(description="a RecipientCategory, or not_stated")
    count: int


# -- watchlists -------------------------------------------------------------------------------

class ImageView(View):
    """A reference image's record: its source and digest, never the image."""

    id: int
    source: str
    added_by: str
    created_at: datetime
    model_id: str
    image_sha256: str


class SubjectView(View):
    id: int
    watchlist_id: int
    reference: str
    category: str
    reason: str
    is_minor: bool
    minor_justification: str | None
    added_by: str
    created_at: datetime
    expires_at: datetime
    images: tuple[ImageView, ...] = ()


class WatchlistView(View):
    id: int
    name: str
    purpose: str
    status: str = Field(description="draft, approved or destroyed")
    model_id: str
    max_subjects: int
    created_by: str
    created_at: datetime
    changed_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    destroyed_at: datetime | None
    destroy_reason: str | None
    editors: tuple[str, ...]
    subjects: int
    images: int

    @property
    def usable(self) -> bool:
        return self.status == "approved"


class WatchlistDetail(WatchlistView):
    """A watchlist with its subjects (each image's source and digest, never the image)."""

    subject_list: tuple[SubjectView, ...]


# -- alerts -----------------------------------------------------------------------------------

class AdjudicationView(View):
    user: str
    decision: Decision
    reason: str | None
    at: datetime


class OutcomeView(View):
    engaged: bool
    action: Action
    notes: str | None
    recorded_by: str
    at: datetime
    #: A false alert's outcome (the alert was rejected, or the engaged person turned out not to
    #: be the subject): these are set; else None.
    false_alert: bool = False
    not_subject: bool | None = None
    stopped: bool | None = None
    stop_minutes: int | None = None
    perceived_ethnicity: PerceivedEthnicity | None = Field(
        default=None, description="An officer's perception (census 2021 groups), recorded for "
        "the public sector equality duty; not the person's declaration.")
    perceived_sex: PerceivedSex | None = None


class AlertView(View):
    """An alert as a reviewer reads it: a *possible match*, never a match. No pixels: the
    probe crop is at ``crop_url`` (audited on every view)."""

    id: int
    kind: str = Field(default=LABEL, description='always "possible match"')
    deployment_id: int
    deployment: str = Field(description="The deployment's name.")
    two_person_rule: bool
    confirmations: int = Field(description="confirmations recorded so far")
    confirmations_needed: int
    camera: str
    track_id: int
    subject_id: int | None
    subject_reference: str | None
    subject_image_id: int | None
    watchlist_id: int | None
    score: float
    threshold: float
    model_id: str
    revision: int
    seen_at: datetime
    created_at: datetime
    status: AlertStatus
    decided_at: datetime | None
    held: bool
    held_reason: str | None
    held_by: str | None
    purged_at: datetime | None
    has_crop: bool
    crop_url: str | None
    adjudications: tuple[AdjudicationView, ...]
    outcome: OutcomeView | None

    @property
    def confirmed_by(self) -> list[str]:
        """Who has confirmed so far (the two-person rule needs two different people)."""
        return [a.user for a in self.adjudications if a.decision == Decision.CONFIRM]


class AlertPage(View):
    """One page of alerts matching a filter, newest first, and where the pages around it
    start: pass ``older`` as ``before`` (or ``newer`` as ``after``) for the next page."""

    items: tuple[AlertView, ...]
    total: int = Field(description="How many alerts match the filter, on all pages.")
    start: int = Field(description="The position of the first item among them (1 = the "
                                   "newest); 0 when the page is empty.")
    newer: int | None = Field(description="Pass as after= for the newer page (none: this is "
                                          "the newest).")
    older: int | None = Field(description="Pass as before= for the older page (none: this is "
                                          "the oldest).")


class AlertViewCount(View):
    """How often one person's sessions showed an alert's card (audit readers only)."""

    user: str
    sessions: int
    views: int
    first_at: datetime
    last_at: datetime


class OverrideChance(View):
    """Whether a person may record (or confirm) a threshold override on a deployment now
    (:func:`openlfr.governance.deployments.override_chance`), and why not."""

    possible: bool
    confirms: bool = Field(default=False, description="It would confirm the override another "
                                                      "authorising officer recorded.")
    why_not: str | None = None


# -- accounts ---------------------------------------------------------------------------------

class UserView(View):
    """An account, without its password hash or second-factor secret."""

    name: str
    role: Role
    active: bool
    created_at: datetime
    created_by: str
    one_time_password: bool = Field(description="The password must be changed at the next "
                                                "sign-in.")
    totp: bool = Field(description="A second factor is set up.")


# -- residents' questions ---------------------------------------------------------------------

class QuestionView(View):
    id: int
    deployment_id: int
    deployment_name: str
    kind: str = Field(description="question or objection")
    text: str
    contact: str | None
    created_at: datetime
    status: str = Field(description="open, answered or closed")
    answer: str | None
    answered_by: str | None
    answered_at: datetime | None
    closed_by: str | None
    closed_at: datetime | None
    reference: str | None = Field(default=None, description="the reference the sender was given")
    published_by: str | None = None
    published_at: datetime | None = None
    public_text: str | None = Field(default=None,
                                    description="the question as published, redacted")
    public_answer: str | None = Field(default=None,
                                      description="the answer as published, redacted")

    @property
    def published_stale(self) -> bool:
        """Published, but the answer changed since (publish again to show the new one)."""
        return (self.published_at is not None and self.answer is not None
                and redact_personal(self.answer) != self.public_answer)


# -- urgent uses (governance.urgent) -----------------------------------------------------------

class UrgentUseView(View):
    """A deployment started without prior authorisation (``eu-ai-act``): who started it, when
    and why, its deadline, and how it ended. ``state``: ``waiting`` (for authorisation),
    ``authorised``, ``refused`` or ``expired`` (not authorised within 24 h). ``seconds_left``:
    while waiting, until the deadline (0 once passed)."""

    deployment_id: int
    deployment_name: str
    deployment_status: str
    started_by: str
    started_at: datetime
    justification: str
    deadline: datetime
    state: str
    seconds_left: int | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    refusal_reason: str | None = None
    results_deleted_at: datetime | None = None
    #: the counts kept after the deletion (alerts by status, outcomes): counts only
    deleted_counts: dict[str, int] = {}
# -- sites and nodes ---------------------------------------------------------------------------

class SiteView(View):
    id: int
    name: str
    description: str
    created_at: datetime
    created_by: str
    nodes: int = Field(default=0, description="Nodes at the site, disabled ones included.")


class NodeView(View):
    """A node as the centre knows it: never its enrolment token (shown once, when issued)."""

    id: int
    name: str
    site: str
    status: str = Field(description="pending (waiting to enroll), enrolled or disabled")
    nkey: str | None = Field(default=None, description=(
        "Its broker identity (public): an nkey user made from its Ed25519 key."))
    signing_key: str | None = Field(default=None, description="Ed25519 public key, base64.")
    box_key: str | None = Field(default=None, description=(
        "X25519 public key, base64: what its galleries are sealed to."))
    token_expires_at: datetime | None = Field(default=None, description=(
        "When its unused enrolment token expires (pending nodes)."))
    created_at: datetime
    created_by: str
    enrolled_at: datetime | None = None
    disabled_at: datetime | None = None
    disabled_by: str | None = None
    disable_reason: str | None = None
    desired_at: datetime | None = Field(default=None, description=(
        "When its desired state was last written to the broker."))
    cameras: tuple[str, ...] = Field(default=(), description=(
        "The cameras it runs, as deployment id/camera name."))
    online: bool | None = Field(default=None, description=(
        "Heard within three of its heartbeat intervals (None: never heard)."))
    last_seen: datetime | None = Field(default=None, description="Its last heartbeat.")
    lease: dict[str, datetime] = Field(default_factory=dict, description=(
        "The lease last granted: deployment id → when it expires."))
    lease_granted_at: datetime | None = None
    camera_health: tuple[NodeCameraView, ...] = Field(default=(), description=(
        "Each camera's health as the node last reported it."))


class NodeCameraView(View):
    """A camera's health as its node last reported it."""

    deployment_id: int
    camera: str
    state: str | None = None
    connected: bool = False
    fps_in: float | None = None
    fps_analysed: float | None = None
    frames: int = 0
    dropped: int = 0
    reconnects: int = 0
    updated_at: datetime


class NodeToken(View):
    """A node just added (or given a new token), with its one-time enrolment token."""

    node: NodeView
    token: str = Field(description="Shown once; stored only as a hash.")
    expires_at: datetime


class Enrolment(View):
    """What a node is told when it enrolls: who it is and how to reach the broker."""

    node_id: int
    name: str
    site: str
    broker_url: str | None = Field(description="The broker's address (none: not configured).")
    subject_prefix: str = Field(description="Its subjects: this prefix and below.")
    inbox_prefix: str = Field(description="The inbox prefix its NATS client must use.")
    state_bucket: str
    gallery_bucket: str
    nkey: str
    centre_signing_key: str | None = Field(default=None, description=(
        "The centre's Ed25519 public key (URL-safe base64): leases are signed with it."))
    centre_box_key: str | None = Field(default=None, description=(
        "The centre's X25519 public key (URL-safe base64): alert crops are sealed to it."))
