"""Shared set-up of the tests of nodes with the real pieces together: a node enrolled with the
centre's own keys (as ``openlfr node enroll`` keeps them), ``openlfr node run`` in a process of
its own, a deployment whose camera runs on the node, the centre's side as ``openlfr serve``
runs it (:class:`openlfr.web.jobs.BackgroundJobs` with a broker), and what the stream and the
database hold, to count alerts by their node alert id."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from openlfr.config import Settings
from openlfr.governance import deployments as deps
from openlfr.governance import nodes
from openlfr.nodes import broker, protocol
from openlfr.nodes.keys import NodeKeys, b64
from openlfr.store.models import Alert, AuditRecord
from tests.govfix import Gov, authorise
from tests.natsfix import NatsServer, _ready
from tests.test_gov_deployments import plan

SRC = Path(__file__).resolve().parents[1] / "src"


def wait_for(what: str, cond: Callable[[], object], timeout: float = 30.0,
             step: float = 0.02) -> float:
    """Seconds until ``cond()`` holds; AssertionError naming ``what`` after ``timeout``."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(step)
    return time.monotonic() - t0


def enrol_node(gov: Gov, settings: Settings, folder: Path, name: str = "van-1",
               site: str = "high-street") -> int:
    """Add ``name`` at ``site`` and enrol it with keys made in ``folder``, keeping the centre's
    answer in ``folder/node.json`` as ``openlfr node enroll`` does. Returns the node's id."""
    admin = gov.actors["admin"]
    if site not in [s.name for s in nodes.list_sites(gov.db, admin)]:
        nodes.add_site(gov.db, admin, site)
    issued = nodes.add_node(gov.db, admin, site, name)
    keys = NodeKeys.generate()
    keys.save(folder)
    answer = nodes.enrol(gov.db, settings, issued.token, b64(keys.signing_public),
                         b64(keys.box_public))
    (folder / "node.json").write_text(json.dumps(answer.model_dump(mode="json")))
    return answer.node_id


def deployment_on_node(gov: Gov, clip: Path, watchlists: tuple[int, ...], node: str = "van-1",
                       cameras: int = 1, **changes: Any) -> int:
    """A deployment (authorised, not started) whose camera ``gate`` (and ``gate-2`` … up to
    ``cameras``) plays ``clip`` on ``node``; ``changes``: other plan fields
    (``lease_seconds=10``)."""
    cams = tuple(deps.CameraSpec("gate" if i == 1 else f"gate-{i}", str(clip), node=node)
                 for i in range(1, cameras + 1))
    dep_id = deps.create(gov.db, gov.actors["op1"],
                         replace(plan(watchlists, cameras=cams), **changes),
                         keyring=gov.system.keyring)
    authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)
    return dep_id


def node_process(folder: Path, *extra: str) -> subprocess.Popen[bytes]:
    """``openlfr node run`` on ``folder`` in a process of its own (a looping realtime clip,
    one analysis thread, health every second); its stderr in ``folder/node.err``."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    with (folder / "node.err").open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-c", "from openlfr.cli import main; main()", "node", "run",
             "--dir", str(folder), "--realtime", "--loop", "--workers", "1",
             "--health-every", "1", *extra], env=env, stdout=subprocess.DEVNULL, stderr=err)


def restart(server: NatsServer) -> None:
    """Start the stopped broker again: same configuration, store and port."""
    with (server.folder / "nats.err").open("ab") as err:
        server.proc = subprocess.Popen(server.proc.args, stdout=subprocess.DEVNULL,
                                       stderr=err)
    _ready(server.port, server.proc, server.folder / "nats.log")


def outbox(folder: Path) -> dict[str, tuple[str, Path]]:
    """The node's outbox: message id → (subject, file)."""
    out = {}
    for path in sorted((folder / "outbox").glob("*.msg")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):  # deleted (acknowledged) while read
            continue
        out[doc["msg_id"]] = (doc["subject"], path)
    return out


@dataclass
class Pushed:
    """An alert as the console's live queue was handed it."""

    row: int
    alert: Any
    at: float  # wall time (time.time())


class CentreSide:
    """The centre as ``openlfr serve`` runs it with a broker: :class:`BackgroundJobs` (the
    reconcile tick that writes the nodes' desired state, and :class:`CentreLink`: leases,
    ingest, health), with an alert listener where the console's live stream subscribes."""

    def __init__(self, gov: Gov, settings: Settings) -> None:
        self.gov = gov
        self.settings = settings
        self.system = replace(gov.system, settings=settings)
        self.pushed: list[Pushed] = []
        self.jobs: Any = None
        self.starts = 0

    def start(self) -> None:
        from openlfr.web.jobs import BackgroundJobs

        self.jobs = BackgroundJobs(self.system, reconcile_every=0.2)
        self.jobs.add_alert_listener(
            lambda row, alert: self.pushed.append(Pushed(row, alert, time.time())))
        self.jobs.start()
        self.starts += 1
        assert self.jobs.nodes is not None and self.jobs.nodes.connected.wait(30), \
            "the centre's link did not connect"

    def stop(self) -> None:
        if self.jobs is not None:
            self.jobs.stop()
            self.jobs = None

    @property
    def link(self) -> Any:
        return None if self.jobs is None else self.jobs.nodes


def stored(gov: Gov) -> list[str]:
    """The node alert ids of the alerts stored at the centre (one per row)."""
    with gov.db.reading() as s:
        return [k for k in s.scalars(select(Alert.node_alert_id).order_by(Alert.id))
                if k is not None]


def audited(gov: Gov, action: str) -> int:
    with gov.db.reading() as s:
        return int(s.scalar(select(func.count()).select_from(AuditRecord).where(
            AuditRecord.action == action)) or 0)


def stream_messages(url: str, seed: str, stream: str = protocol.NODES_STREAM,
                    domain: str | None = None) -> list[tuple[str, str, bytes]]:
    """Every message a stream holds: (subject, Nats-Msg-Id, data)."""
    async def go() -> list[tuple[str, str, bytes]]:
        nc = await broker.connect(url, seed)
        try:
            js = nc.jetstream(domain=domain)
            info = await js.stream_info(stream)
            out: list[tuple[str, str, bytes]] = []
            if info.state.messages:
                for seq in range(info.state.first_seq, info.state.last_seq + 1):
                    try:
                        msg = await js.get_msg(stream, seq)
                    except Exception:
                        continue
                    out.append((msg.subject or "", (msg.headers or {}).get("Nats-Msg-Id", ""),
                                bytes(msg.data or b"")))
            return out
        finally:
            await nc.close()
    return _in_thread(go())


def _in_thread(coro: Any) -> Any:
    """Run a coroutine to its end in a thread of its own (callers may hold a loop)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["v"] = asyncio.run(coro)
        except BaseException as exc:
            box["e"] = exc
    t = threading.Thread(target=run)
    t.start()
    t.join(60)
    if "e" in box:
        raise box["e"]
    return box.get("v")


def alert_ids(messages: list[tuple[str, str, bytes]], node_id: int) -> list[str]:
    """The node alert ids (``<node>:<alert id>``) of the first revisions of the alerts in
    ``messages``, one per message."""
    return [f"{node_id}:{msg_id}" for subject, msg_id, _ in messages
            if subject == protocol.alert_subject(node_id) and "." not in msg_id]


def envelopes(messages: list[tuple[str, str, bytes]], signing: bytes
              ) -> list[protocol.Envelope]:
    return [protocol.open_envelope(data, subject, signing) for subject, _, data in messages]


__all__ = ["CentreSide", "Pushed", "alert_ids", "audited", "deployment_on_node", "enrol_node",
           "envelopes", "node_process", "outbox", "restart", "stored", "stream_messages",
           "wait_for"]
