"""The EU AI Act Art. 12 record of each deployment, from the data and the audit log.

Art. 12(3) asks, for each use of a remote biometric identification system: the period of
each use (start and end), the reference database the input was checked against, the input
data for which the search led to a match, and who verified the results (Art. 14(5)). One
record per deployment:

* ``start`` / ``end`` (and the planned window, the authorisation: who and when, the
  authorising officer's rank, the independent authority's decision);
* ``uses``: the period of each use, each run from a start or resume to its pause or end, with
  who started it and why it stopped (the seq of both audit entries);
* ``reference_watchlists``: id, name, who approved it and when, its size at authorisation, and
  when it was destroyed;
* ``matched_inputs``: every alert: id, time seen, camera, score, threshold, status, the seq of
  its ``alert.create`` audit entry, and ``verified_by`` (each decision: who, what, when) and
  the outcome code. Never a crop, a template or a free-text reason;
* ``audit_seqs``: the seq of every audit entry about the deployment, its watchlists or its
  alerts, so each statement can be traced to the tamper-evident log.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from openlfr.audit import log as audit_log
from openlfr.store.models import Alert, Deployment
from openlfr.transparency.stats import deployment_stats

ART12_FORMAT = "openlfr-art12-v1"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


#: The audit actions that open and close a period of use (a run) of a deployment.
USE_OPENS = ("deployment.start", "deployment.resume")
USE_CLOSES = ("deployment.pause", "deployment.end", "deployment.run_end")


def _use_period(periods: list[dict[str, Any]], entry: audit_log.AuditEntry) -> None:
    """Art. 12(3)(a): the period of each use, from the deployment's audit entries: a start or
    resume opens one (by whom), a pause or end closes the open one (why)."""
    at = entry.details.get("at") if isinstance(entry.details.get("at"), str) else entry.time
    if entry.action in USE_OPENS:
        periods.append({"start": at, "started_by": entry.actor, "end": None,
                        "end_reason": None, "start_seq": entry.seq})
    elif entry.action in USE_CLOSES and periods and periods[-1]["end"] is None:
        periods[-1].update(end=at, end_reason=entry.details.get("reason"), end_seq=entry.seq)


def art12_records(session: Session, deployment_id: int | None = None) -> list[dict[str, Any]]:
    """One Art. 12 record per deployment (or for one; empty if it does not exist)."""
    query = select(Deployment).options(selectinload(Deployment.watchlists)).order_by(
        Deployment.id)
    if deployment_id is not None:
        query = query.where(Deployment.id == deployment_id)
    deployments = list(session.scalars(query))
    if not deployments:
        return []
    figures = {f.deployment_id: f for f in deployment_stats(session, deployment_id)}
    ids = {d.id for d in deployments}
    wl_of: dict[int, set[int]] = {d.id: {w.id for w in d.watchlists} for d in deployments}
    alerts_of: dict[int, list[Alert]] = defaultdict(list)
    for alert in session.scalars(select(Alert).where(Alert.deployment_id.in_(ids))
                                 .options(selectinload(Alert.adjudications),
                                          selectinload(Alert.outcome))
                                 .order_by(Alert.id)):
        alerts_of[alert.deployment_id].append(alert)
    alert_dep = {a.id: dep for dep, rows in alerts_of.items() for a in rows}

    seqs: dict[int, list[int]] = defaultdict(list)
    created_seq: dict[int, int] = {}
    uses: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for entry in audit_log.entries(session):
        target = entry.object_id
        if entry.object_type == "deployment" and target.isdigit() and int(target) in ids:
            seqs[int(target)].append(entry.seq)
            _use_period(uses[int(target)], entry)
        elif entry.object_type == "alert" and target.isdigit() and int(target) in alert_dep:
            seqs[alert_dep[int(target)]].append(entry.seq)
            if entry.action == "alert.create":
                created_seq[int(target)] = entry.seq
        elif entry.object_type == "watchlist" and target.isdigit():
            for dep_id, wls in wl_of.items():
                if int(target) in wls:
                    seqs[dep_id].append(entry.seq)

    records = []
    for dep in deployments:
        fig = figures[dep.id]
        records.append({
            "format": ART12_FORMAT,
            "deployment": dep.id,
            "name": dep.name,
            "site": dep.site,
            "location": dep.location,
            "purpose": dep.purpose,
            "legal_basis": dep.legal_basis,
            "status": dep.status.value,
            "planned_start": _iso(dep.planned_start),
            "planned_end": _iso(dep.planned_end),
            "authorised_by": dep.authorised_by,
            "authorised_at": _iso(dep.authorised_at),
            "start": _iso(dep.started_at),
            "end": _iso(dep.ended_at),
            "end_reason": dep.end_reason,
            "uses": uses.get(dep.id, []),
            "authorised_rank": dep.authorised_rank,
            "authority_decision": None if dep.authority_ref is None else {
                "reference": dep.authority_ref, "authority": dep.authority_name,
                "date": dep.authority_date, "scope": dep.authority_scope},
            "fria_ref": dep.fria_ref,
            "eu_db_ref": dep.eu_db_ref,
            "threshold": dep.threshold,
            "model_id": dep.model_id,
            "two_person_rule": dep.two_person_rule,
            "cameras": [c.camera for c in fig.cameras],
            "reference_watchlists": [{
                "id": wl.id, "name": wl.name, "status": wl.status.value,
                "approved_by": wl.approved_by, "approved_at": _iso(wl.approved_at),
                "destroyed_at": _iso(wl.destroyed_at),
            } for wl in dep.watchlists],
            "watchlist_size": fig.watchlist_size,
            "watchlist_size_basis": fig.watchlist_size_basis,
            "matched_inputs": [{
                "alert": a.id,
                "seen_at": _iso(a.seen_at),
                "camera": a.camera,
                "score": round(a.score, 4),
                "threshold": round(a.threshold, 4),
                "watchlist": a.watchlist_id,
                "status": a.status.value,
                "decided_at": _iso(a.decided_at),
                "verified_by": [{"user": j.user_name, "decision": j.decision.value,
                                 "at": _iso(j.created_at)} for j in a.adjudications],
                "outcome": None if a.outcome is None else {
                    "engaged": a.outcome.engaged, "action": a.outcome.action.value,
                    "recorded_by": a.outcome.recorded_by, "at": _iso(a.outcome.created_at)},
                "held": a.held_reason is not None,
                "purged_at": _iso(a.purged_at),
                "audit_seq": created_seq.get(a.id),
            } for a in alerts_of.get(dep.id, [])],
            "audit_seqs": seqs.get(dep.id, []),
        })
    return records
