"""Transparency figures per deployment and per camera, from the data, checked against the log.

What each figure is
-------------------
* **duration**: planned (``planned_start`` → ``planned_end``) and actual, in hours. The actual
  hours count only time spent analysing frames: the seconds the live runs had a camera
  delivering frames (``camera_stats.seconds``, added up over the runs), of the camera that
  analysed longest — not the time since the start, which would go on counting while the
  deployment is paused or its cameras are down. ``None`` if it never started.
* **faces seen, frames, tracks, dropped frames**: the live pipeline's counters
  (``camera_stats``), per camera. Counts only: nothing about the people is kept.
* **people passing** (``tracks``): how many people the cameras saw, the figure the public pages
  publish and the denominator of their false-alert rate. *Faces seen* counts face detections,
  frame by frame: a person crossing the view in three seconds is detected some 40 times at
  15 fps, so it is a technical figure (it says how busy the detector was), not a number of
  people. A track is counted once, when the tracker (ByteTrack, :mod:`openlfr.video.tracking`)
  first reports it, i.e. when it is confirmed by a detection in a second frame (or in the first
  frame the tracker sees), before any quality gate or best shot: a person whose face is too
  small or blurred to be compared is still a person who passed. Known errors: it **over-counts**
  a person who leaves the view and comes back (or turns away for longer than the tracker's
  memory, about a second), and a track split in two when someone walks behind another person
  or an obstacle; two cameras seeing the same person count them twice. It **under-counts**
  people whose face is never detected: seen from behind or from the side, too far away (the
  detector misses faces much under about 15 pixels wide in the image it analyses, a frame
  scaled down to 640 pixels on its longer side), passing while the camera was down or its
  frames were dropped, and two people whose faces overlap so closely the tracker keeps one
  track.
* **alerts**: every alert stored, purged ones included (purging clears the crop and the free
  texts but keeps the row and its decision codes, :mod:`openlfr.governance.retention`), split
  by status: **confirmed**, **false alerts** (rejected), **no action**, **pending** (nobody
  decided yet); **outcomes** by action taken (of confirmed alerts, and of false ones after
  which someone was spoken to or stopped), and how many people were **engaged**. The false
  alerts per perceived group are :mod:`openlfr.transparency.equality`'s.
* **watchlist size at authorisation**: the sum, over the deployment's watchlists, of the
  subjects counted in the latest ``watchlist.approve`` audit entry before the deployment's
  ``deployment.authorise`` entry, less the subjects expired (``subject.expire``) in between. A
  watchlist cannot change after approval without a new approval, so this is the size the
  authorising officer authorised, and it stays known after retention destroyed the watchlist.
  For a deployment never authorised it is the current number of subjects
  (``watchlist_size_basis`` says which).
* **threshold**: the deployment's decision threshold (and its model).

:func:`check_against_audit` recounts alerts, decisions and outcomes from the audit entries
``alert.create``, ``alert.adjudicate`` (details ``decision`` and resulting ``status``) and
``alert.outcome`` (``engaged``, ``action``) and lists every figure that differs from the
tables: the published numbers are those the tamper-evident log supports. The alerts of an urgent
use deleted with its results (``urgent.results_delete``, :mod:`openlfr.governance.urgent`) are
left out of both sides; their counts, kept with the urgent use, are added to its figures.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from openlfr.audit import log as audit_log
from openlfr.audit.entry import AuditEntry
from openlfr.store.enums import Action, AlertStatus, Decision, DeploymentStatus
from openlfr.store.models import (
    Adjudication,
    Alert,
    Camera,
    CameraStats,
    Deployment,
    FieldTest,
    Outcome,
    Subject,
    deployment_watchlists,
)

#: The audit actions the figures are checked against (written by governance.alerts).
ALERT_CREATE = "alert.create"
ALERT_ADJUDICATE = "alert.adjudicate"
ALERT_OUTCOME = "alert.outcome"
#: The audit actions the watchlist size at authorisation is read from.
DEPLOYMENT_AUTHORISE = "deployment.authorise"
WATCHLIST_APPROVE = "watchlist.approve"
SUBJECT_EXPIRE = "subject.expire"

_STATUS_FIELD = {AlertStatus.CONFIRMED: "confirmed", AlertStatus.REJECTED: "false_alerts",
                 AlertStatus.NO_ACTION: "no_action", AlertStatus.PENDING: "pending"}


@dataclass
class AlertCounts:
    alerts: int = 0
    confirmed: int = 0
    false_alerts: int = 0  # rejected by the reviewer
    no_action: int = 0
    pending: int = 0

    def add(self, status: AlertStatus) -> None:
        self.alerts += 1
        name = _STATUS_FIELD[status]
        setattr(self, name, getattr(self, name) + 1)


@dataclass
class CameraFigures(AlertCounts):
    camera: str = ""
    frames: int = 0
    faces_seen: int = 0
    tracks: int = 0
    dropped_frames: int = 0
    seconds: float = 0.0


@dataclass
class DeploymentFigures(AlertCounts):
    deployment_id: int = 0
    name: str = ""
    site: str = ""
    status: str = ""
    planned_start: str = ""
    planned_end: str = ""
    planned_hours: float = 0.0
    started_at: str | None = None
    ended_at: str | None = None
    actual_hours: float | None = None
    threshold: float = 0.0
    model_id: str = ""
    two_person_rule: bool = False
    watchlists: list[int] = field(default_factory=list)
    watchlist_size: int | None = None
    watchlist_size_basis: str = ""  # "at authorisation (audit)" | "current" | "unknown"
    frames: int = 0
    faces_seen: int = 0
    tracks: int = 0
    dropped_frames: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)  # action taken → count
    engaged: int = 0
    held: int = 0
    purged: int = 0
    cameras: list[CameraFigures] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Totals(AlertCounts):
    deployments: int = 0
    cameras: int = 0
    planned_hours: float = 0.0
    actual_hours: float = 0.0
    frames: int = 0
    faces_seen: int = 0
    tracks: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    engaged: int = 0
    held: int = 0
    purged: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _hours(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max((end - start).total_seconds(), 0.0) / 3600.0, 3)


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


# -- watchlist size at authorisation ------------------------------------------------------------

@dataclass
class _Sizes:
    """From one pass over the audit log: approvals, expiries and authorisations, by seq."""

    approvals: dict[int, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))
    expiries: dict[int, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))
    authorisations: dict[int, int] = field(default_factory=dict)  # deployment → latest seq

    def feed(self, entry: AuditEntry) -> None:
        target = _int(entry.object_id)
        if target is None:
            return
        if entry.action == WATCHLIST_APPROVE:
            subjects = _int(entry.details.get("subjects"))
            if subjects is not None:
                self.approvals[target].append((entry.seq, subjects))
        elif entry.action == SUBJECT_EXPIRE:
            subjects = _int(entry.details.get("subjects"))
            if subjects is not None:
                self.expiries[target].append((entry.seq, subjects))
        elif entry.action == DEPLOYMENT_AUTHORISE:
            self.authorisations[target] = entry.seq

    def at_authorisation(self, deployment_id: int, watchlist_ids: list[int]) -> int | None:
        seq = self.authorisations.get(deployment_id)
        if seq is None:
            return None
        total = 0
        for wl in watchlist_ids:
            before = [(s, n) for s, n in self.approvals.get(wl, []) if s < seq]
            if not before:
                return None
            approved_seq, size = before[-1]
            size -= sum(n for s, n in self.expiries.get(wl, []) if approved_seq < s < seq)
            total += max(size, 0)
        return total


# -- the figures --------------------------------------------------------------------------------

def deployment_stats(session: Session, deployment_id: int | None = None,
                     now: datetime | None = None) -> list[DeploymentFigures]:
    """The figures of every deployment (or of one), in id order. JSON-ready dataclasses
    (``to_dict``); an unknown ``deployment_id`` gives an empty list."""
    now = now or datetime.now(UTC)
    query = select(Deployment).order_by(Deployment.id)
    if deployment_id is not None:
        query = query.where(Deployment.id == deployment_id)
    deployments = list(session.scalars(query))
    if not deployments:
        return []
    ids = [d.id for d in deployments]

    sizes = _Sizes()
    for entry in audit_log.entries(session):
        if entry.action in (WATCHLIST_APPROVE, SUBJECT_EXPIRE, DEPLOYMENT_AUTHORISE):
            sizes.feed(entry)

    links: dict[int, list[int]] = defaultdict(list)
    for dep_id, wl_id in session.execute(
            select(deployment_watchlists.c.deployment_id, deployment_watchlists.c.watchlist_id)
            .where(deployment_watchlists.c.deployment_id.in_(ids),
                   # a field test's volunteers are not on the watchlist the public is told of
                   deployment_watchlists.c.watchlist_id.not_in(
                       select(FieldTest.watchlist_id).where(FieldTest.watchlist_id.is_not(None))))
            .order_by(deployment_watchlists.c.watchlist_id)):
        links[dep_id].append(wl_id)

    cameras: dict[int, dict[str, CameraFigures]] = defaultdict(dict)

    def camera(dep_id: int, name: str) -> CameraFigures:
        found = cameras[dep_id].get(name)
        if found is None:
            found = cameras[dep_id][name] = CameraFigures(camera=name)
        return found

    for dep_id, name in session.execute(select(Camera.deployment_id, Camera.name)
                                        .where(Camera.deployment_id.in_(ids))
                                        .order_by(Camera.id)):
        camera(dep_id, name)
    for row in session.scalars(select(CameraStats).where(CameraStats.deployment_id.in_(ids))
                               .order_by(CameraStats.id)):
        cam = camera(row.deployment_id, row.camera)
        cam.frames += row.frames
        cam.faces_seen += row.faces_seen
        cam.tracks += row.tracks
        cam.dropped_frames += row.dropped
        cam.seconds = round(cam.seconds + row.seconds, 3)

    per_dep: dict[int, DeploymentFigures] = {}
    for dep in deployments:
        wls = links.get(dep.id, [])
        analysed = max((c.seconds for c in cameras.get(dep.id, {}).values()), default=0.0)
        fig = DeploymentFigures(
            deployment_id=dep.id, name=dep.name, site=dep.site, status=dep.status.value,
            planned_start=_iso(dep.planned_start) or "", planned_end=_iso(dep.planned_end) or "",
            planned_hours=_hours(dep.planned_start, dep.planned_end) or 0.0,
            started_at=_iso(dep.started_at), ended_at=_iso(dep.ended_at),
            actual_hours=None if dep.started_at is None else round(analysed / 3600.0, 3),
            threshold=dep.threshold,
            model_id=dep.model_id, two_person_rule=dep.two_person_rule, watchlists=wls)
        size = sizes.at_authorisation(dep.id, wls)
        if size is not None:
            fig.watchlist_size, fig.watchlist_size_basis = size, "at authorisation (audit)"
        elif dep.status == DeploymentStatus.DRAFT or dep.id not in sizes.authorisations:
            fig.watchlist_size = len(session.scalars(
                select(Subject.id).where(Subject.watchlist_id.in_(wls))).all()) if wls else 0
            fig.watchlist_size_basis = "current"
        else:
            fig.watchlist_size_basis = "unknown"
        per_dep[dep.id] = fig

    for dep_id, cam_name, status, held, purged in session.execute(
            select(Alert.deployment_id, Alert.camera, Alert.status,
                   Alert.held_reason.is_not(None), Alert.purged_at.is_not(None))
            .where(Alert.deployment_id.in_(ids), Alert.field_test_id.is_(None))
            .order_by(Alert.id)):
        fig = per_dep[dep_id]
        fig.add(status)
        camera(dep_id, cam_name).add(status)
        fig.held += int(bool(held))
        fig.purged += int(bool(purged))

    for dep_id, action, engaged in session.execute(
            select(Alert.deployment_id, Outcome.action, Outcome.engaged)
            .join(Alert, Alert.id == Outcome.alert_id).where(Alert.deployment_id.in_(ids))):
        fig = per_dep[dep_id]
        fig.outcomes[action.value] = fig.outcomes.get(action.value, 0) + 1
        fig.engaged += int(bool(engaged))

    from openlfr.governance.urgent import deleted_counts

    for dep_id, kept in deleted_counts(session, ids).items():  # an urgent use's, deleted
        fig = per_dep[dep_id]
        for status in AlertStatus:
            for _ in range(kept.get(f"status_{status.value}", 0)):
                fig.add(status)
        for action in Action:
            n = kept.get(f"outcome_{action.value}", 0)
            if n:
                fig.outcomes[action.value] = fig.outcomes.get(action.value, 0) + n
        fig.engaged += kept.get("engaged", 0)

    for dep_id, fig in per_dep.items():
        fig.outcomes = {a.value: fig.outcomes.get(a.value, 0) for a in Action}
        fig.cameras = list(cameras.get(dep_id, {}).values())
        for cam in fig.cameras:
            fig.frames += cam.frames
            fig.faces_seen += cam.faces_seen
            fig.tracks += cam.tracks
            fig.dropped_frames += cam.dropped_frames
    return [per_dep[i] for i in ids]


def totals(figures: Iterable[DeploymentFigures]) -> Totals:
    """The sums over deployments (actual hours of those that ran)."""
    out = Totals(outcomes={a.value: 0 for a in Action})
    for fig in figures:
        out.deployments += 1
        out.cameras += len(fig.cameras)
        out.planned_hours = round(out.planned_hours + fig.planned_hours, 3)
        out.actual_hours = round(out.actual_hours + (fig.actual_hours or 0.0), 3)
        for name in ("alerts", "confirmed", "false_alerts", "no_action", "pending", "frames",
                     "faces_seen", "tracks", "engaged", "held", "purged"):
            setattr(out, name, getattr(out, name) + getattr(fig, name))
        for action, n in fig.outcomes.items():
            out.outcomes[action] = out.outcomes.get(action, 0) + n
    return out


# -- consistency with the audit log -------------------------------------------------------------

@dataclass
class _FromAudit:
    created: dict[int, int] = field(default_factory=dict)  # alert → deployment
    status: dict[int, str] = field(default_factory=dict)  # alert → last status
    decisions: Counter[tuple[int, str]] = field(default_factory=Counter)  # (dep, decision)
    outcomes: Counter[tuple[int, str, bool]] = field(default_factory=Counter)


def _read_audit(session: Session) -> tuple[_FromAudit, list[str]]:
    from openlfr.governance.urgent import deleted_alert_ids

    found = _FromAudit()
    problems: list[str] = []
    gone = deleted_alert_ids(session)  # an urgent use's results, deleted (and audited)
    for entry in audit_log.entries(session):
        if entry.action not in (ALERT_CREATE, ALERT_ADJUDICATE, ALERT_OUTCOME):
            continue
        alert_id = _int(entry.object_id)
        if alert_id in gone:
            continue
        dep = _int(entry.details.get("deployment"))
        if alert_id is None or dep is None:
            problems.append(f"audit entry seq {entry.seq} ({entry.action}) names no alert or "
                            "no deployment")
            continue
        if entry.action == ALERT_CREATE:
            if alert_id in found.created:
                problems.append(f"audit entry seq {entry.seq}: alert {alert_id} created twice")
            found.created[alert_id] = dep
        elif entry.action == ALERT_ADJUDICATE:
            found.decisions[(dep, str(entry.details.get("decision")))] += 1
            found.status[alert_id] = str(entry.details.get("status"))
        else:
            found.outcomes[(dep, str(entry.details.get("action")),
                            bool(entry.details.get("engaged")))] += 1
    return found, problems


def check_against_audit(session: Session) -> list[str]:
    """Every difference between the alert, decision and outcome figures of the tables and those
    recomputed from the audit log; an empty list when they agree. (Whether the log itself is
    intact is :func:`openlfr.audit.log.verify`'s question.)"""
    audit, problems = _read_audit(session)

    rows = {a_id: (dep, status) for a_id, dep, status in session.execute(
        select(Alert.id, Alert.deployment_id, Alert.status))}
    per_dep_db: Counter[int] = Counter(dep for dep, _ in rows.values())
    per_dep_audit: Counter[int] = Counter(audit.created.values())
    for dep in sorted(set(per_dep_db) | set(per_dep_audit)):
        if per_dep_db[dep] != per_dep_audit[dep]:
            problems.append(f"deployment {dep}: {per_dep_db[dep]} alert(s) stored but "
                            f"{per_dep_audit[dep]} alert.create audit entr(y/ies)")
    for alert_id in sorted(set(rows) - set(audit.created)):
        problems.append(f"alert {alert_id} is stored but its creation is not in the audit log")
    for alert_id in sorted(set(audit.created) - set(rows)):
        problems.append(f"alert {alert_id} is in the audit log but not stored (deleted?)")
    for alert_id, (dep, status) in sorted(rows.items()):
        if alert_id in audit.created and audit.created[alert_id] != dep:
            problems.append(f"alert {alert_id} belongs to deployment {dep} but was created "
                            f"for deployment {audit.created[alert_id]} in the audit log")
        logged = audit.status.get(alert_id, AlertStatus.PENDING.value)
        if logged != status.value:
            problems.append(f"alert {alert_id} is {status.value} but the audit log makes it "
                            f"{logged}")

    decisions: Counter[tuple[int, str]] = Counter(
        (dep, decision.value) for dep, decision in session.execute(
            select(Alert.deployment_id, Adjudication.decision)
            .join(Alert, Alert.id == Adjudication.alert_id)))
    for key in sorted(set(decisions) | set(audit.decisions)):
        if decisions[key] != audit.decisions[key]:
            dep, decision = key
            problems.append(f"deployment {dep}: {decisions[key]} '{decision}' decision(s) "
                            f"stored but {audit.decisions[key]} in the audit log")
    valid = {d.value for d in Decision}
    for (dep, decision), n in sorted(audit.decisions.items()):
        if decision not in valid:
            problems.append(f"deployment {dep}: {n} audit entr(y/ies) with unknown decision "
                            f"{decision!r}")

    outcomes: Counter[tuple[int, str, bool]] = Counter(
        (dep, action.value, bool(engaged)) for dep, action, engaged in session.execute(
            select(Alert.deployment_id, Outcome.action, Outcome.engaged)
            .join(Alert, Alert.id == Outcome.alert_id)))
    for okey in sorted(set(outcomes) | set(audit.outcomes)):
        if outcomes[okey] != audit.outcomes[okey]:
            dep, action, engaged = okey
            problems.append(f"deployment {dep}: {outcomes[okey]} outcome(s) '{action}' "
                            f"(engaged {'yes' if engaged else 'no'}) stored but "
                            f"{audit.outcomes[okey]} in the audit log")
    return problems
