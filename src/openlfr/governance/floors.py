"""Threshold floors: the lowest threshold a deployment may use with a model without a recorded
override. A calibrated floor (``openlfr calibrate``) replaces the model's default floor."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from openlfr.audit import log as audit_log
from openlfr.governance.authz import Actor, Perm, RuleError, require
from openlfr.store.db import Database
from openlfr.store.models import ThresholdFloor
from openlfr.vision.thresholds import check_threshold

#: Floors per recogniser until a calibration is recorded: each model's default threshold
#: (chosen at FPIR 1 % with 1,000 identities on LFW; README "Default thresholds").
DEFAULT_FLOORS: dict[str, float] = {"sface": 0.48, "dlib": 0.96, "fusion": 0.69}


@dataclass(frozen=True, slots=True)
class Floor:
    model_id: str
    threshold: float
    source: str  # "default" | "calibrated"
    evidence: dict[str, Any]
    recorded_by: str | None = None
    recorded_at: str | None = None


def _backend(model_id: str) -> str:
    from openlfr.vision.engine import model_id_backend

    return model_id_backend(model_id)


def default_floor(model_id: str) -> Floor:
    backend = _backend(model_id)
    if backend not in DEFAULT_FLOORS:
        raise RuleError(f"no threshold floor is known for model {model_id!r}")
    return Floor(model_id, DEFAULT_FLOORS[backend], "default",
                 {"note": "the model's default threshold; no calibration recorded yet"})


def current_floor(session: Session, model_id: str) -> Floor:
    """The newest calibrated floor of ``model_id``, else its default floor."""
    row = session.scalars(select(ThresholdFloor).where(ThresholdFloor.model_id == model_id)
                          .order_by(ThresholdFloor.id.desc()).limit(1)).first()
    if row is None:
        return default_floor(model_id)
    return Floor(model_id, row.threshold, "calibrated", json.loads(row.evidence),
                 row.created_by, row.created_at.isoformat())


def record_floor(db: Database, actor: Actor, model_id: str, threshold: float,
                 evidence: dict[str, Any]) -> Floor:
    """Store a calibrated floor with its evidence (any JSON), audited with the evidence's
    SHA-256 so that the stored evidence cannot be changed unnoticed."""
    require(db, actor, Perm.FLOOR_RECORD, "threshold_floor", model_id)
    threshold = check_threshold(threshold)
    _backend(model_id)
    with db.session() as s:
        previous = current_floor(s, model_id)
        row = ThresholdFloor(model_id=model_id, threshold=threshold,
                             evidence=json.dumps(evidence, sort_keys=True),
                             created_by=actor.name)
        s.add(row)
        s.flush()
        audit_log.record(s, actor.name, "floor.record", "threshold_floor", row.id, {
            "model_id": model_id,
            "threshold": audit_log.fmt_float(threshold),
            "previous": audit_log.fmt_float(previous.threshold),
            "previous_source": previous.source,
            # The evidence itself is kept with the floor; the log pins it by its digest.
            "evidence_sha256": hashlib.sha256(row.evidence.encode("utf-8")).hexdigest(),
        })
        return current_floor(s, model_id)
