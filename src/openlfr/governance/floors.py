"""Threshold floors: the lowest threshold a deployment may use with a model without a recorded
override. A calibrated floor (``openlfr calibrate``) replaces the model's default floor, which
its :class:`~openlfr.vision.registry.BackendSpec` declares. A model a user added has no default
floor: until it is calibrated, asking for its floor is refused, and so is any deployment of it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from openlfr.audit import log as audit_log
from openlfr.governance import models
from openlfr.governance.authz import Actor, Perm, RuleError, require
from openlfr.store.db import Database
from openlfr.store.models import ThresholdFloor
from openlfr.vision.registry import BackendSpec, ModelError
from openlfr.vision.thresholds import check_threshold


@dataclass(frozen=True, slots=True)
class Floor:
    model_id: str
    threshold: float
    source: str  # "default" | "calibrated"
    evidence: dict[str, Any]
    recorded_by: str | None = None
    recorded_at: str | None = None
    #: the calibration's record (threshold_floors.id); None for a default floor
    id: int | None = None

    @property
    def watchlist_size(self) -> int | None:
        size = self.evidence.get("watchlist_size")
        return size if isinstance(size, int) and not isinstance(size, bool) else None

    @property
    def target_fpir(self) -> float | None:
        return _number(self.evidence.get("target_fpir"))


def _number(value: object) -> float | None:
    try:
        return None if value is None or isinstance(value, bool) else float(str(value))
    except ValueError:
        return None


def worst_group_floor(evidence: dict[str, Any]) -> float | None:
    """The floor that holds for the worst-measured group, as a calibration recorded it."""
    worst = evidence.get("worst_group")
    return _number(worst.get("floor")) if isinstance(worst, dict) else None


def enforced_threshold(row: ThresholdFloor) -> float:
    """The higher of a recorded calibration's threshold and the floor of its worst-measured
    group: the floor enforced."""
    worst = worst_group_floor(json.loads(row.evidence))
    return row.threshold if worst is None else max(row.threshold, worst)


def _calibrated(row: ThresholdFloor) -> Floor:
    """A recorded calibration as a floor (:func:`enforced_threshold`)."""
    return Floor(row.model_id, enforced_threshold(row), "calibrated", json.loads(row.evidence),
                 row.created_by, row.created_at.isoformat(), row.id)


def calibration_for(session: Session, model_id: str, watchlist_size: int,
                    target_fpir: float) -> Floor | None:
    """The newest recorded calibration of ``model_id`` that answers for a plan: made at a
    watchlist size of at least ``watchlist_size`` and for a target rate of at most
    ``target_fpir`` (larger watchlists and lower targets give higher floors), or None."""
    return pick_calibration(calibrations(session, [model_id]).get(model_id, []),
                            watchlist_size, target_fpir)


def calibrations(session: Session, model_ids: Sequence[str]) -> dict[str, list[Floor]]:
    """Every recorded calibration of each of ``model_ids``, newest first (one query)."""
    out: dict[str, list[Floor]] = {}
    if not model_ids:
        return out
    for row in session.scalars(select(ThresholdFloor)
                               .where(ThresholdFloor.model_id.in_(sorted(set(model_ids))))
                               .order_by(ThresholdFloor.id.desc())):
        out.setdefault(row.model_id, []).append(_calibrated(row))
    return out


def pick_calibration(floors: Sequence[Floor], watchlist_size: int,
                     target_fpir: float) -> Floor | None:
    """The first (newest) of ``floors`` that answers for a plan (:func:`calibration_for`)."""
    for floor in floors:
        size, target = floor.watchlist_size, floor.target_fpir
        if size is None or target is None:
            continue
        if size >= watchlist_size and target <= target_fpir + 1e-12:
            return floor
    return None


def expected_at(floor: Floor, threshold: float) -> tuple[float | None, float | None]:
    """(expected false alerts per 10,000 people passing, expected miss rate) at ``threshold``
    from a calibration's evidence (its ``curve``: FPIR and FNIR by threshold), read on the
    cautious side: the FPIR of the nearest point at or below the threshold, the miss rate of
    the nearest at or above. (None, None) when the evidence has no curve."""
    curve = floor.evidence.get("curve")
    if not isinstance(curve, list) or not curve:
        return None, None
    points = sorted((t, _number(p.get("fpir")), _number(p.get("fnir"))) for p in curve
                    if isinstance(p, dict) and (t := _number(p.get("threshold"))) is not None)
    below = [p for p in points if p[0] <= threshold + 1e-9]
    above = [p for p in points if p[0] >= threshold - 1e-9]
    fpir = below[-1][1] if below else None
    fnir = above[0][2] if above else None
    return (None if fpir is None else fpir * 10_000), fnir


def _spec(session: Session, model_id: str) -> BackendSpec:
    try:
        return models.spec_of(session, model_id)
    except ModelError as exc:
        raise RuleError(str(exc)) from None


def default_floor(session: Session, model_id: str) -> Floor:
    """The floor its spec declares for ``model_id``; a RuleError for an unknown model and for
    a model a user added that has not been calibrated yet."""
    spec = _spec(session, model_id)
    if spec.default_floor is None:
        raise RuleError(f"model {spec.name} ({model_id}) has no threshold floor yet: run "
                        f"`openlfr calibrate --backend {spec.name}` on your evaluation data "
                        "first; until then no deployment can use it")
    return Floor(model_id, spec.default_floor, "default",
                 {"note": "the model's default threshold; no calibration recorded yet"})


def current_floor(session: Session, model_id: str) -> Floor:
    """The newest calibrated floor of ``model_id``, else its default floor."""
    added = models.added_model(session, model_id)
    if added is not None:  # the floor its record points to: this record's own calibration
        row = None if added.floor_id is None else session.get(ThresholdFloor, added.floor_id)
    else:
        row = session.scalars(select(ThresholdFloor)
                              .where(ThresholdFloor.model_id == model_id)
                              .order_by(ThresholdFloor.id.desc()).limit(1)).first()
    if row is None:
        return default_floor(session, model_id)
    return _calibrated(row)


def record_floor(db: Database, actor: Actor, model_id: str, threshold: float,
                 evidence: dict[str, Any]) -> Floor:
    """Store a calibrated floor with its evidence (any JSON), audited with the evidence's
    SHA-256 so that the stored evidence cannot be changed unnoticed."""
    require(db, actor, Perm.FLOOR_RECORD, "threshold_floor", model_id)
    threshold = check_threshold(threshold)
    with db.session() as s:
        _spec(s, model_id)
        try:
            previous: Floor | None = current_floor(s, model_id)
        except RuleError:  # an added model's first calibration
            previous = None
        row = ThresholdFloor(model_id=model_id, threshold=threshold,
                             evidence=json.dumps(evidence, sort_keys=True),
                             created_by=actor.name)
        s.add(row)
        s.flush()
        audit_log.record(s, actor.name, "floor.record", "threshold_floor", row.id, {
            "model_id": model_id,
            "threshold": audit_log.fmt_float(threshold),
            "previous": None if previous is None else audit_log.fmt_float(previous.threshold),
            "previous_source": "none" if previous is None else previous.source,
            # The evidence itself is kept with the floor; the log pins it by its digest.
            "evidence_sha256": hashlib.sha256(row.evidence.encode("utf-8")).hexdigest(),
        })
        models.attach_floor(s, model_id, row)
        return current_floor(s, model_id)
