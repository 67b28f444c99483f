"""What waits for a person, for the console's home page: one call, one frozen view.

:func:`home` gathers, for the signed-in person, each part their role may read (a part their
role may not read is ``None``, so no front end can show a count it should not):

* the alerts waiting for *their* decision (``alert.adjudicate``): pending, not purged, and not
  already confirmed by them (under the two-person rule such an alert waits for someone else);
* the running and paused deployments with each camera's health (``deployment.read``): the
  state the live run wrote (:func:`openlfr.governance.deployments.live_camera_states`), and
  the frames per second — measured now when this process runs the deployment, else the
  average over the time the camera delivered frames;
* the watchlists *they* could approve (``watchlist.approve``: drafts with a subject that they
  neither built nor changed) and the deployments *they* could authorise
  (``deployment.authorise``: complete drafts they neither created nor changed) or whose
  threshold override *they* could confirm (``threshold.override``);
* the open residents' questions (``question.read``);
* the audit chain's last check (``audit.read``): when, by whom, with what result.

Reading this page changes nothing and is not audited; each figure is a count or a few rows
(``LIMIT``), whatever the size of the installation.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, not_, select
from sqlalchemy.orm import Session, selectinload

from openlfr.governance import auditing
from openlfr.governance import deployments as deps
from openlfr.governance.authz import Actor, Perm, allowed
from openlfr.governance.views import CameraView, View
from openlfr.store.db import Database
from openlfr.store.enums import AlertStatus, DeploymentStatus, WatchlistStatus
from openlfr.store.models import (
    Adjudication,
    Alert,
    AuditRecord,
    Deployment,
    PublicQuestion,
    QuestionStatus,
    Subject,
    Watchlist,
    WatchlistEditor,
)

#: How many of the newest items each part lists (its count covers them all).
NEWEST = 5
#: The most draft deployments looked at for authorisation (the newest first).
DRAFTS_MAX = 200


# -- the views ----------------------------------------------------------------------------------

class WaitingAlert(View):
    id: int
    deployment_id: int
    deployment: str
    camera: str
    score: float
    seen_at: datetime
    confirmations: int
    confirmations_needed: int

    @property
    def url(self) -> str:
        return f"/console/alerts/{self.id}"


class AlertsWaiting(View):
    count: int
    newest: tuple[WaitingAlert, ...]


class CameraHealth(View):
    name: str
    state: str = ""
    since: datetime | None = None
    error: str | None = None
    fps: float | None = None
    fps_now: bool = False  # measured now (this process runs it), else the run's average


class RunningDeployment(View):
    id: int
    name: str
    status: str
    cameras: tuple[CameraHealth, ...]

    @property
    def url(self) -> str:
        return f"/console/deployments/{self.id}"

    def cameras_in(self, state: str) -> int:
        return sum(1 for c in self.cameras if c.state == state)


class Approval(View):
    """A watchlist to approve, a deployment to authorise, or a threshold override to
    confirm."""

    kind: str  # watchlist | deployment
    id: int
    name: str
    task: str  # approve | authorise | confirm the threshold override
    by: str  # who built or created it
    since: datetime | None

    @property
    def url(self) -> str:
        return f"/console/{self.kind}s/{self.id}"


class Approvals(View):
    watchlists: int
    deployments: int
    items: tuple[Approval, ...]

    @property
    def count(self) -> int:
        return self.watchlists + self.deployments


class WaitingQuestion(View):
    id: int
    reference: str | None
    kind: str
    deployment: str
    created_at: datetime

    @property
    def url(self) -> str:
        return f"/console/questions?status=open#q{self.id}"


class QuestionsWaiting(View):
    count: int
    newest: tuple[WaitingQuestion, ...]


class AuditState(View):
    last: auditing.LastVerification | None


class Home(View):
    """What waits for one person. A part is None when their role may not read it."""

    alerts: AlertsWaiting | None = None
    deployments: tuple[RunningDeployment, ...] | None = None
    approvals: Approvals | None = None
    questions: QuestionsWaiting | None = None
    audit: AuditState | None = None

    @property
    def waiting(self) -> int:
        """How many things wait for this person's action (alerts, approvals, questions)."""
        return sum(part.count for part in (self.alerts, self.approvals, self.questions)
                   if part is not None)


# -- gathering ----------------------------------------------------------------------------------

def home(db: Database, actor: Actor, runs: Mapping[int, Any] | None = None,
         newest: int = NEWEST) -> Home:
    """What waits for ``actor`` (see the module). ``runs`` are the live runs of this process by
    deployment id (the reconciler's), whose ``figures()`` give the frames per second now."""
    person = not actor.is_system
    with db.reading() as s:
        alerts = (_alerts(s, actor, newest)
                  if person and allowed(actor, Perm.ALERT_ADJUDICATE) else None)
        approvals = (_approvals(s, actor, newest) if person and (
            allowed(actor, Perm.WATCHLIST_APPROVE)
            or allowed(actor, Perm.DEPLOYMENT_AUTHORISE)
            or allowed(actor, Perm.THRESHOLD_OVERRIDE)) else None)
        questions = (_questions(s, newest)
                     if allowed(actor, Perm.QUESTION_READ) else None)
    running = (_running(db, runs or {}) if allowed(actor, Perm.DEPLOYMENT_READ) else None)
    audit = (AuditState(last=auditing.last_verification(db, actor))
             if allowed(actor, Perm.AUDIT_READ) else None)
    return Home(alerts=alerts, deployments=running, approvals=approvals, questions=questions,
                audit=audit)


def _alerts(s: Session, actor: Actor, newest: int) -> AlertsWaiting:
    mine = exists().where(and_(Adjudication.alert_id == Alert.id,
                               Adjudication.user_name == actor.name))
    where = and_(Alert.status == AlertStatus.PENDING, Alert.purged_at.is_(None), not_(mine),
                 Alert.field_test_id.is_(None))
    count = int(s.scalar(select(func.count(Alert.id)).where(where)) or 0)
    confirmations = (select(func.count(Adjudication.id))
                     .where(Adjudication.alert_id == Alert.id).scalar_subquery())
    rows = s.execute(select(Alert.id, Alert.deployment_id, Deployment.name, Alert.camera,
                            Alert.score, Alert.seen_at, Deployment.two_person_rule,
                            confirmations)
                     .join(Deployment, Deployment.id == Alert.deployment_id)
                     .where(where).order_by(Alert.id.desc()).limit(newest)).all()
    return AlertsWaiting(count=count, newest=tuple(
        WaitingAlert(id=r[0], deployment_id=r[1], deployment=r[2], camera=r[3],
                     score=round(float(r[4]), 4), seen_at=r[5], confirmations=int(r[7] or 0),
                     confirmations_needed=2 if r[6] else 1) for r in rows))


def _approvals(s: Session, actor: Actor, newest: int) -> Approvals:
    items: list[Approval] = []
    n_watchlists = 0
    if allowed(actor, Perm.WATCHLIST_APPROVE):
        edited = exists().where(and_(WatchlistEditor.watchlist_id == Watchlist.id,
                                     WatchlistEditor.user_name == actor.name))
        has_subject = exists().where(Subject.watchlist_id == Watchlist.id)
        where = and_(Watchlist.status == WatchlistStatus.DRAFT, has_subject, not_(edited))
        n_watchlists = int(s.scalar(select(func.count(Watchlist.id)).where(where)) or 0)
        for wl in s.scalars(select(Watchlist).where(where)
                            .order_by(Watchlist.changed_at.desc(), Watchlist.id.desc())
                            .limit(newest)):
            items.append(Approval(kind="watchlist", id=wl.id, name=wl.name, task="approve",
                                  by=wl.created_by, since=wl.changed_at))
    deployments = _to_authorise(s, actor)
    items.extend(deployments[:newest])
    return Approvals(watchlists=n_watchlists, deployments=len(deployments), items=tuple(items))


def _to_authorise(s: Session, actor: Actor) -> list[Approval]:
    """Drafts ``actor`` could authorise (complete, not theirs), and deployments whose threshold
    override they could confirm (recorded by another officer, not theirs), newest first."""
    may_authorise = allowed(actor, Perm.DEPLOYMENT_AUTHORISE)
    may_confirm = allowed(actor, Perm.THRESHOLD_OVERRIDE)
    if not (may_authorise or may_confirm):
        return []
    rows = s.scalars(select(Deployment).options(selectinload(Deployment.cameras),
                                                selectinload(Deployment.watchlists))
                     .where(Deployment.status.in_([DeploymentStatus.DRAFT,
                                                   DeploymentStatus.AUTHORISED]))
                     .order_by(Deployment.id.desc()).limit(DRAFTS_MAX)).all()
    if not rows:
        return []
    changed: dict[str, set[str]] = {}
    for object_id, who in s.execute(select(AuditRecord.object_id, AuditRecord.actor).where(
            AuditRecord.action.in_(deps.AUTHOR_ACTIONS),
            AuditRecord.object_type == "deployment",
            AuditRecord.object_id.in_([str(d.id) for d in rows]))):
        changed.setdefault(object_id, set()).add(who)
    out = []
    for dep in rows:
        if actor.name == dep.created_by or actor.name in changed.get(str(dep.id), set()):
            continue
        pending_override = (dep.threshold_override_reason is not None
                            and dep.threshold_override_confirmed_by is None
                            and dep.threshold_override_by != actor.name)
        if may_confirm and pending_override:
            task = "confirm the threshold override"
        elif (may_authorise and dep.status == DeploymentStatus.DRAFT
              and not deps.missing_fields(dep)):
            task = "authorise"
        else:
            continue
        out.append(Approval(kind="deployment", id=dep.id, name=dep.name, task=task,
                            by=dep.created_by, since=dep.created_at))
    return out


def _questions(s: Session, newest: int) -> QuestionsWaiting:
    where = PublicQuestion.status == QuestionStatus.OPEN
    count = int(s.scalar(select(func.count(PublicQuestion.id)).where(where)) or 0)
    rows = s.execute(select(PublicQuestion.id, PublicQuestion.reference, PublicQuestion.kind,
                            Deployment.name, PublicQuestion.created_at)
                     .join(Deployment, Deployment.id == PublicQuestion.deployment_id)
                     .where(where).order_by(PublicQuestion.id.desc()).limit(newest)).all()
    return QuestionsWaiting(count=count, newest=tuple(
        WaitingQuestion(id=r[0], reference=r[1], kind=str(r[2].value), deployment=r[3],
                        created_at=r[4]) for r in rows))


def run_figures(runs: Mapping[int, Any], deployment_id: int, status: str) -> dict[str, Any]:
    """The figures per camera (by name) of a running deployment that this process runs, as its
    run measures them now; empty when it runs elsewhere, is not running, or is being torn
    down."""
    run = runs.get(deployment_id)
    if run is None or status != DeploymentStatus.RUNNING.value:
        return {}
    try:
        return {f.camera: f for f in run.figures()}
    except Exception:  # a run being torn down
        return {}


def shown_state(status: str, camera: CameraView) -> str:
    """A camera's state as people are shown it: paused with its deployment; before its run
    wrote one, connecting (running) or stopped."""
    if status == DeploymentStatus.PAUSED.value:
        return "paused"
    return camera.state or ("connecting" if status == DeploymentStatus.RUNNING.value
                            else "stopped")


def _running(db: Database, runs: Mapping[int, Any]) -> tuple[RunningDeployment, ...]:
    out = []
    for dep_id, name, status, cameras in deps.live_camera_states(db):
        measured = {camera: float(f.fps_in)
                    for camera, f in run_figures(runs, dep_id, status).items()}
        health = []
        for cam in cameras:
            state = shown_state(status, cam)
            fps: float | None = None
            now = False
            if state == "live" and cam.name in measured:
                fps, now = round(measured[cam.name], 1), True
            elif state == "live" and cam.seconds > 0:
                fps = round(cam.frames / cam.seconds, 1)
            health.append(CameraHealth(name=cam.name, state=state, since=cam.state_since,
                                       error=cam.last_error, fps=fps, fps_now=now))
        out.append(RunningDeployment(id=dep_id, name=name, status=status,
                                     cameras=tuple(health)))
    return tuple(out)
