"""The one module that speaks NATS: the broker's authorisation of nodes, and each node's
desired state and galleries in JetStream.

**Who may connect.** The centre keeps the broker's list of users: a file of NATS configuration
(:func:`write_authorization`) that the broker's own configuration includes. It lets in the
centre's nkey user (everything) and one nkey user per enabled node, whose permissions are only
its own (:func:`node_permissions`):

- publish and subscribe on ``openlfr.node.<id>.>``; replies to its requests on its own inbox
  prefix ``_INBOX.node.<id>`` (so it cannot read another client's replies);
- of JetStream, only reading its own two buckets: the key-value bucket
  ``openlfr_node_<id>_state`` (its desired state, key ``desired``) and the object store
  ``openlfr_node_<id>_galleries`` (its galleries, sealed to its key). It cannot create, change
  or delete a stream, nor write to a bucket.

Enrolling, disabling or revoking a node rewrites the file (atomically) and makes the broker
reload it (``SIGHUP`` to the pid in its ``pid_file``): a user removed from the file is
disconnected at once by the broker and cannot sign in again.

**What a node is told.** The centre writes, per node, the desired state document
(:meth:`Broker.put_desired`) and each gallery already sealed to the node's X25519 key
(:meth:`Broker.put_gallery`, :func:`openlfr.nodes.keys.seal`).

The NATS client (``nats-py``, the ``nodes`` extra) is imported only when a broker is used:
a single machine needs none of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from openlfr.errors import Forbidden, IntegrityFailure, InvalidInput, Unavailable
from openlfr.nodes.keys import private_from_seed, public_nkey, seed_nkey

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

T = TypeVar("T")
log = logging.getLogger("openlfr.nodes.broker")

#: The key of a node's desired state in its key-value bucket.
DESIRED_KEY = "desired"
#: How long one broker operation may take, in seconds.
TIMEOUT = 10.0
#: The pauses between the centre's attempts to connect (None: the last attempt), in seconds.
CONNECT_RETRIES: tuple[float | None, ...] = (0.1, 0.2, 0.4, 0.8, None)


def subject_prefix(node_id: int) -> str:
    """The subjects a node owns: ``openlfr.node.<id>`` and below."""
    return f"openlfr.node.{int(node_id)}"


def inbox_prefix(node_id: int) -> str:
    """The inbox prefix a node's client must use (its replies arrive below it)."""
    return f"_INBOX.node.{int(node_id)}"


def state_bucket(node_id: int) -> str:
    return f"openlfr_node_{int(node_id)}_state"


def gallery_bucket(node_id: int) -> str:
    return f"openlfr_node_{int(node_id)}_galleries"


def _streams(node_id: int) -> tuple[str, str]:
    return f"KV_{state_bucket(node_id)}", f"OBJ_{gallery_bucket(node_id)}"


def node_permissions(node_id: int) -> dict[str, dict[str, list[str]]]:
    """What a node's broker user may publish and subscribe to: its own subjects, and reading
    its own two buckets (nothing that creates, changes or deletes a stream)."""
    own = f"{subject_prefix(node_id)}.>"
    publish = [own, "$JS.API.INFO"]
    for stream in _streams(node_id):
        publish += [
            f"$JS.API.STREAM.INFO.{stream}",
            f"$JS.API.STREAM.MSG.GET.{stream}",
            f"$JS.API.DIRECT.GET.{stream}", f"$JS.API.DIRECT.GET.{stream}.>",
            f"$JS.API.CONSUMER.CREATE.{stream}", f"$JS.API.CONSUMER.CREATE.{stream}.>",
            f"$JS.API.CONSUMER.INFO.{stream}.*", f"$JS.API.CONSUMER.DELETE.{stream}.*",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.*",
            f"$JS.ACK.{stream}.>", f"$JS.FC.{stream}.>",
        ]
    return {"publish": {"allow": publish},
            "subscribe": {"allow": [own, f"{inbox_prefix(node_id)}.>"]}}


@dataclass(frozen=True)
class NodeUser:
    """An enabled node as the broker knows it: its id and its nkey (``U...``)."""

    node_id: int
    nkey: str


#: A user that may do nothing at all: the probe that tells the centre a reload is applied.
NOTHING = {"publish": {"deny": [">"]}, "subscribe": {"deny": [">"]}}


def authorization_conf(centre: Ed25519PrivateKey, nodes: Iterable[NodeUser],
                       probe: str | None = None) -> str:
    """The broker's authorisation block: the centre's user, one user per node, and (``probe``)
    a user that may do nothing, whose only use is to show that this version is in force."""
    centre_nkey = public_nkey(centre.public_key().public_bytes_raw())
    users: list[dict[str, Any]] = [{"nkey": centre_nkey}]
    for node in sorted(nodes, key=lambda n: n.node_id):
        users.append({"nkey": node.nkey, "permissions": node_permissions(node.node_id)})
    if probe is not None:
        users.append({"nkey": probe, "permissions": NOTHING})
    body = json.dumps({"users": users}, indent=2)
    return ("# Written by openlfr (the centre): the broker's users. Do not edit: enrolling,\n"
            "# disabling or revoking a node rewrites it and reloads the broker.\n"
            f"authorization: {body}\n")


def write_authorization(path: Path, centre: Ed25519PrivateKey,
                        nodes: Iterable[NodeUser], probe: str | None = None) -> None:
    """Write :func:`authorization_conf` to ``path``, atomically (a new file renamed over the
    old one, so the broker never reads half of it)."""
    text = authorization_conf(centre, nodes, probe)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def reload_broker(pid_file: Path) -> None:
    """Make the broker whose pid is in ``pid_file`` reload its configuration (``SIGHUP``);
    :class:`Unavailable` when it is not running."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        raise Unavailable(f"the broker could not be told to reload ({pid_file}: {exc})") from None


def load_or_create_seed(path: Path) -> Ed25519PrivateKey:
    """The centre's broker key: the nkey seed in ``path`` (made, mode 0600, if missing)."""
    try:
        return private_from_seed(path.read_text())
    except FileNotFoundError:
        pass
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made meanwhile by another process
        return private_from_seed(path.read_text())
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(seed_nkey(key) + "\n")
    return key


# -- the connection ----------------------------------------------------------------------------

def tls_context(ca_file: Path | None) -> ssl.SSLContext | None:
    """A TLS context that trusts ``ca_file`` (None: no TLS unless the URL says ``tls://``)."""
    if ca_file is None:
        return None
    ctx = ssl.create_default_context(cafile=str(ca_file))
    return ctx


async def connect(url: str, seed: str, *, inbox: str | None = None,
                  ca_file: Path | None = None, reconnect: bool = False) -> NATS:
    """A NATS connection signed in with the nkey ``seed``. ``inbox``: the inbox prefix (a
    node's, :func:`inbox_prefix`)."""
    try:
        import nats
    except ImportError:
        raise Unavailable("the NATS client is not installed: pip install 'openlfr[nodes]'"
                          ) from None
    options: dict[str, Any] = {"servers": [url], "nkeys_seed_str": seed,
                               "connect_timeout": 5, "allow_reconnect": reconnect,
                               "max_reconnect_attempts": -1 if reconnect else 0}
    if inbox is not None:
        options["inbox_prefix"] = inbox
    ctx = tls_context(ca_file)
    if ctx is not None:
        options["tls"] = ctx

    async def quiet(exc: Exception) -> None:  # the caller sees the failure itself
        return None

    options["error_cb"] = quiet
    return await nats.connect(**options)


class Broker:
    """The centre's side of the broker: one object the services call, with plain blocking
    methods (each one connects, does its work and closes: desired state changes seldom)."""

    def __init__(self, url: str, centre: Ed25519PrivateKey, *,
                 auth_file: Path | None = None, pid_file: Path | None = None,
                 ca_file: Path | None = None) -> None:
        self.url = url
        self._seed = seed_nkey(centre)
        self._centre = centre
        self.auth_file = auth_file
        self.pid_file = pid_file
        self.ca_file = ca_file

    # -- users ------------------------------------------------------------------------------
    def set_users(self, nodes: Sequence[NodeUser]) -> None:
        """Let in exactly the centre and ``nodes`` (rewrite the file, reload the broker)."""
        if self.auth_file is None:
            raise InvalidInput("no broker authorisation file is configured "
                               "(OPENLFR_NATS_AUTH_FILE)", field="nats_auth_file")
        if self.pid_file is None:
            write_authorization(self.auth_file, self._centre, nodes)
            return
        # The reload is asynchronous: a probe user, new with each version of the file, signs
        # in once the version is in force, so that this returns only when it is.
        probe = Ed25519PrivateKey.generate()
        write_authorization(self.auth_file, self._centre, nodes,
                            public_nkey(probe.public_key().public_bytes_raw()))
        reload_broker(self.pid_file)
        self._await_probe(seed_nkey(probe))

    def _await_probe(self, seed: str, timeout: float = TIMEOUT) -> None:
        async def go() -> None:
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                try:
                    nc = await connect(self.url, seed, ca_file=self.ca_file)
                except Unavailable:
                    raise
                except Exception:
                    if asyncio.get_running_loop().time() > deadline:
                        raise Unavailable("the broker did not apply its new users within "
                                          f"{timeout:.0f} s") from None
                    await asyncio.sleep(0.01)
                    continue
                await nc.close()
                return

        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, go()).result()

    # -- JetStream --------------------------------------------------------------------------
    def _run(self, work: Callable[[Any], Awaitable[T]]) -> T:
        async def go() -> T:
            # A connection that arrives while the broker reloads its users (just after
            # set_users) may be reset: try again for a moment before giving up.
            for delay in CONNECT_RETRIES:
                try:
                    nc = await connect(self.url, self._seed, ca_file=self.ca_file)
                    break
                except Unavailable:
                    raise
                except Exception as exc:
                    if delay is None:
                        raise Unavailable(f"the broker at {self.url} cannot be reached: "
                                          f"{type(exc).__name__}") from None
                    await asyncio.sleep(delay)
            try:
                return await asyncio.wait_for(work(nc.jetstream()), TIMEOUT)
            finally:
                await nc.close()

        # Its own thread and loop: callable from sync code whether or not a loop is running.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, go()).result()

    def ensure_node(self, node_id: int) -> None:
        """Create the node's state bucket and gallery store if missing."""
        async def work(js: Any) -> None:
            from nats.js.errors import BucketNotFoundError
            try:
                await js.key_value(state_bucket(node_id))
            except BucketNotFoundError:
                await js.create_key_value(bucket=state_bucket(node_id), history=5)
            try:
                await js.object_store(gallery_bucket(node_id))
            except BucketNotFoundError:
                await js.create_object_store(gallery_bucket(node_id))
        self._run(work)

    def drop_node(self, node_id: int) -> None:
        """Delete the node's buckets (its desired state and its sealed galleries)."""
        async def work(js: Any) -> None:
            from nats.js.errors import NotFoundError
            for stream in _streams(node_id):
                with contextlib.suppress(NotFoundError):
                    await js.delete_stream(stream)
        self._run(work)

    def put_desired(self, node_id: int, document: bytes) -> int:
        """Write the node's desired state; returns the bucket's revision."""
        async def work(js: Any) -> int:
            kv = await js.key_value(state_bucket(node_id))
            return int(await kv.put(DESIRED_KEY, document))
        return self._run(work)

    def get_desired(self, node_id: int) -> bytes | None:
        async def work(js: Any) -> bytes | None:
            from nats.js.errors import KeyNotFoundError
            kv = await js.key_value(state_bucket(node_id))
            try:
                entry = await kv.get(DESIRED_KEY)
            except KeyNotFoundError:
                return None
            return None if entry.value is None else bytes(entry.value)
        return self._run(work)

    def put_gallery(self, node_id: int, name: str, sealed: bytes) -> None:
        """Store a gallery (already sealed to the node's key) under ``name``."""
        async def work(js: Any) -> None:
            store = await js.object_store(gallery_bucket(node_id))
            await store.put(name, sealed)
        self._run(work)

    def delete_gallery(self, node_id: int, name: str) -> None:
        async def work(js: Any) -> None:
            from nats.js.errors import NotFoundError, ObjectNotFoundError
            store = await js.object_store(gallery_bucket(node_id))
            with contextlib.suppress(ObjectNotFoundError, NotFoundError):
                await store.delete(name)
        self._run(work)

    def galleries(self, node_id: int) -> list[str]:
        """The names of the galleries stored for the node."""
        async def work(js: Any) -> list[str]:
            from nats.js.errors import NotFoundError
            store = await js.object_store(gallery_bucket(node_id))
            try:
                infos = await store.list()
            except NotFoundError:
                return []
            return sorted(i.name for i in infos if not i.deleted)
        return self._run(work)

    def get_gallery(self, node_id: int, name: str) -> bytes:
        async def work(js: Any) -> bytes:
            store = await js.object_store(gallery_bucket(node_id))
            return bytes((await store.get(name)).data)
        return self._run(work)

    def raw_messages(self, stream: str) -> list[bytes]:
        """Every message body in ``stream`` as the broker stores it (for checks that nothing
        readable is there)."""
        async def work(js: Any) -> list[bytes]:
            from nats.js.errors import NotFoundError
            info = await js.stream_info(stream)
            out = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                try:
                    msg = await js.get_msg(stream, seq)
                except NotFoundError:
                    continue
                out.append(bytes(msg.data or b""))
            return out
        return self._run(work)

    # -- the centre's service: leases, health, the nodes' stream -------------------------------
    def ensure_stream(self) -> None:
        """Create the nodes' stream and the centre's durable consumer if missing."""
        self._run(_ensure_stream)

    def pending(self) -> int:
        """Messages of the nodes' stream not yet acknowledged by the centre's consumer."""
        async def work(js: Any) -> int:
            from openlfr.nodes import protocol
            info = await js.consumer_info(protocol.NODES_STREAM, protocol.CENTRE_CONSUMER)
            return int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        return self._run(work)

    def serve(self, *, on_lease: Callable[[str, str | None], bytes | None],
              on_health: Callable[[list[tuple[str, bytes]]], object],
              on_messages: Callable[[list[tuple[str, bytes]]], list[str]],
              stop: threading.Event, batch: int = 64, retry_after: float = 2.0,
              on_connected: Callable[[], None] | None = None) -> None:
        """Run the centre's side until ``stop`` is set, reconnecting for ever: answer lease
        requests (``on_lease(subject, reply)`` → the signed lease, or None: no answer); pass
        heartbeats to ``on_health([(subject, data), …])``; and read the nodes' stream with the
        durable consumer, up to ``batch`` messages at a time, in order:
        ``on_messages([(subject, data), …])`` says for each ``ack`` (stored: acknowledged),
        ``term`` (refused: never delivered again) or ``retry`` (delivered again after
        ``retry_after`` seconds). Fetched messages not yet handled when stopping are given
        back to the broker at once.

        Heartbeats are coalesced: while the last ones are being kept, a newer heartbeat of a
        node replaces its older one not yet kept (a heartbeat's counts are cumulative, so the
        newest says all). However many nodes report, the centre keeps up, and a slow database
        makes heartbeats coarser, not a queue that grows. The callbacks block (they use the
        database): each kind runs in its own worker thread, so a slow store does not delay
        leases."""
        from openlfr.nodes import protocol

        async def session(pools: dict[str, ThreadPoolExecutor]) -> None:
            keeper: asyncio.Future[None] | None = None
            nc = await connect(self.url, self._seed, ca_file=self.ca_file)
            loop = asyncio.get_running_loop()
            try:
                js = nc.jetstream()
                await _ensure_stream(js)

                async def lease(msg: Any) -> None:
                    try:
                        answer = await loop.run_in_executor(pools["lease"], on_lease,
                                                            msg.subject, msg.reply or None)
                        if answer is not None and msg.reply:
                            await nc.publish(msg.reply, answer)
                    except Exception:
                        log.exception("answering a lease request")

                latest: dict[str, bytes] = {}  # subject → the newest heartbeat not yet kept
                beat = asyncio.Event()

                async def health(msg: Any) -> None:
                    latest[msg.subject] = bytes(msg.data)
                    beat.set()

                async def keep_health() -> None:
                    while True:
                        await beat.wait()
                        beat.clear()
                        while latest:
                            items = list(latest.items())
                            latest.clear()
                            try:
                                await loop.run_in_executor(pools["health"], on_health, items)
                            except Exception:
                                log.exception("keeping %d heartbeat(s)", len(items))

                await nc.subscribe("openlfr.node.*.lease", cb=lease)
                await nc.subscribe("openlfr.node.*.health", cb=health)
                keeper = asyncio.ensure_future(keep_health())
                psub = await js.pull_subscribe_bind(protocol.CENTRE_CONSUMER,
                                                    protocol.NODES_STREAM)
                if on_connected is not None:
                    on_connected()
                while not stop.is_set():
                    if nc.is_closed:
                        raise Unavailable("the connection to the broker closed")
                    try:
                        msgs = await psub.fetch(batch, timeout=0.5)
                    except TimeoutError:
                        continue
                    if stop.is_set():
                        for msg in msgs:
                            await msg.nak()
                        break
                    verdicts = await loop.run_in_executor(
                        pools["stream"], on_messages,
                        [(m.subject, bytes(m.data)) for m in msgs])
                    await asyncio.gather(*(
                        m.ack_sync(timeout=TIMEOUT) if v == "ack" else m.term() if v == "term"
                        else m.nak(delay=retry_after) for m, v in zip(msgs, verdicts,
                                                                     strict=True)))
                await nc.flush(timeout=int(TIMEOUT))
            finally:
                if keeper is not None:
                    keeper.cancel()
                with contextlib.suppress(Exception):
                    await nc.close()

        async def forever() -> None:
            pools = {k: ThreadPoolExecutor(1, thread_name_prefix=f"lfr-nodes-{k}")
                     for k in ("lease", "health", "stream")}
            delay = 0.2
            try:
                while not stop.is_set():
                    try:
                        await session(pools)
                        delay = 0.2
                    except Exception as exc:
                        log.warning("the centre's link to the broker at %s: %s: %s (trying "
                                    "again in %.1f s)", self.url, type(exc).__name__, exc,
                                    delay)
                    end = asyncio.get_running_loop().time() + delay
                    while not stop.is_set() and asyncio.get_running_loop().time() < end:
                        await asyncio.sleep(0.05)
                    delay = min(delay * 2, 5.0)
            finally:
                for pool in pools.values():
                    pool.shutdown(wait=True)

        asyncio.run(forever())


async def _ensure_stream(js: Any) -> None:
    """The nodes' stream (file storage, de-duplicated on Nats-Msg-Id within the window) and
    the centre's durable pull consumer (explicit acknowledgement)."""
    from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig
    from nats.js.errors import BadRequestError

    from openlfr.nodes import protocol

    config = StreamConfig(name=protocol.NODES_STREAM,
                          subjects=list(protocol.NODES_STREAM_SUBJECTS),
                          storage=StorageType.FILE,
                          duplicate_window=protocol.DUPLICATE_WINDOW_S)
    try:
        await js.add_stream(config)
    except BadRequestError:  # there already, with another configuration: bring it in line,
        # keeping the sites' streams it sources (added by add_site_source): without them
        # nothing kept at a site would reach the hub again
        config.sources = (await js.stream_info(protocol.NODES_STREAM)).config.sources
        await js.update_stream(config)
    await js.add_consumer(protocol.NODES_STREAM, ConsumerConfig(
        durable_name=protocol.CENTRE_CONSUMER, ack_policy=AckPolicy.EXPLICIT, ack_wait=30.0,
        max_ack_pending=1000))


class NodeClient:
    """A node's side of the broker: what an enrolled node may read, over its own connection
    (signed in with its nkey, replies on its own inbox). Used with ``async with``."""

    def __init__(self, url: str, node_id: int, seed: str, *,
                 ca_file: Path | None = None, state_domain: str | None = None) -> None:
        self.url = url
        self.node_id = int(node_id)
        self._seed = seed
        self.ca_file = ca_file
        #: The JetStream domain of the centre's buckets when this node signs in to its site's
        #: leaf broker (``hub``; None: the broker it signs in to holds them). What it
        #: publishes goes to the JetStream of the broker it signs in to either way (the
        #: site's stream keeps it while the link is down).
        self.state_domain = state_domain
        self.nc: NATS | None = None

    async def _connect(self, reconnect: bool) -> NodeClient:
        try:
            self.nc = await connect(self.url, self._seed, inbox=inbox_prefix(self.node_id),
                                    ca_file=self.ca_file, reconnect=reconnect)
        except Unavailable:
            raise
        except Exception as exc:
            if "authorization" in str(exc).lower():
                raise Forbidden("the broker refused this node's credentials (disabled, or "
                                "not enrolled)") from None
            raise Unavailable(f"the broker at {self.url} cannot be reached: "
                              f"{type(exc).__name__}") from None
        return self

    async def __aenter__(self) -> NodeClient:
        return await self._connect(reconnect=False)

    async def __aexit__(self, *exc: object) -> None:
        if self.nc is not None:
            await self.nc.close()

    def _js(self) -> Any:
        """JetStream where the centre keeps this node's buckets."""
        assert self.nc is not None, "use NodeClient with async with"
        if self.state_domain:
            return self.nc.jetstream(domain=self.state_domain)
        return self.nc.jetstream()

    async def desired(self) -> bytes | None:
        """The node's desired state document (None: none written yet)."""
        from nats.js.errors import KeyNotFoundError
        kv = await self._js().key_value(state_bucket(self.node_id))
        try:
            entry = await kv.get(DESIRED_KEY)
        except KeyNotFoundError:
            return None
        return None if entry.value is None else bytes(entry.value)

    async def gallery(self, name: str) -> bytes:
        """A gallery as stored (sealed to this node's key), read from this node's own store
        only (the stream is named, so no lookup of other streams is needed)."""
        import base64
        import hashlib

        js = self._js()
        bucket = gallery_bucket(self.node_id)
        store = await js.object_store(bucket)
        info = await store.get_info(name)
        if not info.size:
            return b""
        sub = await js.subscribe(f"$O.{bucket}.C.{info.nuid}", stream=f"OBJ_{bucket}",
                                 ordered_consumer=True)
        data = bytearray()
        try:
            while True:
                msg = await sub.next_msg(timeout=TIMEOUT)
                data += msg.data
                if msg.metadata.num_pending == 0:
                    break
        finally:
            await sub.unsubscribe()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()
        if info.digest is None or info.digest.split("=", 1)[1].rstrip("=") != digest.rstrip("="):
            raise IntegrityFailure(f"gallery {name!r}: its digest does not match")
        return bytes(data)

    async def publish(self, subject: str, data: bytes) -> None:
        """Publish on a subject, and wait until the broker has processed it (a refusal by
        the broker's permissions arrives as an error before this returns)."""
        assert self.nc is not None
        before = self.nc.last_error
        await self.nc.publish(subject, data)
        await self.nc.flush(timeout=5)  # the broker answers a refused publish before the PONG
        error = self.nc.last_error
        if error is None or error is before:  # ... usually: its refusal may follow the PONG
            await asyncio.sleep(0.05)
            await self.nc.flush(timeout=5)
            error = self.nc.last_error
        if error is not None and error is not before and "permissions violation" in str(error):
            raise Forbidden(f"the broker refused publishing to {subject!r}")

    # -- what the running node needs (openlfr node run) ---------------------------------------

    async def open(self) -> NodeClient:
        """Connect, and keep reconnecting by itself whenever the link drops (the node agent's
        connection; :meth:`connected` says whether it is up now). Close with :meth:`close`."""
        return await self._connect(reconnect=True)

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def close(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()

    async def watch_desired(self) -> Any:
        """A watcher of the node's desired state key (``await w.updates(timeout)`` gives the
        next entry; the first is the current value, or None when there is none yet)."""
        kv = await self._js().key_value(state_bucket(self.node_id))
        return await kv.watch(DESIRED_KEY)

    async def publish_durable(self, subject: str, data: bytes, msg_id: str,
                              timeout: float = 5.0) -> tuple[int, bool]:
        """Publish to JetStream with ``Nats-Msg-Id`` = ``msg_id`` and wait for the stream's
        acknowledgement: (stream sequence, whether the stream had it already).
        :class:`Unavailable` when no stream took it (broker unreachable, no stream yet)."""
        assert self.nc is not None
        try:
            ack = await self.nc.jetstream().publish(subject, data, timeout=timeout,
                                                    headers={"Nats-Msg-Id": msg_id})
        except Exception as exc:
            raise Unavailable(f"not stored by the broker: {type(exc).__name__}") from None
        return int(ack.seq), bool(ack.duplicate)

    async def request(self, subject: str, data: bytes, timeout: float = 5.0) -> bytes:
        """A core request; the answer's body. :class:`Unavailable` when none comes."""
        assert self.nc is not None
        try:
            msg = await self.nc.request(subject, data, timeout=timeout)
        except Exception as exc:
            raise Unavailable(f"no answer on {subject}: {type(exc).__name__}") from None
        return bytes(msg.data)

    async def publish_now(self, subject: str, data: bytes) -> None:
        """A core publish, not kept by the broker (health); dropped when not connected."""
        if self.connected:
            assert self.nc is not None
            await self.nc.publish(subject, data)


# -- sites: the hub's stream sources each site leaf's stream (openlfr.nodes.topology) ---------

def add_site_source(url: str, seed: str, site: str, *, ca_file: Path | None = None,
                    timeout: float = TIMEOUT) -> None:
    """Make the site's leaf stream (in the site's JetStream domain, over the link: it must be
    up) if missing, and add it as a source of the hub's stream ``OPENLFR_NODES`` (made with
    the protocol's subjects and de-duplication window if missing). Run by the centre when a
    site's leaf is configured; running it again changes nothing."""
    from openlfr.nodes import protocol, topology

    leaf_cfg = topology.site_stream_config(site)
    source = topology.site_source(site)

    async def go() -> None:
        from nats.errors import NoRespondersError
        from nats.js.api import StreamConfig, StreamSource
        from nats.js.errors import NotFoundError, ServiceUnavailableError
        nc = await connect(url, seed, ca_file=ca_file)
        try:
            leaf = nc.jetstream(domain=topology.site_domain(site), timeout=timeout)
            # Just after the link is made the leaf's interest may not have reached the hub
            # yet: ask again for a moment when no one answers.
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                try:
                    try:
                        await leaf.stream_info(leaf_cfg["name"])
                    except NotFoundError:
                        await leaf.add_stream(StreamConfig.from_response(dict(leaf_cfg)))
                    break
                except (ServiceUnavailableError, NoRespondersError, TimeoutError):
                    if asyncio.get_running_loop().time() > deadline:
                        raise
                    await asyncio.sleep(0.1)
            hub = nc.jetstream(timeout=timeout)
            wanted = StreamSource.from_response(json.loads(json.dumps(source)))
            try:
                info = await hub.stream_info(protocol.NODES_STREAM)
            except NotFoundError:
                await hub.add_stream(StreamConfig(
                    name=protocol.NODES_STREAM, subjects=list(protocol.NODES_STREAM_SUBJECTS),
                    duplicate_window=protocol.DUPLICATE_WINDOW_S, sources=[wanted]))
                return
            config = info.config
            current = list(config.sources or [])
            if any(s.name == wanted.name and s.external is not None
                   and s.external.api == source["external"]["api"] for s in current):
                return
            config.sources = [*current, wanted]
            await hub.update_stream(config)
        finally:
            await nc.close()

    def run() -> None:
        try:
            asyncio.run(asyncio.wait_for(go(), timeout * 3))
        except (Unavailable, InvalidInput):
            raise
        except Exception as exc:
            raise Unavailable(f"the site {site!r} could not be added as a source of the hub's "
                              f"stream (is its leaf linked?): {type(exc).__name__}: {exc}"
                              ) from None

    with ThreadPoolExecutor(1) as pool:
        pool.submit(run).result()
