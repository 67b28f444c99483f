"""Sites and nodes, on the centre: adding them, enrolling them, disabling them, and telling
each node what to run.

- An administrator adds a **site** and a **node** at it (:func:`add_site`, :func:`add_node`)
  and is given a one-time **enrolment token** (stored as its SHA-256; it expires, by default
  after 24 hours; :func:`new_token` issues another while the node is pending).
- The node enrolls with it (:func:`enrol`; ``openlfr node enroll`` on the node, through
  ``POST /api/v1/nodes/enrol``): it registers the public halves of the keys it made
  (:mod:`openlfr.nodes.keys`); the token is spent. The broker's users are rewritten so that
  the node may sign in with its nkey and use only its own subjects and buckets
  (:mod:`openlfr.nodes.broker`).
- An administrator **disables** a node (:func:`disable`): its broker user is removed and the
  broker reloaded at once (the broker disconnects it), its buckets are deleted, and it never
  comes back (a replacement is a new node). Disabled nodes are kept as a record.
- :func:`sync_desired` writes each enrolled node's **desired state** (its running deployments'
  cameras, zones, threshold and model) to its key-value bucket when it changed, and each
  deployment's gallery to its object store **sealed to the node's X25519 key**
  (:mod:`openlfr.nodes.desired`). Every write is audited (``node.desired_state``, counts and
  ids only).

Every change is audited in its own transaction. With no broker configured
(``OPENLFR_NATS_URL`` unset) sites and nodes can still be planned and enrolled; nothing is
sent anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from openlfr.audit import log as audit_log
from openlfr.config import Settings
from openlfr.errors import (
    Conflict,
    IntegrityFailure,
    InvalidInput,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from openlfr.governance.authz import Actor, Perm, require
from openlfr.governance.names import check_name, check_text
from openlfr.governance.views import Enrolment, NodeToken, NodeView, SiteView
from openlfr.nodes import broker as nats
from openlfr.nodes import desired
from openlfr.nodes.keys import b64, box_public, load_or_create_box, public_nkey, seal, unb64
from openlfr.store.crypto import Keyring
from openlfr.store.db import Database
from openlfr.store.enums import DeploymentStatus, NodeStatus
from openlfr.store.models import Camera, Deployment, Node, Site

log = logging.getLogger("openlfr.governance.nodes")

#: The prefix of an enrolment token (so that one pasted in the wrong place is recognisable).
TOKEN_PREFIX = "olfr-enrol-"
#: How long an enrolment token is valid by default, and at most, in hours.
TOKEN_HOURS, TOKEN_MAX_HOURS = 24, 24 * 7
NAME_MAX = 100


def utcnow() -> datetime:
    return datetime.now(UTC)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.strip().encode()).hexdigest()


def _check_node_name(name: str, what: str) -> str:
    if not isinstance(name, str):
        raise InvalidInput(f"the {what} must be text", field="name")
    name = name.strip()
    if not name:
        raise InvalidInput(f"the {what} is empty", field="name")
    if len(name) > NAME_MAX:
        raise InvalidInput(f"the {what} is longer than {NAME_MAX} characters", field="name")
    check_name(name, f"the {what}")
    if any(c.isspace() for c in name) or "/" in name:
        raise InvalidInput(f"the {what} {name!r} may not contain spaces or '/' (e.g. "
                           "high-street or van-1)", field="name")
    return name


# -- views ----------------------------------------------------------------------------------------

def _node_view(s: Session, node: Node) -> NodeView:
    cams = s.execute(select(Camera.deployment_id, Camera.name).where(Camera.node_id == node.id)
                     .order_by(Camera.deployment_id, Camera.name)).all()
    return NodeView(
        id=node.id, name=node.name, site=node.site.name, status=node.status.value,
        nkey=node.nkey, signing_key=node.signing_key, box_key=node.box_key,
        token_expires_at=node.token_expires_at if node.token_hash else None,
        created_at=node.created_at, created_by=node.created_by, enrolled_at=node.enrolled_at,
        disabled_at=node.disabled_at, disabled_by=node.disabled_by,
        disable_reason=node.disable_reason, desired_at=node.desired_at,
        cameras=tuple(f"{d}/{c}" for d, c in cams), **_health(s, node))


def _health(s: Session, node: Node) -> dict[str, Any]:
    """What the centre last heard from the node (online, last seen, its lease, its cameras)."""
    import json

    from openlfr.governance.ingest import online
    from openlfr.governance.views import NodeCameraView
    from openlfr.nodes.protocol import parse_time
    from openlfr.store.models import NodeCamera, NodeHealth

    health = s.get(NodeHealth, node.id)
    if health is None:
        return {}
    try:
        lease = {k: parse_time(v, "lease") for k, v in
                 json.loads(health.lease_granted or "{}").items()}
    except (ValueError, IntegrityFailure, AttributeError):
        lease = {}
    cams = s.scalars(select(NodeCamera).where(NodeCamera.node_id == node.id)
                     .order_by(NodeCamera.deployment_id, NodeCamera.camera)).all()
    return {"online": online(health), "last_seen": health.last_seen, "lease": lease,
            "lease_granted_at": health.lease_granted_at,
            "camera_health": tuple(NodeCameraView(
                deployment_id=c.deployment_id, camera=c.camera, state=c.state,
                connected=c.connected, fps_in=c.fps_in, fps_analysed=c.fps_analysed,
                frames=c.frames, dropped=c.dropped, reconnects=c.reconnects,
                updated_at=c.updated_at) for c in cams)}


def _site_view(site: Site, count: int) -> SiteView:
    return SiteView(id=site.id, name=site.name, description=site.description,
                    created_at=site.created_at, created_by=site.created_by, nodes=count)


def _site(s: Session, name: str) -> Site:
    site = s.scalars(select(Site).where(Site.name == name.strip())).first()
    if site is None:
        known = ", ".join(s.scalars(select(Site.name).order_by(Site.name)).all()) or "none yet"
        raise NotFound(f"no site {name.strip()!r} (sites: {known}); add it first")
    return site


def node_named(s: Session, name: str) -> Node:
    node = s.scalars(select(Node).where(Node.name == name.strip())).first()
    if node is None:
        raise NotFound(f"no node {name.strip()!r}")
    return node


# -- sites ----------------------------------------------------------------------------------------

def add_site(db: Database, actor: Actor, name: str, description: str = "") -> SiteView:
    """A new site (administrators). Audited ``site.add``."""
    require(db, actor, Perm.NODE_MANAGE, "site", "new")
    name = _check_node_name(name, "site name")
    description = check_text((description or "").strip(), "the site's description")
    with db.session() as s:
        if s.scalars(select(Site.id).where(Site.name == name)).first() is not None:
            raise Conflict(f"there is already a site {name!r}")
        site = Site(name=name, description=description, created_by=actor.name)
        s.add(site)
        s.flush()
        audit_log.record(s, actor.name, "site.add", "site", site.id,
                         {"name": name, "description": description})
        return _site_view(site, 0)


def list_sites(db: Database, actor: Actor) -> list[SiteView]:
    require(db, actor, Perm.DEPLOYMENT_READ, "site", "all")
    with db.reading() as s:
        counts: dict[int, int] = {site_id: int(n) for site_id, n in s.execute(
            select(Node.site_id, func.count(Node.id)).group_by(Node.site_id))}
        return [_site_view(site, counts.get(site.id, 0))
                for site in s.scalars(select(Site).order_by(Site.name))]


# -- nodes ----------------------------------------------------------------------------------------

def _issue(node: Node, hours: int, now: datetime) -> tuple[str, datetime]:
    if isinstance(hours, bool) or not isinstance(hours, int) or not 1 <= hours <= TOKEN_MAX_HOURS:
        raise InvalidInput(f"an enrolment token is valid for 1 to {TOKEN_MAX_HOURS} hours "
                           f"(got {hours!r})", field="valid_hours")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    node.token_hash = _token_hash(token)
    node.token_expires_at = now + timedelta(hours=hours)
    return token, node.token_expires_at


def add_node(db: Database, actor: Actor, site: str, name: str,
             valid_hours: int = TOKEN_HOURS) -> NodeToken:
    """A new node at ``site`` (administrators), pending until it enrolls with the one-time
    token returned (shown once). Audited ``node.add`` (never the token)."""
    require(db, actor, Perm.NODE_MANAGE, "node", "new")
    name = _check_node_name(name, "node name")
    now = utcnow()
    with db.session() as s:
        where = _site(s, site)
        if s.scalars(select(Node.id).where(Node.name == name)).first() is not None:
            raise Conflict(f"there is already a node {name!r} (node names are unique across "
                           "sites)")
        node = Node(site=where, name=name, status=NodeStatus.PENDING, created_by=actor.name)
        token, expires = _issue(node, valid_hours, now)
        s.add(node)
        s.flush()
        audit_log.record(s, actor.name, "node.add", "node", node.id,
                         {"name": name, "site": where.name,
                          "token_expires_at": expires.isoformat()})
        return NodeToken(node=_node_view(s, node), token=token, expires_at=expires)


def new_token(db: Database, actor: Actor, name: str,
              valid_hours: int = TOKEN_HOURS) -> NodeToken:
    """Another enrolment token for a pending node (the old one stops working)."""
    require(db, actor, Perm.NODE_MANAGE, "node", name)
    now = utcnow()
    with db.session() as s:
        node = node_named(s, name)
        if node.status != NodeStatus.PENDING:
            raise Conflict(f"node {node.name} is {node.status.value}: only a node waiting to "
                           "enroll is given a token (replace an enrolled node by a new one)")
        token, expires = _issue(node, valid_hours, now)
        audit_log.record(s, actor.name, "node.token", "node", node.id,
                         {"name": node.name, "token_expires_at": expires.isoformat()})
        return NodeToken(node=_node_view(s, node), token=token, expires_at=expires)


def list_nodes(db: Database, actor: Actor) -> list[NodeView]:
    require(db, actor, Perm.DEPLOYMENT_READ, "node", "all")
    with db.reading() as s:
        return [_node_view(s, n) for n in s.scalars(select(Node).order_by(Node.name))]


def show_node(db: Database, actor: Actor, name: str) -> NodeView:
    require(db, actor, Perm.DEPLOYMENT_READ, "node", name)
    with db.reading() as s:
        return _node_view(s, node_named(s, name))


# -- the broker -----------------------------------------------------------------------------------

def broker_of(settings: Settings) -> nats.Broker | None:
    """The centre's broker (None when ``OPENLFR_NATS_URL`` is not set: a single machine)."""
    if not settings.nats_url:
        return None
    return nats.Broker(settings.nats_url, nats.load_or_create_seed(settings.nats_seed_path),
                       auth_file=settings.nats_auth_path, pid_file=settings.nats_pid_file,
                       ca_file=settings.nats_ca_file)


def centre_signing(settings: Settings) -> Ed25519PrivateKey:
    """The centre's Ed25519 key (its broker identity; it signs the leases)."""
    return nats.load_or_create_seed(settings.nats_seed_path)


def centre_box(settings: Settings) -> X25519PrivateKey:
    """The centre's X25519 key: nodes seal alert crops to its public half."""
    return load_or_create_box(settings.nats_box_path)


def _enabled_users(db: Database) -> list[nats.NodeUser]:
    with db.reading() as s:
        return [nats.NodeUser(n.id, n.nkey) for n in s.scalars(
            select(Node).where(Node.status == NodeStatus.ENROLLED)) if n.nkey]


def write_broker_users(db: Database, settings: Settings, reload: bool = True) -> int:
    """Rewrite the broker's users from the database (the centre, and every enrolled node) and
    (``reload``) make the broker reload them. Returns how many nodes may sign in. Idempotent:
    run it before the broker's first start (``reload=False``), after restoring a backup or
    moving the broker (``openlfr nodes broker-users``)."""
    users = _enabled_users(db)
    b = broker_of(settings)
    if b is None or not reload:  # nothing to reload, but the file can still be prepared
        nats.write_authorization(settings.nats_auth_path,
                                 nats.load_or_create_seed(settings.nats_seed_path), users)
        return len(users)
    b.set_users(users)
    return len(users)


# -- enrolment ------------------------------------------------------------------------------------

def enrol(db: Database, settings: Settings, token: str, signing_key: str,
          box_key: str) -> Enrolment:
    """A node's enrolment: ``token`` (one-time), the public keys it made (URL-safe base64 of
    32 bytes each). Audited ``node.enrol`` by ``node:<name>``. The broker's users are
    rewritten so that it may sign in; its buckets are made."""
    signing = unb64(signing_key, "signing_key")
    box = unb64(box_key, "box_key")
    if not isinstance(token, str) or not token.strip().startswith(TOKEN_PREFIX) or len(
            token) > 200:
        raise Unauthenticated("that is not an enrolment token (they begin olfr-enrol-)")
    digest = _token_hash(token)
    now = utcnow()
    nkey = public_nkey(signing)
    with db.session() as s:
        node = s.scalars(select(Node).where(Node.token_hash == digest)).first()
        if node is None or not hmac.compare_digest(node.token_hash or "", digest):
            raise Unauthenticated("the enrolment token is not valid (unknown or already used)")
        if node.status != NodeStatus.PENDING:
            raise Unauthenticated("the enrolment token is not valid (the node is "
                                  f"{node.status.value})")
        if node.token_expires_at is None or node.token_expires_at <= now:
            raise Unauthenticated("the enrolment token has expired: ask an administrator for "
                                  "a new one")
        if s.scalars(select(Node.id).where(Node.nkey == nkey)).first() is not None:
            raise Conflict("these keys are already registered for another node: make new "
                           "keys for this one")
        node.signing_key, node.box_key, node.nkey = b64(signing), b64(box), nkey
        node.status, node.enrolled_at = NodeStatus.ENROLLED, now
        node.token_hash = node.token_expires_at = None
        audit_log.record(s, f"node:{node.name}", "node.enrol", "node", node.id,
                         {"name": node.name, "site": node.site.name, "nkey": nkey})
        node_id, name, site = node.id, node.name, node.site.name
    b = broker_of(settings)
    if b is not None:
        try:
            b.set_users(_enabled_users(db))
            b.ensure_node(node_id)
            b.ensure_stream()  # where its alerts wait for the centre
        except Unavailable as exc:  # enrolled all the same: the node keeps its keys
            log.warning("node %s enrolled, but the broker was not updated (%s): run "
                        "`openlfr nodes broker-users` when it is back", name, exc)
    return Enrolment(node_id=node_id, name=name, site=site,
                     broker_url=settings.nats_node_url or settings.nats_url,
                     subject_prefix=nats.subject_prefix(node_id),
                     inbox_prefix=nats.inbox_prefix(node_id),
                     state_bucket=nats.state_bucket(node_id),
                     gallery_bucket=nats.gallery_bucket(node_id), nkey=nkey,
                     centre_signing_key=b64(centre_signing(settings).public_key()
                                            .public_bytes_raw()),
                     centre_box_key=b64(box_public(centre_box(settings))))


def disable(db: Database, settings: Settings, actor: Actor, name: str, reason: str) -> NodeView:
    """Disable a node for good and revoke its broker credentials (administrators). Audited
    ``node.disable``; the broker reloads its users at once (the node is disconnected), and
    the node's buckets (desired state, sealed galleries) are deleted. Its cameras keep naming
    it: they do not run until moved to another node or to the centre."""
    require(db, actor, Perm.NODE_MANAGE, "node", name)
    reason = check_text((reason or "").strip(), "the reason")
    if not reason:
        raise InvalidInput("say why the node is disabled", field="reason")
    now = utcnow()
    with db.session() as s:
        node = node_named(s, name)
        if node.status == NodeStatus.DISABLED:
            raise Conflict(f"node {node.name} is already disabled")
        was = node.status
        node.status, node.disabled_at, node.disabled_by = NodeStatus.DISABLED, now, actor.name
        node.disable_reason = reason
        node.token_hash = node.token_expires_at = None
        node.desired_digest = None
        audit_log.record(s, actor.name, "node.disable", "node", node.id,
                         {"name": node.name, "site": node.site.name, "reason": reason,
                          "status_before": was.value})
        node_id = node.id
    b = broker_of(settings)
    if b is not None:
        try:
            b.set_users(_enabled_users(db))
            if was == NodeStatus.ENROLLED:
                b.drop_node(node_id)
        except Unavailable as exc:
            raise Unavailable(f"node {name} is disabled, but the broker could not be told "
                              f"({exc}): it may still be connected. Run `openlfr nodes "
                              "broker-users` as soon as the broker is back") from None
    return show_node(db, actor, name)


# -- cameras on nodes -----------------------------------------------------------------------------

def resolve_node(s: Session, name: str | None) -> Node | None:
    """The node a plan's camera names (None or "": the centre). A disabled node is refused."""
    if name is None or not name.strip():
        return None
    node = s.scalars(select(Node).where(Node.name == name.strip())).first()
    if node is None:
        known = ", ".join(s.scalars(select(Node.name).where(
            Node.status != NodeStatus.DISABLED).order_by(Node.name)).all()) or "none"
        raise InvalidInput(f"no node {name.strip()!r} to run a camera (nodes: {known})",
                           field="cameras")
    if node.status == NodeStatus.DISABLED:
        raise InvalidInput(f"node {node.name} is disabled: it cannot run a camera",
                           field="cameras")
    return node


# -- desired state --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sent:
    """What :func:`sync_desired` wrote for one node."""

    node: str
    deployments: tuple[int, ...]
    cameras: int
    galleries: tuple[int, ...]


def _plain_documents(s: Session, nodes_: Sequence[Node], now: datetime
                     ) -> dict[int, dict[str, Any]]:
    """Each node's desired state without its secrets (camera sources as their keyed digest),
    for the digest that says whether anything changed. One pass for all the nodes: a plan's
    cameras and its gallery's fingerprint are read once, however many nodes share it."""
    from openlfr.governance.reconcile import fingerprints
    from openlfr.video.zones import from_json

    ids = [n.id for n in nodes_]
    rows = s.execute(select(Camera, Deployment).join(
        Deployment, Camera.deployment_id == Deployment.id)
        .where(Camera.node_id.in_(ids), Deployment.status == DeploymentStatus.RUNNING)
        .order_by(Deployment.id, Camera.id)).all() if ids else []
    cams = [(c, d) for c, d in rows if d.planned_end > now]  # (as stored: compared here)
    prints = fingerprints(s, {d.id for _c, d in cams}, now)
    per_node: dict[int, dict[int, dict[str, Any]]] = {i: {} for i in ids}
    for cam, dep in cams:
        mine = per_node[int(cam.node_id or 0)]
        entry = mine.get(dep.id)
        if entry is None:
            print_ = hashlib.sha256(repr(prints.get(dep.id, ())).encode()).hexdigest()
            entry = mine[dep.id] = {
                "id": dep.id, "name": dep.name, "threshold": dep.threshold,
                "model_id": dep.model_id, "planned_end": dep.planned_end.isoformat(),
                "gallery": {"object": desired.gallery_object(dep.id), "fingerprint": print_},
                "cameras": []}
        entry["cameras"].append({"name": cam.name, "source": cam.source_digest or "",
                                 "zones": [list(map(list, p)) for p in from_json(cam.zones)],
                                 "masks": [list(map(list, p)) for p in from_json(cam.masks)]})
    return {n.id: {"version": desired.VERSION, "node": n.id, "name": n.name,
                   "site": n.site.name, "deployments": list(per_node[n.id].values())}
            for n in nodes_}


def _plain_document(s: Session, node: Node, now: datetime) -> dict[str, Any]:
    return _plain_documents(s, [node], now)[node.id]


def desired_document(s: Session, node: Node, now: datetime | None = None) -> dict[str, Any]:
    """The node's desired state without secrets (what :func:`sync_desired` compares)."""
    return _plain_document(s, node, now or utcnow())


def sync_desired(db: Database, keyring: Keyring, settings: Settings,
                 now: datetime | None = None, force: bool = False) -> list[Sent]:
    """Write each enrolled node's desired state and galleries to the broker when they changed
    since the last write (``force``: write them all). Cheap when nothing changed (a few
    queries per node, nothing sent). Returns what was written."""
    b = broker_of(settings)
    if b is None:
        return []
    now = now or utcnow()
    out: list[Sent] = []
    with db.reading() as s:  # which documents changed: one pass for every node
        enrolled = list(s.scalars(select(Node).where(Node.status == NodeStatus.ENROLLED)
                                  .options(selectinload(Node.site)).order_by(Node.id)))
        plains = _plain_documents(s, enrolled, now)
        ids = [n.id for n in enrolled
               if force or desired.digest(plains[n.id]) != n.desired_digest]
    for node_id in ids:
        sent = _sync_one(db, keyring, b, node_id, now, force)
        if sent is not None:
            out.append(sent)
    return out


def _sync_one(db: Database, keyring: Keyring, b: nats.Broker, node_id: int, now: datetime,
              force: bool) -> Sent | None:
    from openlfr.governance.deployments import camera_sources
    from openlfr.governance.reconcile import desired_gallery

    with db.reading() as s:
        node = s.get(Node, node_id)
        if node is None or node.status != NodeStatus.ENROLLED or not node.box_key:
            return None
        plain = _plain_document(s, node, now)
        digest = desired.digest(plain)
        if digest == node.desired_digest and not force:
            return None
        box = unb64(node.box_key, "box_key")
        previous = b.get_desired(node_id) if not force else None
        before: dict[int, str] = {}
        if previous is not None:
            try:
                before = {d["id"]: d["gallery"]["fingerprint"]
                          for d in desired.parse_document(previous)["deployments"]}
            except (KeyError, TypeError, IntegrityFailure):
                before = {}
        document = {**plain, "deployments": []}
        galleries: list[int] = []
        for entry in plain["deployments"]:
            dep = s.get(Deployment, entry["id"])
            assert dep is not None
            sources = dict(camera_sources(s, keyring, dep,
                                          {c["name"] for c in entry["cameras"]}))
            cams = []
            for cam in entry["cameras"]:
                name = f"camera/{dep.id}/{cam['name']}"
                sealed = seal(sources[cam["name"]].encode(), box,
                              desired.seal_context(node_id, name))
                cams.append({**cam, "source": b64(sealed)})
            document["deployments"].append({**entry, "cameras": cams})
            if before.get(dep.id) != entry["gallery"]["fingerprint"]:
                gallery, names = desired_gallery(s, keyring, dep.id)
                try:
                    packed = desired.pack_gallery(gallery, names)
                finally:
                    gallery.clear()  # templates only in memory, for as short as can be
                obj = desired.gallery_object(dep.id)
                b.put_gallery(node_id, obj, seal(packed, box, desired.seal_context(node_id, obj)))
                galleries.append(dep.id)
        revision = b.put_desired(node_id, desired.document_bytes(document))
        keep = {desired.gallery_object(d["id"]) for d in plain["deployments"]}
        for obj in b.galleries(node_id):
            if obj not in keep:
                b.delete_gallery(node_id, obj)
        node_name = node.name
    with db.session() as s:
        row = s.get(Node, node_id)
        assert row is not None
        row.desired_digest, row.desired_at = digest, now
        deps_ = tuple(d["id"] for d in plain["deployments"])
        cameras = sum(len(d["cameras"]) for d in plain["deployments"])
        audit_log.record(s, audit_log.SYSTEM, "node.desired_state", "node", node_id,
                         {"name": node_name, "deployments": list(deps_), "cameras": cameras,
                          "galleries_sent": galleries, "revision": revision})
    return Sent(node_name, deps_, cameras, tuple(galleries))
