"""Leases: the centre's signed, expiring permission for a node to match faces.

A node asks on its own subject ``openlfr.node.<id>.lease`` (core request-reply, answered on
its own inbox ``_INBOX.node.<id>.…``). :func:`answer` replies with
:func:`openlfr.nodes.protocol.sign_lease`, signed with the centre's Ed25519 key: for each
deployment that is ``running``, inside its window, with a camera on that node, an expiry of
now + the deployment's ``lease_seconds`` (default :data:`openlfr.nodes.protocol.DEFAULT_LEASE_S`),
never past the window's end. A node matches a deployment's faces only while its lease holds,
so a node cut off from the centre stops within one lease.

Refused (no answer at all): a request that is not on a node's lease subject, a reply subject
that is not that node's own inbox (an answer must never be readable by anyone else), an unknown,
pending or disabled node, and a node whose desired state in the broker is not yet the database's
(:func:`openlfr.governance.nodes.sync_desired` writes it on the next tick; the node asks again):
a node that comes back after a cut re-reads its state before it matches, so that state must
already hold every revocation made meanwhile. An enrolled node with nothing to run gets a signed
lease naming no deployment. Each grant is noted on the node's health row (what the console shows
as its lease), not audited: leases are renewed every few seconds and change nothing.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from openlfr.governance.nodes import desired_document
from openlfr.governance.urgent import not_overdue_clause
from openlfr.nodes import desired, protocol
from openlfr.nodes.broker import inbox_prefix
from openlfr.store.db import Database
from openlfr.store.enums import DeploymentStatus, NodeStatus
from openlfr.store.models import Camera, Deployment, Node, NodeHealth

log = logging.getLogger("openlfr.governance.leases")


def grant(db: Database, node_id: int, now: datetime | None = None
          ) -> dict[int, datetime] | None:
    """Each deployment the node may match for, with its lease's expiry (None: no lease at
    all: the node is unknown or not enrolled, or the desired state the broker holds for it is
    not the database's yet). Noted on the node's health row."""
    now = now or datetime.now(UTC)
    with db.session() as s:
        node = s.get(Node, int(node_id))
        if node is None or node.status != NodeStatus.ENROLLED:
            return None
        if desired.digest(desired_document(s, node, now)) != node.desired_digest:
            # What the node would read is not what the database says yet (the next tick of
            # ``serve`` writes it): a node that has just come back must not match on an old
            # document, so no lease until it is written.
            log.info("node %s: its desired state is being written; no lease yet", node.name)
            return None
        deps = s.scalars(
            select(Deployment).join(Camera, Camera.deployment_id == Deployment.id)
            .where(Camera.node_id == node.id, Deployment.status == DeploymentStatus.RUNNING,
                   Deployment.planned_start <= now, Deployment.planned_end > now,
                   not_overdue_clause(now))
            .distinct().order_by(Deployment.id)).all()
        out = {d.id: min(now + timedelta(seconds=int(d.lease_seconds or
                                                     protocol.DEFAULT_LEASE_S)),
                         d.planned_end) for d in deps}
        health = s.get(NodeHealth, node.id)
        if health is None:
            health = NodeHealth(node_id=node.id, last_seen=now, interval=5.0)
            s.add(health)
        health.last_seen = now  # a request on its own subject: the node is alive
        health.lease_granted_at = now
        health.lease_granted = json.dumps({str(k): protocol.iso(v) for k, v in out.items()},
                                          sort_keys=True)
    return out


def answer(db: Database, key: Ed25519PrivateKey, subject: str, reply: str | None,
           now: datetime | None = None) -> bytes | None:
    """The signed lease to send to ``reply`` for a request on ``subject`` (None: no answer;
    see the module for when)."""
    node_id = protocol.subject_node(subject)
    if node_id is None or protocol.lease_subject(node_id) != subject:
        log.warning("a lease request on %r: not a node's lease subject; not answered",
                    subject[:80])
        return None
    if not reply or not reply.startswith(inbox_prefix(node_id) + "."):
        log.warning("node %d: a lease request whose answer would go to %r, not to the node's "
                    "own inbox: not answered", node_id, (reply or "")[:80])
        return None
    now = now or datetime.now(UTC)
    granted = grant(db, node_id, now)
    if granted is None:
        log.info("node %d is not enrolled (or disabled): no lease", node_id)
        return None
    return protocol.sign_lease(key, node_id, granted, issued_at=now)
