"""Field tests (blue list): consenting volunteers walk past a live deployment's cameras at
planned times, and the deployment's live alerts against them measure it in the field.

The method
----------
* **The test watchlist.** :func:`plan_field_test` gives a deployment (draft or authorised; an
  authorised one goes back to draft, since its plan changed) a watchlist of its own for the
  test, attached like any other, so it is approved by an authorising officer who did not build
  it, searched by the live run, and destroyed like any watchlist.
* **Volunteers.** :func:`add_volunteer` enrols one consenting volunteer (one reference photo,
  checked as any watchlist image) with the consent record (who took it, when, its reference),
  optional self-declared age band (:data:`AGE_BANDS`), sex and ethnic group (the census groups
  of :data:`~openlfr.governance.views.ETHNICITY_WORDS`, here the person's own declaration) and
  the **planned passes**: time windows in which they walk past a named camera of the plan.
  Use a pseudonym as the volunteer's label; the consent reference points to the signed form.
* **Test alerts.** The live run's :class:`~openlfr.governance.alerts.AlertRecorder` marks an
  alert against a test watchlist as a *test alert* when it records it (``field_test_id``,
  ``field_volunteer_id``): it is stored and audited, never handed to the operators' live
  queue, never listed among operational alerts or counted in their statistics, cannot be
  adjudicated and can never have an outcome. It is reviewed in the test's own view
  (:func:`test_alerts`).
* **A pass counts as alerted** when a test alert of that volunteer at that camera was seen
  between the start of the pass and :data:`ALERT_GRACE` seconds after its end (an alert is
  decided on the best shot of a track, a moment after the face was seen).
* **Time to alert** of an alerted pass is the ``in_view`` time of its earliest alert that
  carries one: seconds from the arrival of the first frame of the track (the person entering
  the camera's view, as far as the detector sees them) to the alert. An alert recorded without
  it (from before it was recorded) falls back to its ``latency``, from the first frame in which
  the face met the enrolment quality policy; a pass alerted only by alerts with neither is
  alerted, with no time, and does not count as alerted within :data:`ALERT_WITHIN` seconds.
* **False alerts against the operational list** during a pass: operational alerts (not test
  alerts) of the deployment at the pass's camera seen in the same window. The volunteers are
  not on the operational list, so each is counted as a false alert during that pass; in a
  crowd another passer-by may have raised it, so the figure is an upper bound. The report also
  counts every operational alert of the test period (earliest pass start to latest pass end
  plus the grace) by decision.
* **Intervals.** TPIR (passes alerted / passes), the share of passes alerted within
  :data:`ALERT_WITHIN` seconds, and the share of passes with an operational false alert, each
  with its exact (Clopper–Pearson) 95 % interval (:func:`openlfr.evaluation.stats.
  clopper_pearson`), per volunteer, overall and per self-declared group; a volunteer's passes
  are not independent trials, which the intervals do not account for.
* **Suppression.** On public pages only the overall and per-group figures appear, never a
  volunteer's label or own figures; a group of fewer than
  :data:`~openlfr.transparency.equality.SUPPRESS_BELOW` volunteers is not broken down, by the
  project's rule for small counts (:func:`openlfr.transparency.equality.suppress`).
* **The end.** :func:`end_field_test` computes the report, stores it with the test (so with the
  deployment), purges the test alerts' crops, and destroys the test watchlist (its volunteers'
  images and templates, crypto-shredded) through
  :func:`openlfr.governance.watchlists.destroy_watchlist`. Every step is audited; the audit
  log says whether self-declared attributes were given, never their values.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from openlfr.audit import log as audit_log
from openlfr.evaluation.stats import CONFIDENCE, clopper_pearson
from openlfr.governance import deployments as deps
from openlfr.governance import watchlists as wls
from openlfr.governance.authz import (
    SYSTEM_ACTOR,
    Actor,
    Conflict,
    NotFound,
    Perm,
    RuleError,
    require,
)
from openlfr.governance.names import check_name
from openlfr.governance.system import System
from openlfr.governance.times import parse_time
from openlfr.governance.views import ETHNICITY_WORDS
from openlfr.store.db import Database
from openlfr.store.enums import (
    AlertStatus,
    DeploymentStatus,
    PerceivedEthnicity,
    PerceivedSex,
    WatchlistStatus,
)
from openlfr.store.models import (
    Alert,
    Deployment,
    FieldTest,
    FieldTestPass,
    FieldTestVolunteer,
    Watchlist,
    WatchlistEditor,
    utcnow,
)
from openlfr.transparency.equality import SEX_WORDS, SUPPRESS_BELOW, suppress

PLANNED = "planned"
ENDED = "ended"

#: Self-declared age bands (volunteers are adults).
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
#: Seconds after the end of a pass in which an alert still counts for it.
ALERT_GRACE = 10.0
#: "Alerted within" this many seconds of the face becoming usable.
ALERT_WITHIN = 5.0
#: Limits of one test.
MAX_VOLUNTEERS = 200
MAX_PASSES = 50
MAX_TEXT = 200
#: The groups a report breaks the figures down by: attribute → its words.
ATTRIBUTES = {"age_band": "age band", "sex": "sex", "ethnicity": "ethnic group"}
NOT_DECLARED = "not_declared"


# -- input -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PassSpec:
    """One planned pass: ``camera`` between ``starts_at`` and ``ends_at`` (aware UTC)."""

    camera: str
    starts_at: datetime
    ends_at: datetime


def parse_pass(text: str, now: datetime | None = None) -> PassSpec:
    """``CAMERA=START/END`` (times in the one time format, with their zone) as a
    :class:`PassSpec`; a :class:`RuleError` naming the field ``passes`` otherwise."""
    camera, eq, window = (text or "").partition("=")
    start, slash, end = window.partition("/")
    if not eq or not slash or not camera.strip():
        raise RuleError(f"pass {text[:60]!r}: write CAMERA=START/END, e.g. "
                        "gate=2026-05-01T10:00Z/2026-05-01T10:05Z", field="passes")
    return PassSpec(camera.strip(), parse_time(start, "passes", now),
                    parse_time(end, "passes", now))


def _text(value: str | None, what: str, field_name: str) -> str:
    text = (value or "").strip()
    if not text:
        raise RuleError(f"{what} is required", field=field_name)
    if len(text) > MAX_TEXT:
        raise RuleError(f"{what} has at most {MAX_TEXT} characters", field=field_name)
    return text


def parse_age_band(value: str | None) -> str | None:
    text = (value or "").strip().replace(" ", "")
    if not text or text == NOT_DECLARED:
        return None
    if text not in AGE_BANDS:
        raise RuleError(f"age band {value!r}: choose {', '.join(AGE_BANDS)}", field="age_band")
    return text


def parse_sex(value: str | None) -> str | None:
    text = (value or "").strip().lower()
    if not text or text in (NOT_DECLARED, PerceivedSex.NOT_RECORDED.value):
        return None
    if text not in (PerceivedSex.FEMALE.value, PerceivedSex.MALE.value):
        raise RuleError(f"sex {value!r}: choose female or male (or leave it out)", field="sex")
    return text


def parse_ethnicity(value: str | None) -> str | None:
    text = (value or "").strip().lower()
    if not text or text in (NOT_DECLARED, PerceivedEthnicity.NOT_RECORDED.value):
        return None
    for group in PerceivedEthnicity:
        if group == PerceivedEthnicity.NOT_RECORDED:
            continue
        if text in (group.value, group.value.replace("_", " "),
                    ETHNICITY_WORDS[group].lower()):
            return group.value
    codes = ", ".join(g.value for g in PerceivedEthnicity
                      if g != PerceivedEthnicity.NOT_RECORDED)
    raise RuleError(f"ethnic group {value!r}: choose {codes} (census groups, or leave it out)",
                    field="ethnicity")


def group_words(attribute: str, code: str | None) -> str:
    """The words of a self-declared group."""
    if code is None or code == NOT_DECLARED:
        return "Not declared"
    if attribute == "ethnicity":
        return ETHNICITY_WORDS.get(code, code)
    if attribute == "sex":
        return SEX_WORDS.get(code, code)
    return code


# -- views -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PassView:
    id: int
    camera: str
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True)
class VolunteerView:
    id: int
    label: str
    enrolled: bool  # the reference photo is still on the test watchlist
    consent_by: str
    consent_at: datetime
    consent_reference: str
    age_band: str | None
    sex: str | None
    ethnicity: str | None
    added_by: str
    passes: tuple[PassView, ...]


@dataclass(frozen=True)
class FieldTestView:
    id: int
    deployment_id: int
    deployment: str
    watchlist_id: int | None
    watchlist_status: str | None
    status: str
    purpose: str
    created_by: str
    created_at: datetime
    ended_by: str | None
    ended_at: datetime | None
    volunteers: tuple[VolunteerView, ...]
    report: FieldTestReport | None


@dataclass(frozen=True)
class TestAlertView:
    """A test alert, for the test view (the crop through the alert's own audited route)."""

    id: int
    camera: str
    volunteer_id: int | None
    volunteer: str | None
    score: float
    seen_at: datetime
    latency: float | None
    in_pass: bool
    has_crop: bool


# -- the report --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rate:
    """``k`` of ``n``, its rate and Clopper–Pearson 95 % interval (None when ``n`` is 0)."""

    k: int
    n: int
    rate: float | None
    low: float | None
    high: float | None

    @staticmethod
    def of(k: int, n: int) -> Rate:
        ci = clopper_pearson(k, n)
        return Rate(k, n, None if n == 0 else k / n, None if ci is None else ci[0],
                    None if ci is None else ci[1])

    def text(self) -> str:
        """``3 of 4 = 75 % (95 % CI 19 %–99 %)``."""
        if self.n == 0 or self.rate is None or self.low is None or self.high is None:
            return f"{self.k} of {self.n}"
        return (f"{self.k} of {self.n} = {100 * self.rate:.0f} % (95 % CI "
                f"{100 * self.low:.0f} %–{100 * self.high:.0f} %)")


@dataclass(frozen=True)
class Figures:
    """What a set of passes gave."""

    volunteers: int
    passes: int
    tpir: Rate  # passes alerted / passes
    within: Rate  # passes alerted within ALERT_WITHIN s / passes
    timed: int  # alerted passes with a time to alert
    median_seconds: float | None
    max_seconds: float | None
    operational: Rate  # passes with an operational false alert / passes


@dataclass(frozen=True)
class VolunteerFigures:
    volunteer_id: int
    label: str
    age_band: str | None
    sex: str | None
    ethnicity: str | None
    figures: Figures


@dataclass(frozen=True)
class GroupFigures:
    """One self-declared group's figures; ``figures`` is None when its volunteers are fewer
    than the suppression rule allows to publish (``shown`` then says why)."""

    attribute: str
    group: str
    label: str
    volunteers: int
    shown: int | str
    figures: Figures | None


@dataclass(frozen=True)
class OperationalAlerts:
    """Operational (not test) alerts of the deployment in the test period, by decision."""

    total: int
    false_alerts: int
    confirmed: int
    other: int  # pending or no action


@dataclass(frozen=True)
class FieldTestReport:
    """A finished field test's figures (see the module for the method). ``volunteers`` is for
    the console only; :meth:`public` drops it."""

    field_test_id: int
    deployment_id: int
    deployment: str
    model_id: str
    threshold: float
    period_start: datetime | None
    period_end: datetime | None
    ended_at: datetime
    confidence: float
    grace_seconds: float
    within_seconds: float
    time_basis: str
    overall: Figures
    groups: tuple[GroupFigures, ...]
    operational: OperationalAlerts
    test_alerts: int
    test_alerts_outside_passes: int
    volunteers: tuple[VolunteerFigures, ...] = field(default=())

    def public(self) -> FieldTestReport:
        """The report as the public pages show it: aggregate only (no volunteer)."""
        return replace(self, volunteers=())

    def as_json(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    @staticmethod
    def from_json(data: dict[str, Any]) -> FieldTestReport:
        def rate(d: dict[str, Any]) -> Rate:
            return Rate(**d)

        def figures(d: dict[str, Any]) -> Figures:
            return Figures(**{**d, "tpir": rate(d["tpir"]), "within": rate(d["within"]),
                              "operational": rate(d["operational"])})

        def when(v: str | None) -> datetime | None:
            return None if v is None else datetime.fromisoformat(v)

        ended = when(data["ended_at"])
        assert ended is not None
        return FieldTestReport(
            **{k: data[k] for k in ("field_test_id", "deployment_id", "deployment", "model_id",
                                    "threshold", "confidence", "grace_seconds",
                                    "within_seconds", "time_basis", "test_alerts",
                                    "test_alerts_outside_passes")},
            period_start=when(data["period_start"]), period_end=when(data["period_end"]),
            ended_at=ended, overall=figures(data["overall"]),
            groups=tuple(GroupFigures(**{**g, "figures": None if g["figures"] is None
                                         else figures(g["figures"])})
                         for g in data["groups"]),
            operational=OperationalAlerts(**data["operational"]),
            volunteers=tuple(VolunteerFigures(**{**v, "figures": figures(v["figures"])})
                             for v in data.get("volunteers", ())))

    def markdown(self, public: bool = False) -> str:
        """The report as Markdown (``public``: without the volunteers' own figures)."""
        lines = [f"## Field test {self.field_test_id} of deployment {self.deployment_id} "
                 f"({self.deployment})", "",
                 f"Model {self.model_id} at threshold {self.threshold:g}; test period "
                 f"{_iso(self.period_start)} to {_iso(self.period_end)}; "
                 f"{self.overall.volunteers} volunteer(s), {self.overall.passes} planned "
                 f"pass(es). Intervals: exact (Clopper–Pearson) {100 * self.confidence:.0f} %.", "",
                 "| who | volunteers | passes | TPIR (passes alerted) | alerted within "
                 f"{self.within_seconds:g} s | time to alert (median / max) | passes with an "
                 "operational false alert |", "|---|---|---|---|---|---|---|"]
        rows: list[tuple[str, int | str, Figures | None]] = [("all", self.overall.volunteers,
                                                              self.overall)]
        if not public:
            rows += [(f"volunteer {v.label}", 1, v.figures) for v in self.volunteers]
        rows += [(f"{ATTRIBUTES[g.attribute]}: {g.label}", g.shown, g.figures)
                 for g in self.groups]
        for who, n, fig in rows:
            if fig is None:
                lines.append(f"| {who} | {n} | not shown | not shown | not shown | not shown "
                             "| not shown |")
                continue
            lines.append(f"| {who} | {n} | {fig.passes} | {fig.tpir.text()} | "
                         f"{fig.within.text()} | {_seconds(fig.median_seconds)} / "
                         f"{_seconds(fig.max_seconds)} | {fig.operational.text()} |")
        op = self.operational
        lines += ["", f"Operational alerts during the test period: {op.total} ({op.false_alerts}"
                      f" false, {op.confirmed} confirmed, {op.other} pending or no action). "
                      f"Test alerts: {self.test_alerts}, of which "
                      f"{self.test_alerts_outside_passes} outside any planned pass.", "",
                  f"Time to alert: {self.time_basis}"]
        return "\n".join(lines) + "\n"


def _iso(when: datetime | None) -> str:
    return "—" if when is None else when.astimezone(UTC).isoformat(timespec="seconds")


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _time_to_alert(a: Alert) -> float | None:
    """Seconds from entering the view to ``a`` (its ``in_view``; else its ``latency``)."""
    value = a.in_view if a.in_view is not None else a.latency
    return None if value is None else round(value, 3)


TIME_BASIS = ("seconds from the first frame of the person's track (entering the camera's "
              "view, as far as the face detector sees them) to the alert.")


@dataclass(frozen=True)
class _Pass:
    volunteer_id: int
    camera: str
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True)
class _TestAlert:
    volunteer_id: int | None
    camera: str
    seen_at: datetime
    latency: float | None


@dataclass(frozen=True)
class _OpAlert:
    camera: str
    seen_at: datetime
    status: AlertStatus


def _figures(volunteers: int, outcomes: Sequence[tuple[bool, float | None, bool]]) -> Figures:
    """From (alerted, latency, operational alert) per pass."""
    n = len(outcomes)
    alerted = sum(1 for a, _, _ in outcomes if a)
    times = [t for a, t, _ in outcomes if a and t is not None]
    within = sum(1 for a, t, _ in outcomes if a and t is not None and t <= ALERT_WITHIN)
    return Figures(volunteers=volunteers, passes=n, tpir=Rate.of(alerted, n),
                   within=Rate.of(within, n), timed=len(times),
                   median_seconds=None if not times else round(statistics.median(times), 3),
                   max_seconds=None if not times else round(max(times), 3),
                   operational=Rate.of(sum(1 for _, _, o in outcomes if o), n))


def compute_report(test: FieldTest, dep: Deployment, alerts: Iterable[Alert],
                   ended_at: datetime) -> FieldTestReport:
    """The report of ``test`` from its volunteers, passes and the deployment's alerts."""
    grace = timedelta(seconds=ALERT_GRACE)
    passes = [_Pass(v.id, p.camera, p.starts_at, p.ends_at)
              for v in test.volunteers for p in v.passes]
    tests: list[_TestAlert] = []
    ops: list[_OpAlert] = []
    for a in alerts:
        if a.field_test_id == test.id:
            tests.append(_TestAlert(a.field_volunteer_id, a.camera, a.seen_at,
                                    _time_to_alert(a)))
        elif a.field_test_id is None:
            ops.append(_OpAlert(a.camera, a.seen_at, a.status))
    start = min((p.starts_at for p in passes), default=None)
    end = max((p.ends_at for p in passes), default=None)
    if end is not None:
        end += grace

    def in_window(p: _Pass, when: datetime) -> bool:
        return p.starts_at <= when <= p.ends_at + grace

    per_pass: dict[int, list[tuple[bool, float | None, bool]]] = {v.id: [] for v in
                                                                  test.volunteers}
    used: set[int] = set()
    for p in passes:
        hits = sorted((a for a in tests if a.volunteer_id == p.volunteer_id
                       and a.camera == p.camera and in_window(p, a.seen_at)),
                      key=lambda a: a.seen_at)
        used.update(id(a) for a in hits)
        op = any(o.camera == p.camera and in_window(p, o.seen_at) for o in ops)
        timed = [a.latency for a in hits if a.latency is not None]
        per_pass[p.volunteer_id].append((bool(hits), timed[0] if timed else None, op))
    vols = tuple(VolunteerFigures(v.id, v.label, v.age_band, v.sex, v.ethnicity,
                                  _figures(1, per_pass[v.id])) for v in test.volunteers)
    everything = [o for v in test.volunteers for o in per_pass[v.id]]
    groups: list[GroupFigures] = []
    for attribute in ATTRIBUTES:
        members: dict[str, list[FieldTestVolunteer]] = {}
        for v in test.volunteers:
            members.setdefault(getattr(v, attribute) or NOT_DECLARED, []).append(v)
        codes = sorted(members, key=lambda c: (c == NOT_DECLARED, c))
        shown = suppress([len(members[c]) for c in codes])
        for code, show in zip(codes, shown, strict=True):
            people = members[code]
            publishable = isinstance(show, int) and len(people) >= SUPPRESS_BELOW
            groups.append(GroupFigures(
                attribute=attribute, group=code, label=group_words(attribute, code),
                volunteers=len(people), shown=show,
                figures=_figures(len(people), [o for v in people for o in per_pass[v.id]])
                if publishable else None))
    in_period = [o for o in ops if start is not None and end is not None
                 and start <= o.seen_at <= end]
    return FieldTestReport(
        field_test_id=test.id, deployment_id=dep.id, deployment=dep.name,
        model_id=dep.model_id, threshold=dep.threshold, period_start=start, period_end=end,
        ended_at=ended_at, confidence=CONFIDENCE, grace_seconds=ALERT_GRACE,
        within_seconds=ALERT_WITHIN, time_basis=TIME_BASIS,
        overall=_figures(len(test.volunteers), everything), groups=tuple(groups),
        operational=OperationalAlerts(
            total=len(in_period),
            false_alerts=sum(1 for o in in_period if o.status == AlertStatus.REJECTED),
            confirmed=sum(1 for o in in_period if o.status == AlertStatus.CONFIRMED),
            other=sum(1 for o in in_period if o.status not in (AlertStatus.REJECTED,
                                                               AlertStatus.CONFIRMED))),
        test_alerts=len(tests), test_alerts_outside_passes=len(tests) - len(used),
        volunteers=vols)


# -- reading -----------------------------------------------------------------------------------

def _load(s: Session, test_id: int, lock: bool = False) -> FieldTest:
    query = select(FieldTest).where(FieldTest.id == test_id).options(
        selectinload(FieldTest.volunteers).selectinload(FieldTestVolunteer.passes),
        selectinload(FieldTest.deployment))
    if lock:
        query = query.with_for_update()
    row = s.scalar(query)
    if row is None:
        raise NotFound(f"no field test {test_id}")
    return row


def _report(row: FieldTest) -> FieldTestReport | None:
    return None if row.report is None else FieldTestReport.from_json(json.loads(row.report))


def _view(s: Session, row: FieldTest) -> FieldTestView:
    wl = s.get(Watchlist, row.watchlist_id) if row.watchlist_id is not None else None
    return FieldTestView(
        id=row.id, deployment_id=row.deployment_id, deployment=row.deployment.name,
        watchlist_id=row.watchlist_id,
        watchlist_status=None if wl is None else wl.status.value, status=row.status,
        purpose=row.purpose, created_by=row.created_by, created_at=row.created_at,
        ended_by=row.ended_by, ended_at=row.ended_at,
        volunteers=tuple(VolunteerView(
            id=v.id, label=v.label, enrolled=v.subject_id is not None, consent_by=v.consent_by,
            consent_at=v.consent_at, consent_reference=v.consent_reference,
            age_band=v.age_band, sex=v.sex, ethnicity=v.ethnicity, added_by=v.added_by,
            passes=tuple(PassView(p.id, p.camera, p.starts_at, p.ends_at) for p in v.passes))
            for v in row.volunteers),
        report=_report(row))


def show_field_test(db: Database, actor: Actor, test_id: int) -> FieldTestView:
    require(db, actor, Perm.DEPLOYMENT_READ, "field_test", str(test_id))
    with db.reading() as s:
        return _view(s, _load(s, test_id))


def list_field_tests(db: Database, actor: Actor, deployment_id: int | None = None
                     ) -> list[FieldTestView]:
    require(db, actor, Perm.DEPLOYMENT_READ, "field_test", "list")
    with db.reading() as s:
        query = select(FieldTest.id).order_by(FieldTest.id)
        if deployment_id is not None:
            query = query.where(FieldTest.deployment_id == deployment_id)
        return [_view(s, _load(s, i)) for i in s.scalars(query).all()]


def test_alerts(db: Database, actor: Actor, test_id: int) -> list[TestAlertView]:
    """The test view: every test alert of a field test, newest first, with the volunteer it
    was raised for and whether it fell in one of their planned passes at that camera."""
    require(db, actor, Perm.ALERT_READ, "field_test", str(test_id))
    grace = timedelta(seconds=ALERT_GRACE)
    with db.reading() as s:
        test = _load(s, test_id)
        labels = {v.id: v.label for v in test.volunteers}
        windows = {v.id: [(p.camera, p.starts_at, p.ends_at) for p in v.passes]
                   for v in test.volunteers}
        rows = s.scalars(select(Alert).where(Alert.field_test_id == test_id)
                         .order_by(Alert.id.desc())).all()
        return [TestAlertView(
            id=a.id, camera=a.camera, volunteer_id=a.field_volunteer_id,
            volunteer=labels.get(a.field_volunteer_id or 0), score=round(a.score, 4),
            seen_at=a.seen_at, latency=_time_to_alert(a),
            in_pass=any(cam == a.camera and start <= a.seen_at <= end + grace
                        for cam, start, end in windows.get(a.field_volunteer_id or 0, [])),
            has_crop=a.crop_ct is not None) for a in rows]


def test_of_watchlist(s: Session, watchlist_id: int | None) -> FieldTest | None:
    """The planned field test whose test watchlist this is (for the alert recorder)."""
    if watchlist_id is None:
        return None
    return s.scalar(select(FieldTest).where(FieldTest.watchlist_id == watchlist_id,
                                            FieldTest.status == PLANNED))


def mark_test_alert(s: Session, alert: Alert) -> bool:
    """At recording time: mark ``alert`` as a test alert if its subject is on a planned field
    test's watchlist (setting the test and the volunteer). True when it is one."""
    test = test_of_watchlist(s, alert.watchlist_id)
    if test is None:
        return False
    alert.field_test_id = test.id
    alert.field_volunteer_id = s.scalar(select(FieldTestVolunteer.id).where(
        FieldTestVolunteer.field_test_id == test.id,
        FieldTestVolunteer.subject_id == alert.subject_id)) if alert.subject_id else None
    return True


# -- changes -----------------------------------------------------------------------------------

def plan_field_test(system: System, actor: Actor, deployment_id: int,
                    purpose: str | None = None) -> FieldTestView:
    """Give a draft or authorised deployment a field test and its (empty, draft) test
    watchlist, attached to the deployment; an authorised deployment goes back to draft. One
    open test per deployment."""
    from openlfr.governance.models import model_id_for

    db = system.db
    require(db, actor, Perm.DEPLOYMENT_EDIT, "deployment", str(deployment_id))
    text = (purpose or "").strip() or ("Measure the deployment in the field: consenting "
                                       "volunteers walk past its cameras at planned times")
    if len(text) > 4000:
        raise RuleError("a field test's purpose has at most 4000 characters", field="purpose")
    if len(text) < wls.MIN_REASON:
        raise RuleError(f"a field test's purpose needs at least {wls.MIN_REASON} characters",
                        field="purpose")
    with db.session() as s:
        dep = s.get(Deployment, deployment_id, with_for_update=True)
        if dep is None:
            raise NotFound(f"no deployment {deployment_id}")
        if dep.status not in deps.CHANGEABLE:
            raise Conflict(f"deployment {deployment_id} is {dep.status.value}: a field test is "
                           "planned with the deployment, before it is authorised (its test "
                           "watchlist is part of the plan)")
        open_test = s.scalar(select(FieldTest.id).where(
            FieldTest.deployment_id == dep.id, FieldTest.status == PLANNED))
        if open_test is not None:
            raise Conflict(f"deployment {deployment_id} already has a planned field test "
                           f"({open_test})")
        model_id = model_id_for(db, "sface") if not dep.model_id else dep.model_id
        key = system.keyring.new_key(s, "watchlist")
        wl = Watchlist(name=f"Field test volunteers, deployment {dep.id}", purpose=text,
                       status=WatchlistStatus.DRAFT, model_id=model_id, max_subjects=min(
                           MAX_VOLUNTEERS, system.settings.watchlist_max_subjects),
                       created_by=actor.name, data_key_id=key.id)
        s.add(wl)
        s.flush()
        if not actor.is_system:
            s.add(WatchlistEditor(watchlist_id=wl.id, user_name=actor.name))
        audit_log.record(s, actor.name, "watchlist.create", "watchlist", wl.id,
                         {"name": wl.name, "model_id": model_id,
                          "max_subjects": wl.max_subjects})
        test = FieldTest(deployment_id=dep.id, watchlist_id=wl.id, status=PLANNED,
                         purpose=text, created_by=actor.name)
        s.add(test)
        was = dep.status
        dep.watchlists = [*dep.watchlists, wl]
        deps._back_to_draft(dep)
        s.flush()
        audit_log.record(s, actor.name, "fieldtest.plan", "field_test", test.id, {
            "deployment": dep.id, "watchlist": wl.id, "status_before": was.value,
            "status": dep.status.value})
        test_id = test.id
    with db.reading() as s:
        return _view(s, _load(s, test_id))


def add_volunteer(system: System, actor: Actor, test_id: int, label: str, image: bytes,
                  image_source: str, consent_by: str, consent_at: datetime,
                  consent_reference: str, passes: Sequence[PassSpec], *,
                  age_band: str | None = None, sex: str | None = None,
                  ethnicity: str | None = None) -> VolunteerView:
    """Enrol one consenting volunteer on the test watchlist (their reference photo checked as
    any watchlist image) with the consent record, the optional self-declared attributes and
    the planned passes. Everything is checked before anything is written."""
    db = system.db
    require(db, actor, Perm.DEPLOYMENT_EDIT, "field_test", str(test_id))
    label = check_name(_text(label, "a volunteer's label (a pseudonym)", "label"),
                       "the volunteer's label")
    consent_by = _text(consent_by, "who took the volunteer's consent", "consent_by")
    consent_reference = _text(consent_reference, "the consent record's reference",
                              "consent_reference")
    if consent_at.tzinfo is None:
        raise RuleError("the consent time needs its zone", field="consent_at")
    consent_at = consent_at.astimezone(UTC)
    if consent_at > utcnow() + timedelta(minutes=5):
        raise RuleError("consent is recorded once given: its time cannot be in the future",
                        field="consent_at")
    age_band, sex, ethnicity = parse_age_band(age_band), parse_sex(sex), \
        parse_ethnicity(ethnicity)
    if not passes:
        raise RuleError("a volunteer needs at least one planned pass (CAMERA=START/END)",
                        field="passes")
    if len(passes) > MAX_PASSES:
        raise RuleError(f"{len(passes)} passes: at most {MAX_PASSES} per volunteer",
                        field="passes")
    with db.reading() as s:
        test = _load(s, test_id)
        if test.status != PLANNED:
            raise Conflict(f"field test {test_id} has ended")
        dep = test.deployment
        if dep.status == DeploymentStatus.ENDED:
            raise Conflict(f"deployment {dep.id} has ended")
        cameras = {c.name for c in dep.cameras}
        if any(v.label == label for v in test.volunteers):
            raise Conflict(f"field test {test_id} already has a volunteer {label!r}")
        if len(test.volunteers) >= MAX_VOLUNTEERS:
            raise RuleError(f"field test {test_id} is full ({MAX_VOLUNTEERS} volunteers)")
        watchlist_id = test.watchlist_id
        start, end = dep.planned_start, dep.planned_end
    for i, p in enumerate(passes, 1):
        if p.camera not in cameras:
            raise RuleError(f"pass {i}: camera {p.camera!r} is not in the plan (cameras: "
                            f"{', '.join(sorted(cameras)) or 'none'})", field="passes")
        if p.ends_at <= p.starts_at:
            raise RuleError(f"pass {i}: its end must be after its start", field="passes")
        if p.starts_at < start or p.ends_at > end:
            raise RuleError(f"pass {i}: outside the deployment's window ({_iso(start)} to "
                            f"{_iso(end)})", field="passes")
    if watchlist_id is None:
        raise Conflict(f"field test {test_id} has no test watchlist any more")
    subject = wls.add_subject(
        system, actor, watchlist_id, label, "other",
        f"Consenting volunteer of field test {test_id} (consent {consent_reference})",
        end + timedelta(days=1), [(image, image_source)])
    with db.session() as s:
        row = FieldTestVolunteer(field_test_id=test_id, label=label, subject_id=subject.id,
                                 consent_by=consent_by, consent_at=consent_at,
                                 consent_reference=consent_reference, age_band=age_band,
                                 sex=sex, ethnicity=ethnicity, added_by=actor.name)
        row.passes = [FieldTestPass(camera=p.camera, starts_at=p.starts_at, ends_at=p.ends_at)
                      for p in passes]
        s.add(row)
        s.flush()
        audit_log.record(s, actor.name, "fieldtest.volunteer_add", "field_test", test_id, {
            "volunteer": row.id, "subject": subject.id, "passes": len(passes),
            "cameras": sorted({p.camera for p in passes}),
            "self_declared": any(x is not None for x in (age_band, sex, ethnicity))})
        vol_id = row.id
    with db.reading() as s:
        test = _load(s, test_id)
        return next(v for v in _view(s, test).volunteers if v.id == vol_id)


@dataclass(frozen=True)
class EndResult:
    field_test_id: int
    report: FieldTestReport
    crops_purged: int
    watchlist_destroyed: bool
    purge_pending: bool


def end_field_test(system: System, actor: Actor, test_id: int,
                   now: datetime | None = None) -> EndResult:
    """End a field test: compute and store its report (a planned pass without an alert is a
    miss, whether or not it has happened yet), purge its test alerts' crops, and destroy its
    test watchlist (the volunteers' images and templates) as any watchlist is destroyed."""
    db = system.db
    require(db, actor, Perm.DEPLOYMENT_RUN, "field_test", str(test_id))
    now = now or utcnow()
    with db.session() as s:
        test = _load(s, test_id, lock=True)
        if test.status != PLANNED:
            raise Conflict(f"field test {test_id} has already ended")
        dep = test.deployment
        alerts = s.scalars(select(Alert).where(Alert.deployment_id == dep.id)).all()
        report = compute_report(test, dep, alerts, now)
        purged = 0
        for a in alerts:
            if a.field_test_id == test.id and a.crop_ct is not None:
                a.crop_ct = None
                a.purged_at = now
                purged += 1
        test.status = ENDED
        test.ended_by = actor.name
        test.ended_at = now
        test.report = json.dumps(report.as_json(), sort_keys=True)
        audit_log.record(s, actor.name, "fieldtest.end", "field_test", test.id, {
            "deployment": dep.id, "volunteers": report.overall.volunteers,
            "passes": report.overall.passes, "alerted": report.overall.tpir.k,
            "test_alerts": report.test_alerts, "crops_purged": purged})
        watchlist_id = test.watchlist_id
        wl = s.get(Watchlist, watchlist_id) if watchlist_id is not None else None
        destroy = wl is not None and wl.status != WatchlistStatus.DESTROYED
    destroyed, pending = True, False
    if destroy and watchlist_id is not None:
        done = wls.destroy_watchlist(system, SYSTEM_ACTOR, watchlist_id,
                                     f"field test {test_id} ended")
        destroyed, pending = done.destroyed, done.purge_pending
    return EndResult(test_id, report, purged, destroyed, pending)


# -- public and yearly -------------------------------------------------------------------------

def public_reports(session: Session, deployment_id: int) -> list[FieldTestReport]:
    """The ended field tests of a deployment, aggregate only (:meth:`FieldTestReport.public`)."""
    rows = session.scalars(select(FieldTest).where(
        FieldTest.deployment_id == deployment_id, FieldTest.status == ENDED,
        FieldTest.report.is_not(None)).order_by(FieldTest.id)).all()
    out = []
    for row in rows:
        report = _report(row)
        if report is not None:
            out.append(report.public())
    return out


def fieldtest_summary(session: Session, start: datetime, end: datetime
                      ) -> list[FieldTestReport]:
    """Every finished field test's report in a period, for the annual report.

    A field test is in the period when it **ended** (``field_tests.ended_at``, the time its
    report was computed and stored) at or after ``start`` and before ``end`` (both aware; the
    end is excluded, so consecutive years never count a test twice). Tests still planned are
    left out. Each report is :meth:`FieldTestReport.public`: overall and per self-declared
    group (groups of fewer than 5 volunteers with ``figures=None``), never a volunteer's own
    figures or label. Ordered by the time the test ended, then its id. Reads only; needs no
    actor (the caller checks who may read the annual report)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise RuleError("the period's start and end need their zone")
    rows = session.scalars(select(FieldTest).where(
        FieldTest.status == ENDED, FieldTest.report.is_not(None),
        FieldTest.ended_at >= start, FieldTest.ended_at < end)
        .order_by(FieldTest.ended_at, FieldTest.id)).all()
    out = []
    for row in rows:
        report = _report(row)
        if report is not None:
            out.append(report.public())
    return out
