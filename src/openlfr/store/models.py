"""The database tables (SQLAlchemy 2 declarative models).

Biometric data lives in exactly two places, both encrypted with AES-256-GCM under a data key
(:mod:`openlfr.store.crypto`): ``subject_images`` (reference image and template of a watchlist
subject, under the watchlist's key) and ``alerts.crop_ct`` (the probe crop of a possible match,
under the deployment's key). Nothing about a person who did not match is stored anywhere: the
live pipeline keeps only counts (``camera_stats``).

Times are stored as UTC and come back timezone-aware (:class:`UTCDateTime`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from openlfr.store.enums import (
    Action,
    AlertStatus,
    Category,
    Decision,
    DeploymentStatus,
    NodeStatus,
    Role,
    WatchlistStatus,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as naive UTC and read back as an aware UTC ``datetime``.

    Aware values are converted to UTC on the way in; naive ones are refused (a naive time is
    ambiguous, and a wrong deployment window is not a small bug).
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give a timezone")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def _enum(enum: type[StrEnum]) -> Enum:
    return Enum(enum, native_enum=False, length=40, validate_strings=True,
                values_callable=lambda e: [m.value for m in e],
                name=enum.__name__.lower())


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# -- people ------------------------------------------------------------------------------------

class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[Role] = mapped_column(_enum(Role))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))
    # account lifecycle (migration 0004): a one-time password (the first admin's, or an
    # admin's reset) must be changed before the account may do anything else
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False,
                                                       server_default=false())
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # the TOTP second factor: the secret sealed (AES-256-GCM) under a key derived from the
    # master key, bound to this row; enabled once a first code confirmed it; the time step of
    # the last code accepted, so that a code cannot be used twice
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)


class RolePolicy(Base):
    """Per-role account rules set by an admin (migration 0004): whether the role's accounts
    must use a TOTP second factor."""

    __tablename__ = "role_policies"

    role: Mapped[Role] = mapped_column(_enum(Role), primary_key=True)
    totp_required: Mapped[bool] = mapped_column(Boolean, default=False)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    changed_by: Mapped[str] = mapped_column(String(64))


class ApiToken(Base):
    """A token for integrations: scoped to a role (never above its user's), stored hashed."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[Role] = mapped_column(_enum(Role))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


# -- keys --------------------------------------------------------------------------------------

class DataKey(Base):
    """A 256-bit data key's record. The key itself, wrapped (AES-256-GCM) by the master key,
    is a file of the key store (:mod:`openlfr.store.keystore`), never a row: ``wrapped`` is
    empty (it held the key before revision 0006; opening the database moves such keys to
    files). Destroying a key deletes its file (crypto-shredding) and sets ``destroyed_at``; the
    row stays as the record, so that an id is never given to another key."""

    __tablename__ = "data_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    purpose: Mapped[str] = mapped_column(String(40))  # "watchlist" | "deployment"
    wrapped: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Installation(Base):
    """One row: the name of this database's folder in the key store (``keys/<key_store>``), so
    that two databases pointed at one data directory never share, overwrite or shred each
    other's key files."""

    __tablename__ = "installation"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_store: Mapped[str] = mapped_column(String(40), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # the jurisdiction profile in force (openlfr.governance.profiles); None: the default
    profile: Mapped[str | None] = mapped_column(String(20), default=None)


class PendingPurge(Base):
    """A deletion whose traces could not all be removed yet: SQLite's write-ahead log could not
    be emptied (a reader held an old snapshot) or a key file could not be deleted. The
    retention job retries, and audits ``purge.complete`` when nothing is left."""

    __tablename__ = "pending_purges"

    id: Mapped[int] = mapped_column(primary_key=True)
    action: Mapped[str] = mapped_column(String(40))  # the audited action it completes
    target_type: Mapped[str] = mapped_column(String(40))
    target_id: Mapped[str] = mapped_column(String(80))
    since: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# -- watchlists --------------------------------------------------------------------------------

deployment_watchlists = Table(
    "deployment_watchlists",
    Base.metadata,
    Column("deployment_id", ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True),
    Column("watchlist_id", ForeignKey("watchlists.id", ondelete="CASCADE"), primary_key=True),
)


class Watchlist(Base):
    __tablename__ = "watchlists"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(Text)  # the one deployment purpose it serves
    status: Mapped[WatchlistStatus] = mapped_column(_enum(WatchlistStatus),
                                                    default=WatchlistStatus.DRAFT)
    model_id: Mapped[str] = mapped_column(String(100))
    max_subjects: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    approved_by: Mapped[str | None] = mapped_column(String(64))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    destroy_reason: Mapped[str | None] = mapped_column(Text)
    data_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("data_keys.id", ondelete="SET NULL"))

    subjects: Mapped[list[Subject]] = relationship(
        back_populates="watchlist", cascade="all, delete-orphan", passive_deletes=True,
        order_by="Subject.id")
    editors: Mapped[list[WatchlistEditor]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True)


class WatchlistEditor(Base):
    """Everyone who built or changed a watchlist: none of them may approve it."""

    __tablename__ = "watchlist_editors"

    watchlist_id: Mapped[int] = mapped_column(
        ForeignKey("watchlists.id", ondelete="CASCADE"), primary_key=True)
    user_name: Mapped[str] = mapped_column(String(64), primary_key=True)


class Subject(Base):
    __tablename__ = "subjects"

    id: Mapped[int] = mapped_column(primary_key=True)
    watchlist_id: Mapped[int] = mapped_column(ForeignKey("watchlists.id", ondelete="CASCADE"))
    reference: Mapped[str] = mapped_column(String(200))  # a name or case reference
    category: Mapped[Category] = mapped_column(_enum(Category))
    reason: Mapped[str] = mapped_column(Text)
    is_minor: Mapped[bool] = mapped_column(Boolean, default=False)
    minor_justification: Mapped[str | None] = mapped_column(Text)
    added_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    watchlist: Mapped[Watchlist] = relationship(back_populates="subjects")
    images: Mapped[list[SubjectImage]] = relationship(
        back_populates="subject", cascade="all, delete-orphan", passive_deletes=True,
        order_by="SubjectImage.id")


class SubjectImage(Base):
    """A reference image and its template, both encrypted under the watchlist's data key."""

    __tablename__ = "subject_images"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(Text)  # where the image came from
    added_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    model_id: Mapped[str] = mapped_column(String(100))
    image_digest: Mapped[str] = mapped_column(String(64))  # SHA-256 of the image file
    image_ct: Mapped[bytes] = mapped_column(LargeBinary)
    template_ct: Mapped[bytes] = mapped_column(LargeBinary)

    subject: Mapped[Subject] = relationship(back_populates="images")


# -- deployments -------------------------------------------------------------------------------

class Deployment(Base):
    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    site: Mapped[str] = mapped_column(String(200))
    location: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(Text)
    legal_basis: Mapped[str] = mapped_column(Text)
    dpia_ref: Mapped[str] = mapped_column(String(200))  # data protection impact assessment
    equality_ref: Mapped[str] = mapped_column(String(200))  # equality impact assessment
    planned_start: Mapped[datetime] = mapped_column(UTCDateTime)
    planned_end: Mapped[datetime] = mapped_column(UTCDateTime)
    threshold: Mapped[float] = mapped_column(Float)
    model_id: Mapped[str] = mapped_column(String(100))
    threshold_override_reason: Mapped[str | None] = mapped_column(Text)
    threshold_override_by: Mapped[str | None] = mapped_column(String(64))
    #: the second authorising officer who confirmed an override below the floor
    threshold_override_confirmed_by: Mapped[str | None] = mapped_column(String(64))
    two_person_rule: Mapped[bool] = mapped_column(Boolean, default=False)
    signage: Mapped[bool] = mapped_column(Boolean, default=False)
    public_notice: Mapped[bool] = mapped_column(Boolean, default=False)
    urgency_reason: Mapped[str | None] = mapped_column(Text)  # why it was not published ahead
    status: Mapped[DeploymentStatus] = mapped_column(_enum(DeploymentStatus),
                                                     default=DeploymentStatus.DRAFT)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    authorised_by: Mapped[str | None] = mapped_column(String(64))
    authorised_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(Text)
    #: Why its last run stopped without ending it (``paused``); cleared when it runs again.
    pause_reason: Mapped[str | None] = mapped_column(Text)
    data_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("data_keys.id", ondelete="SET NULL"))
    #: the key the camera sources are encrypted under (made with the first camera: drafts have
    #: cameras long before they have a data key)
    camera_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("data_keys.id", ondelete="SET NULL"))
    # -- public engagement (migration 0009) --
    #: the less intrusive alternatives considered, and why they do not suffice
    alternatives: Mapped[str | None] = mapped_column(Text)
    #: the length of the public consultation, in days (None: no consultation planned)
    consultation_days: Mapped[int | None] = mapped_column(Integer)
    #: when the plan was published as proposed (the consultation opened), and when it ends
    consultation_opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    consultation_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: the authorising officer's response to the comments received (published)
    consultation_response: Mapped[str | None] = mapped_column(Text)
    consultation_response_by: Mapped[str | None] = mapped_column(String(64))
    consultation_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # -- the jurisdiction profiles' rules (migration 0015) --
    #: when the advance public notice was published (``uk-app``)
    notice_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: the false-positive identification rate the plan aims at (per person passing)
    target_fpir: Mapped[float | None] = mapped_column(Float)
    #: the fundamental rights impact assessment and EU database registration (``eu-ai-act``)
    fria_ref: Mapped[str | None] = mapped_column(String(200))
    eu_db_ref: Mapped[str | None] = mapped_column(String(200))
    #: the authorising officer's rank at authorisation (``uk-app``)
    authorised_rank: Mapped[str | None] = mapped_column(String(40))
    #: the watchlist criteria approved for this deployment at authorisation (JSON)
    criteria_approval: Mapped[str | None] = mapped_column(Text)
    #: the independent authority's decision (``eu-ai-act``)
    authority_ref: Mapped[str | None] = mapped_column(String(200))
    authority_name: Mapped[str | None] = mapped_column(String(200))
    authority_date: Mapped[str | None] = mapped_column(String(10))  # YYYY-MM-DD
    authority_scope: Mapped[str | None] = mapped_column(Text)
    #: the recorded calibration (threshold_floors.id) its threshold was checked against, and
    #: whether the authorising officer attested that its data is representative
    calibration_id: Mapped[int | None] = mapped_column(Integer)
    calibration_representative: Mapped[bool | None] = mapped_column(Boolean)
    #: how long a lease the centre grants a node running this deployment's cameras, in
    #: seconds (migration 0018): a node cut off for longer stops matching
    lease_seconds: Mapped[int] = mapped_column(Integer, default=60, server_default="60")

    cameras: Mapped[list[Camera]] = relationship(
        back_populates="deployment", cascade="all, delete-orphan", passive_deletes=True,
        order_by="Camera.id")
    watchlists: Mapped[list[Watchlist]] = relationship(secondary=deployment_watchlists,
                                                       order_by="Watchlist.id")


class Camera(Base):
    __tablename__ = "cameras"
    __table_args__ = (UniqueConstraint("deployment_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    #: the source (file path, stream URL or webcam index) without its secrets
    #: (:func:`openlfr.redact.redact`): what every page, answer and audit entry shows
    display: Mapped[str] = mapped_column(Text, default="")
    #: the full source, AES-256-GCM under the deployment's camera key
    source_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: keyed digest of the full source (:func:`openlfr.redact.source_digest`)
    source_digest: Mapped[str | None] = mapped_column(String(64))
    #: the plaintext source of a database from before encryption, sealed (and cleared) when
    #: the installation is next opened (:func:`openlfr.governance.deployments.seal_sources`)
    legacy_source: Mapped[str | None] = mapped_column("source", Text)
    #: analysis zones and privacy masks: JSON lists of polygons in normalised coordinates
    #: (:mod:`openlfr.video.zones`); ``None``: none
    zones: Mapped[str | None] = mapped_column(Text)
    masks: Mapped[str | None] = mapped_column(Text)
    #: the node that runs this camera (migration 0018); ``None``: the centre itself
    node_id: Mapped[int | None] = mapped_column(ForeignKey("nodes.id", ondelete="SET NULL"))

    deployment: Mapped[Deployment] = relationship(back_populates="cameras")
    node: Mapped[Node | None] = relationship()


class CameraStats(Base):
    """Counts only, per deployment and camera: what the public reports are made of."""

    __tablename__ = "camera_stats"
    __table_args__ = (UniqueConstraint("deployment_id", "camera"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    camera: Mapped[str] = mapped_column(String(100))
    frames: Mapped[int] = mapped_column(Integer, default=0)
    faces_seen: Mapped[int] = mapped_column(Integer, default=0)
    tracks: Mapped[int] = mapped_column(Integer, default=0)
    dropped: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)  # time spent analysing frames
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The camera's state in the latest run (connecting, running, reconnecting, ended, failed,
    #: stopped), since when, and its last error (credentials removed).
    state: Mapped[str | None] = mapped_column(String(20))
    state_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


# -- alerts ------------------------------------------------------------------------------------

class Alert(Base):
    """A possible match, for a person to decide on. ``crop_ct`` is the probe crop, encrypted
    under the deployment's data key; purging clears it and every free text."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    camera: Mapped[str] = mapped_column(String(100))
    track_id: Mapped[int] = mapped_column(Integer)
    pipeline_id: Mapped[str] = mapped_column(String(64))  # the live pipeline's alert id
    subject_id: Mapped[int | None] = mapped_column(ForeignKey("subjects.id",
                                                              ondelete="SET NULL"))
    subject_image_id: Mapped[int | None] = mapped_column(
        ForeignKey("subject_images.id", ondelete="SET NULL"))
    watchlist_id: Mapped[int | None] = mapped_column(ForeignKey("watchlists.id",
                                                                ondelete="SET NULL"))
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    model_id: Mapped[str] = mapped_column(String(100))
    revision: Mapped[int] = mapped_column(Integer, default=0)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    crop_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[AlertStatus] = mapped_column(_enum(AlertStatus), default=AlertStatus.PENDING)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    held_reason: Mapped[str | None] = mapped_column(Text)
    held_by: Mapped[str | None] = mapped_column(String(64))
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Set at recording time on an alert against a field test's watchlist: a test alert, never
    #: in the operational queue and never with an outcome (migration 0014).
    field_test_id: Mapped[int | None] = mapped_column(Integer, index=True)
    field_volunteer_id: Mapped[int | None] = mapped_column(Integer)
    #: Seconds from the first frame in which the track's face met the enrolment quality policy
    #: to the alert (None if it never did).
    latency: Mapped[float | None] = mapped_column(Float)
    #: Seconds from the track's first frame (the person entering the camera's view) to the
    #: alert.
    in_view: Mapped[float | None] = mapped_column(Float)
    #: An alert a node sent: ``<node id>:<its alert id>`` (migration 0018), unique, so the same
    #: alert delivered twice is stored once; ``None``: an alert of the centre's own run.
    node_alert_id: Mapped[str | None] = mapped_column(String(100), unique=True, index=True)

    deployment: Mapped[Deployment] = relationship()
    subject: Mapped[Subject | None] = relationship()
    adjudications: Mapped[list[Adjudication]] = relationship(
        back_populates="alert", cascade="all, delete-orphan", passive_deletes=True,
        order_by="Adjudication.id")
    outcome: Mapped[Outcome | None] = relationship(
        back_populates="alert", cascade="all, delete-orphan", passive_deletes=True)


class AlertViewRecord(Base):
    """Who viewed an alert's card, per sign-in session (migration 0010): one row per session,
    person and alert, with a count. Only the first view of a session is audited
    (``alert.view``); ``session_digest`` is a SHA-256 of the session's cookie under a label of
    its own (it cannot be used to sign in, nor matched with ``web_sessions``)."""

    __tablename__ = "alert_views"
    __table_args__ = (UniqueConstraint("session_digest", "user_name", "alert_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_digest: Mapped[str] = mapped_column(String(64))
    user_name: Mapped[str] = mapped_column(String(64))
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"),
                                          index=True)
    count: Mapped[int] = mapped_column(Integer, default=1)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Adjudication(Base):
    __tablename__ = "adjudications"

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    user_name: Mapped[str] = mapped_column(String(64))
    decision: Mapped[Decision] = mapped_column(_enum(Decision))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    alert: Mapped[Alert] = relationship(back_populates="adjudications")


class Outcome(Base):
    __tablename__ = "outcomes"

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"),
                                          unique=True)
    engaged: Mapped[bool] = mapped_column(Boolean)
    action: Mapped[Action] = mapped_column(_enum(Action))
    notes: Mapped[str | None] = mapped_column(Text)
    recorded_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Equality monitoring of false alerts (a rejected alert, or a confirmed one whose engaged
    # person turned out not to be the subject): whether the person was stopped, for how long,
    # and the officer's perception of their ethnic group and sex (census categories).
    not_subject: Mapped[bool | None] = mapped_column(Boolean)
    stopped: Mapped[bool | None] = mapped_column(Boolean)
    stop_minutes: Mapped[int | None] = mapped_column(Integer)
    perceived_ethnicity: Mapped[str | None] = mapped_column(String(32))
    perceived_sex: Mapped[str | None] = mapped_column(String(16))

    alert: Mapped[Alert] = relationship(back_populates="outcome")


# -- thresholds --------------------------------------------------------------------------------

class UseNotification(Base):
    """The notification of one use (one start) of a deployment for the market-surveillance and
    data-protection authorities (``eu-ai-act``): its JSON body, as generated."""

    __tablename__ = "use_notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)


class ThresholdFloor(Base):
    """A calibrated threshold floor for one model, with the evidence behind it (JSON text)."""

    __tablename__ = "threshold_floors"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[str] = mapped_column(String(100), index=True)
    threshold: Mapped[float] = mapped_column(Float)
    evidence: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UserModel(Base):
    """A recogniser a user added (``openlfr models add``): its file (in the data directory,
    by SHA-256), how to run it (JSON), and the calibrated floor whose evidence is its fairness
    report (``floor_id``; none yet: the model cannot be used for a deployment)."""

    __tablename__ = "user_models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    model_id: Mapped[str] = mapped_column(String(100), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(200))
    config: Mapped[str] = mapped_column(Text)
    floor_id: Mapped[int | None] = mapped_column(ForeignKey("threshold_floors.id"),
                                                 nullable=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# -- audit -------------------------------------------------------------------------------------

class AuditRecord(Base):
    """One entry of the hash chain (:mod:`openlfr.audit`). Append-only: triggers refuse UPDATE
    and DELETE. ``time`` and ``details`` are kept as the exact text that was hashed."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    time: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[str] = mapped_column(String(64))
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


# -- web: sessions and residents' questions (migration 0002) -------------------------------------

class WebSession(Base):
    """A browser session. The cookie holds a random token; only its SHA-256 is stored, so a
    copy of the database cannot be used to sign in. Deleting the row is signing out."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


class QuestionKind(StrEnum):
    QUESTION = "question"
    OBJECTION = "objection"


class QuestionStatus(StrEnum):
    OPEN = "open"  # received, not answered yet
    ANSWERED = "answered"  # answered, may still be closed later
    CLOSED = "closed"  # nothing more to do (answered or not, e.g. spam)


class PublicQuestion(Base):
    """A resident's question or objection about a deployment, sent from its public page without
    an account. Never shown publicly as sent (it may name people): the counts are, and, once an
    overseer publishes it, its redacted question and answer (``public_text``, ``public_answer``,
    copies made at publication). ``reference`` is the random reference given to the sender."""

    __tablename__ = "public_questions"

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    kind: Mapped[QuestionKind] = mapped_column(_enum(QuestionKind))
    text: Mapped[str] = mapped_column(Text)
    contact: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status: Mapped[QuestionStatus] = mapped_column(_enum(QuestionStatus),
                                                   default=QuestionStatus.OPEN)
    answer: Mapped[str | None] = mapped_column(Text)
    answered_by: Mapped[str | None] = mapped_column(String(64))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(64))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reference: Mapped[str | None] = mapped_column(String(16), unique=True)
    published_by: Mapped[str | None] = mapped_column(String(64))
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    public_text: Mapped[str | None] = mapped_column(Text)
    public_answer: Mapped[str | None] = mapped_column(Text)


# -- field tests ---------------------------------------------------------------------------------

class FieldTest(Base):
    """A field test (blue list) of a deployment: consenting volunteers on a test watchlist walk
    past its cameras at planned times; ``report`` (JSON) is stored when the test ends."""

    __tablename__ = "field_tests"

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"),
                                               index=True)
    watchlist_id: Mapped[int | None] = mapped_column(ForeignKey("watchlists.id",
                                                                ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(20))  # "planned" | "ended"
    purpose: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_by: Mapped[str | None] = mapped_column(String(64))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    report: Mapped[str | None] = mapped_column(Text)

    deployment: Mapped[Deployment] = relationship()
    volunteers: Mapped[list[FieldTestVolunteer]] = relationship(
        back_populates="field_test", cascade="all, delete-orphan", passive_deletes=True,
        order_by="FieldTestVolunteer.id")


class FieldTestVolunteer(Base):
    """One consenting volunteer: the consent record, optional self-declared attributes, and the
    subject of the test watchlist that holds their reference image (NULL once destroyed)."""

    __tablename__ = "field_test_volunteers"

    id: Mapped[int] = mapped_column(primary_key=True)
    field_test_id: Mapped[int] = mapped_column(ForeignKey("field_tests.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(200))
    subject_id: Mapped[int | None] = mapped_column(ForeignKey("subjects.id",
                                                              ondelete="SET NULL"))
    consent_by: Mapped[str] = mapped_column(String(200))
    consent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    consent_reference: Mapped[str] = mapped_column(String(200))
    age_band: Mapped[str | None] = mapped_column(String(20))
    sex: Mapped[str | None] = mapped_column(String(16))
    ethnicity: Mapped[str | None] = mapped_column(String(32))
    added_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    field_test: Mapped[FieldTest] = relationship(back_populates="volunteers")
    passes: Mapped[list[FieldTestPass]] = relationship(
        back_populates="volunteer", cascade="all, delete-orphan", passive_deletes=True,
        order_by="FieldTestPass.starts_at")


class FieldTestPass(Base):
    """A planned pass: the volunteer walks past ``camera`` between ``starts_at`` and
    ``ends_at``."""

    __tablename__ = "field_test_passes"

    id: Mapped[int] = mapped_column(primary_key=True)
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("field_test_volunteers.id",
                                                         ondelete="CASCADE"))
    camera: Mapped[str] = mapped_column(String(100))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)

    volunteer: Mapped[FieldTestVolunteer] = relationship(back_populates="passes")


class UrgentUse(Base):
    """A deployment started without prior authorisation under the ``eu-ai-act`` profile
    (:mod:`openlfr.governance.urgent`; migration 0016): who started it, when and why, its
    24-hour deadline, and how it ended: ``authorised`` in time, or ``refused`` / ``expired``
    (then its results were deleted; ``deleted_counts`` keeps the counts the public figures
    need, as JSON). ``outcome`` None: waiting for a decision."""

    __tablename__ = "urgent_uses"

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), unique=True)
    started_by: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    justification: Mapped[str] = mapped_column(Text)
    deadline: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    outcome: Mapped[str | None] = mapped_column(String(20))
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refusal_reason: Mapped[str | None] = mapped_column(Text)
    results_deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_counts: Mapped[str | None] = mapped_column(Text)


# -- sites and nodes (migration 0018) ------------------------------------------------------------

class Site(Base):
    """A place where cameras are (a van, a high street, a stadium gate), with its nodes."""

    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))

    nodes: Mapped[list[Node]] = relationship(back_populates="site", order_by="Node.id")


class Node(Base):
    """A machine at a site that runs cameras for the centre (``openlfr node``).

    ``token_hash`` is the SHA-256 of its one-time enrolment token (cleared once used);
    ``signing_key`` (Ed25519, also its broker nkey ``nkey``) and ``box_key`` (X25519, what its
    galleries are sealed to) are the public halves of the keys it made when it enrolled, as
    URL-safe base64. ``desired_digest`` is the digest of the desired state last written to the
    broker for it (so that an unchanged state is not written again)."""

    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="RESTRICT"), index=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    status: Mapped[NodeStatus] = mapped_column(_enum(NodeStatus), default=NodeStatus.PENDING)
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    signing_key: Mapped[str | None] = mapped_column(String(64))
    box_key: Mapped[str | None] = mapped_column(String(64))
    nkey: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))
    enrolled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_by: Mapped[str | None] = mapped_column(String(64))
    disable_reason: Mapped[str | None] = mapped_column(Text)
    desired_digest: Mapped[str | None] = mapped_column(String(64))
    desired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    site: Mapped[Site] = relationship(back_populates="nodes")


class NodeHealth(Base):
    """What the centre last heard from a node (migration 0018): when (``last_seen``: the
    node is online while it is younger than three of its heartbeat intervals), how often it
    reports, its run, CPU and the state of its lease (JSON: deployment id → expiry)."""

    __tablename__ = "node_health"

    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"),
                                         primary_key=True)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    interval: Mapped[float] = mapped_column(Float, default=5.0)
    run_id: Mapped[str | None] = mapped_column(String(64))
    cpu: Mapped[float | None] = mapped_column(Float)
    lease: Mapped[str | None] = mapped_column(Text)
    #: when the centre last granted it a lease, and the leases then granted (JSON)
    lease_granted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_granted: Mapped[str | None] = mapped_column(Text)


class NodeCamera(Base):
    """A camera's health as its node last reported it (migration 0018), and the node run's
    cumulative counts last added to ``camera_stats`` (so that a repeated or later heartbeat
    of the same run adds only what is new, and a new run starts from zero)."""

    __tablename__ = "node_cameras"
    __table_args__ = (UniqueConstraint("node_id", "deployment_id", "camera"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    camera: Mapped[str] = mapped_column(String(100))
    run_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str | None] = mapped_column(String(20))
    connected: Mapped[bool] = mapped_column(Boolean, default=False)
    fps_in: Mapped[float | None] = mapped_column(Float)
    fps_analysed: Mapped[float | None] = mapped_column(Float)
    reconnects: Mapped[int] = mapped_column(Integer, default=0)
    frames: Mapped[int] = mapped_column(Integer, default=0)
    faces_seen: Mapped[int] = mapped_column(Integer, default=0)
    tracks: Mapped[int] = mapped_column(Integer, default=0)
    dropped: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
