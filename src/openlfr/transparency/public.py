"""The figures behind the public pages, read from the database in one place.

Only what the public may see leaves this module: a deployment's place, time, purpose, legal
basis, impact-assessment references, threshold, watchlist size and camera count; counts of people
passing (tracks), of face detections (a technical figure), alerts, decisions and outcomes; counts
of residents' questions, and the questions and answers an overseer published (redacted). Never a
subject, a crop, a reason text, a camera address, an alert time or a person's name.

Which deployments are public: a draft published as *proposed* for consultation (with where,
when, why, the alternatives considered and the end of the consultation); authorised ones
(planned) and running ones in advance, unless an authorising officer recorded an urgency reason;
those appear once ended, with the reason. Other drafts never. Each page also shows the response
to the consultation's comments, once recorded, and what was shared (counts of exports and
disclosures from the audit log, :mod:`openlfr.transparency.shared`). The figures themselves
come from :func:`openlfr.transparency.stats.deployment_stats` (checked against the audit log
there); this module only chooses and shapes what is public.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from openlfr.config import Settings
from openlfr.governance.fieldtests import FieldTestReport, public_reports
from openlfr.governance.views import SharedCount
from openlfr.store.db import Database
from openlfr.store.enums import Action, DeploymentStatus
from openlfr.store.models import CameraStats, Deployment, PublicQuestion, UrgentUse
from openlfr.transparency.equality import EqualityFigures, equality_figures
from openlfr.transparency.shared import shared_counts
from openlfr.transparency.stats import DeploymentFigures, deployment_stats

PUBLIC_STATUS = {DeploymentStatus.AUTHORISED: "planned", DeploymentStatus.RUNNING: "running",
                 DeploymentStatus.PAUSED: "paused", DeploymentStatus.ENDED: "ended"}
#: A camera state written longer ago than this is not trusted to be live (its process died).
LIVE_STATE_STALE = timedelta(seconds=30)


@dataclass
class Figures:
    """What a deployment did, in counts."""

    hours: float = 0.0
    #: People passing: tracks, one per person the tracker followed (how the count is made and
    #: where it is wrong: :mod:`openlfr.transparency.stats`). The denominator of the rate.
    people_passing: int = 0
    #: Face detections summed over frames (a technical figure: one person is detected in many
    #: frames, so it is many times the number of people).
    faces_seen: int = 0
    alerts: int = 0
    confirmed: int = 0
    false_alerts: int = 0
    no_action: int = 0
    pending: int = 0
    engaged: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: {a.value: 0 for a in Action})

    @property
    def false_alert_rate(self) -> float | None:
        """False alerts per person passing (the rate the public is usually told)."""
        return self.false_alerts / self.people_passing if self.people_passing else None

    @property
    def false_alert_share(self) -> float | None:
        """The share of decided alerts that were false."""
        decided = self.confirmed + self.false_alerts + self.no_action
        return self.false_alerts / decided if decided else None

    def add(self, other: Figures) -> None:
        for name in ("hours", "people_passing", "faces_seen", "alerts", "confirmed",
                     "false_alerts", "no_action", "pending", "engaged"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for k, v in other.outcomes.items():
            self.outcomes[k] = self.outcomes.get(k, 0) + v

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["hours"] = round(self.hours, 2)
        d["false_alert_rate"] = self.false_alert_rate
        d["false_alert_share"] = self.false_alert_share
        return d


@dataclass
class PublishedAnswer:
    """A resident's question and its answer as an overseer published them (personal details
    removed, :func:`openlfr.governance.questions.publish_answer`)."""

    reference: str
    kind: str  # question | objection
    question: str
    answer: str
    received: str  # the date (UTC) the question was received, YYYY-MM-DD
    published: str  # the date (UTC) it was published


@dataclass
class PublicUrgentUse:
    """An urgent use without prior authorisation (``eu-ai-act``), shown once the deployment has
    ended: when it started, its justification, how it ended (``authorised``, ``refused``,
    ``expired``), and when its results were deleted (ISO times, UTC)."""

    started_at: str
    justification: str
    deadline: str
    outcome: str
    decided_at: str | None
    results_deleted_at: str | None
    alerts_deleted: int


@dataclass
class PublicDeployment:
    id: int
    name: str
    status: str  # planned | running | paused | ended
    site: str
    location: str
    purpose: str
    legal_basis: str
    dpia_ref: str
    equality_ref: str
    planned_start: datetime
    planned_end: datetime
    started_at: datetime | None
    ended_at: datetime | None
    threshold: float
    model_id: str
    watchlist_size: int
    cameras: int
    two_person_rule: bool
    signage: bool
    public_notice: bool
    urgency_reason: str | None  # shown only once the deployment has ended
    figures: Figures | None  # None while planned
    questions_received: int = 0
    questions_answered: int = 0
    cameras_live: int = 0  # while running: cameras delivering frames now
    #: The questions and answers an overseer published (redacted), newest first; filled for
    #: one deployment's page (:func:`get_public`), empty in lists.
    answers: list[PublishedAnswer] = field(default_factory=list)
    #: the less intrusive alternatives considered, and why they do not suffice
    alternatives: str | None = None
    consultation_days: int | None = None
    consultation_opened_at: datetime | None = None
    consultation_ends_at: datetime | None = None
    #: comments: questions and objections received since it was proposed, before the response
    consultation_comments: int = 0
    consultation_response: str | None = None
    consultation_response_at: datetime | None = None
    #: what was shared about this deployment (filled for one deployment's page)
    shared: list[SharedCount] = field(default_factory=list)
    #: the reports of its ended field tests, aggregate only (filled for one deployment's page)
    field_tests: list[FieldTestReport] = field(default_factory=list)
    #: its urgent use, once it has ended (governance.urgent)
    urgent_use: PublicUrgentUse | None = None

    @property
    def consultation_open(self) -> bool:
        return (self.consultation_ends_at is not None
                and datetime.now(UTC) < self.consultation_ends_at)

    def as_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: v for k, v in asdict(self).items()
                             if k not in ("figures", "shared", "field_tests")}
        d["shared"] = [c.model_dump() for c in self.shared]
        d["field_tests"] = [r.public().as_json() for r in self.field_tests]
        for k in ("planned_start", "planned_end", "started_at", "ended_at",
                  "consultation_opened_at", "consultation_ends_at", "consultation_response_at"):
            value = getattr(self, k)
            d[k] = value.isoformat() if value else None
        d["figures"] = self.figures.as_json() if self.figures else None
        return d


def is_proposed(d: Deployment) -> bool:
    """A draft published as proposed: its consultation opened."""
    return d.status == DeploymentStatus.DRAFT and d.consultation_opened_at is not None


def is_public(d: Deployment) -> bool:
    if is_proposed(d):
        return True
    if d.status not in PUBLIC_STATUS:
        return False
    return not (d.urgency_reason and d.status != DeploymentStatus.ENDED)


def _figures(f: DeploymentFigures) -> Figures:
    out = Figures(hours=f.actual_hours or 0.0, people_passing=f.tracks,
                  faces_seen=f.faces_seen, alerts=f.alerts,
                  confirmed=f.confirmed, false_alerts=f.false_alerts, no_action=f.no_action,
                  pending=f.pending, engaged=f.engaged)
    for action, n in f.outcomes.items():
        out.outcomes[str(action)] = out.outcomes.get(str(action), 0) + int(n)
    return out


def _questions(s: Session, ids: list[int]) -> dict[int, tuple[int, int]]:
    """(received, answered) per deployment; a closed question with an answer is answered."""
    out: dict[int, tuple[int, int]] = {}
    if not ids:
        return out
    answered = PublicQuestion.answer.is_not(None)
    for dep, has_answer, n in s.execute(
            select(PublicQuestion.deployment_id, answered, func.count())
            .where(PublicQuestion.deployment_id.in_(ids))
            .group_by(PublicQuestion.deployment_id, answered)):
        got, ans = out.get(dep, (0, 0))
        out[dep] = (got + n, ans + (n if has_answer else 0))
    return out


def cameras_live(s: Session, ids: list[int], now: datetime | None = None) -> dict[int, int]:
    """Per running deployment, how many of its cameras are live now (their state, written by
    the run whichever process runs it, is ``running`` and recent)."""
    if not ids:
        return {}
    now = now or datetime.now(UTC)
    out: dict[int, int] = {}
    for dep_id, n in s.execute(
            select(CameraStats.deployment_id, func.count())
            .join(Deployment, Deployment.id == CameraStats.deployment_id)
            .where(CameraStats.deployment_id.in_(ids), CameraStats.state == "running",
                   Deployment.status == DeploymentStatus.RUNNING,
                   CameraStats.updated_at >= now - LIVE_STATE_STALE)
            .group_by(CameraStats.deployment_id)):
        out[dep_id] = int(n)
    return out


def _public(d: Deployment, f: DeploymentFigures | None,
            questions: tuple[int, int], live: int = 0, comments: int = 0) -> PublicDeployment:
    status = "proposed" if is_proposed(d) else PUBLIC_STATUS[d.status]
    return PublicDeployment(
        id=d.id, name=d.name, status=status, site=d.site, location=d.location,
        purpose=d.purpose, legal_basis=d.legal_basis, dpia_ref=d.dpia_ref,
        equality_ref=d.equality_ref, planned_start=d.planned_start, planned_end=d.planned_end,
        started_at=d.started_at, ended_at=d.ended_at, threshold=d.threshold,
        model_id=d.model_id, watchlist_size=(f.watchlist_size or 0) if f else 0,
        cameras=len(d.cameras), two_person_rule=d.two_person_rule, signage=d.signage,
        public_notice=d.public_notice,
        urgency_reason=d.urgency_reason if status == "ended" else None,
        figures=None if status in ("planned", "proposed") or f is None else _figures(f),
        questions_received=questions[0], questions_answered=questions[1],
        cameras_live=live if status == "running" else 0,
        alternatives=d.alternatives, consultation_days=d.consultation_days,
        consultation_opened_at=d.consultation_opened_at,
        consultation_ends_at=d.consultation_ends_at, consultation_comments=comments,
        consultation_response=d.consultation_response,
        consultation_response_at=d.consultation_response_at)


def _collect(s: Session, rows: list[Deployment]) -> list[PublicDeployment]:
    if not rows:
        return []
    ids = {d.id for d in rows}
    if len(rows) == 1:
        stats = deployment_stats(s, rows[0].id)
    else:
        stats = [f for f in deployment_stats(s) if f.deployment_id in ids]
    by_id = {f.deployment_id: f for f in stats}
    qs = _questions(s, sorted(ids))
    live = cameras_live(s, sorted(ids))
    comments = _comments(s, rows)
    out = [_public(d, by_id.get(d.id), qs.get(d.id, (0, 0)), live.get(d.id, 0),
                   comments.get(d.id, 0)) for d in rows]
    uses = _urgent_uses(s, [p.id for p in out if p.status == "ended"])
    for p in out:
        p.urgent_use = uses.get(p.id)
    return out


def _urgent_uses(s: Session, ids: list[int]) -> dict[int, PublicUrgentUse]:
    """The urgent uses of these (ended) deployments."""
    from openlfr.governance.urgent import WAITING, deleted_counts

    if not ids:
        return {}
    kept = deleted_counts(s, ids)

    def iso(value: datetime | None) -> str | None:
        return None if value is None else value.astimezone(UTC).isoformat()

    return {r.deployment_id: PublicUrgentUse(
        started_at=iso(r.started_at) or "", justification=r.justification,
        deadline=iso(r.deadline) or "", outcome=r.outcome or WAITING,
        decided_at=iso(r.decided_at), results_deleted_at=iso(r.results_deleted_at),
        alerts_deleted=kept.get(r.deployment_id, {}).get("alerts", 0))
        for r in s.scalars(select(UrgentUse).where(UrgentUse.deployment_id.in_(ids)))}


def _comments(s: Session, rows: list[Deployment]) -> dict[int, int]:
    """Per consulted deployment, the comments of its consultation: the questions received
    since it was published as proposed and before the response (as
    :func:`openlfr.governance.deployments.consultation_comments` counts them)."""
    periods = {d.id: (d.consultation_opened_at, d.consultation_response_at) for d in rows
               if d.consultation_opened_at is not None}
    out: dict[int, int] = {}
    if not periods:
        return out
    for dep_id, created in s.execute(
            select(PublicQuestion.deployment_id, PublicQuestion.created_at)
            .where(PublicQuestion.deployment_id.in_(sorted(periods)))):
        start, end = periods[dep_id]
        if created >= start and (end is None or created <= end):
            out[dep_id] = out.get(dep_id, 0) + 1
    return out


def list_public(db: Database) -> list[PublicDeployment]:
    """Every public deployment: proposed, planned and running first (soonest first), then past
    ones (latest first)."""
    with db.reading() as s:
        rows = [d for d in s.scalars(select(Deployment).order_by(Deployment.planned_start))
                if is_public(d)]
        out = _collect(s, rows)
    current = [d for d in out if d.status != "ended"]
    past = sorted((d for d in out if d.status == "ended"),
                  key=lambda d: d.ended_at or d.planned_end, reverse=True)
    return current + past


def published_answers(s: Session, deployment_id: int) -> list[PublishedAnswer]:
    """The published questions and answers of one deployment, newest publication first."""
    rows = s.scalars(select(PublicQuestion).where(
        PublicQuestion.deployment_id == deployment_id, PublicQuestion.published_at.is_not(None))
        .order_by(PublicQuestion.published_at.desc(), PublicQuestion.id.desc()))
    return [PublishedAnswer(q.reference or "", q.kind.value, q.public_text or "",
                            q.public_answer or "", f"{q.created_at:%Y-%m-%d}",
                            f"{q.published_at:%Y-%m-%d}") for q in rows]


def get_public(db: Database, deployment_id: int) -> PublicDeployment | None:
    with db.reading() as s:
        d = s.get(Deployment, deployment_id)
        if d is None or not is_public(d):
            return None
        out = _collect(s, [d])[0]
        out.answers = published_answers(s, d.id)
        out.shared = shared_counts(s, [d.id]).of(d.id)
        out.field_tests = public_reports(s, d.id)
        return out


def shared_overall(db: Database) -> list[SharedCount]:
    """What was shared, over every deployment and the whole system (audit exports included)."""
    with db.reading() as s:
        return shared_counts(s, []).overall


# -- the yearly summary -------------------------------------------------------------------------

@dataclass
class YearSummary:
    year: int
    deployments: int
    totals: Figures
    months: list[Figures]  # 12 entries, by the month a deployment started
    questions_received: int
    questions_answered: int
    years: list[int]  # every year with a public deployment that ran
    #: False alerts per perceived group, suppressed, beside the measured false-match rates.
    equality: EqualityFigures | None = None
    #: The deployments counted, in the order listed (the annual report's rows).
    deployment_ids: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"year": self.year, "deployments": self.deployments,
                "totals": self.totals.as_json(),
                "months": [dict(month=i + 1, **m.as_json()) for i, m in enumerate(self.months)],
                "questions_received": self.questions_received,
                "questions_answered": self.questions_answered, "years": self.years,
                "equality": None if self.equality is None else self.equality.as_json()}


def _when(d: PublicDeployment) -> datetime:
    return d.started_at or d.planned_start


def year_summary(db: Database, year: int | None = None,
                 listed: list[PublicDeployment] | None = None) -> YearSummary:
    """Totals over the deployments that ran (running or ended) and started in ``year``
    (default: this year); ``listed``: :func:`list_public`'s answer if the caller has it."""
    ran = [d for d in (list_public(db) if listed is None else listed)
           if d.status != "planned" and d.figures is not None]
    years = sorted({_when(d).year for d in ran}, reverse=True)
    year = year or datetime.now(UTC).year
    totals = Figures()
    months = [Figures() for _ in range(12)]
    count = received = answered = 0
    counted: list[PublicDeployment] = []
    for d in ran:
        when = _when(d)
        if when.year != year or d.figures is None:
            continue
        count += 1
        counted.append(d)
        totals.add(d.figures)
        months[when.month - 1].add(d.figures)
        received += d.questions_received
        answered += d.questions_answered
    with db.reading() as s:
        equality = equality_figures(s, year, [d.id for d in counted],
                                    [d.model_id for d in counted])
    return YearSummary(year, count, totals, months, received, answered, years, equality,
                       [d.id for d in counted])


# -- what residents ask first -------------------------------------------------------------------

@dataclass
class ThresholdNote:
    """What a deployment's threshold means, from the floor records of its model."""

    threshold: float
    model_id: str
    floor: float
    calibrated: bool  # a calibration was recorded (else: the model's default floor)
    #: The share of searches of people NOT on a list of ``list_size`` people that gave a
    #: possible match at the floor, as measured (None: not in the record).
    fpir: float | None
    list_size: int | None
    measured_on: str  # in words: which data the measurement was made on
    recorded_at: str | None = None  # when the calibration was recorded (YYYY-MM-DD)


#: The default floors' measurement (README "Default thresholds"): LFW, 1,000 people, FPIR 1 %.
DEFAULT_MEASUREMENT: tuple[float, int, str] = (
    0.01, 1000, "the public LFW photo collection (photos of 5,749 people)")


def _number(value: object) -> float | None:
    try:
        return float(str(value))
    except (TypeError, ValueError):
        return None


def threshold_note(s: Session, model_id: str, threshold: float) -> ThresholdNote:
    """The floor of ``model_id`` and the false-alert rate measured there (from the recorded
    calibration's evidence, or the default floor's measurement)."""
    from openlfr.governance.authz import RuleError
    from openlfr.governance.floors import current_floor

    try:
        floor = current_floor(s, model_id)
    except RuleError:  # a model without a known floor
        return ThresholdNote(threshold, model_id, threshold, False, None, None, "")
    if floor.source != "calibrated":
        return ThresholdNote(threshold, model_id, floor.threshold, False,
                             *DEFAULT_MEASUREMENT)
    ev = floor.evidence
    fpir = ev.get("fpir") if isinstance(ev.get("fpir"), dict) else {}
    measured = _number(fpir.get("fpir")) if fpir else None
    rate = measured if measured is not None else _number(ev.get("target_fpir"))
    size = _int_or_none(ev.get("watchlist_size"))
    dataset = ev.get("dataset") if isinstance(ev.get("dataset"), dict) else {}
    people = _int_or_none(dataset.get("identities")) if dataset else None
    where = ("the operator's own test photos" + (f" ({people:,} people)" if people else ""))
    return ThresholdNote(threshold, model_id, floor.threshold, True, rate, size, where,
                         (floor.recorded_at or "")[:10] or None)


def _int_or_none(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


@dataclass
class ResidentsInfo:
    """The plain answers on the index and each deployment's page: from the settings (retention,
    who is responsible, how to complain, where the assessments are) and the data."""

    retention_days: int
    watchlist_destroy_hours: int
    responsible_body: str
    complaints_contact: str | None
    complaints_url: str | None
    regulator: str
    regulator_url: str | None
    impact_assessments_url: str | None
    #: This year's false alerts per person passing, over every public deployment that ran.
    year: int = 0
    year_people_passing: int = 0
    year_false_alerts: int = 0


def residents_info(settings: Settings, summary: YearSummary | None = None) -> ResidentsInfo:
    """The answers' facts; with ``summary`` (the index), also that year's false alerts per
    person passing."""
    info = ResidentsInfo(
        retention_days=settings.retention_days,
        watchlist_destroy_hours=settings.watchlist_destroy_hours,
        responsible_body=settings.responsible_body, complaints_contact=settings.complaints_contact,
        complaints_url=settings.complaints_url, regulator=settings.regulator,
        regulator_url=settings.regulator_url,
        impact_assessments_url=settings.impact_assessments_url)
    if summary is not None:
        info.year, info.year_people_passing = summary.year, summary.totals.people_passing
        info.year_false_alerts = summary.totals.false_alerts
    return info


def deployment_threshold(db: Database, d: PublicDeployment) -> ThresholdNote:
    with db.reading() as s:
        return threshold_note(s, d.model_id, d.threshold)
