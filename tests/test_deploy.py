"""The operations files in deploy/: the nats-server configuration examples are what
`openlfr nodes broker-config` writes (so they never drift), and the systemd units parse."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"

#: The commands that wrote the checked-in examples (also in README "Operating sites and
#: nodes"): placeholders are the paths of a Debian machine and the site high-street.
EXAMPLES = {
    "nats-hub.conf": ["nodes", "broker-config", "--role", "hub",
                      "--tls-cert", "/etc/nats/tls/hub.pem", "--tls-key", "/etc/nats/tls/hub.key",
                      "--leaf-cert", "/etc/nats/tls/hub.pem",
                      "--leaf-key", "/etc/nats/tls/hub.key"],
    "nats-leaf.conf": ["nodes", "broker-config", "--role", "leaf", "--site", "high-street",
                       "--hub-ca", "/etc/nats/tls/ca.pem"],
}
UNITS = ("openlfr-broker.service", "openlfr-centre.service", "openlfr-node.service")


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


def _cli(*args: str) -> Done:
    """``openlfr ARGS`` in this process (a command that needs no installation)."""
    from typer.testing import CliRunner

    from openlfr.cli import app

    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return Done(result.exit_code, result.stdout, result.stderr)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_checked_in_broker_examples_are_what_the_command_writes(name: str) -> None:
    done = _cli(*EXAMPLES[name])
    assert done.returncode == 0, done.stderr
    assert done.stdout == (DEPLOY / name).read_text(), (
        f"deploy/{name} drifted: regenerate it with openlfr {' '.join(EXAMPLES[name])}")


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_examples_are_accepted_by_nats_server(name: str, tmp_path: Path) -> None:
    """nats-server's own check of the configuration (-t), with the files it includes, the
    certificates and folders it names made in a temporary folder."""
    from openlfr.nodes import topology

    nats = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not Path(nats).exists():
        pytest.fail("nats-server is needed (Debian's nats-server package)")
    from tests.natsfix import make_tls

    ca, cert, key = make_tls(tmp_path)
    text = (DEPLOY / name).read_text()
    for placeholder, real in (("/etc/nats/tls/hub.pem", cert), ("/etc/nats/tls/hub.key", key),
                              ("/etc/nats/tls/ca.pem", ca),
                              ("/var/lib/nats", tmp_path / "js"),
                              ("/run/nats/nats.pid", tmp_path / "nats.pid"),
                              ('"/var/lib/openlfr', f'"{tmp_path}/var/lib/openlfr')):
        text = text.replace(placeholder, str(real))
    conf = tmp_path / "etc" / "nats" / "openlfr.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(text)
    # the included files, where the example names them (relative to the configuration)
    state = tmp_path / "var" / "lib" / "openlfr"
    state.mkdir(parents=True)
    (state / "nats-auth.conf").write_text("authorization: {users: [{user: a, password: b}]}\n")
    active = tmp_path / "run" / "nats"
    active.mkdir(parents=True)
    (active / "openlfr-sites.conf").write_text(topology.sites_conf({}))
    (conf.parent / "openlfr-link.conf").write_text(
        topology.link_conf("high-street", "tls://hub.example:7422", "s3cret"))
    (conf.parent / "openlfr-site-users.conf").write_text(topology.leaf_users_conf([]))
    done = subprocess.run([nats, "-c", str(conf), "-t"], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_command_refuses_bad_input_in_one_line() -> None:
    for args, message in (
            (["--role", "leaf"], "a leaf needs --site"),
            (["--role", "relay"], "--role is hub or leaf"),
            (["--role", "leaf", "--site", "high.street"], "cannot name a broker domain"),
            (["--role", "leaf", "--site", "hub"], "may not be called 'hub'"),
            (["--role", "hub", "--listen", "4222"], "is not host:port"),
            (["--role", "hub", "--tls-cert", "/c.pem"], "go together")):
        done = _cli("nodes", "broker-config", *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def _units_for_verify(tmp_path: Path) -> list[Path]:
    """The units with the programs they start replaced by ones this machine has (verify
    checks that each one exists)."""
    out = []
    for name in UNITS:
        text = (DEPLOY / name).read_text().replace("/opt/openlfr/bin/openlfr", "/bin/true")
        path = tmp_path / name
        path.write_text(text)
        out.append(path)
    return out


def test_the_systemd_units_parse(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    for name in UNITS:  # the sections and keys, whatever the machine
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string((DEPLOY / name).read_text())
        assert parser.sections() == ["Unit", "Service", "Install"], name
        service = parser["Service"]
        assert service["ExecStart"].split()[0].startswith("/"), name
        for key, value in (("NoNewPrivileges", "yes"), ("PrivateTmp", "yes"),
                           ("ProtectSystem", "strict")):
            assert service.get(key) == value, (name, key)
        assert service.get("ReadWritePaths"), name
        assert service.get("User") or service.get("DynamicUser") == "yes", name
    node = configparser.ConfigParser(strict=False, interpolation=None)
    node.read_string((DEPLOY / "openlfr-node.service").read_text())
    assert node["Service"]["Restart"] == "always"
    assert "node run --dir /var/lib/openlfr-node" in node["Service"]["ExecStart"]
    assert node["Service"]["ReadWritePaths"] == "/var/lib/openlfr-node"
    centre = configparser.ConfigParser(strict=False, interpolation=None)
    centre.read_string((DEPLOY / "openlfr-centre.service").read_text())
    assert "postgresql.service" in centre["Unit"]["After"]
    assert "openlfr-broker.service" in centre["Unit"]["After"]
    assert " serve " in centre["Service"]["ExecStart"]
    if analyze is None:
        return
    done = subprocess.run([analyze, "verify", *map(str, _units_for_verify(tmp_path))],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stdout + done.stderr
