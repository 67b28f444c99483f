"""Deployments: where, why, under which legal basis, with which watchlists and threshold, and
when a live facial recognition run may happen.

Life cycle ``draft → authorised → running ⇄ paused → ended``:

* **create / edit** (``deployment.edit``): a draft with every field of
  :class:`openlfr.store.models.Deployment`, its cameras (name and source) and its watchlists.
  Editing an *authorised* deployment sends it back to draft: it needs a new authorisation.
* **camera sources are secrets**: stored encrypted under the deployment's camera key (made with
  its first camera), beside a redacted display form (:func:`openlfr.redact.redact`) and a keyed
  digest. Pages, answers and audit entries hold only those two; only the live run decrypts
  (:func:`camera_sources`). On edit, a camera line whose name and text are unchanged (the
  display form, as pages show it, or the full source again) keeps its stored source.
* **authorise** (``deployment.authorise``): by an authorising officer who neither created nor
  edited it (a refusal is audited); every required field present; every watchlist approved and
  of the deployment's model; the window not over; the threshold at or above the model's floor
  (:func:`openlfr.governance.floors.current_floor`) unless an override with a reason was recorded
  (:func:`override_threshold`, ``threshold.override``). Creates the deployment's data key (alert
  crops are encrypted under it).
* **start** (``deployment.run``): authorised, inside its window, rules re-checked (a watchlist
  changed since, a floor recalibrated since); ``running``. Starting only changes the state: the
  reconciler (:mod:`openlfr.governance.reconcile`) of ``openlfr serve`` (or of
  ``openlfr watch --deployment``) sees it and opens the cameras. Starting a ``running``
  deployment changes nothing.
* **pause** (the program): a run that stopped without ending its deployment (its sources
  ended, the server stopped, Ctrl-C, a time limit) leaves it ``paused``, with the reason
  (``deployment.pause``, with the run's counts).
* **resume** (``deployment.run``): a ``paused`` deployment runs again, rules and window
  re-checked as for start (``deployment.resume``); :func:`start` on a paused one resumes it.
* **alternatives** (required for a new plan): which less intrusive alternatives were considered
  and why they do not suffice. Shown where it is authorised and on the public page.
* **consultation** (``deployment.propose``, ``deployment.consultation_response``): a plan may
  carry a consultation period in days; publishing it as *proposed* (:func:`propose`, a draft
  still) opens the period: the public pages list it with where, when and why and the period's
  end, and residents comment through the questions form of its page. It can be authorised only
  once the period has ended and an authorising officer recorded a response to the comments
  (:func:`record_response`; published with the deployment). A deployment planned for longer than
  ``OPENLFR_CONSULTATION_AFTER_DAYS`` (default 30) days cannot be authorised without one. A
  *material* edit (:data:`MATERIAL`: where, when, why, how) of a proposed plan restarts the
  period from the edit and clears the response: residents are consulted on the plan as it now
  is. Publishing again (:func:`propose`) also restarts it. Changing only the name or the
  safeguards (signs, notice, two-person rule) keeps the period and the response.
* **stop**: by a person with a reason, or by the program (``system``) when the window is over
  (:func:`end_overdue`, which ends authorised, running and paused deployments alike);
  ``ended`` is final.

Every change writes its audit entry in the same transaction (DESIGN.md, invariant 2). Audit
details hold no floats (thresholds as decimal strings) and no biometric data.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from openlfr.audit import log as audit_log
from openlfr.config import Settings
from openlfr.governance.authz import (
    SYSTEM_ACTOR,
    Actor,
    Conflict,
    Forbidden,
    NotFound,
    Perm,
    RuleError,
    allowed,
    refuse,
    require,
)
from openlfr.governance.floors import (
    Floor,
    calibration_for,
    calibrations,
    current_floor,
    expected_at,
    pick_calibration,
)
from openlfr.governance.names import check_name, check_text
from openlfr.governance.nodes import resolve_node
from openlfr.governance.profiles import (
    TWO_PERSON_PROFILES,
    Profile,
    active_profile,
    parse_rank,
    rank_problem,
)
from openlfr.governance.times import to_utc
from openlfr.governance.views import CameraView, DeploymentView, OverrideChance, WatchlistRef
from openlfr.nodes.protocol import DEFAULT_LEASE_S
from openlfr.redact import is_redacted, redact, source_digest
from openlfr.store.crypto import Keyring, open_sealed
from openlfr.store.db import Database
from openlfr.store.enums import DeploymentStatus, WatchlistStatus
from openlfr.store.models import (
    AuditRecord,
    Camera,
    CameraStats,
    Deployment,
    PublicQuestion,
    Subject,
    UseNotification,
    Watchlist,
)
from openlfr.video.sources import check_camera_name, split_camera
from openlfr.video.zones import CameraZones, Polygon, check_polygons, from_json
from openlfr.video.zones import summary as zone_summary
from openlfr.video.zones import to_json as zone_json
from openlfr.vision.thresholds import check_threshold

Clock = Callable[[], datetime]

#: The audit actions that make someone an author of a deployment (who may not authorise it).
AUTHOR_ACTIONS = ("deployment.create", "deployment.edit")
#: Statuses in which a deployment may still be changed (an authorised one goes back to draft).
CHANGEABLE = (DeploymentStatus.DRAFT, DeploymentStatus.AUTHORISED)

#: The purpose of the data key camera sources are encrypted under.
CAMERA_KEY_PURPOSE = "camera-secrets"
#: A reason for a threshold override below the floor: at least a sentence.
OVERRIDE_REASON_CHARS = 20
OVERRIDE_REASON_WORDS = 3

#: The target false-positive identification rate a plan has unless it says otherwise (1 %,
#: as ``openlfr calibrate``'s default).
DEFAULT_TARGET_FPIR = 0.01
#: The plan fields of references checked as names.
PROFILE_REFS = ("fria_ref", "eu_db_ref")

END_OF_WINDOW = "the planned end of the deployment window was reached"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class CameraSpec:
    """A camera of a deployment: its name (unique within the deployment) and its source (a file
    path, a stream URL or a webcam index, as ``openlfr watch`` takes it), with its analysis
    zones and privacy masks (:mod:`openlfr.video.zones`; ``None`` on :func:`edit`: the stored
    camera's are kept), and the node that runs it (a node's name, :mod:`openlfr.governance.nodes`;
    ``""``: the centre; ``None``: the centre for a new camera, the stored camera's node on
    :func:`edit`)."""

    name: str
    source: str
    zones: tuple[Polygon, ...] | None = None
    masks: tuple[Polygon, ...] | None = None
    node: str | None = None

    @classmethod
    def parse(cls, text: str) -> CameraSpec:
        """``NAME=SOURCE`` (:func:`openlfr.video.sources.split_camera`)."""
        return cls(*split_camera(text))


@dataclass(frozen=True)
class Plan:
    """Everything a deployment is made of (what :func:`create` takes, and :func:`edit` changes).

    ``planned_start`` and ``planned_end`` must be timezone-aware. ``model_id`` is the full model
    id of the recogniser (e.g. ``sface-2021dec-int8bq``): thresholds belong to a model. A
    ``threshold`` of ``None`` means the model's current floor (:func:`create` looks it up: the
    one place that default is applied).
    """

    name: str
    site: str
    location: str
    purpose: str
    legal_basis: str
    dpia_ref: str
    equality_ref: str
    planned_start: datetime
    planned_end: datetime
    threshold: float | None  # None: the model's current floor (when the draft is created)
    model_id: str
    two_person_rule: bool = False
    signage: bool = False
    public_notice: bool = False
    urgency_reason: str | None = None
    watchlist_ids: tuple[int, ...] = ()
    cameras: tuple[CameraSpec, ...] = field(default_factory=tuple)
    #: the less intrusive alternatives considered, and why they do not suffice (required for
    #: a new plan: :func:`create`)
    alternatives: str | None = None
    #: the public consultation's length in days (None: no consultation)
    consultation_days: int | None = None
    #: when the advance public notice was (or will be) published: before the window starts
    #: (required under ``uk-app`` unless a critical-threat reason, ``urgency_reason``, is given)
    notice_at: datetime | None = None
    #: the false-positive identification rate the plan aims at (false alerts per person
    #: passing): authorisation needs a calibration for it (:func:`authorise`)
    target_fpir: float | None = DEFAULT_TARGET_FPIR
    #: the fundamental rights impact assessment and the EU database registration (required
    #: under ``eu-ai-act``)
    fria_ref: str | None = None
    eu_db_ref: str | None = None
    #: how long a lease the centre grants a node running its cameras (seconds): a node cut
    #: off from the centre for longer stops matching
    lease_seconds: int = DEFAULT_LEASE_S


@dataclass(frozen=True)
class Decision:
    """What the authorising officer records with an authorisation (:func:`authorise`), as the
    profile in force asks: ``uk-app``: the officer's ``rank`` and the approval of the
    watchlist criteria; ``eu-ai-act``: the independent authority's decision; both: the
    attestation that the calibration's data is representative of the people who will pass."""

    rank: str | None = None
    criteria_approved: bool = False
    representative: bool = False
    authority_ref: str | None = None
    authority_name: str | None = None
    authority_date: date | None = None
    authority_scope: str | None = None


#: The shortest and longest lease of a deployment's cameras on a node (seconds).
LEASE_MIN_S, LEASE_MAX_S = 10, 3600

#: The plan fields stored as columns of the same name.
COLUMNS = ("name", "site", "location", "purpose", "legal_basis", "dpia_ref", "equality_ref",
           "planned_start", "planned_end", "threshold", "model_id", "two_person_rule",
           "signage", "public_notice", "urgency_reason", "alternatives", "consultation_days",
           "notice_at", "target_fpir", "fria_ref", "eu_db_ref", "lease_seconds")
TEXT_FIELDS = ("name", "site", "location", "purpose", "legal_basis", "dpia_ref",
               "equality_ref")
REQUIRED_LABELS = {
    "name": "a name", "site": "the site", "location": "the location", "purpose": "the purpose",
    "legal_basis": "the legal basis",
    "dpia_ref": "the data protection impact assessment reference",
    "equality_ref": "the equality impact assessment reference",
}
PROFILE_LABELS = {"fria_ref": "fundamental rights impact assessment reference",
                  "eu_db_ref": "EU database registration reference"}
ALTERNATIVES_LABEL = ("the less intrusive alternatives considered and why they do not "
                      "suffice")
#: The longest consultation a plan may set, in days.
CONSULTATION_MAX_DAYS = 365
#: The plan fields whose change restarts an open consultation (where, when, why, how).
MATERIAL = ("site", "location", "purpose", "legal_basis", "dpia_ref", "equality_ref",
            "planned_start", "planned_end", "threshold", "model_id", "alternatives",
            "consultation_days", "watchlist_ids", "cameras")
#: The shortest and longest response to a consultation's comments.
RESPONSE_MIN, RESPONSE_MAX = 20, 8000
#: The default of ``OPENLFR_CONSULTATION_AFTER_DAYS``.
CONSULTATION_AFTER_DAYS = int(Settings.model_fields["consultation_after_days"].default)


# -- validation --------------------------------------------------------------------------------

def _check_plan(plan: Plan) -> Plan:
    """Refuse what can never be right, even in a draft; return the plan tidied."""
    for name in TEXT_FIELDS:
        value = getattr(plan, name)
        if not isinstance(value, str):
            raise RuleError(f"{name} must be text")
    plan = replace(plan, **{n: getattr(plan, n).strip() for n in TEXT_FIELDS},
                   urgency_reason=(plan.urgency_reason or "").strip() or None)
    for name in TEXT_FIELDS:
        check = check_text if name in ("purpose", "legal_basis") else check_name
        check(getattr(plan, name), f"the {name.replace('_', ' ')}")
    check_text(plan.urgency_reason or "", "the urgency reason")
    if plan.alternatives is not None and not isinstance(plan.alternatives, str):
        raise RuleError("alternatives must be text", field="alternatives")
    plan = replace(plan, alternatives=(plan.alternatives or "").strip() or None)
    check_text(plan.alternatives or "", "the alternatives")
    if plan.consultation_days is not None:
        days = plan.consultation_days
        if isinstance(days, bool) or not isinstance(days, int) or not (
                1 <= days <= CONSULTATION_MAX_DAYS):
            raise RuleError(f"the consultation period must be a whole number of days from 1 "
                            f"to {CONSULTATION_MAX_DAYS} (got {days!r})",
                            field="consultation_days")
    for name in PROFILE_REFS:
        value = getattr(plan, name)
        if value is not None and not isinstance(value, str):
            raise RuleError(f"{name} must be text", field=name)
        check_name((value or "").strip(), f"the {PROFILE_LABELS[name]}")
    plan = replace(plan, fria_ref=(plan.fria_ref or "").strip() or None,
                   eu_db_ref=(plan.eu_db_ref or "").strip() or None)
    lease = plan.lease_seconds
    if isinstance(lease, bool) or not isinstance(lease, int) or not (
            LEASE_MIN_S <= lease <= LEASE_MAX_S):
        raise RuleError(f"a node's lease lasts {LEASE_MIN_S} to {LEASE_MAX_S} seconds "
                        f"(got {lease!r})", field="lease_seconds")
    if plan.target_fpir is not None:
        rate = plan.target_fpir
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (
                0.0 < float(rate) < 1.0):
            raise RuleError(f"the target false-alert rate must be a number between 0 and 1, "
                            f"e.g. 0.001 for 1 in 1,000 people passing (got {rate!r})",
                            field="target_fpir")
        plan = replace(plan, target_fpir=float(rate))
    if plan.notice_at is not None:
        if not isinstance(plan.notice_at, datetime) or plan.notice_at.tzinfo is None:
            raise RuleError("notice_at must be a date and time with a timezone "
                            "(e.g. 2026-05-01T08:00Z)", field="notice_at")
        plan = replace(plan, notice_at=to_utc(plan.notice_at, "notice_at"))
    if not plan.name:
        raise RuleError("a deployment needs a name")
    for name, value in (("planned_start", plan.planned_start),
                        ("planned_end", plan.planned_end)):
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise RuleError(f"{name} must be a date and time with a timezone "
                            "(e.g. 2026-05-01T08:00Z or 2026-05-01T08:00+01:00)", field=name)
    plan = replace(plan, planned_start=to_utc(plan.planned_start, "planned_start"),
                   planned_end=to_utc(plan.planned_end, "planned_end"))
    if plan.planned_end <= plan.planned_start:
        raise RuleError(f"the planned end {plan.planned_end.isoformat()} must come after the "
                        f"planned start {plan.planned_start.isoformat()}")
    if plan.threshold is not None:
        plan = replace(plan, threshold=check_threshold(plan.threshold))
    if not plan.model_id.strip():
        raise RuleError("a deployment needs the model id of its recogniser")
    names = [c.name for c in plan.cameras]
    for cam in plan.cameras:
        check_camera_name(cam.name)
        if not cam.source.strip():
            raise RuleError(f"camera {cam.name}: no source")
        check_text(cam.source, f"the source of camera {cam.name}")
    plan = replace(plan, cameras=tuple(
        CameraSpec(c.name, c.source,
                   None if c.zones is None else check_polygons(c.zones, c.name, "zones"),
                   None if c.masks is None else check_polygons(c.masks, c.name, "masks"),
                   _check_node_field(c))
        for c in plan.cameras))
    if len(set(names)) != len(names):
        raise RuleError(f"camera names must be unique within a deployment: {names}")
    if len(set(plan.watchlist_ids)) != len(plan.watchlist_ids):
        raise RuleError("a watchlist is listed twice")
    return plan


def _check_model(session: Session, model_id: str) -> None:
    """Refuse a model whose floor is not known: an unknown one, or one a user added that has
    not been calibrated. From the specs and the records only: no model is loaded."""
    current_floor(session, model_id)


def _watchlists(session: Session, ids: Sequence[int]) -> list[Watchlist]:
    rows = []
    for wid in ids:
        wl = session.get(Watchlist, wid)
        if wl is None:
            raise NotFound(f"watchlist {wid} does not exist")
        if wl.status == WatchlistStatus.DESTROYED:
            raise RuleError(f"watchlist {wid} ({wl.name}) has been destroyed")
        rows.append(wl)
    return rows


def _load(session: Session, deployment_id: int) -> Deployment:
    dep = session.get(Deployment, deployment_id)
    if dep is None:
        raise NotFound(f"deployment {deployment_id} does not exist")
    return dep


def authors(session: Session, deployment_id: int) -> set[str]:
    """Everyone who created or changed the deployment (from the audit log: the deployment
    table keeps only its creator)."""
    rows = session.scalars(select(AuditRecord.actor).where(
        AuditRecord.object_type == "deployment",
        AuditRecord.object_id == str(deployment_id),
        AuditRecord.action.in_(AUTHOR_ACTIONS))).all()
    dep = session.get(Deployment, deployment_id)
    return set(rows) | ({dep.created_by} if dep is not None else set())


def missing_fields(dep: Deployment, alternatives: bool = True) -> list[str]:
    """What a deployment still lacks before it can be authorised (plain words).
    ``alternatives=False``: without the alternatives (not required of a deployment authorised
    before they were recorded, when it starts)."""
    missing = [label for name, label in REQUIRED_LABELS.items()
               if not (getattr(dep, name) or "").strip()]
    if not dep.cameras:
        missing.append("at least one camera")
    if not dep.watchlists:
        missing.append("at least one watchlist")
    if alternatives and not (dep.alternatives or "").strip():
        missing.append(ALTERNATIVES_LABEL)
    if not (dep.signage and dep.public_notice) and not dep.urgency_reason:
        missing.append("signage and a public notice in place, or a recorded reason why not "
                       "(urgency)")
    return missing


def threshold_problem(dep: Deployment, floor: Floor) -> str | None:
    """Why the threshold may not be used, or None. Below the floor it needs an override
    recorded by one authorising officer and confirmed by a second."""
    if dep.threshold >= floor.threshold:
        return None
    below = (f"threshold {dep.threshold:.4f} is below the {floor.source} floor "
             f"{floor.threshold:.4f} of model {dep.model_id}")
    if not dep.threshold_override_reason:
        return (f"{below}: raise it, or have two authorising officers record and confirm an "
                "override with a reason (`openlfr deployment override-threshold`)")
    if not dep.threshold_override_confirmed_by:
        return (f"{below}: the override recorded by {dep.threshold_override_by} needs a "
                "second authorising officer to confirm it (`openlfr deployment "
                "override-threshold`)")
    return None


def check_override_reason(reason: str | None) -> str:
    """A threshold override's reason, tidied: at least a sentence (``OVERRIDE_REASON_CHARS``
    characters and ``OVERRIDE_REASON_WORDS`` words)."""
    reason = " ".join((reason or "").split())
    if not reason:
        raise RuleError("a threshold override needs a written reason")
    if len(reason) < OVERRIDE_REASON_CHARS or len(reason.split()) < OVERRIDE_REASON_WORDS:
        raise RuleError(f"the reason for a threshold override must be at least a sentence: "
                        f"{OVERRIDE_REASON_CHARS} characters and {OVERRIDE_REASON_WORDS} words "
                        f"(this one has {len(reason)} and {len(reason.split())})")
    return reason


def _runnable_problems(session: Session, dep: Deployment, starting: bool = False) -> list[str]:
    """The rules a deployment must meet to be authorised or started (except the window)."""
    problems = []
    missing = missing_fields(dep, alternatives=not starting)
    if missing:
        problems.append("missing: " + "; ".join(missing))
    for wl in dep.watchlists:
        if wl.status != WatchlistStatus.APPROVED:
            problems.append(f"watchlist {wl.id} ({wl.name}) is {wl.status.value}, not approved")
        elif wl.model_id != dep.model_id:
            problems.append(f"watchlist {wl.id} ({wl.name}) holds {wl.model_id!r} templates, "
                            f"the deployment uses {dep.model_id!r}")
    problem = threshold_problem(dep, current_floor(session, dep.model_id))
    if problem:
        problems.append(problem)
    return problems


def _dt(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _plan_details(dep: Deployment) -> dict[str, Any]:
    """The audit view of a deployment's plan (no floats)."""
    return {
        "name": dep.name, "site": dep.site, "location": dep.location, "purpose": dep.purpose,
        "legal_basis": dep.legal_basis, "dpia_ref": dep.dpia_ref,
        "equality_ref": dep.equality_ref, "planned_start": _dt(dep.planned_start),
        "planned_end": _dt(dep.planned_end), "threshold": audit_log.fmt_float(dep.threshold),
        "model_id": dep.model_id, "two_person_rule": dep.two_person_rule,
        "signage": dep.signage, "public_notice": dep.public_notice,
        "urgency_reason": dep.urgency_reason, "alternatives": dep.alternatives,
        "watchlists": [wl.id for wl in dep.watchlists],
        "cameras": [{"name": c.name, "source": c.display, "digest": c.source_digest,
                     "zones": zone_summary(from_json(c.zones)),
                     "masks": zone_summary(from_json(c.masks))}
                    | ({"node": c.node.name} if c.node is not None else {})
                    for c in dep.cameras],
    } | ({"consultation_days": dep.consultation_days} if dep.consultation_days else {}) | {
        name: value for name, value in (
            ("notice_at", _dt(dep.notice_at)),
            ("target_fpir", None if dep.target_fpir is None
             else audit_log.fmt_float(dep.target_fpir)),
            ("fria_ref", dep.fria_ref), ("eu_db_ref", dep.eu_db_ref)) if value is not None} | (
        {"lease_seconds": dep.lease_seconds} if any(c.node_id is not None for c in dep.cameras)
        or dep.lease_seconds != DEFAULT_LEASE_S else {})


# -- camera sources ----------------------------------------------------------------------------

def _camera_aad(deployment_id: int, name: str) -> bytes:
    return f"camera-source:{deployment_id}:{name}".encode()


def _digest_key(key: bytes) -> bytes:
    """The digest key, derived from the camera key (one key, one use)."""
    return hmac.new(key, b"openlfr/camera-source-digest", hashlib.sha256).digest()


def _need_keyring(keyring: Keyring | None) -> Keyring:
    if keyring is None:
        raise TypeError("camera sources are stored encrypted: pass keyring=")
    return keyring


def _camera_key(s: Session, keyring: Keyring, dep: Deployment) -> bytes:
    if dep.camera_key_id is None:
        dep.camera_key_id = keyring.new_key(s, CAMERA_KEY_PURPOSE).id
    return keyring.unwrap(s, dep.camera_key_id)


@dataclass(frozen=True, slots=True)
class _SealedCamera:
    name: str
    display: str
    digest: str
    sealed: bytes | None  # None: a kept camera (its row's ciphertext stays)


def _sealed(s: Session, keyring: Keyring, dep: Deployment, name: str,
            source: str) -> Camera:
    key = _camera_key(s, keyring, dep)
    return Camera(name=name, display=redact(source),
                  source_ct=keyring.encrypt(s, dep.camera_key_id, source.encode(),
                                            _camera_aad(dep.id, name)),
                  source_digest=source_digest(_digest_key(key), source))


def _seal_legacy(s: Session, keyring: Keyring, dep: Deployment) -> list[str]:
    """Encrypt the plaintext sources a database from before encryption holds."""
    done = []
    for cam in dep.cameras:
        if cam.legacy_source is None:
            continue
        new = _sealed(s, keyring, dep, cam.name, cam.legacy_source)
        cam.display, cam.source_ct, cam.source_digest = (new.display, new.source_ct,
                                                         new.source_digest)
        cam.legacy_source = None
        done.append(cam.name)
    return done


def seal_sources(db: Database, keyring: Keyring) -> list[int]:
    """Encrypt every camera source still stored in plaintext (``deployment.cameras_sealed``,
    per deployment); returns the deployments' ids. Run when an installation is opened."""
    with db.reading() as s:
        ids = sorted(set(s.scalars(select(Camera.deployment_id).where(
            Camera.legacy_source.is_not(None))).all()))
    if not ids:
        return []
    with db.session() as s:
        for dep_id in ids:
            dep = _load(s, dep_id)
            names = _seal_legacy(s, keyring, dep)
            s.flush()
            audit_log.record_split(
                s, SYSTEM_ACTOR.name, "deployment.cameras_sealed", "deployment", dep.id,
                {"cameras": [{"name": c.name, "source": c.display, "digest": c.source_digest}
                             for c in dep.cameras if c.name in names]}, "cameras")
    return ids


def camera_sources(session: Session, keyring: Keyring, dep: Deployment,
                   names: Collection[str] | None = None) -> list[tuple[str, str]]:
    """The cameras' names and full sources (decrypted): for the live run only. ``names``:
    only these cameras (a node's own, of a plan of hundreds)."""
    out = []
    key: bytes | None = None
    for cam in dep.cameras:
        if names is not None and cam.name not in names:
            continue
        if cam.source_ct is None:
            if cam.legacy_source is None:
                raise RuleError(f"camera {cam.name} of deployment {dep.id} has no source")
            out.append((cam.name, cam.legacy_source))
            continue
        if key is None:  # the camera key, unwrapped once for all the cameras
            key = keyring.unwrap(session, dep.camera_key_id)
        out.append((cam.name, open_sealed(key, cam.source_ct,
                                          _camera_aad(dep.id, cam.name)).decode()))
    return out


def _resolve_cameras(s: Session, keyring: Keyring, dep: Deployment,
                     specs: Sequence[CameraSpec]) -> list[_SealedCamera]:
    """What the edited camera list stands for: a line whose name and text match a stored
    camera (its display form, or its full source) keeps that camera's secret source."""
    old = {c.name: c for c in dep.cameras}
    key = _camera_key(s, keyring, dep) if specs else b""  # existing, or made for new lines
    out = []
    for spec in specs:
        cam = old.get(spec.name)
        digest = source_digest(_digest_key(key), spec.source)
        if cam is not None and (spec.source == cam.display or digest == cam.source_digest):
            out.append(_SealedCamera(cam.name, cam.display, cam.source_digest or "", None))
        elif is_redacted(spec.source):
            raise RuleError(f"camera {spec.name}: {spec.source!r} is a redacted display form, "
                            "not a source; give the full source (a line keeps its stored "
                            "source only under its own name)")
        else:
            out.append(_SealedCamera(spec.name, redact(spec.source), digest,
                                     keyring.encrypt(s, dep.camera_key_id,
                                                     spec.source.encode(),
                                                     _camera_aad(dep.id, spec.name))))
    return out


# -- create and edit ---------------------------------------------------------------------------

def _check_node_field(cam: CameraSpec) -> str | None:
    if cam.node is None:
        return None
    if not isinstance(cam.node, str):
        raise RuleError(f"camera {cam.name}: its node must be a node's name", field="cameras")
    return check_name(cam.node.strip(), f"the node of camera {cam.name}")


def create(db: Database, actor: Actor, plan: Plan, keyring: Keyring | None = None) -> int:
    """A new draft deployment; returns its id. ``keyring`` encrypts the camera sources (needed
    when the plan has cameras)."""
    require(db, actor, Perm.DEPLOYMENT_EDIT, "deployment", "new")
    plan = _check_plan(plan)
    if not plan.alternatives:
        raise RuleError(f"a new plan needs {ALTERNATIVES_LABEL} (the least intrusive means "
                        "that would do must be shown not to suffice)", field="alternatives")
    for cam in plan.cameras:
        if is_redacted(cam.source):
            raise RuleError(f"camera {cam.name}: {cam.source!r} is a redacted display form, "
                            "not a source; give the full source")
    if plan.cameras:
        keyring = _need_keyring(keyring)
    with db.session() as s:
        _check_model(s, plan.model_id)
        dep = Deployment(**{c: getattr(plan, c) for c in COLUMNS},
                         status=DeploymentStatus.DRAFT, created_by=actor.name)
        dep.threshold = (current_floor(s, plan.model_id).threshold if plan.threshold is None
                         else float(plan.threshold))
        dep.watchlists = _watchlists(s, plan.watchlist_ids)
        s.add(dep)
        s.flush()
        if plan.cameras:
            assert keyring is not None
            dep.cameras = [_sealed(s, keyring, dep, c.name, c.source) for c in plan.cameras]
            for row, spec in zip(dep.cameras, plan.cameras, strict=True):
                _set_zones(row, spec.zones or (), spec.masks or ())
                row.node = resolve_node(s, spec.node)
            s.flush()
        audit_log.record_split(s, actor.name, "deployment.create", "deployment", dep.id,
                               _plan_details(dep), "cameras")
        return dep.id


def plan_of(dep: Deployment) -> Plan:
    """The deployment's plan; camera sources in their display form (never the secret)."""
    return Plan(**{c: getattr(dep, c) for c in COLUMNS},
                watchlist_ids=tuple(wl.id for wl in dep.watchlists),
                cameras=tuple(CameraSpec(c.name, c.display, from_json(c.zones),
                                         from_json(c.masks), c.node.name if c.node else None)
                              for c in dep.cameras))


def _set_zones(row: Camera, zones: Sequence[Polygon], masks: Sequence[Polygon]) -> None:
    row.zones = zone_json(zones) if zones else None
    row.masks = zone_json(masks) if masks else None


def camera_zones(dep: Deployment) -> dict[str, CameraZones]:
    """Each camera's analysis zones and privacy masks: for the live run."""
    return {c.name: CameraZones(from_json(c.zones), from_json(c.masks)) for c in dep.cameras}


def edit(db: Database, actor: Actor, deployment_id: int, *, keyring: Keyring | None = None,
         **changes: Any) -> list[str]:
    """Change fields of a draft or authorised deployment (keyword names of :class:`Plan`;
    ``watchlist_ids`` and ``cameras`` replace the lists). An authorised deployment goes back to
    draft. Changing the threshold or the model drops a recorded threshold override. Returns the
    names of the fields that changed (nothing changed: nothing written).

    ``cameras`` needs ``keyring``: a line whose name and text match a stored camera (its
    display form or its full source) keeps the stored source; any other line is a new one."""
    require(db, actor, Perm.DEPLOYMENT_EDIT, "deployment", str(deployment_id))
    known = {f.name for f in fields(Plan)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise RuleError(f"unknown deployment field(s): {', '.join(unknown)}")
    if "cameras" in changes:
        changes["cameras"] = tuple(changes["cameras"])
        keyring = _need_keyring(keyring)
    if "watchlist_ids" in changes:
        changes["watchlist_ids"] = tuple(int(w) for w in changes["watchlist_ids"])
    with db.session() as s:
        dep = _load(s, deployment_id)
        if dep.status not in CHANGEABLE:
            raise Conflict(f"deployment {deployment_id} is {dep.status.value}: it can no "
                           "longer be changed")
        before = plan_of(dep)
        after = _check_plan(replace(before, **changes))
        if before.alternatives and not after.alternatives:
            raise RuleError(f"{ALTERNATIVES_LABEL} cannot be removed from a plan",
                            field="alternatives")
        _check_model(s, after.model_id)
        changed = [f.name for f in fields(Plan) if f.name != "cameras"
                   and getattr(before, f.name) != getattr(after, f.name)]
        cameras: list[_SealedCamera] = []
        if "cameras" in changes:
            assert keyring is not None
            if any(c.legacy_source is not None for c in dep.cameras):
                _seal_legacy(s, keyring, dep)
            cameras = _resolve_cameras(s, keyring, dep, after.cameras)
            stored = {c.name: c for c in before.cameras}
            zones = [_zones_of(spec, stored.get(spec.name)) for spec in after.cameras]
            nodes = [resolve_node(s, spec.node if spec.node is not None else (
                stored[spec.name].node if spec.name in stored else None))
                for spec in after.cameras]
            if ([(c.name, c.digest) for c in cameras]
                    != [(c.name, c.source_digest) for c in dep.cameras]
                    or zones != [(c.zones, c.masks) for c in before.cameras]
                    or [n.id if n else None for n in nodes]
                    != [c.node_id for c in dep.cameras]):
                changed.append("cameras")
        if not changed:  # (a camera key is made only with a new camera: a change)
            return []
        threshold = dep.threshold if after.threshold is None else after.threshold  # None: kept
        for column in COLUMNS:
            setattr(dep, column, getattr(after, column))
        dep.threshold = float(threshold)
        if "watchlist_ids" in changed:
            dep.watchlists = _watchlists(s, after.watchlist_ids)
        if "cameras" in changed:
            kept = {c.name: c.source_ct for c in dep.cameras}
            dep.cameras = []
            s.flush()
            dep.cameras = [Camera(name=c.name, display=c.display, source_digest=c.digest,
                                  source_ct=c.sealed if c.sealed is not None else kept[c.name])
                           for c in cameras]
            for row, (zone, mask), node in zip(dep.cameras, zones, nodes, strict=True):
                _set_zones(row, zone or (), mask or ())
                row.node = node
        dropped_override = False
        if ({"threshold", "model_id"} & set(changed)) and dep.threshold_override_reason:
            dep.threshold_override_reason = None
            dep.threshold_override_by = None
            dep.threshold_override_confirmed_by = None
            dropped_override = True
        was = dep.status
        _back_to_draft(dep)
        consultation = _after_edit(dep, changed, utcnow())
        s.flush()
        details = _plan_details(dep)
        details.update(changed=changed, status_before=was.value, status=dep.status.value,
                       override_dropped=dropped_override)
        if consultation is not None:
            details["consultation"] = consultation
        audit_log.record_split(s, actor.name, "deployment.edit", "deployment", dep.id, details,
                               "cameras")
        return changed


def _after_edit(dep: Deployment, changed: Sequence[str], now: datetime) -> str | None:
    """What a change does to an opened consultation (module doc): ``restarted`` after a
    material change, ``withdrawn`` when its period was removed; None when it stays."""
    if dep.consultation_opened_at is None or not set(changed) & set(MATERIAL):
        return None
    dep.consultation_response = None
    dep.consultation_response_by = None
    dep.consultation_response_at = None
    if dep.consultation_days is None:
        dep.consultation_opened_at = dep.consultation_ends_at = None
        return "withdrawn"
    dep.consultation_opened_at = now
    dep.consultation_ends_at = now + timedelta(days=dep.consultation_days)
    return "restarted"


def _zones_of(spec: CameraSpec, stored: CameraSpec | None
              ) -> tuple[tuple[Polygon, ...] | None, tuple[Polygon, ...] | None]:
    """A camera line's zones and masks on edit: its own, or (``None``) the stored camera's."""
    keep = stored if stored is not None else CameraSpec(spec.name, "", (), ())
    return (spec.zones if spec.zones is not None else keep.zones,
            spec.masks if spec.masks is not None else keep.masks)


def _back_to_draft(dep: Deployment) -> None:
    if dep.status == DeploymentStatus.AUTHORISED:
        dep.status = DeploymentStatus.DRAFT
        dep.authorised_by = None
        dep.authorised_at = None


def _override_problem(actor: Actor, dep: Deployment, floor: Floor,
                      is_author: bool) -> Exception | None:
    """Why ``actor`` (whose role may override) may not record or confirm a threshold override
    on ``dep`` now, or None: the one rule of :func:`override_threshold` and of
    :func:`override_chance`. ``is_author``: the actor created or changed it (a
    :class:`Forbidden` refusal, audited by the caller)."""
    if dep.status not in CHANGEABLE:
        return Conflict(f"deployment {dep.id} is {dep.status.value}: its threshold can no "
                        "longer be changed")
    if dep.threshold >= floor.threshold:
        return Conflict(f"threshold {dep.threshold:.4f} is not below the {floor.source} floor "
                        f"{floor.threshold:.4f} of model {dep.model_id}: no override is needed")
    if dep.threshold_override_confirmed_by is not None:
        return Conflict(f"the override of threshold {dep.threshold:.4f} is already recorded "
                        f"by {dep.threshold_override_by} and confirmed by "
                        f"{dep.threshold_override_confirmed_by}")
    if is_author:
        return Forbidden(f"{actor.name} created or changed deployment {dep.id} and may not "
                         "override its threshold floor")
    pending = dep.threshold_override_reason is not None
    if pending and dep.threshold_override_by == actor.name:
        return Conflict(f"{actor.name} recorded this override: a second, different "
                        "authorising officer must confirm it")
    return None


def override_chance(db: Database, actor: Actor, deployment_id: int) -> OverrideChance:
    """Whether ``actor`` may record (or confirm) a threshold override on the deployment now,
    by the same rule as :func:`override_threshold` (for showing its form only then); a
    question, not an attempt, so nothing is audited."""
    if not allowed(actor, Perm.THRESHOLD_OVERRIDE):
        return OverrideChance(possible=False,
                              why_not="only an authorising officer may override the floor")
    with db.reading() as s:
        dep = _load(s, deployment_id)
        floor = current_floor(s, dep.model_id)
        problem = _override_problem(actor, dep, floor,
                                    actor.name in authors(s, deployment_id))
        confirms = dep.threshold_override_reason is not None
    if problem is not None:
        return OverrideChance(possible=False, why_not=str(problem))
    return OverrideChance(possible=True, confirms=confirms)


def override_threshold(db: Database, actor: Actor, deployment_id: int, reason: str) -> None:
    """Record why a threshold below the model's floor may be used
    (``deployment.threshold_override``), or confirm the override another authorising officer
    recorded (``deployment.threshold_override_confirm``): below the floor, a deployment needs
    both, by two different officers, neither an author, each with a reason of at least a
    sentence (:func:`check_override_reason`). At or above the floor, or once confirmed,
    there is nothing to override (:class:`Conflict`). A change like any other: an authorised
    deployment goes back to draft. :func:`override_chance` answers, by the same rule, whether
    it is possible."""
    require(db, actor, Perm.THRESHOLD_OVERRIDE, "deployment", str(deployment_id))
    reason = check_override_reason(reason)
    with db.reading() as s:
        dep = _load(s, deployment_id)
        problem = _override_problem(actor, dep, current_floor(s, dep.model_id),
                                    actor.name in authors(s, deployment_id))
    if isinstance(problem, Forbidden):
        raise refuse(db, actor, Perm.THRESHOLD_OVERRIDE.value, str(problem), "deployment",
                     str(deployment_id))
    with db.session() as s:
        dep = _load(s, deployment_id)
        floor = current_floor(s, dep.model_id)
        problem = _override_problem(actor, dep, floor, is_author=False)
        if problem is not None:
            raise problem
        was = dep.status
        pending = dep.threshold_override_reason is not None
        if pending:
            dep.threshold_override_confirmed_by = actor.name
            action = "deployment.threshold_override_confirm"
        else:
            dep.threshold_override_reason = reason
            dep.threshold_override_by = actor.name
            dep.threshold_override_confirmed_by = None
            action = "deployment.threshold_override"
        _back_to_draft(dep)
        audit_log.record(s, actor.name, action, "deployment", dep.id, {
            "reason": reason,
            "recorded_by": dep.threshold_override_by,
            "threshold": audit_log.fmt_float(dep.threshold),
            "floor": audit_log.fmt_float(floor.threshold),
            "floor_source": floor.source,
            "model_id": dep.model_id,
            "below_floor": dep.threshold < floor.threshold,
            "status_before": was.value,
            "status": dep.status.value,
        })


# -- consultation ------------------------------------------------------------------------------

def _public_problems(dep: Deployment) -> list[str]:
    """What a plan must say before it is published as proposed."""
    missing = [label for name, label in REQUIRED_LABELS.items()
               if not (getattr(dep, name) or "").strip()]
    if not (dep.alternatives or "").strip():
        missing.append(ALTERNATIVES_LABEL)
    return missing


def propose(db: Database, actor: Actor, deployment_id: int,
            now: datetime | None = None) -> DeploymentView:
    """Publish a draft as *proposed* (``deployment.propose``): its consultation period opens
    ``now`` and ends ``consultation_days`` later. Publishing an already proposed plan again
    restarts the period and clears a recorded response (``restarted`` in the entry)."""
    require(db, actor, Perm.DEPLOYMENT_EDIT, "deployment", str(deployment_id))
    now = to_utc(now, "now") if now is not None else utcnow()
    with db.session() as s:
        dep = _load(s, deployment_id)
        if dep.status != DeploymentStatus.DRAFT:
            raise Conflict(f"deployment {deployment_id} is {dep.status.value}: only a draft "
                           "can be published as proposed")
        if dep.consultation_days is None:
            raise Conflict(f"deployment {deployment_id} has no consultation period: set one "
                           "(in days) in the plan first")
        if dep.urgency_reason:
            raise Conflict(f"deployment {deployment_id} records an urgency reason: a plan put "
                           "to public consultation is not urgent; remove the reason first")
        missing = _public_problems(dep)
        if missing:
            raise Conflict(f"deployment {deployment_id} cannot be published as proposed: "
                           "missing: " + "; ".join(missing))
        restarted = dep.consultation_opened_at is not None
        dep.consultation_opened_at = now
        dep.consultation_ends_at = now + timedelta(days=dep.consultation_days)
        dep.consultation_response = None
        dep.consultation_response_by = None
        dep.consultation_response_at = None
        audit_log.record(s, actor.name, "deployment.propose", "deployment", dep.id, {
            "days": dep.consultation_days, "opened_at": _dt(now),
            "ends_at": _dt(dep.consultation_ends_at), "restarted": restarted})
        return describe(s, dep)


def record_response(db: Database, actor: Actor, deployment_id: int, text: str,
                    now: datetime | None = None) -> DeploymentView:
    """The authorising officer's response to the comments of a consultation that has ended
    (``deployment.consultation_response``, with the number of comments and the response's
    SHA-256). Published with the deployment. Recording again replaces it."""
    require(db, actor, Perm.DEPLOYMENT_AUTHORISE, "deployment", str(deployment_id))
    text = "\n".join(line.rstrip() for line in (text or "").replace("\r\n", "\n")
                     .split("\n")).strip()
    if len(text) < RESPONSE_MIN:
        raise RuleError(f"the response to the consultation must be at least {RESPONSE_MIN} "
                        f"characters (it has {len(text)})", field="response")
    if len(text) > RESPONSE_MAX:
        raise RuleError(f"the response to the consultation may have at most {RESPONSE_MAX} "
                        f"characters (it has {len(text)})", field="response")
    check_text(text, "the response")
    now = to_utc(now, "now") if now is not None else utcnow()
    with db.session() as s:
        dep = _load(s, deployment_id)
        if dep.status != DeploymentStatus.DRAFT:
            raise Conflict(f"deployment {deployment_id} is {dep.status.value}: a response is "
                           "recorded before it is authorised")
        if dep.consultation_opened_at is None or dep.consultation_ends_at is None:
            raise Conflict(f"deployment {deployment_id} has not been put to public "
                           "consultation: there is nothing to respond to")
        if now < dep.consultation_ends_at:
            raise Conflict(f"the consultation on deployment {deployment_id} runs until "
                           f"{_dt(dep.consultation_ends_at)}: a response can be recorded once "
                           "it has ended")
        dep.consultation_response = text
        dep.consultation_response_by = actor.name
        dep.consultation_response_at = now
        comments = consultation_comments(s, dep)
        audit_log.record(s, actor.name, "deployment.consultation_response", "deployment",
                         dep.id, {"comments": comments, "chars": len(text),
                                  "response_sha256": hashlib.sha256(text.encode()).hexdigest(),
                                  "ends_at": _dt(dep.consultation_ends_at)})
        return describe(s, dep)


def consultation_comments(s: Session, dep: Deployment) -> int:
    """The comments of its consultation: the residents' questions and objections received
    since the plan was published as proposed and before the response was recorded (all of
    them, without a response yet): the ones a response can have considered."""
    if dep.consultation_opened_at is None:
        return 0
    query = select(func.count()).select_from(PublicQuestion).where(
        PublicQuestion.deployment_id == dep.id,
        PublicQuestion.created_at >= dep.consultation_opened_at)
    if dep.consultation_response_at is not None:
        query = query.where(PublicQuestion.created_at <= dep.consultation_response_at)
    return int(s.scalar(query) or 0)


def consultation_problem(dep: Deployment, now: datetime,
                         after_days: int = CONSULTATION_AFTER_DAYS) -> str | None:
    """Why its consultation stops an authorisation ``now``, or None (module doc)."""
    length = dep.planned_end - dep.planned_start
    if dep.consultation_days is None:
        if length > timedelta(days=after_days):
            return (f"a deployment planned for longer than {after_days} days (this one: "
                    f"{length.total_seconds() / 86400:.1f} days) needs a public consultation: "
                    "set a consultation period in the plan and publish it as proposed")
        return None
    if dep.consultation_opened_at is None or dep.consultation_ends_at is None:
        return (f"its consultation of {dep.consultation_days} days has not started: publish "
                "the plan as proposed first")
    if now < dep.consultation_ends_at:
        return (f"its public consultation runs until {_dt(dep.consultation_ends_at)}: it can "
                "be authorised only after that")
    if not dep.consultation_response:
        return ("a response to the comments of its consultation must be recorded first "
                "(by an authorising officer)")
    return None


# -- the jurisdiction profiles' rules -----------------------------------------------------------

def watchlist_size(s: Session, dep: Deployment) -> int:
    """The number of subjects in the deployment's watchlists (its searches' gallery size)."""
    ids = [wl.id for wl in dep.watchlists]
    if not ids:
        return 0
    return int(s.scalar(select(func.count()).select_from(Subject)
                        .where(Subject.watchlist_id.in_(ids))) or 0)


@dataclass(frozen=True, slots=True)
class Calibrated:
    """The calibration a plan is checked against and what it lets one expect of it."""

    floor: Floor | None  # None: no recorded calibration answers for the plan
    watchlist_size: int
    target_fpir: float | None
    false_alerts_per_10k: float | None = None
    miss_rate: float | None = None


def calibration_of(s: Session, dep: Deployment, size: int | None = None,
                   floors: Sequence[Floor] | None = None) -> Calibrated:
    """The recorded calibration of the deployment's model that answers for its plan (watchlist
    size and target rate: :func:`openlfr.governance.floors.calibration_for`), with the false
    alerts per 10,000 people passing and the miss rate expected at its threshold. ``size`` and
    ``floors`` (the model's calibrations, newest first) when already read."""
    size = watchlist_size(s, dep) if size is None else size
    if dep.target_fpir is None:
        return Calibrated(None, size, None)
    floor = (calibration_for(s, dep.model_id, max(size, 1), dep.target_fpir) if floors is None
             else pick_calibration(floors, max(size, 1), dep.target_fpir))
    if floor is None:
        return Calibrated(None, size, dep.target_fpir)
    per_10k, miss = expected_at(floor, dep.threshold)
    return Calibrated(floor, size, dep.target_fpir, per_10k, miss)


def _criteria(dep: Deployment) -> list[dict[str, Any]]:
    """The criteria of the deployment's watchlists: each one's purpose and how many of its
    subjects are in each category (no one is named)."""
    out = []
    for wl in dep.watchlists:
        categories: dict[str, int] = {}
        for subject in wl.subjects:
            categories[subject.category.value] = categories.get(subject.category.value, 0) + 1
        out.append({"watchlist": wl.id, "name": wl.name, "purpose": wl.purpose,
                    "categories": dict(sorted(categories.items()))})
    return out


def _calibration_problems(cal: Calibrated, dep: Deployment, decision: Decision) -> list[str]:
    if cal.target_fpir is None:
        return ["missing: the plan's target false-alert rate (target FPIR)"]
    if cal.floor is None:
        return [f"model {dep.model_id} has no recorded calibration at a watchlist size of at "
                f"least {max(cal.watchlist_size, 1):,} and a target rate of at most "
                f"{cal.target_fpir:g}: its default floor is not enough; run `openlfr "
                f"calibrate --watchlist-size {max(cal.watchlist_size, 1)} --target-fpir "
                f"{cal.target_fpir:g}` on data representative of the people who will pass"]
    problems = []
    if not decision.representative:
        problems.append("the authorising officer must attest that the data of calibration "
                        f"{cal.floor.id} is representative of the people expected to pass")
    problem = threshold_problem(dep, cal.floor)
    if problem:
        problems.append(problem)
    return problems


def _authority(decision: Decision) -> dict[str, str] | None:
    """The independent authority's decision, tidied, or None when a part is missing."""
    parts = {"reference": (decision.authority_ref or "").strip(),
             "authority": (decision.authority_name or "").strip(),
             "scope": (decision.authority_scope or "").strip()}
    if not all(parts.values()) or decision.authority_date is None:
        return None
    check_name(parts["reference"], "the authority's decision reference")
    check_name(parts["authority"], "the authority's name")
    check_text(parts["scope"], "the scope of the authority's decision")
    return parts | {"date": decision.authority_date.isoformat()}


def profile_problems(s: Session, dep: Deployment, profile: Profile, decision: Decision,
                     cal: Calibrated) -> list[str]:
    """What the profile in force still needs before ``dep`` can be authorised with
    ``decision`` (plain words; README "Jurisdiction profiles")."""
    problems = _calibration_problems(cal, dep, decision)
    if profile == Profile.UK_APP:
        if decision.rank is None or not decision.rank.strip():
            problems.append("missing: the authorising officer's rank (superintendent or "
                            "above)")
        else:
            low = rank_problem(parse_rank(decision.rank))
            if low:
                problems.append(low)
        if not decision.criteria_approved:
            problems.append("the authorising officer must approve the watchlist criteria for "
                            "this deployment")
        if not dep.urgency_reason:
            if dep.notice_at is None:
                problems.append("missing: the date of the advance public notice, or a "
                                "critical-threat reason why there is none")
            elif dep.notice_at >= dep.planned_start:
                problems.append(f"the public notice ({_dt(dep.notice_at)}) must be published "
                                f"before the window starts ({_dt(dep.planned_start)})")
    else:
        missing = [PROFILE_LABELS[n] for n in PROFILE_REFS if not getattr(dep, n)]
        if missing:
            problems.append("missing: the " + "; the ".join(missing))
        if _authority(decision) is None:
            problems.append("missing: the independent authority's decision (reference, "
                            "authority, date and scope)")
    return problems


def _record_decision(s: Session, dep: Deployment, profile: Profile, decision: Decision,
                     cal: Calibrated) -> dict[str, Any]:
    """Store what the authorisation recorded under ``profile``; its audit details."""
    assert cal.floor is not None
    dep.calibration_id = cal.floor.id
    dep.calibration_representative = True
    details: dict[str, Any] = {
        "profile": profile.value,
        "calibration": {"id": cal.floor.id, "floor": audit_log.fmt_float(cal.floor.threshold),
                        "watchlist_size": cal.floor.watchlist_size,
                        "target_fpir": cal.floor.evidence.get("target_fpir"),
                        "plan_watchlist_size": cal.watchlist_size,
                        "representative": True}}
    if profile == Profile.UK_APP:
        dep.authorised_rank = parse_rank(decision.rank)
        criteria = _criteria(dep)
        dep.criteria_approval = json.dumps(criteria, sort_keys=True)
        details.update(rank=dep.authorised_rank, criteria=criteria,
                       critical_threat=dep.urgency_reason is not None)
    else:
        authority = _authority(decision)
        assert authority is not None
        dep.authority_ref, dep.authority_name = authority["reference"], authority["authority"]
        dep.authority_date, dep.authority_scope = authority["date"], authority["scope"]
        details["authority"] = authority
        if profile in TWO_PERSON_PROFILES and not dep.two_person_rule:
            dep.two_person_rule = True
            details["two_person_rule_forced"] = True
    return details


def notify_use(s: Session, dep: Deployment, actor: Actor, now: datetime) -> UseNotification | None:
    """Under ``eu-ai-act``, the notification of this use for the market-surveillance and
    data-protection authorities (``deployment.notification``), else None."""
    if active_profile(s) != Profile.EU_AI_ACT:
        return None
    body = {
        "format": "openlfr-use-notification-v1",
        "recipients": ["market surveillance authority", "national data protection authority"],
        "use_started_at": _dt(now), "started_by": actor.name,
        "deployment": {"id": dep.id, "name": dep.name, "site": dep.site,
                       "location": dep.location, "purpose": dep.purpose,
                       "legal_basis": dep.legal_basis,
                       "planned_start": _dt(dep.planned_start),
                       "planned_end": _dt(dep.planned_end)},
        "authorisation": {"by": dep.authorised_by, "at": _dt(dep.authorised_at),
                          "authority_reference": dep.authority_ref,
                          "authority": dep.authority_name,
                          "authority_date": dep.authority_date,
                          "scope": dep.authority_scope},
        "fria_ref": dep.fria_ref, "eu_db_ref": dep.eu_db_ref, "dpia_ref": dep.dpia_ref,
        "system": {"model_id": dep.model_id, "threshold": audit_log.fmt_float(dep.threshold)},
        "cameras": [c.name for c in dep.cameras],
        "reference_watchlists": [{"id": wl.id, "name": wl.name, "subjects": len(wl.subjects)}
                                 for wl in dep.watchlists],
    }
    row = UseNotification(deployment_id=dep.id, created_at=now, created_by=actor.name,
                          body=json.dumps(body, sort_keys=True))
    s.add(row)
    s.flush()
    audit_log.record(s, actor.name, "deployment.notification", "deployment", dep.id,
                     {"notification": row.id, "at": _dt(now),
                      "sha256": hashlib.sha256(row.body.encode()).hexdigest()})
    return row


def criteria_of(db: Database, actor: Actor, deployment_id: int) -> list[dict[str, Any]]:
    """The criteria of its watchlists, as an authorising officer approves them (``uk-app``):
    the ones approved at its authorisation, else (a draft, even one authorised before and
    changed since) its watchlists' as they are now."""
    require(db, actor, Perm.DEPLOYMENT_READ, "deployment", str(deployment_id))
    with db.reading() as s:
        dep = _load(s, deployment_id)
        if dep.criteria_approval and dep.status != DeploymentStatus.DRAFT:
            return list(json.loads(dep.criteria_approval))
        return _criteria(dep)


def notifications(db: Database, actor: Actor, deployment_id: int) -> list[dict[str, Any]]:
    """The use notifications of a deployment, oldest first: each ``{"id", "created_at",
    "body"}`` (the body as generated)."""
    require(db, actor, Perm.DEPLOYMENT_READ, "deployment", str(deployment_id))
    with db.reading() as s:
        _load(s, deployment_id)
        rows = s.scalars(select(UseNotification).where(
            UseNotification.deployment_id == deployment_id).order_by(UseNotification.id))
        return [{"id": r.id, "created_at": _dt(r.created_at), "created_by": r.created_by,
                 "body": json.loads(r.body)} for r in rows]


# -- authorise, start, stop --------------------------------------------------------------------

def authorise(db: Database, keyring: Keyring, actor: Actor, deployment_id: int,
              now: datetime | None = None,
              consultation_after_days: int = CONSULTATION_AFTER_DAYS,
              decision: Decision | None = None) -> None:
    """Authorise a draft (see the module's rules, and the profile in force's:
    :func:`profile_problems`). Creates the deployment's data key.
    ``consultation_after_days``: the setting ``OPENLFR_CONSULTATION_AFTER_DAYS``.
    ``decision``: what the authorising officer records with it (:class:`Decision`)."""
    require(db, actor, Perm.DEPLOYMENT_AUTHORISE, "deployment", str(deployment_id))
    now = now or utcnow()
    decision = decision or Decision()
    if decision.rank is not None and decision.rank.strip():
        parse_rank(decision.rank)  # an unknown rank is bad input, said at once
    with db.reading() as s:
        _load(s, deployment_id)
        is_author = actor.name in authors(s, deployment_id)
    if is_author:
        raise refuse(db, actor, Perm.DEPLOYMENT_AUTHORISE.value,
                     f"{actor.name} created or changed deployment {deployment_id}: another "
                     "authorising officer must authorise it", "deployment", str(deployment_id))
    with db.session() as s:
        dep = _load(s, deployment_id)
        if dep.status != DeploymentStatus.DRAFT:
            raise Conflict(f"deployment {deployment_id} is {dep.status.value}; only a draft "
                           "can be authorised")
        problems = _runnable_problems(s, dep)
        if dep.planned_end <= now:
            problems.append(f"its window ended at {dep.planned_end.isoformat()}")
        consultation = consultation_problem(dep, now, consultation_after_days)
        if consultation:
            problems.append(consultation)
        profile = active_profile(s)
        cal = calibration_of(s, dep)
        problems += [p for p in profile_problems(s, dep, profile, decision, cal)
                     if p not in problems]
        if problems:
            raise Conflict(f"deployment {deployment_id} cannot be authorised: "
                           + "; ".join(problems))
        floor = current_floor(s, dep.model_id)
        new_key = dep.data_key_id is None
        if new_key:
            dep.data_key_id = keyring.new_key(s, "deployment").id
        dep.status = DeploymentStatus.AUTHORISED
        dep.authorised_by = actor.name
        dep.authorised_at = now
        details = _plan_details(dep)
        details.update(floor=audit_log.fmt_float(floor.threshold), floor_source=floor.source,
                       override=dep.threshold_override_reason is not None
                       and dep.threshold < floor.threshold,
                       data_key=dep.data_key_id, data_key_created=new_key)
        details.update(_record_decision(s, dep, profile, decision, cal))
        if dep.consultation_opened_at is not None:
            details["consultation"] = {
                "opened_at": _dt(dep.consultation_opened_at),
                "ends_at": _dt(dep.consultation_ends_at),
                "response_by": dep.consultation_response_by,
                "comments": consultation_comments(s, dep)}
        audit_log.record_split(s, actor.name, "deployment.authorise", "deployment", dep.id,
                               details, "cameras")


def window_problem(dep: Deployment, now: datetime) -> str | None:
    """Why ``now`` is outside the deployment's window, or None."""
    if now < dep.planned_start:
        return (f"deployment {dep.id} may run only from {dep.planned_start.isoformat()} "
                f"(it is now {now.astimezone(UTC).isoformat()})")
    if now >= dep.planned_end:
        return (f"deployment {dep.id}'s window ended at {dep.planned_end.isoformat()} "
                f"(it is now {now.astimezone(UTC).isoformat()})")
    return None


#: The states from which a deployment may (re)start.
STARTABLE = (DeploymentStatus.AUTHORISED, DeploymentStatus.PAUSED, DeploymentStatus.RUNNING)
#: The states a deployment's window-end applies to (:func:`end_overdue`).
LIVE = (DeploymentStatus.AUTHORISED, DeploymentStatus.RUNNING, DeploymentStatus.PAUSED)


def start(db: Database, actor: Actor, deployment_id: int, now: datetime | None = None) -> bool:
    """Mark an authorised (or paused) deployment running (``deployment.run``), inside its window
    and with its rules re-checked. This only changes the state: whatever reconciles the desired
    state (:mod:`openlfr.governance.reconcile`) starts the run. A paused deployment is resumed
    (``deployment.resume``); one already running is left as it is. Returns True when resumed."""
    require(db, actor, Perm.DEPLOYMENT_RUN, "deployment", str(deployment_id))
    now = now or utcnow()
    with db.session() as s:
        dep = _load(s, deployment_id)
        if dep.status not in STARTABLE:
            raise Conflict(f"deployment {deployment_id} is {dep.status.value}: only an "
                           "authorised or paused deployment can start")
        problems = _runnable_problems(s, dep, starting=True)
        window = window_problem(dep, now)
        if window:
            problems.insert(0, window)
        if problems:
            raise Conflict(f"deployment {deployment_id} cannot start: " + "; ".join(problems))
        if dep.status == DeploymentStatus.RUNNING:
            return False
        resumed = dep.status == DeploymentStatus.PAUSED
        paused_for = dep.pause_reason
        dep.status = DeploymentStatus.RUNNING
        dep.pause_reason = None
        if dep.started_at is None:
            dep.started_at = now
        details: dict[str, Any] = {
            "at": _dt(now),
            "planned_end": _dt(dep.planned_end),
            "watchlists": [wl.id for wl in dep.watchlists],
            "cameras": [c.name for c in dep.cameras],
            "threshold": audit_log.fmt_float(dep.threshold),
            "model_id": dep.model_id,
        }
        if resumed:
            details["paused_for"] = paused_for
        audit_log.record_split(s, actor.name,
                               "deployment.resume" if resumed else "deployment.start",
                               "deployment", dep.id, details, "cameras")
        notify_use(s, dep, actor, now)
        return resumed


def resume(db: Database, actor: Actor, deployment_id: int, now: datetime | None = None) -> None:
    """Run a ``paused`` deployment again (as :func:`start`; refused for any other state)."""
    require(db, actor, Perm.DEPLOYMENT_RUN, "deployment", str(deployment_id))
    with db.reading() as s:
        dep = _load(s, deployment_id)
        if dep.status != DeploymentStatus.PAUSED:
            raise Conflict(f"deployment {deployment_id} is {dep.status.value}: only a paused "
                           "deployment can be resumed")
    start(db, actor, deployment_id, now=now)


def pause(db: Database, actor: Actor, deployment_id: int, reason: str,
          now: datetime | None = None,
          counts: Mapping[str, Mapping[str, Any]] | None = None,
          alerts_refused: int | None = None) -> bool:
    """Record that a run stopped without ending its deployment: a ``running`` deployment
    becomes ``paused`` (``deployment.pause``, with the run's counts). A deployment that is no
    longer running (stopped or paused meanwhile) is left as it is and False returned; the run's
    counts then go on record as ``deployment.run_end``. ``alerts_refused``: matches the alert
    recorder did not store because their subject had left the deployment's watchlists."""
    now = now or utcnow()
    with db.session() as s:
        dep = _load(s, deployment_id)
        details: dict[str, Any] = {"reason": reason, "at": _dt(now)}
        if counts is not None:
            details["cameras"] = {name: dict(c) for name, c in counts.items()}
        if alerts_refused is not None:
            details["alerts_refused"] = int(alerts_refused)  # a count: no one is named
        if dep.status != DeploymentStatus.RUNNING:
            details["status"] = dep.status.value
            audit_log.record_split(s, actor.name, "deployment.run_end", "deployment", dep.id,
                                   details, "cameras")
            return False
        dep.status = DeploymentStatus.PAUSED
        dep.pause_reason = reason
        audit_log.record_split(s, actor.name, "deployment.pause", "deployment", dep.id, details,
                               "cameras")
        return True


def stop(db: Database, actor: Actor, deployment_id: int, reason: str,
         now: datetime | None = None,
         counts: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """End a deployment (``ended`` is final; running, paused, authorised or draft): by a person
    (``deployment.run``) with a reason,
    or by the program at the end of the window. ``counts`` (per camera, counts only) go into
    the audit entry."""
    require(db, actor, Perm.DEPLOYMENT_RUN, "deployment", str(deployment_id))
    reason = (reason or "").strip()
    if not reason:
        raise RuleError("stopping a deployment needs a reason")
    now = now or utcnow()
    with db.session() as s:
        dep = _load(s, deployment_id)
        if dep.status == DeploymentStatus.ENDED:
            raise Conflict(f"deployment {deployment_id} has already ended "
                           f"({dep.end_reason})")
        _end(s, dep, actor, reason, now, counts)


def _end(s: Session, dep: Deployment, actor: Actor, reason: str, now: datetime,
         counts: Mapping[str, Mapping[str, Any]] | None) -> None:
    was = dep.status
    dep.status = DeploymentStatus.ENDED
    dep.ended_at = now
    dep.end_reason = reason
    details: dict[str, Any] = {"reason": reason, "at": _dt(now), "status_before": was.value,
                               "started_at": _dt(dep.started_at),
                               "planned_end": _dt(dep.planned_end)}
    if counts is not None:
        details["cameras"] = {name: dict(c) for name, c in counts.items()}
    from openlfr.governance import stills  # (stills use this module)

    destroyed = stills.discard(dep.id)  # the plan's stills end with it
    if destroyed:
        details["stills_destroyed"] = destroyed
    audit_log.record_split(s, actor.name, "deployment.end", "deployment", dep.id, details,
                           "cameras")


def end_overdue(db: Database, now: datetime | None = None) -> list[int]:
    """Stop (as ``system``) every authorised, running or paused deployment whose window is over;
    returns their ids. For the retention runner and ``openlfr serve``."""
    now = now or utcnow()
    with db.session() as s:
        rows = s.scalars(select(Deployment).where(
            Deployment.status.in_(LIVE),
            Deployment.planned_end <= now).order_by(Deployment.id)).all()
        for dep in rows:
            _end(s, dep, SYSTEM_ACTOR, END_OF_WINDOW, now, None)
        return [d.id for d in rows]


# -- reading -----------------------------------------------------------------------------------

def describe(session: Session, dep: Deployment) -> DeploymentView:
    """A deployment's view (no keys, no biometric data), with each camera's state
    (:func:`camera_states`)."""
    return _describe_all(session, [dep])[0]


def _describe_all(session: Session, rows: Sequence[Deployment],
                  now: datetime | None = None) -> list[DeploymentView]:
    """The views of many deployments in a fixed number of queries, whatever their number:
    their cameras and watchlists loaded with them (:func:`_with_lists`), one query for the
    camera states of all, one per distinct model for its floor."""
    floors: dict[str, Floor] = {}
    for model_id in sorted({d.model_id for d in rows}):
        floors[model_id] = current_floor(session, model_id)
    stats: dict[int, dict[str, CameraStats]] = {}
    if rows:
        for r in session.scalars(select(CameraStats).where(
                CameraStats.deployment_id.in_([d.id for d in rows]))):
            stats.setdefault(r.deployment_id, {})[r.camera] = r
    cals = calibrations(session, list(floors))
    wl_ids = sorted({wl.id for d in rows for wl in d.watchlists})
    subjects: dict[int, int] = {}
    if wl_ids:
        subjects = {wid: int(n) for wid, n in session.execute(
            select(Subject.watchlist_id, func.count()).where(Subject.watchlist_id.in_(wl_ids))
            .group_by(Subject.watchlist_id))}
    return [_view(dep, floors[dep.model_id], _camera_states(dep, stats.get(dep.id, {}), now),
                  calibration_of(session, dep,
                                 sum(subjects.get(wl.id, 0) for wl in dep.watchlists),
                                 cals.get(dep.model_id, [])))
            for dep in rows]


def _view(dep: Deployment, floor: Floor, cameras: list[CameraView],
          cal: Calibrated | None = None) -> DeploymentView:
    cal = cal or Calibrated(None, 0, dep.target_fpir)
    return DeploymentView(
        lease_seconds=dep.lease_seconds,
        notice_at=dep.notice_at, target_fpir=dep.target_fpir, fria_ref=dep.fria_ref,
        eu_db_ref=dep.eu_db_ref, authorised_rank=dep.authorised_rank,
        criteria_approved=(dep.criteria_approval is not None
                           and dep.status != DeploymentStatus.DRAFT),
        authority_ref=dep.authority_ref, authority_name=dep.authority_name,
        authority_date=dep.authority_date, authority_scope=dep.authority_scope,
        watchlist_size=cal.watchlist_size,
        calibration_id=cal.floor.id if cal.floor is not None else None,
        calibration_floor=cal.floor.threshold if cal.floor is not None else None,
        expected_false_alerts_per_10k=cal.false_alerts_per_10k,
        expected_miss_rate=cal.miss_rate,
        id=dep.id, name=dep.name, status=dep.status.value, site=dep.site,
        location=dep.location, purpose=dep.purpose, legal_basis=dep.legal_basis,
        dpia_ref=dep.dpia_ref, equality_ref=dep.equality_ref,
        planned_start=dep.planned_start, planned_end=dep.planned_end,
        threshold=dep.threshold, model_id=dep.model_id,
        floor=floor.threshold, floor_source=floor.source,
        threshold_override_reason=dep.threshold_override_reason,
        threshold_override_by=dep.threshold_override_by,
        threshold_override_confirmed_by=dep.threshold_override_confirmed_by,
        two_person_rule=dep.two_person_rule, signage=dep.signage,
        public_notice=dep.public_notice, urgency_reason=dep.urgency_reason,
        created_by=dep.created_by, created_at=dep.created_at,
        authorised_by=dep.authorised_by, authorised_at=dep.authorised_at,
        started_at=dep.started_at, ended_at=dep.ended_at,
        end_reason=dep.end_reason, pause_reason=dep.pause_reason,
        watchlists=tuple(WatchlistRef(id=wl.id, name=wl.name, status=wl.status.value)
                         for wl in dep.watchlists),
        cameras=tuple(cameras),
        cameras_live=sum(1 for c in cameras if c.state == "live"),
        missing=tuple(missing_fields(dep)) if dep.status == DeploymentStatus.DRAFT else (),
        alternatives=dep.alternatives, consultation_days=dep.consultation_days,
        consultation_opened_at=dep.consultation_opened_at,
        consultation_ends_at=dep.consultation_ends_at,
        consultation_response=dep.consultation_response,
        consultation_response_by=dep.consultation_response_by,
        consultation_response_at=dep.consultation_response_at,
        consultation=consultation_state(dep),
    )


def consultation_state(dep: Deployment, now: datetime | None = None) -> str:
    """``none`` (no period), ``planned`` (a period, not published yet), ``open``, ``ended``
    (awaiting a response) or ``responded``."""
    if dep.consultation_opened_at is None or dep.consultation_ends_at is None:
        return "planned" if dep.consultation_days else "none"
    if (now or utcnow()) < dep.consultation_ends_at:
        return "open"
    return "responded" if dep.consultation_response else "ended"


#: How each camera state of a run is shown.
STATE_WORDS = {"connecting": "connecting", "running": "live", "reconnecting": "retrying",
               "failed": "failed", "ended": "ended", "stopped": "stopped"}
#: A state written longer ago than this, while the deployment runs, is not trusted: the process
#: running it may have died.
STALE_AFTER = 30.0


def camera_states(session: Session, dep: Deployment, now: datetime | None = None
                  ) -> list[CameraView]:
    """Each camera of a deployment with its state in the latest run (written by the run, in
    whichever process it runs): ``connecting``, ``live``, ``retrying`` (since when, with the
    last error, credentials removed), ``ended``, ``stopped``; ``unknown`` when a running
    deployment's state is stale; ``None`` before any run. Counts only, no people."""
    rows = {r.camera: r for r in session.scalars(select(CameraStats).where(
        CameraStats.deployment_id == dep.id))}
    return _camera_states(dep, rows, now)


def _camera_states(dep: Deployment, rows: Mapping[str, CameraStats],
                   now: datetime | None = None) -> list[CameraView]:
    now = now or utcnow()
    out = []
    for c in dep.cameras:
        row = rows.get(c.name)
        state = since = error = None
        frames, seconds = 0, 0.0
        if row is not None:
            frames, seconds = row.frames, row.seconds
            if row.state is not None:
                state = STATE_WORDS.get(row.state, row.state)
                since, error = row.state_since, row.last_error
                current = state in ("live", "connecting", "retrying", "failed")
                if dep.status != DeploymentStatus.RUNNING and current and state != "failed":
                    state = "stopped"
                elif dep.status == DeploymentStatus.RUNNING and current and (
                        row.updated_at is not None
                        and (now - row.updated_at).total_seconds() > STALE_AFTER):
                    state = "unknown"
        out.append(CameraView(name=c.name, source=c.display, state=state, state_since=since,
                              last_error=error if state in (
                                  "retrying", "failed", "unknown", "stopped", "ended") else None,
                              frames=frames, seconds=round(float(seconds), 1),
                              zones=from_json(c.zones), masks=from_json(c.masks),
                              node=c.node.name if c.node is not None else None,
                              node_site=c.node.site.name if c.node is not None else None))
    return out


def live_camera_states(db: Database, deployment_id: int | None = None
                       ) -> list[tuple[int, str, str, list[CameraView]]]:
    """``(id, name, status, camera_states)`` of each running or paused deployment (or only
    ``deployment_id``), in id order. States and counts only; the caller checks access."""
    with db.reading() as s:
        query = select(Deployment).where(Deployment.status.in_(
            [DeploymentStatus.RUNNING, DeploymentStatus.PAUSED])).order_by(Deployment.id)
        if deployment_id is not None:
            query = query.where(Deployment.id == deployment_id)
        return [(d.id, d.name, d.status.value, camera_states(s, d)) for d in s.scalars(query)]


def record_preview_view(db: Database, actor: Actor, deployment_id: int, camera: str) -> None:
    """The audit entry of ``actor`` opening the live preview of ``camera``."""
    with db.session() as s:
        audit_log.record(s, actor.name, "preview.view", "deployment", deployment_id,
                         {"camera": camera})


def _with_lists() -> tuple[Any, ...]:
    """Load a deployment's cameras and watchlists with it (one query each for a whole list)."""
    return selectinload(Deployment.cameras), selectinload(Deployment.watchlists)


def show(db: Database, actor: Actor, deployment_id: int) -> DeploymentView:
    require(db, actor, Perm.DEPLOYMENT_READ, "deployment", str(deployment_id))
    with db.reading() as s:
        dep = s.scalar(select(Deployment).options(*_with_lists())
                       .where(Deployment.id == deployment_id))
        if dep is None:
            raise NotFound(f"deployment {deployment_id} does not exist")
        return describe(s, dep)


def list_deployments(db: Database, actor: Actor,
                     status: DeploymentStatus | None = None) -> list[DeploymentView]:
    """Every deployment (or those in ``status``), by id, in a fixed number of queries."""
    require(db, actor, Perm.DEPLOYMENT_READ, "deployment", "list")
    with db.reading() as s:
        query = select(Deployment).options(*_with_lists()).order_by(Deployment.id)
        if status is not None:
            query = query.where(Deployment.status == status)
        return _describe_all(s, s.scalars(query).all())
