"""Equality monitoring of false alerts, as the public pages publish it: counts per group and per
year, never a record about one person.

What is counted
---------------
A **false alert** is an alert rejected as false, or a confirmed alert whose outcome says the
engaged person turned out not to be the subject. Its outcome may record whether the person was
stopped, for how long, and an officer's perception of their ethnic group (the five high-level
groups of the 2021 census of England and Wales) and sex
(:func:`openlfr.governance.alerts.record_outcome`). The counts are over the public deployments
that ran and started in the year (the yearly summary's deployments); a false alert with no
outcome, or no perception recorded, counts as "not recorded".

Small-number suppression
------------------------
So that a single person cannot be picked out, in every published column:

* a count from 1 to 4 is shown as "fewer than 5" (:data:`SUPPRESS_BELOW`); 0 is shown as 0;
* when exactly one count in a column is hidden so, the next smallest non-zero count of that
  column is hidden too ("withheld"), or the published total would give it away by subtraction;
* when the column's total itself is from 1 to 4, no count of that column is broken down at all
  (every group "fewer than 5 in all"), since even the zeros would tell the group of those few.

The comparison with the measured false-match rates
--------------------------------------------------
Beside the counts stands what the evaluation measured for each model the year's deployments
used: the per-group false-match rates of the calibration recorded with the model's floor
(``fairness`` in the floor's evidence, :mod:`openlfr.evaluation.calibrate`). The two are not
the same groups: the evaluation's groups are the labels of a photo collection, the false
alerts' groups an officer's perception in census categories; and who gets a false alert also
depends on who walks past the cameras and who is on the watchlist. The page says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from openlfr.governance.views import ETHNICITY_WORDS
from openlfr.store.enums import AlertStatus, PerceivedEthnicity, PerceivedSex
from openlfr.store.models import Alert, Outcome

#: Counts below this (and above 0) are not published.
SUPPRESS_BELOW = 5
FEWER = f"fewer than {SUPPRESS_BELOW}"
WITHHELD = "withheld"
NOT_BROKEN_DOWN = f"fewer than {SUPPRESS_BELOW} in all"

SEX_WORDS: dict[str, str] = {PerceivedSex.FEMALE: "Female", PerceivedSex.MALE: "Male",
                             PerceivedSex.NOT_RECORDED: "Not recorded"}

#: The stop lengths published, in minutes (upper bounds; the last is open).
STOP_BANDS: tuple[tuple[str, int | None], ...] = (
    ("up to 5 minutes", 5), ("6 to 15 minutes", 15), ("16 to 30 minutes", 30),
    ("over 30 minutes", None))

Shown = int | str  # a count, or why it is not shown


def suppress(counts: Sequence[int]) -> list[Shown]:
    """One column's counts as published (the rules in the module's documentation)."""
    total = sum(counts)
    if 0 < total < SUPPRESS_BELOW:
        return [NOT_BROKEN_DOWN] * len(counts)
    shown: list[Shown] = [FEWER if 0 < n < SUPPRESS_BELOW else n for n in counts]
    hidden = [i for i, n in enumerate(counts) if 0 < n < SUPPRESS_BELOW]
    if len(hidden) == 1:
        rest = [(n, i) for i, n in enumerate(counts) if n > 0 and i != hidden[0]]
        if rest:
            shown[min(rest)[1]] = WITHHELD
    return shown


def _one(n: int) -> Shown:
    """A count published on its own (a column's total): 1 to 4 is "fewer than 5"."""
    return FEWER if 0 < n < SUPPRESS_BELOW else n


@dataclass
class GroupRow:
    code: str
    label: str
    false_alerts: Shown
    stopped: Shown


@dataclass
class ModelGroups:
    """What a model's recorded calibration measured per group, at its floor."""

    model_id: str
    floor: float
    calibrated: bool
    measured_on: str = ""
    #: attribute → [(group, FMR or None when no impostor pairs)]
    attributes: dict[str, list[tuple[str, float | None]]] = field(default_factory=dict)

    def sentences(self) -> list[str]:
        """The measurement in words residents can read, one sentence per attribute."""
        if not self.calibrated or not self.attributes:
            return [f"Model {self.model_id}: no false-match rates per group are recorded "
                    "with its floor (only a calibration with `openlfr calibrate` on the "
                    "operator's own photos records them)."]
        out = []
        for attr, groups in self.attributes.items():
            rated = [(r, g) for g, r in groups if r is not None]
            if not rated:
                continue
            hi_rate, hi = max(rated)
            lo_rate, lo = min(rated)
            text = (f"Model {self.model_id} at its floor {self.floor:g}, tested on "
                    f"{self.measured_on}, groups by {attr}: the false-match rate was highest "
                    f"for {hi} ({_per_million(hi_rate)}) and lowest for {lo} "
                    f"({_per_million(lo_rate)})")
            if lo_rate > 0 and hi != lo:
                text += f", {hi_rate / lo_rate:.1f} times as high"
            out.append(text + ".")
        return out or [f"Model {self.model_id}: its recorded calibration has no group with "
                       "a measured false-match rate."]

    def as_json(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "floor": self.floor, "calibrated": self.calibrated,
                "measured_on": self.measured_on,
                "fmr_per_group": {a: {g: r for g, r in gs} for a, gs in self.attributes.items()},
                "in_words": self.sentences()}


def _per_million(rate: float) -> str:
    return f"about {rate * 1e6:,.0f} false matches in a million comparisons"


CAVEAT = (
    "These two sets of figures are not about the same groups. The false alerts are counted by "
    "the officer's perception of a person's ethnic group, in the census categories, and not "
    "by what the person would say; the test's groups are the labels of a photo collection, "
    "made differently. How many false alerts a group gets also depends on who walks past the "
    "cameras and who is on the watchlist, not only on the model. And the numbers are small. "
    "Read them side by side as a check, not as one rate.")


@dataclass
class EqualityFigures:
    year: int
    false_alerts: int  # every false alert of the year's deployments (published elsewhere too)
    with_outcome: Shown  # of those, with an outcome recorded after the alert
    stopped: Shown
    ethnicity: list[GroupRow]
    sex: list[GroupRow]
    stop_lengths: list[tuple[str, Shown]]
    models: list[ModelGroups]
    suppression_rule: str = (
        f"Counts from 1 to {SUPPRESS_BELOW - 1} are shown as \"{FEWER}\"; when only one count "
        f"of a column is so hidden, the next smallest is \"{WITHHELD}\" too; a column whose "
        f"total is below {SUPPRESS_BELOW} is not broken down.")
    caveat: str = CAVEAT

    def as_json(self) -> dict[str, Any]:
        return {
            "year": self.year, "false_alerts": self.false_alerts,
            "with_outcome": self.with_outcome, "stopped": self.stopped,
            "perceived_ethnicity": [r.__dict__ for r in self.ethnicity],
            "perceived_sex": [r.__dict__ for r in self.sex],
            "stop_lengths": [{"length": k, "stops": v} for k, v in self.stop_lengths],
            "models": [m.as_json() for m in self.models],
            "suppression_rule": self.suppression_rule, "caveat": self.caveat}


def _band(minutes: int) -> int:
    for i, (_, upper) in enumerate(STOP_BANDS):
        if upper is None or minutes <= upper:
            return i
    return len(STOP_BANDS) - 1


def _rows(codes: Sequence[str], words: dict[str, str], alerts: list[int],
          stops: list[int]) -> list[GroupRow]:
    return [GroupRow(c, words[c], a, s)
            for c, a, s in zip(codes, suppress(alerts), suppress(stops), strict=True)]


def _models(s: Session, model_ids: Iterable[str]) -> list[ModelGroups]:
    from openlfr.governance.authz import RuleError
    from openlfr.governance.floors import current_floor

    out = []
    for model_id in sorted(set(model_ids)):
        try:
            floor = current_floor(s, model_id)
        except RuleError:
            continue
        m = ModelGroups(model_id, floor.threshold, floor.source == "calibrated")
        ev = floor.evidence if m.calibrated else {}
        fairness = ev.get("fairness") if isinstance(ev.get("fairness"), dict) else {}
        attributes = fairness.get("attributes") if fairness else None
        dataset = ev.get("dataset") if isinstance(ev.get("dataset"), dict) else {}
        people = dataset.get("identities") if dataset else None
        m.measured_on = ("the operator's own test photos"
                         + (f" of {int(people):,} people" if isinstance(people, int) else ""))
        if isinstance(attributes, dict):
            for attr, a in attributes.items():
                groups = a.get("groups") if isinstance(a, dict) else None
                if isinstance(groups, dict):
                    m.attributes[str(attr)] = [
                        (str(g), _rate(gd.get("fmr") if isinstance(gd, dict) else None))
                        for g, gd in groups.items()]
        out.append(m)
    return out


def _rate(value: object) -> float | None:
    try:
        return None if value is None else float(str(value))
    except ValueError:
        return None


def equality_figures(s: Session, year: int, deployment_ids: Sequence[int],
                     model_ids: Iterable[str]) -> EqualityFigures:
    """The year's equality figures over ``deployment_ids`` (the yearly summary's), suppressed,
    beside the per-group rates measured for ``model_ids``."""
    eth_codes = [e.value for e in PerceivedEthnicity]
    sex_codes = [x.value for x in PerceivedSex]
    eth_alerts, eth_stops = [0] * len(eth_codes), [0] * len(eth_codes)
    sex_alerts, sex_stops = [0] * len(sex_codes), [0] * len(sex_codes)
    bands = [0] * len(STOP_BANDS)
    total = with_outcome = stopped = 0
    if deployment_ids:
        rows = s.execute(
            select(Outcome.id, Outcome.stopped, Outcome.stop_minutes,
                   Outcome.perceived_ethnicity, Outcome.perceived_sex)
            .select_from(Alert).outerjoin(Outcome, Outcome.alert_id == Alert.id)
            .where(Alert.deployment_id.in_(list(deployment_ids)),
                   or_(Alert.status == AlertStatus.REJECTED, Outcome.not_subject.is_(True))))
        for outcome_id, was_stopped, minutes, ethnicity, sex in rows:
            total += 1
            with_outcome += outcome_id is not None
            e = eth_codes.index(ethnicity) if ethnicity in eth_codes else len(eth_codes) - 1
            x = sex_codes.index(sex) if sex in sex_codes else len(sex_codes) - 1
            eth_alerts[e] += 1
            sex_alerts[x] += 1
            if was_stopped:
                stopped += 1
                eth_stops[e] += 1
                sex_stops[x] += 1
                bands[_band(int(minutes or 0))] += 1
    ethnicity_words = {str(k): v for k, v in ETHNICITY_WORDS.items()}
    sex_words = {str(k): v for k, v in SEX_WORDS.items()}
    return EqualityFigures(
        year=year, false_alerts=total,
        with_outcome=_one(with_outcome), stopped=_one(stopped),
        ethnicity=_rows(eth_codes, ethnicity_words, eth_alerts, eth_stops),
        sex=_rows(sex_codes, sex_words, sex_alerts, sex_stops),
        stop_lengths=list(zip([b for b, _ in STOP_BANDS], suppress(bands), strict=True)),
        models=_models(s, model_ids))
