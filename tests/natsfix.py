"""A real NATS server with JetStream for the tests of sites and nodes.

``nats_server`` starts Debian's ``nats-server`` (installed by scripts/test-services) as the
centre runs it: ``nats-server -c CONF -js -a 127.0.0.1 -p FREEPORT``, where CONF puts
JetStream's store in the temporary folder, includes the authorisation file the centre writes
(:mod:`openlfr.nodes.broker`; at first it lets in only the centre's own nkey user) and names a
pid file, so that the centre can make the server reload it. The fixture waits until the
server answers and stops it after the test.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from openlfr.config import Settings
from openlfr.nodes import broker
from openlfr.nodes.keys import NodeKeys

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class NatsServer:
    """A running ``nats-server`` and what the centre needs to use it."""

    proc: subprocess.Popen[bytes]
    port: int
    folder: Path
    centre_seed_file: Path
    auth_file: Path
    pid_file: Path
    ca_file: Path | None = None  # TLS: the CA that signed the server's certificate

    @property
    def scheme(self) -> str:
        return "tls" if self.ca_file is not None else "nats"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def log(self) -> str:
        return (self.folder / "nats.log").read_text(errors="replace")

    def settings(self) -> dict[str, object]:
        """The centre's settings (``OPENLFR_*`` names without the prefix) for this server."""
        return {"nats_url": self.url, "nats_seed_file": self.centre_seed_file,
                "nats_auth_file": self.auth_file, "nats_pid_file": self.pid_file,
                "nats_ca_file": self.ca_file}

    def centre(self, base: Settings) -> Settings:
        """``base`` (an installation's settings) with this broker configured."""
        return base.model_copy(update=self.settings())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _ready(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nats-server exited ({proc.returncode}): "
                               f"{log.with_name('nats.err').read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(4096).startswith(b"INFO") and "Server is ready" in log.read_text(
                        errors="replace"):
                    return  # (with TLS the INFO still comes first, in the clear)
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nats-server did not start in {timeout} s: {log.read_text()}")


def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate for 127.0.0.1 signed by it: (ca, cert, key) files."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("openlfr test CA"))
          .issuer_name(name("openlfr test CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now)
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name("127.0.0.1"))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def start_nats(folder: Path, tls: bool = False) -> NatsServer:
    if not Path(NATS_SERVER).exists():
        pytest.fail("nats-server is needed for the tests of nodes: scripts/test-services "
                    "installs it (Debian's nats-server package)")
    folder.mkdir(parents=True, exist_ok=True)
    seed_file = folder / "centre.nk"
    centre = broker.load_or_create_seed(seed_file)
    auth = folder / "auth.conf"
    broker.write_authorization(auth, centre, [])
    pid_file = folder / "nats.pid"
    conf = folder / "nats.conf"
    store = folder / "js"
    # JetStream's folder is in the file, not given by -sd: a reload applies the file, and a
    # file without JetStream would switch it off (the server refuses both at once).
    text = (f'pid_file: "{pid_file}"\njetstream: {{store_dir: "{store}"}}\n'
            f'include "{auth.name}"\n')
    ca_file = None
    if tls:
        ca_file, cert, key = make_tls(folder)
        text += f'tls: {{cert_file: "{cert}", key_file: "{key}"}}\n'
    conf.write_text(text)
    port = free_port()
    log = folder / "nats.log"
    cmd = [NATS_SERVER, "-c", str(conf), "-js", "-a", "127.0.0.1",
           "-p", str(port), "-l", str(log)]
    with (folder / "nats.err").open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    server = NatsServer(proc, port, folder, seed_file, auth, pid_file, ca_file)
    try:
        _ready(port, proc, log)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture()
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A ``nats-server`` with JetStream in a temporary folder, on a free port, that lets in
    only the centre's nkey user until nodes are enrolled; stopped after the test."""
    server = start_nats(tmp_path / "nats")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def nats_tls_server(tmp_path: Path) -> Iterator[NatsServer]:
    """The same with TLS required (a certificate for 127.0.0.1 from a CA of the test's own)."""
    server = start_nats(tmp_path / "nats-tls", tls=True)
    try:
        yield server
    finally:
        server.stop()


# -- a hub and a site leaf (openlfr.nodes.topology) --------------------------------------------

@dataclass
class NatsProcess:
    """A ``nats-server`` started from a configuration file, that can be stopped and started
    again on the same port and store (a restart of the hub, or a cut of a site's link)."""

    conf: Path
    port: int
    folder: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def log(self) -> str:
        return "".join(p.read_text(errors="replace")
                       for p in sorted(self.folder.glob("nats-*.log")))

    def start(self) -> None:
        import os

        self.starts += 1
        log = self.folder / f"nats-{self.starts}.log"
        with (self.folder / "nats.err").open("wb") as err:
            self.proc = subprocess.Popen([NATS_SERVER, "-c", str(self.conf), "-l", str(log)],
                                         stdout=subprocess.DEVNULL, stderr=err,
                                         env={**os.environ, **self.env})
        try:
            _ready(self.port, self.proc, log)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def wait_log(self, text: str, count: int = 1, timeout: float = 20) -> None:
        """Wait until ``text`` appears ``count`` times in the server's logs."""
        deadline = time.monotonic() + timeout
        while self.log().count(text) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{text!r} not logged {count} time(s) in {timeout} s:\n"
                                   + self.log()[-3000:])
            time.sleep(0.05)


@dataclass
class Topology:
    """A hub (the centre's broker, with its centre user) and one site's leaf."""

    hub: NatsProcess
    leaf: NatsProcess
    site: str
    centre_seed: str

    def linked(self, timeout: float = 20) -> None:
        """Wait until the leaf's link to the hub is up: the site's JetStream domain answers
        the centre at the hub (logs are no proof: both ends log a link being made before the
        hub checks the site's password)."""
        import asyncio

        from openlfr.nodes.topology import site_domain

        async def probe() -> None:
            deadline = time.monotonic() + timeout
            nc = await broker.connect(self.hub.url, self.centre_seed)
            try:
                while True:
                    try:
                        await nc.request(f"$JS.{site_domain(self.site)}.API.INFO", b"",
                                         timeout=0.5)
                        return
                    except Exception:
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"the leaf did not link in {timeout} s:\n"
                                               + self.leaf.log()[-3000:]) from None
                        await asyncio.sleep(0.05)
            finally:
                await nc.close()

        asyncio.run(probe())

    def stop(self) -> None:
        self.leaf.stop()
        self.hub.stop()


def start_topology(folder: Path, site: str, node_users: list[tuple[int, str]],
                   listed: bool = True) -> Topology:
    """A hub and a leaf for ``site`` on free ports in ``folder``, written by
    :mod:`openlfr.nodes.topology`; ``node_users``: (node id, nkey) of the site's nodes;
    ``listed``: the site is in the hub's sites file (else the link is not waited for)."""
    from openlfr.nodes import topology

    if not Path(NATS_SERVER).exists():
        pytest.fail("nats-server is needed for the tests of nodes")
    hub_dir, leaf_dir = folder / "hub", folder / "leaf"
    hub_dir.mkdir(parents=True)
    leaf_dir.mkdir(parents=True)
    centre = broker.load_or_create_seed(hub_dir / "centre.nk")
    broker.write_authorization(hub_dir / "auth.conf", centre, [])
    secret = topology.new_secret()
    (hub_dir / "sites.conf").write_text(
        topology.sites_conf({site: topology.hash_secret(secret)} if listed else {}))
    hub_port, leaf_port, port = free_port(), free_port(), free_port()
    (hub_dir / "nats.conf").write_text(topology.hub_conf(
        conf_dir=str(hub_dir),
        store_dir=str(hub_dir / "js"), pid_file=str(hub_dir / "nats.pid"),
        auth_file=str(hub_dir / "auth.conf"), sites_file=str(hub_dir / "sites.conf"),
        listen=f"127.0.0.1:{hub_port}", leaf_listen=f"127.0.0.1:{leaf_port}"))
    topology.write_private(leaf_dir / "link.conf", topology.link_conf(
        site, f"nats-leaf://127.0.0.1:{leaf_port}", secret))
    (leaf_dir / "users.conf").write_text(topology.leaf_users_conf(
        (nkey, topology.leaf_permissions(broker.node_permissions(node_id)))
        for node_id, nkey in node_users))
    (leaf_dir / "nats.conf").write_text(topology.leaf_conf(
        site=site, conf_dir=str(leaf_dir), store_dir=str(leaf_dir / "js"),
        pid_file=str(leaf_dir / "nats.pid"),
        link_file=str(leaf_dir / "link.conf"), users_file=str(leaf_dir / "users.conf"),
        listen=f"127.0.0.1:{port}"))
    hub = NatsProcess(hub_dir / "nats.conf", hub_port, hub_dir, {})
    leaf = NatsProcess(leaf_dir / "nats.conf", port, leaf_dir, {})
    from openlfr.nodes.keys import seed_nkey

    topo = Topology(hub, leaf, site, seed_nkey(centre))
    try:
        hub.start()
        leaf.start()
        if listed:
            topo.linked()
    except BaseException:
        topo.stop()
        raise
    return topo


__all__ = ["NatsProcess", "NatsServer", "NodeKeys", "Topology", "free_port", "nats_server",
           "nats_tls_server", "start_nats", "start_topology"]
