"""The annual report: what a regulator or a police and crime panel receives about one year.

``openlfr report annual --year Y``, the console's *Annual report* page and
``GET /api/v1/reports/annual/{year}`` all call :func:`make_report`, which checks the
permission (``audit.read``: auditors, admins, authorising officers), records the making of the
report in the audit log (``report.annual``: who, which year, which formats, where it went) and
builds it. The same report is written as JSON, CSV and a printable HTML page; the three hold
the same figures, from one :class:`AnnualReport`.

The report is a list of sections, each built by one function of :data:`SECTIONS` from the
data and the audit log (the year is UTC, 1 January inclusive to the next 1 January exclusive):

* **deployments** and their authorisation basis: who authorised each, when, the jurisdiction
  profile in force then (from the ``profile.change`` entries before the authorisation) and
  every detail the ``deployment.authorise`` audit entry recorded; the profile in force now
  (:func:`openlfr.governance.profiles.active_profile`) and the profile changes of the year;
* **people**: faces seen and people passing, per camera (:mod:`openlfr.transparency.stats`);
* **alerts**: confirmed, false, no action, not decided, by month and per deployment;
* **outcomes**: the actions taken after alerts and the people engaged;
* **field tests** and **urgent uses**: from :func:`openlfr.governance.fieldtests.
  fieldtest_summary` and :func:`openlfr.governance.urgent.urgent_uses` when those modules are
  installed (else the section says none were recorded);
* **equality**: the yearly summary's equality figures (:mod:`openlfr.transparency.equality`);
* **questions**: residents' questions and objections received in the year, and what became of
  them (:func:`openlfr.governance.questions.question_counts`);
* **thresholds**: threshold floors recorded, deployments' thresholds changed, floor overrides
  recorded and confirmed (from the audit log);
* **integrity**: whether the audit chain verifies and the figures agree with it.

Which deployments are counted: the yearly summary's (:func:`openlfr.transparency.public.
year_summary`: public deployments that ran and started in the year); its totals are the
report's. The deployments table also lists, not counted in the totals, those authorised or
started in the year that the summary does not count (authorised but not run yet, or running
while an urgency reason keeps them off the public pages).

Figures about people follow the suppression rule of :mod:`openlfr.transparency.equality`: the
outcomes (one column, by action) and the people engaged show 1 to 4 as "fewer than 5"; the
equality figures come suppressed from that module. Counts of alerts, people passing and faces
are the public pages' counts, as published.
"""

from __future__ import annotations

import calendar
import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session

from openlfr import __version__
from openlfr.audit import log as audit_log
from openlfr.audit.entry import AuditEntry
from openlfr.errors import InvalidInput
from openlfr.governance.authz import Actor, Perm, require
from openlfr.governance.fieldtests import ATTRIBUTES, fieldtest_summary
from openlfr.governance.profiles import DEFAULT_PROFILE, active_profile
from openlfr.governance.questions import question_counts
from openlfr.governance.urgent import urgent_uses
from openlfr.governance.views import ACTION_WORDS, label, words
from openlfr.store.db import Database
from openlfr.store.enums import Action, DeploymentStatus
from openlfr.store.models import Deployment
from openlfr.transparency.equality import FEWER, SUPPRESS_BELOW, suppress
from openlfr.transparency.public import YearSummary, list_public, year_summary
from openlfr.transparency.stats import (
    DeploymentFigures,
    check_against_audit,
    deployment_stats,
)

REPORT_FORMAT = "openlfr-annual-report-v1"
#: The formats a report is written in.
FORMATS = ("json", "csv", "html")
#: The first year a report may be asked for.
MIN_YEAR = 2000
#: The columns of the CSV (one line per figure: the "long" form, one table for every section).
CSV_COLUMNS = ("section", "table", "row", "field", "value")
#: The audit action of making a report.
REPORT_ACTION = "report.annual"

Value = int | float | str | bool | None
Shown = int | str  # a count, or why it is not shown (suppression)

TEMPLATES = Path(__file__).with_name("templates")
#: Columns holding a stored code (a group, an action, a status): the printed page shows their
#: words (:func:`openlfr.governance.views.words`), the JSON and the CSV the code.
CODE_COLUMNS = frozenset({"group", "action", "kind", "status"})
MONTHS_OF_YEAR = tuple(calendar.month_name[m] for m in range(1, 13))


# -- the report's shape -------------------------------------------------------------------------

@dataclass(frozen=True)
class Fact:
    key: str
    label: str
    value: Value


@dataclass
class Table:
    key: str
    title: str
    columns: list[tuple[str, str]]  # (key, heading)
    rows: list[dict[str, Value]] = field(default_factory=list)
    #: "rows": a table; "cards": one block per row (many columns), for the printed page.
    layout: str = "rows"

    def as_json(self) -> list[dict[str, Value]]:
        return [{k: row.get(k) for k, _ in self.columns} for row in self.rows]


@dataclass
class Section:
    key: str
    title: str
    intro: str = ""
    facts: list[Fact] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def fact(self, key: str, text: str, value: Value) -> None:
        self.facts.append(Fact(key, text, value))

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "intro": self.intro,
                "figures": {f.key: f.value for f in self.facts},
                "tables": {t.key: t.as_json() for t in self.tables}, "notes": self.notes}


@dataclass
class AnnualReport:
    year: int
    generated_at: str
    generated_by: str
    audit_seq: int  # the seq of the report.annual entry recording its making
    responsible_body: str
    profile: str  # the jurisdiction profile in force when made
    sections: list[Section]

    def section(self, key: str) -> Section:
        for s in self.sections:
            if s.key == key:
                return s
        raise KeyError(key)

    def as_json(self) -> dict[str, Any]:
        return {"format": REPORT_FORMAT, "year": self.year, "generated_at": self.generated_at,
                "generated_by": self.generated_by, "audit_seq": self.audit_seq,
                "responsible_body": self.responsible_body, "profile": self.profile,
                "software": f"openlfr {__version__}",
                "sections": [s.as_json() for s in self.sections]}

    def to_json(self) -> str:
        return json.dumps(self.as_json(), indent=1, ensure_ascii=False) + "\n"

    def csv_lines(self) -> Iterator[list[str]]:
        """The report's lines (:data:`CSV_COLUMNS`): the report's own facts (section
        ``report``), then each section's figures (table ``figures``) and tables' cells."""
        for key in ("year", "generated_at", "generated_by", "audit_seq", "responsible_body",
                    "profile"):
            yield ["report", "", "", key, _cell(getattr(self, key))]
        for s in self.sections:
            for f in s.facts:
                yield [s.key, "figures", "", f.key, _cell(f.value)]
            for t in s.tables:
                for n, row in enumerate(t.rows, 1):
                    for k, _ in t.columns:
                        yield [s.key, t.key, str(n), k, _cell(row.get(k))]
            for n, note in enumerate(s.notes, 1):
                yield [s.key, "notes", str(n), "note", _cell(note)]

    def to_csv(self) -> str:
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        for line in self.csv_lines():
            writer.writerow([safe_cell(c) for c in line])
        return buffer.getvalue()

    def to_html(self) -> str:
        return _environment().get_template("annual_report.html").render(r=self)

    def render(self, fmt: str) -> str:
        return {"json": self.to_json, "csv": self.to_csv, "html": self.to_html}[fmt]()

    def filename(self, fmt: str) -> str:
        return report_filename(self.year, fmt)


def report_filename(year: int, fmt: str) -> str:
    return f"annual-report-{year}.{fmt}"


#: A CSV cell starting with one of these is read as a formula by spreadsheets (as the audit
#: export, :func:`openlfr.governance.auditing.safe_cell`): written with a leading apostrophe.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text


def _cell(value: Value) -> str:
    """A value as the CSV writes it: JSON's spelling for numbers and booleans, empty for
    none, text as it is (a leading formula character is neutralised by :func:`safe_cell`)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- the HTML page ------------------------------------------------------------------------------

def _shown(value: Value) -> str:
    """A value on the printed page."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.6g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3g}"
    return value


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)),
                      autoescape=select_autoescape(["html"]), trim_blocks=True,
                      lstrip_blocks=True)
    env.filters["shown"] = _shown
    env.filters["label"] = label
    env.filters["words"] = words
    env.globals["code_columns"] = CODE_COLUMNS
    return env


# -- the year -----------------------------------------------------------------------------------

def check_year(year: object, now: datetime | None = None) -> int:
    """``year`` as a whole year from :data:`MIN_YEAR` to this year, or :class:`InvalidInput`
    naming it."""
    this = (now or datetime.now(UTC)).year
    text = str(year).strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 6:
        raise InvalidInput(f"year {text!r}: a year is four digits, like {this}", field="year")
    value = int(text)
    if value < MIN_YEAR or value > this:
        raise InvalidInput(f"year {value}: choose a year from {MIN_YEAR} to {this} (a report "
                           "covers a year that has begun)", field="year")
    return value


def check_formats(formats: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(f.strip().lower() for f in formats))
    bad = [f for f in chosen if f not in FORMATS]
    if bad or not chosen:
        raise InvalidInput(f"format {', '.join(bad) or 'none'}: choose from "
                           f"{', '.join(FORMATS)}", field="format")
    return chosen


# -- making it ----------------------------------------------------------------------------------

def report_years(db: Database, actor: Actor, now: datetime | None = None) -> list[int]:
    """The years a report may be asked for that have a deployment, newest first (this year
    always first); for the console's choice. Needs ``audit.read``."""
    require(db, actor, Perm.AUDIT_READ, "report", "annual")
    this = (now or datetime.now(UTC)).year
    with db.reading() as s:
        starts = s.scalars(select(Deployment.planned_start)).all()
    years = {w.year for w in starts if MIN_YEAR <= w.year <= this}
    return sorted(years | {this}, reverse=True)


def make_report(db: Database, actor: Actor, year: object, *, out: str,
                formats: Sequence[str] = FORMATS, responsible_body: str = "",
                now: datetime | None = None) -> AnnualReport:
    """The annual report of ``year``, its making audited (``report.annual``: the year, the
    ``formats`` it is written in and ``out``, where it goes: a folder, ``web``, ``api``).
    The year and formats are checked first; nothing is recorded for a bad one."""
    require(db, actor, Perm.AUDIT_READ, "report", str(year)[:12])
    chosen = check_year(year, now)
    fmts = check_formats(formats)
    with db.session() as s:
        entry = audit_log.record(s, actor.name, REPORT_ACTION, "report", f"annual-{chosen}",
                                 {"year": chosen, "formats": list(fmts), "out": out})
        seq = entry.seq
    return build_report(db, chosen, made_by=actor.name, audit_seq=seq,
                        responsible_body=responsible_body, now=now)


def build_report(db: Database, year: int, *, made_by: str = "", audit_seq: int = 0,
                 responsible_body: str = "", now: datetime | None = None) -> AnnualReport:
    """The report's sections, from the data and the audit log (no permission check, nothing
    recorded: :func:`make_report` is the way in)."""
    listed = list_public(db)
    summary = year_summary(db, year, listed)
    with db.reading() as s:
        ctx = _Context(s, year, summary, now or datetime.now(UTC))
        sections = [build(ctx) for _, build in SECTIONS]
        profile = active_profile(s).value
    return AnnualReport(year=year, generated_at=ctx.now.isoformat(timespec="seconds"),
                        generated_by=made_by, audit_seq=audit_seq,
                        responsible_body=responsible_body, profile=profile,
                        sections=sections)


class _Context:
    """What the sections read, read once."""

    def __init__(self, s: Session, year: int, summary: YearSummary, now: datetime) -> None:
        self.s, self.year, self.summary, self.now = s, year, summary, now
        self.start = datetime(year, 1, 1, tzinfo=UTC)
        self.end = datetime(year + 1, 1, 1, tzinfo=UTC)
        self.entries: list[AuditEntry] = list(audit_log.entries(s))
        self.stats: dict[int, DeploymentFigures] = {
            f.deployment_id: f for f in deployment_stats(s, now=now)}
        counted = set(summary.deployment_ids)
        self.counted: list[int] = list(summary.deployment_ids)
        self.others: list[int] = []
        for dep in s.scalars(select(Deployment).order_by(Deployment.id)):
            if dep.id in counted or dep.status == DeploymentStatus.DRAFT:
                continue
            if self._in_year(dep.started_at) or self._in_year(dep.authorised_at):
                self.others.append(dep.id)

    def _in_year(self, when: datetime | None) -> bool:
        return when is not None and self.start <= when < self.end

    def of_year(self, entry: AuditEntry) -> bool:
        return entry.time[:4] == str(self.year)


# -- the sections -------------------------------------------------------------------------------

def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat(timespec="seconds")


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Value]]:
    """Nested details as (dotted key, scalar) pairs; a list of scalars joined by commas."""
    if isinstance(value, Mapping):
        for k in sorted(value):
            yield from _flatten(value[k], f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list | tuple):
        if all(not isinstance(v, Mapping | list | tuple) for v in value):
            yield prefix, ", ".join(str(v) for v in value)
        else:
            for n, v in enumerate(value, 1):
                yield from _flatten(v, f"{prefix}.{n}")
    elif value is None or isinstance(value, bool | int | float | str):
        yield prefix, value
    else:
        yield prefix, str(value)


def _authorisations(ctx: _Context) -> dict[int, tuple[AuditEntry, str]]:
    """Per deployment, its latest ``deployment.authorise`` entry and the profile in force
    then (the last ``profile.change`` before it, else the default)."""
    profile = DEFAULT_PROFILE.value
    out: dict[int, tuple[AuditEntry, str]] = {}
    for e in ctx.entries:
        if e.action == "profile.change":
            profile = str(e.details.get("to") or profile)
        elif e.action == "deployment.authorise" and e.object_id.isdigit():
            out[int(e.object_id)] = (e, profile)
    return out


DEPLOYMENT_COLUMNS: list[tuple[str, str]] = [
    ("id", "Deployment"), ("name", "Name"), ("site", "Site"), ("location", "Location"),
    ("status", "Status"), ("in_totals", "Counted in the year's totals"),
    ("not_counted_why", "Why not counted"),
    ("planned_start", "Planned start"), ("planned_end", "Planned end"),
    ("started_at", "Started"), ("ended_at", "Ended"), ("hours", "Hours analysed"),
    ("purpose", "Purpose"), ("legal_basis", "Legal basis"), ("dpia_ref", "DPIA reference"),
    ("equality_ref", "Equality impact assessment"),
    ("authorised_by", "Authorised by"), ("authorised_at", "Authorised at"),
    ("profile_at_authorisation", "Jurisdiction profile at authorisation"),
    ("authorisation_audit_seq", "Authorisation audit entry (seq)"),
    ("threshold", "Threshold"), ("model_id", "Model"),
    ("floor_at_authorisation", "Floor at authorisation"), ("floor_source", "Floor source"),
    ("threshold_override", "Threshold below the floor (override)"),
    ("override_recorded_by", "Override recorded by"),
    ("override_confirmed_by", "Override confirmed by"),
    ("watchlist_size", "Watchlist size at authorisation"), ("cameras", "Cameras"),
    ("two_person_rule", "Two-person rule"), ("signage", "Signage"),
    ("public_notice", "Advance public notice"), ("urgency_reason", "Urgency reason"),
    ("people_passing", "People passing"), ("faces_seen", "Faces seen"),
    ("alerts", "Alerts"), ("confirmed", "Confirmed"), ("false_alerts", "False alerts"),
]


def _deployments(ctx: _Context) -> Section:
    sec = Section("deployments", "Deployments and their authorisation", (
        f"Every deployment that ran and started in {ctx.year} (counted in the year's "
        "totals), and those authorised or started in the year that the totals do not count. "
        "For each: who authorised it, when, under which jurisdiction profile, and what the "
        "authorisation recorded in the audit log."))
    auth = _authorisations(ctx)
    rows = {d.id: d for d in ctx.s.scalars(
        select(Deployment).where(Deployment.id.in_(ctx.counted + ctx.others)))}
    table = Table("deployments", "Deployments", DEPLOYMENT_COLUMNS, layout="cards")
    records = Table("authorisations", "What each authorisation recorded (audit log)",
                    [("deployment", "Deployment"), ("audit_seq", "Audit entry (seq)"),
                     ("field", "Field"), ("value", "Value")])
    for dep_id in ctx.counted + ctx.others:
        dep, fig = rows[dep_id], ctx.stats[dep_id]
        found = auth.get(dep_id)
        entry, profile = found if found else (None, None)
        details = entry.details if entry else {}
        in_totals = dep_id in ctx.counted
        why = None
        if not in_totals:
            why = ("authorised, has not run yet" if dep.started_at is None
                   else "started in another year" if not ctx._in_year(dep.started_at)
                   else "not public yet: an urgency reason keeps it off the public pages "
                        "until it ends" if dep.urgency_reason
                   else "not public")
        table.rows.append({
            "id": dep.id, "name": dep.name, "site": dep.site, "location": dep.location,
            "status": dep.status.value, "in_totals": in_totals, "not_counted_why": why,
            "planned_start": _iso(dep.planned_start), "planned_end": _iso(dep.planned_end),
            "started_at": _iso(dep.started_at), "ended_at": _iso(dep.ended_at),
            "hours": fig.actual_hours, "purpose": dep.purpose, "legal_basis": dep.legal_basis,
            "dpia_ref": dep.dpia_ref, "equality_ref": dep.equality_ref,
            "authorised_by": dep.authorised_by or (entry.actor if entry else None),
            "authorised_at": _iso(dep.authorised_at) or (entry.time if entry else None),
            "profile_at_authorisation": profile,
            "authorisation_audit_seq": entry.seq if entry else None,
            "threshold": dep.threshold, "model_id": dep.model_id,
            "floor_at_authorisation": _str_or_none(details.get("floor")),
            "floor_source": _str_or_none(details.get("floor_source")),
            "threshold_override": bool(details.get("override")),
            "override_recorded_by": dep.threshold_override_by,
            "override_confirmed_by": dep.threshold_override_confirmed_by,
            "watchlist_size": fig.watchlist_size, "cameras": len(fig.cameras),
            "two_person_rule": dep.two_person_rule, "signage": dep.signage,
            "public_notice": dep.public_notice, "urgency_reason": dep.urgency_reason,
            "people_passing": fig.tracks, "faces_seen": fig.faces_seen, "alerts": fig.alerts,
            "confirmed": fig.confirmed, "false_alerts": fig.false_alerts})
        if entry is not None:
            for key, value in _flatten(entry.details):
                records.rows.append({"deployment": dep.id, "audit_seq": entry.seq,
                                     "field": key, "value": value})
    changes = Table("profile_changes", f"Jurisdiction profile changes in {ctx.year}",
                    [("audit_seq", "Audit entry (seq)"), ("time", "When"), ("by", "By"),
                     ("from", "From"), ("to", "To")])
    for e in ctx.entries:
        if e.action == "profile.change" and ctx.of_year(e):
            changes.rows.append({"audit_seq": e.seq, "time": e.time, "by": e.actor,
                                 "from": _str_or_none(e.details.get("from")),
                                 "to": _str_or_none(e.details.get("to"))})
    sec.fact("counted", f"Deployments counted in {ctx.year}", len(ctx.counted))
    sec.fact("not_counted", "Other deployments authorised or started in the year",
             len(ctx.others))
    sec.fact("profile_now", "Jurisdiction profile in force now", active_profile(ctx.s).value)
    sec.fact("profile_changes", "Profile changes in the year", len(changes.rows))
    sec.tables += [table, records, changes]
    if not table.rows:
        sec.notes.append(f"No deployment was authorised or ran in {ctx.year}.")
    return sec


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _people(ctx: _Context) -> Section:
    t = ctx.summary.totals
    sec = Section("people", "Faces seen and people passing", (
        "People passing are counted by following each face across frames (one track per "
        "person the tracker followed: someone who leaves and comes back is counted twice, "
        "someone whose face is never detected not at all). Faces seen are the detector's "
        "count of faces, frame by frame: a technical figure, many times the number of "
        "people."))
    sec.fact("hours", "Hours analysed", round(t.hours, 3))
    sec.fact("people_passing", "People passing", t.people_passing)
    sec.fact("faces_seen", "Faces seen (detections, frame by frame)", t.faces_seen)
    cams = Table("cameras", "Per camera", [
        ("deployment", "Deployment"), ("camera", "Camera"), ("in_totals", "Counted"),
        ("hours", "Hours analysed"), ("frames", "Frames"), ("faces_seen", "Faces seen"),
        ("people_passing", "People passing"), ("dropped_frames", "Dropped frames")])
    for dep_id in ctx.counted + ctx.others:
        for cam in ctx.stats[dep_id].cameras:
            cams.rows.append({"deployment": dep_id, "camera": cam.camera,
                              "in_totals": dep_id in ctx.counted,
                              "hours": round(cam.seconds / 3600.0, 3), "frames": cam.frames,
                              "faces_seen": cam.faces_seen, "people_passing": cam.tracks,
                              "dropped_frames": cam.dropped_frames})
    sec.tables.append(cams)
    return sec


def _alerts(ctx: _Context) -> Section:
    t = ctx.summary.totals
    sec = Section("alerts", "Alerts, confirmed and false", (
        "An alert is a possible match that people reviewed: confirmed (the person on the "
        "watchlist), false (rejected), no action, or not decided yet. The false-alert rate "
        "is per person passing; the share is of decided alerts."))
    for key, text, value in (
            ("alerts", "Alerts", t.alerts), ("confirmed", "Confirmed", t.confirmed),
            ("false_alerts", "False alerts", t.false_alerts),
            ("no_action", "No action", t.no_action), ("pending", "Not decided yet", t.pending),
            ("false_alert_rate", "False alerts per person passing", t.false_alert_rate),
            ("false_alert_share", "Share of decided alerts that were false",
             t.false_alert_share)):
        sec.fact(key, text, value)
    months = Table("months", "By month (the month a deployment started)", [
        ("month", "Month"), ("people_passing", "People passing"), ("alerts", "Alerts"),
        ("confirmed", "Confirmed"), ("false_alerts", "False alerts"),
        ("no_action", "No action"), ("pending", "Not decided")])
    for name, m in zip(MONTHS_OF_YEAR, ctx.summary.months, strict=True):
        months.rows.append({"month": name, "people_passing": m.people_passing,
                            "alerts": m.alerts, "confirmed": m.confirmed,
                            "false_alerts": m.false_alerts, "no_action": m.no_action,
                            "pending": m.pending})
    per = Table("per_deployment", "Per deployment", [
        ("deployment", "Deployment"), ("name", "Name"), ("in_totals", "Counted"),
        ("alerts", "Alerts"), ("confirmed", "Confirmed"), ("false_alerts", "False alerts"),
        ("no_action", "No action"), ("pending", "Not decided")])
    for dep_id in ctx.counted + ctx.others:
        f = ctx.stats[dep_id]
        per.rows.append({"deployment": dep_id, "name": f.name,
                         "in_totals": dep_id in ctx.counted, "alerts": f.alerts,
                         "confirmed": f.confirmed, "false_alerts": f.false_alerts,
                         "no_action": f.no_action, "pending": f.pending})
    sec.tables += [months, per]
    return sec


def count_shown(n: int) -> Shown:
    """A count about people published on its own: 1 to 4 is "fewer than 5"
    (:mod:`openlfr.transparency.equality`'s rule)."""
    return FEWER if 0 < n < SUPPRESS_BELOW else n


OUTCOME_WORDS = {Action.NONE: "No further action", Action.ADVICE: "Advice given",
                 Action.ARREST: "Arrest", Action.OTHER: "Other action"}


def _outcomes(ctx: _Context) -> Section:
    t = ctx.summary.totals
    sec = Section("outcomes", "Outcomes", (
        "What happened after alerts, as the officers recorded it: the people engaged (spoken "
        "to) and the action taken. These figures are about people: counts from 1 to "
        f"{SUPPRESS_BELOW - 1} are shown as \"{FEWER}\", and the column follows the "
        "equality figures' rule."))
    actions = [a for a in Action]
    shown = suppress([int(t.outcomes.get(a.value, 0)) for a in actions])
    sec.fact("engaged", "People engaged", count_shown(t.engaged))
    sec.fact("outcomes_recorded", "Outcomes recorded",
             count_shown(sum(int(t.outcomes.get(a.value, 0)) for a in actions)))
    table = Table("actions", "By action taken", [("action", "Action"),
                                                 ("label", "In words"), ("count", "Count")])
    for a, n in zip(actions, shown, strict=True):
        table.rows.append({"action": a.value, "label": OUTCOME_WORDS.get(a, label(a)),
                           "count": n})
    sec.tables.append(table)
    return sec


def _rate_text(rate: Any) -> str:
    return str(rate.text())


def _fieldtests(ctx: _Context) -> Section:
    sec = Section("field_tests", "Field tests", (
        "Tests with consenting volunteers walking past a live deployment: how many of their "
        "planned passes gave an alert (TPIR), how fast, and how many passes saw an alert "
        "against the operational watchlist, overall and per self-declared group, with "
        "Clopper–Pearson 95 % intervals. Groups of fewer than 5 volunteers are not shown."))
    reports = fieldtest_summary(ctx.s, ctx.start, ctx.end)
    sec.fact("recorded", "Field tests ended", len(reports))
    if not reports:
        sec.notes.append(f"No field test ended in {ctx.year}.")
        return sec
    cols = [("field_test", "Field test"), ("deployment", "Deployment"), ("who", "Who"),
            ("volunteers", "Volunteers"), ("passes", "Passes"),
            ("tpir", "Passes alerted (TPIR)"),
            ("median_seconds", "Median time to alert (s)"),
            ("operational", "Passes with an operational false alert")]
    rows: list[dict[str, Value]] = []
    for r in reports:
        where = {"field_test": r.field_test_id, "deployment": r.deployment_id}
        groups: list[tuple[str, Any, int | str]] = [("All volunteers", r.overall,
                                                     r.overall.volunteers)]
        groups += [(f"{ATTRIBUTES.get(g.attribute, g.attribute).capitalize()}: {g.label}",
                    g.figures, g.shown) for g in r.groups]
        for who, fig, shown in groups:
            if fig is None:
                rows.append({**where, "who": who, "volunteers": shown, "passes": "not shown",
                             "tpir": "not shown", "median_seconds": None,
                             "operational": "not shown"})
                continue
            rows.append({**where, "who": who, "volunteers": fig.volunteers,
                         "passes": fig.passes, "tpir": _rate_text(fig.tpir),
                         "median_seconds": None if fig.median_seconds is None
                         else round(fig.median_seconds, 2),
                         "operational": _rate_text(fig.operational)})
    sec.tables.append(Table("results", "Results per test and group", cols, rows))
    sec.notes.append(reports[0].time_basis)
    return sec


def _urgent(ctx: _Context) -> Section:
    sec = Section("urgent_uses", "Urgent uses", (
        "Deployments started without prior authorisation on a recorded urgency "
        "justification (eu-ai-act profile), and whether authorisation followed within 24 "
        "hours. A use refused or not authorised in time was stopped and its results deleted."))
    uses = urgent_uses(ctx.s, ctx.start, ctx.end)
    sec.fact("recorded", "Urgent uses started", len(uses))
    for outcome in ("authorised", "refused", "expired", "waiting"):
        sec.fact(outcome, f"{outcome.capitalize()}",
                 sum(1 for u in uses if u.outcome == outcome))
    if not uses:
        sec.notes.append(f"No urgent use was started in {ctx.year}.")
        return sec
    cols = [("deployment", "Deployment"), ("name", "Name"), ("started_at", "Started"),
            ("started_by", "Started by"), ("justification", "Justification"),
            ("outcome", "Outcome"), ("decided_by", "Decided by"),
            ("decided_at", "Decided"), ("results_deleted_at", "Results deleted"),
            ("alerts_deleted", "Alerts deleted")]
    sec.tables.append(Table("uses", "Each urgent use", cols, [
        {"deployment": u.deployment_id, "name": u.deployment_name,
         "started_at": _iso(u.started_at), "started_by": u.started_by,
         "justification": u.justification, "outcome": u.outcome,
         "decided_by": u.decided_by, "decided_at": _iso(u.decided_at),
         "results_deleted_at": _iso(u.results_deleted_at),
         "alerts_deleted": u.alerts_deleted} for u in uses], layout="cards"))
    return sec


def _equality(ctx: _Context) -> Section:
    q = ctx.summary.equality
    sec = Section("equality", "Equality monitoring of false alerts", (
        "False alerts by the officer's perception of the person's ethnic group (the five "
        "groups of the 2021 census) and sex, whether the person was stopped and for how "
        "long; beside the false-match rates measured per group for each model used."))
    if q is None:
        sec.notes.append("No equality figures.")
        return sec
    sec.fact("false_alerts", "False alerts", q.false_alerts)
    sec.fact("with_outcome", "With an outcome recorded", q.with_outcome)
    sec.fact("stopped", "People stopped after a false alert", q.stopped)
    cols = [("group", "Group"), ("label", "In words"), ("false_alerts", "False alerts"),
            ("stopped", "Stopped")]
    for key, title, rows in (("ethnicity", "By perceived ethnic group", q.ethnicity),
                             ("sex", "By perceived sex", q.sex)):
        sec.tables.append(Table(key, title, cols, [
            {"group": r.code, "label": r.label, "false_alerts": r.false_alerts,
             "stopped": r.stopped} for r in rows]))
    sec.tables.append(Table("stop_lengths", "Length of stops", [
        ("length", "Length"), ("stops", "Stops")],
        [{"length": k, "stops": v} for k, v in q.stop_lengths]))
    models = Table("models", "Measured false-match rates per group", [
        ("model_id", "Model"), ("floor", "Floor"), ("calibrated", "Calibrated"),
        ("measurement", "Measurement")])
    for m in q.models:
        for sentence in m.sentences():
            models.rows.append({"model_id": m.model_id, "floor": m.floor,
                                "calibrated": m.calibrated, "measurement": sentence})
    sec.tables.append(models)
    sec.notes += [q.suppression_rule, q.caveat]
    return sec


def _questions(ctx: _Context) -> Section:
    sec = Section("questions", "Questions and objections from residents", (
        f"Questions and objections sent from the public pages in {ctx.year} (about any "
        "deployment), and what became of them by the time this report was made."))
    counts = question_counts(ctx.s, ctx.start, ctx.end)
    table = Table("by_kind", "By kind", [
        ("kind", "Kind"), ("received", "Received"), ("answered", "Answered"),
        ("closed_unanswered", "Closed without an answer"), ("open", "Still open"),
        ("published", "Answer published"),
        ("median_days_to_answer", "Median days to answer")])
    for c in counts:
        table.rows.append(asdict(c))
    sec.fact("received", "Received", sum(c.received for c in counts))
    sec.fact("answered", "Answered", sum(c.answered for c in counts))
    sec.fact("open", "Still open", sum(c.open for c in counts))
    sec.tables.append(table)
    return sec


#: The audit actions of the thresholds section.
THRESHOLD_ACTIONS = ("floor.record", "deployment.threshold_override",
                     "deployment.threshold_override_confirm", "deployment.edit")


def _thresholds(ctx: _Context) -> Section:
    sec = Section("thresholds", "Threshold changes and overrides", (
        "From the audit log: threshold floors recorded for a model (a calibration), "
        "deployments' thresholds changed, and thresholds below the floor allowed by an "
        "override (recorded by one authorising officer, confirmed by another)."))
    table = Table("changes", f"In {ctx.year}", [
        ("audit_seq", "Audit entry (seq)"), ("time", "When"), ("action", "What"),
        ("by", "By"), ("deployment", "Deployment"), ("model_id", "Model"),
        ("threshold", "Threshold"), ("previous", "Previous"), ("floor", "Floor"),
        ("reason", "Reason")])
    last: dict[str, str] = {}  # deployment → its last threshold, from create/edit entries
    counts = dict.fromkeys(THRESHOLD_ACTIONS, 0)
    for e in ctx.entries:
        d = e.details
        if e.action == "deployment.create":
            last[e.object_id] = str(d.get("threshold"))
            continue
        if e.action not in THRESHOLD_ACTIONS:
            continue
        previous: str | None = None
        if e.action == "deployment.edit":
            changed = d.get("changed")
            if not (isinstance(changed, list) and {"threshold", "model_id"} & set(changed)):
                last[e.object_id] = str(d.get("threshold"))
                continue
            previous = last.get(e.object_id)
            last[e.object_id] = str(d.get("threshold"))
        elif e.action == "floor.record":
            previous = _str_or_none(d.get("previous"))
        if not ctx.of_year(e):
            continue
        counts[e.action] += 1
        table.rows.append({
            "audit_seq": e.seq, "time": e.time, "action": ACTION_WORDS.get(e.action, e.action),
            "by": e.actor,
            "deployment": int(e.object_id) if e.object_type == "deployment" else None,
            "model_id": _str_or_none(d.get("model_id")),
            "threshold": _str_or_none(d.get("threshold")), "previous": previous,
            "floor": _str_or_none(d.get("floor")), "reason": _str_or_none(d.get("reason"))})
    sec.fact("floors_recorded", "Threshold floors recorded", counts["floor.record"])
    sec.fact("threshold_changes", "Deployment thresholds (or models) changed",
             counts["deployment.edit"])
    sec.fact("overrides_recorded", "Overrides of the floor recorded",
             counts["deployment.threshold_override"])
    sec.fact("overrides_confirmed", "Overrides of the floor confirmed",
             counts["deployment.threshold_override_confirm"])
    sec.tables.append(table)
    return sec


def _integrity(ctx: _Context) -> Section:
    sec = Section("integrity", "Checked against the audit log", (
        "Whether the tamper-evident audit log verifies, and whether the alert, decision "
        "and outcome figures of the tables agree with it."))
    chain = audit_log.verify(ctx.s)
    problems = check_against_audit(ctx.s)
    sec.fact("chain_ok", "The audit chain verifies", chain.ok)
    sec.fact("chain_entries", "Audit entries checked", chain.entries)
    sec.fact("head_hash", "Hash of the last entry", chain.head_hash)
    sec.fact("figures_agree", "The figures agree with the audit log", not problems)
    if chain.problem:
        sec.notes.append(f"Audit chain: {chain.problem}")
    sec.notes += problems
    return sec


#: The sections, in order: each built by one function from the year's context.
SECTIONS: tuple[tuple[str, Callable[[_Context], Section]], ...] = (
    ("deployments", _deployments),
    ("people", _people),
    ("alerts", _alerts),
    ("outcomes", _outcomes),
    ("field_tests", _fieldtests),
    ("urgent_uses", _urgent),
    ("equality", _equality),
    ("questions", _questions),
    ("thresholds", _thresholds),
    ("integrity", _integrity),
)


def write_report(report: AnnualReport, folder: Path,
                 formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write ``report`` into ``folder`` (made if missing), one file per format; the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in formats:
        path = folder / report.filename(fmt)
        path.write_text(report.render(fmt), encoding="utf-8", newline="")
        out.append(path)
    return out
