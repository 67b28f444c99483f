"""What the centre and its nodes say to each other over the broker, signed.

Subjects (all below a node's own prefix, so the broker's permissions let a node use only its
own, :func:`openlfr.nodes.broker.node_permissions`)::

    openlfr.node.<id>.alert    an alert (JetStream stream NODES_STREAM, Nats-Msg-Id = alert id)
    openlfr.node.<id>.event    a run started, stopped, gallery reloaded, lease lost (same stream)
    openlfr.node.<id>.health   heartbeat and per-camera figures (core NATS, every few seconds)
    openlfr.node.<id>.lease    the node's request for a lease (core request-reply; the centre
                               answers with a lease signed by the centre)

**An envelope** (:func:`seal_envelope`, :func:`open_envelope`) is what a node publishes: JSON
``{"v": 1, "kind": "alert"|"event"|"health", "node": <id>, "id": "<message id>",
"sent_at": "<ISO-8601 UTC>", "body": {...}, "sig": "<base64>"}``, where ``sig`` is the node's
Ed25519 signature over :func:`canonical` of everything but ``sig``. The centre opens it with
the signing key the node registered at enrolment; a bad signature, an unknown or disabled
node, or a node id that is not the subject's (a *misrouted* message) is refused
(:class:`Refused`, with the reason to audit).

**An alert's body** (:func:`alert_body`) carries the alert's fields and its face crop
(JPEG) **sealed to the centre's X25519 key** (:func:`openlfr.nodes.keys.seal`, bound to
:func:`crop_context` of the alert id), so the broker and the site's leaf node never hold a
readable face.

**A lease** (:func:`sign_lease`, :func:`open_lease`) is the centre's signed permission for one
node to match, per deployment, until a time: ``{"v": 1, "node": <id>, "issued_at": ...,
"deployments": {"<deployment id>": "<expires at, ISO-8601 UTC>"}, "sig": ...}`` signed with
the centre's Ed25519 key (the one it signs in to the broker with). A node matches a
deployment's faces only while the deployment's lease has not expired by the node's own clock.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from openlfr.errors import IntegrityFailure

VERSION = 1
#: The JetStream stream (on the centre's broker) that keeps the nodes' alerts and events
#: until the centre has stored them.
NODES_STREAM = "OPENLFR_NODES"
#: The subjects it captures.
NODES_STREAM_SUBJECTS = ("openlfr.node.*.alert", "openlfr.node.*.event")
#: The stream's de-duplication window (seconds): a message published again with the same
#: Nats-Msg-Id within it is stored once.
DUPLICATE_WINDOW_S = 3600.0
#: The centre's durable consumer of the stream.
CENTRE_CONSUMER = "openlfr-centre"
#: The default lease of a deployment on a node (seconds).
DEFAULT_LEASE_S = 60
KINDS = ("alert", "event", "health")


def _prefix(node_id: int) -> str:
    return f"openlfr.node.{int(node_id)}"


def alert_subject(node_id: int) -> str:
    return f"{_prefix(node_id)}.alert"


def event_subject(node_id: int) -> str:
    return f"{_prefix(node_id)}.event"


def health_subject(node_id: int) -> str:
    return f"{_prefix(node_id)}.health"


def lease_subject(node_id: int) -> str:
    return f"{_prefix(node_id)}.lease"


def subject_node(subject: str) -> int | None:
    """The node id a subject ``openlfr.node.<id>.<kind>`` belongs to (None: not one)."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[:2] != ["openlfr", "node"] or not parts[2].isdigit():
        return None
    return int(parts[2])


def crop_context(alert_id: str) -> bytes:
    """What a sealed alert crop is bound to: it does not open as another alert's."""
    return f"openlfr alert crop {alert_id}".encode()


def canonical(obj: dict[str, Any]) -> bytes:
    """The bytes a signature covers (sorted keys, no spaces, UTF-8)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def parse_time(text: object, what: str) -> datetime:
    if not isinstance(text, str):
        raise IntegrityFailure(f"{what} is not a time")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise IntegrityFailure(f"{what} is not a time") from None
    if moment.tzinfo is None:
        raise IntegrityFailure(f"{what} has no time zone")
    return moment.astimezone(UTC)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise IntegrityFailure(f"{what} is not base64")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise IntegrityFailure(f"{what} is not base64") from None


def _signed(payload: dict[str, Any], key: Ed25519PrivateKey) -> bytes:
    return canonical({**payload, "sig": _b64(key.sign(canonical(payload)))})


def _verify(data: bytes, public: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise IntegrityFailure(f"{what} is not JSON") from None
    if not isinstance(doc, dict) or doc.get("v") != VERSION:
        raise IntegrityFailure(f"{what} is not a version {VERSION} message")
    sig = _unb64(doc.pop("sig", None), f"{what}'s signature")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(sig, canonical(doc))
    except (InvalidSignature, ValueError):
        raise IntegrityFailure(f"{what}: the signature does not verify") from None
    return doc


# -- envelopes (node → centre) ----------------------------------------------------------------

@dataclass(frozen=True)
class Envelope:
    kind: str
    node_id: int
    msg_id: str
    sent_at: datetime
    body: dict[str, Any]


class Refused(IntegrityFailure):
    """A message the centre will not take; ``reason`` is what to audit (no payload)."""

    def __init__(self, reason: str, node_id: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.node_id = node_id


def seal_envelope(key: Ed25519PrivateKey, kind: str, node_id: int, msg_id: str,
                  body: dict[str, Any], sent_at: datetime | None = None) -> bytes:
    """A node's message, signed with its Ed25519 key."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    return _signed({"v": VERSION, "kind": kind, "node": int(node_id), "id": str(msg_id),
                    "sent_at": iso(sent_at or datetime.now(UTC)), "body": body}, key)


def peek_node(data: bytes) -> int | None:
    """The node id a message claims (before it is verified), or None."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    node = doc.get("node") if isinstance(doc, dict) else None
    return node if isinstance(node, int) and not isinstance(node, bool) else None


def open_envelope(data: bytes, subject: str, signing_public: bytes | None) -> Envelope:
    """Verify a node's message that arrived on ``subject``. ``signing_public``: the signing
    key of the node the message claims to be from (None: unknown or disabled).

    :class:`Refused` when the subject is not a node's, the message names another node than
    its subject (misrouted), the node is unknown, or the signature does not verify."""
    on = subject_node(subject)
    claimed = peek_node(data)
    if on is None:
        raise Refused(f"not a node's subject: {subject[:80]!r}", claimed)
    if claimed != on:
        raise Refused(f"misrouted: a message naming node {claimed} on node {on}'s subject", on)
    if signing_public is None:
        raise Refused(f"node {on} is not enrolled, or is disabled", on)
    try:
        doc = _verify(data, signing_public, f"node {on}'s message")
    except IntegrityFailure as exc:
        raise Refused(str(exc), on) from None
    kind, body, msg_id = doc.get("kind"), doc.get("body"), doc.get("id")
    if kind not in KINDS or not isinstance(body, dict) or not isinstance(msg_id, str):
        raise Refused(f"node {on}'s message is malformed", on)
    if not subject.endswith("." + kind):
        raise Refused(f"misrouted: a {kind} on {subject[:80]!r}", on)
    return Envelope(kind, on, msg_id, parse_time(doc.get("sent_at"), "sent_at"), body)


# -- leases (centre → node) ----------------------------------------------------------------

@dataclass(frozen=True)
class Lease:
    node_id: int
    issued_at: datetime
    deployments: dict[int, datetime]

    def expires(self, deployment_id: int) -> datetime | None:
        return self.deployments.get(int(deployment_id))

    def holds(self, deployment_id: int, now: datetime) -> bool:
        end = self.expires(deployment_id)
        return end is not None and now < end


def sign_lease(key: Ed25519PrivateKey, node_id: int, deployments: dict[int, datetime],
               issued_at: datetime | None = None) -> bytes:
    """The centre's lease for ``node_id``: each deployment's expiry."""
    return _signed({"v": VERSION, "node": int(node_id),
                    "issued_at": iso(issued_at or datetime.now(UTC)),
                    "deployments": {str(int(k)): iso(v) for k, v in deployments.items()}}, key)


def open_lease(data: bytes, centre_public: bytes, node_id: int) -> Lease:
    """A lease received by ``node_id``; :class:`IntegrityFailure` when it is not the centre's
    or not this node's."""
    doc = _verify(data, centre_public, "the lease")
    if doc.get("node") != int(node_id):
        raise IntegrityFailure("the lease is for another node")
    deps = doc.get("deployments")
    if not isinstance(deps, dict):
        raise IntegrityFailure("the lease names no deployments")
    try:
        out = {int(k): parse_time(v, "a lease's expiry") for k, v in deps.items()}
    except ValueError:
        raise IntegrityFailure("the lease's deployments are not ids") from None
    return Lease(int(node_id), parse_time(doc.get("issued_at"), "issued_at"), out)


# -- alert bodies ------------------------------------------------------------------------------

def alert_body(*, alert_id: str, deployment_id: int, camera: str, subject_id: str,
               reference_id: str, score: float, threshold: float, model_id: str,
               seen_at: datetime, track_id: int, frame: int, t: float,
               box: tuple[float, float, float, float], revision: int,
               latency: float | None, in_view: float | None, sealed_crop: bytes
               ) -> dict[str, Any]:
    """An alert's body (``sealed_crop``: the JPEG crop sealed to the centre's box key with
    :func:`crop_context`)."""
    return {"alert_id": alert_id, "deployment": int(deployment_id), "camera": camera,
            "subject": subject_id, "reference": reference_id, "score": float(score),
            "threshold": float(threshold), "model_id": model_id, "seen_at": iso(seen_at),
            "track": int(track_id), "frame": int(frame), "t": float(t),
            "box": [float(v) for v in box], "revision": int(revision),
            "latency": latency, "in_view": in_view, "crop": _b64(sealed_crop)}


def sealed_crop(body: dict[str, Any]) -> bytes:
    return _unb64(body.get("crop"), "the alert's crop")
