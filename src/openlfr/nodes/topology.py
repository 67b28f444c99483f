"""The broker's topology for sites: the hub's and a site leaf's ``nats-server`` configuration
(text only; the NATS client is not needed here).

**The hub** is the centre's broker: JetStream in its own domain (``hub``), the stream
:data:`~openlfr.nodes.protocol.NODES_STREAM` that the centre consumes, the users the centre
writes (``include`` of its authorisation file, :func:`openlfr.nodes.broker.write_authorization`)
and a *leafnode* listener where each site's leaf signs in.

**A site leaf** is a ``nats-server`` at the site (a van, a stadium gate) that the site's nodes
connect to. It has JetStream in its own domain, named after the site, with one stream
(:func:`site_stream`) that captures the site's nodes' alerts and events; its link to the hub
is a leafnode remote signed in as the site (:func:`site_user`, a password only the hub and
the site know). While the link is down the leaf keeps the messages; the hub's
``OPENLFR_NODES`` stream **sources** the leaf's stream across domains
(``external.api = "$JS.<site>.API"``, :func:`openlfr.nodes.broker.add_site_source`), so they
arrive when the link returns. Store-and-forward is the broker's, not ours.

**Each message is captured once.** The leaf's link to the hub denies the nodes' alert and
event subjects in both directions (``deny_exports`` and ``deny_imports``): a node's alert
published at the site is stored only by the site's stream, and reaches the hub only through
the source (which carries ``Nats-Msg-Id``, so a message sourced again after a cut is still
stored once by the hub's de-duplication). Everything else crosses the link while it is up:
lease requests and their replies, health, and the nodes' reads of their buckets in the hub's
domain. When the link is down a lease request has no one to answer it and fails: that is
how a cut-off node loses its lease.

**Who signs in where.** A site's leaf signs in on the hub's leafnode listener as the user
``site-<name>`` with a password only the hub and the site know (:func:`new_secret`); the hub
keeps its bcrypt hash in the sites file (:func:`sites_conf`), which the hub's ``leafnodes``
block includes. The leaf keeps its link address with the secret in a file of its own
(:func:`link_conf`, mode 0600). The site's nodes sign in to the leaf with their own nkeys
(:func:`leaf_users_conf`), with the same permissions as at the hub, their bucket reads
addressed to the hub's domain (``$JS.hub.API...``).

nats-server 2.9 takes no nkeys on a leafnode listener, does not check a leaf against the
broker's other users (without users of its own a leafnode listener lets any leaf in), and
cannot *reload* a change of a ``leafnodes`` block: a reload that finds one fails whole, so
the centre's next change of its users (a node disabled) would fail too. So the centre writes
the sites file beside its authorisation file (:func:`sites_path`) and the hub reads a copy
made when it starts (:data:`ACTIVE_SITES`, the broker's systemd unit copies it): a site
added, its secret changed or the site revoked takes effect at the hub's next restart, and
the reloads in between never see a change.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openlfr.errors import InvalidInput
from openlfr.nodes.protocol import DUPLICATE_WINDOW_S, NODES_STREAM_SUBJECTS

#: The hub's JetStream domain.
HUB_DOMAIN = "hub"
#: Where nodes and the centre connect (clients), and where leaves connect (leafnodes).
CLIENT_PORT = 4222
LEAF_PORT = 7422
#: How long a site's leaf keeps its nodes' messages (seconds): long past any cut we plan for;
#: the hub has them as soon as the link is up.
SITE_MAX_AGE_S = 7 * 24 * 3600
#: The sites file the centre writes (beside its authorisation file), and the copy the hub
#: reads, made when it starts (deploy/openlfr-broker.service).
SITES_FILE = "nats-sites.conf"
ACTIVE_SITES = "/run/nats/openlfr-sites.conf"
#: The sites file's user that cannot sign in (an empty list would let any leaf in).
NOBODY = "openlfr-nobody"
NO_PASSWORD = "$2a$11$" + "." * 53
#: What the leaf's placeholder user may do: nothing.
NOTHING = {"publish": {"deny": [">"]}, "subscribe": {"deny": [">"]}}
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def site_domain(site: str) -> str:
    """The JetStream domain of a site's leaf: the site's name, which must be one subject
    token (letters, digits, ``-`` and ``_``) and not the hub's."""
    if not isinstance(site, str) or not _TOKEN.match(site):
        raise InvalidInput(f"the site's name {site!r} cannot name a broker domain: use "
                           "letters, digits, '-' and '_' (e.g. high-street)", field="site")
    if site.lower() == HUB_DOMAIN:
        raise InvalidInput(f"a site may not be called {HUB_DOMAIN!r} (the hub's domain)",
                           field="site")
    return site


def site_stream(site: str) -> str:
    """The stream at the site's leaf that keeps its nodes' alerts and events."""
    return "OPENLFR_SITE_" + site_domain(site).upper().replace("-", "_")


def site_user(site: str) -> str:
    """The user a site's leaf signs in as on the hub's leafnode listener."""
    return f"site-{site_domain(site)}"


def site_stream_config(site: str) -> dict[str, Any]:
    """The leaf stream's configuration (JetStream API fields)."""
    return {"name": site_stream(site), "subjects": list(NODES_STREAM_SUBJECTS),
            "storage": "file", "retention": "limits", "discard": "old",
            "max_age": SITE_MAX_AGE_S * 1_000_000_000,
            "duplicate_window": int(DUPLICATE_WINDOW_S * 1_000_000_000)}


def site_source(site: str) -> dict[str, Any]:
    """The source the hub's stream takes the site's stream with (JetStream API fields)."""
    return {"name": site_stream(site),
            "external": {"api": f"$JS.{site_domain(site)}.API", "deliver": ""}}


# -- configuration text ------------------------------------------------------------------------

@dataclass(frozen=True)
class Tls:
    """A server certificate (``cert``, ``key``) and, optionally, the CA to check peers with."""

    cert: str
    key: str
    ca: str | None = None

    def block(self) -> str:
        items = {"cert_file": self.cert, "key_file": self.key}
        if self.ca:
            items["ca_file"] = self.ca
        return "{" + ", ".join(f"{k}: {_q(v)}" for k, v in items.items()) + "}"


def _q(text: str) -> str:
    """A quoted string of NATS configuration (JSON's quoting is the server's)."""
    if "\n" in text or "\r" in text:
        raise InvalidInput("a broker configuration value may not contain a line break",
                           field="config")
    return json.dumps(str(text))


def _listen(value: str, what: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"the {what} {value!r} is not host:port", field=what)
    return value


def _include(path: str, conf_dir: str) -> str:
    """An ``include`` line: nats-server 2.9 reads an included file relative to the folder of
    the configuration file, even when the path is absolute."""
    if not os.path.isabs(path):
        return f"include {_q(path)}"
    return f"include {_q(os.path.relpath(path, conf_dir))}"


def hub_conf(*, conf_dir: str, store_dir: str, pid_file: str, auth_file: str, sites_file: str,
             listen: str = f"0.0.0.0:{CLIENT_PORT}", leaf_listen: str = f"0.0.0.0:{LEAF_PORT}",
             server_name: str = "openlfr-hub", tls: Tls | None = None,
             leaf_tls: Tls | None = None) -> str:
    """The hub's (the centre's broker's) ``nats-server`` configuration, to be written in the
    folder ``conf_dir`` (included files are named relative to it)."""
    lines = [
        "# The centre's broker (the hub), written by `openlfr nodes broker-config --role hub`.",
        "# JetStream in the hub's own domain; the centre's users are in the authorisation",
        "# file it writes (and reloads); each site's leaf signs in on the leafnode listener as",
        "# the site (`openlfr nodes site-link` writes the sites file; the broker's unit copies",
        "# it when the broker starts: a change of a leafnodes block cannot be reloaded).",
        f"server_name: {_q(server_name)}",
        f"listen: {_q(_listen(listen, 'listen'))}",
        f"pid_file: {_q(pid_file)}",
        f"jetstream: {{store_dir: {_q(store_dir)}, domain: {_q(HUB_DOMAIN)}}}",
    ]
    if tls is not None:
        lines.append(f"tls: {tls.block()}")
    lines += [
        "leafnodes {",
        f"  listen: {_q(_listen(leaf_listen, 'leaf_listen'))}",
    ]
    if leaf_tls is not None:
        lines.append(f"  tls: {leaf_tls.block()}")
    lines += [
        "  " + _include(sites_file, conf_dir),
        "}",
        _include(auth_file, conf_dir),
        "",
    ]
    return "\n".join(lines)


def leaf_conf(*, site: str, conf_dir: str, store_dir: str, pid_file: str, link_file: str,
              users_file: str,
              listen: str = f"0.0.0.0:{CLIENT_PORT}", tls: Tls | None = None,
              hub_ca: str | None = None) -> str:
    """A site leaf's ``nats-server`` configuration: JetStream in the site's domain, the link
    to the hub (its address and the site's secret in ``link_file``, :func:`link_conf`) that
    does not carry the nodes' alerts and events (the hub sources them), and the site's
    node users (``users_file``, :func:`leaf_users_conf`)."""
    domain = site_domain(site)
    denied = "[" + ", ".join(_q(s) for s in NODES_STREAM_SUBJECTS) + "]"
    lines = [
        f"# The broker of site {domain} (a leaf of the hub), written by",
        "# `openlfr nodes broker-config --role leaf`. JetStream in the site's own domain keeps",
        "# the site's nodes' alerts and events while the link to the hub is down; the hub's",
        "# stream sources them. The link does not carry those subjects itself (each message",
        "# is captured once, here); leases, health and bucket reads cross it while it is up.",
        f"server_name: {_q('openlfr-site-' + domain)}",
        f"listen: {_q(_listen(listen, 'listen'))}",
        f"pid_file: {_q(pid_file)}",
        f"jetstream: {{store_dir: {_q(store_dir)}, domain: {_q(domain)}}}",
    ]
    if tls is not None:
        lines.append(f"tls: {tls.block()}")
    lines += [
        _include(link_file, conf_dir),
        "leafnodes {",
        "  remotes: [",
        "    {",
        "      url: $OPENLFR_HUB_LINK",
        f"      deny_exports: {denied}",
        f"      deny_imports: {denied}",
    ]
    if hub_ca is not None:
        lines.append(f"      tls: {{ca_file: {_q(hub_ca)}}}")
    lines += [
        "    }",
        "  ]",
        "}",
        _include(users_file, conf_dir),
        "",
    ]
    return "\n".join(lines)


def link_conf(site: str, hub_url: str, secret: str) -> str:
    """The leaf's link file: the hub's leafnode address with the site's user and secret
    (keep it 0600: it is the site's credential)."""
    scheme, sep, rest = hub_url.partition("://")
    if scheme not in ("nats-leaf", "tls") or not sep or not rest or "@" in rest:
        raise InvalidInput(f"the hub's leafnode address {hub_url!r} is not "
                           "nats-leaf://host:7422 or tls://host:7422", field="hub")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", secret):
        raise InvalidInput("a site secret is letters, digits, '-' and '_'", field="secret")
    return ("# The site's link to the hub: its credential. Keep this file 0600.\n"
            f"OPENLFR_HUB_LINK: {_q(f'{scheme}://{site_user(site)}:{secret}@{rest}')}\n")


def hash_secret(secret: str) -> str:
    """The bcrypt hash of a site secret, as nats-server checks it."""
    import bcrypt

    return bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds=11)).decode()


def sites_conf(hashes: Mapping[str, str]) -> str:
    """The hub's sites file (inside its ``leafnodes`` block): one user per site, with the
    bcrypt hash of its secret."""
    users = [{"user": site_user(site), "password": hashes[site]} for site in sorted(hashes)]
    # nats-server lets anyone in when the list is empty: there is always one user that
    # cannot sign in (its "hash" matches no password).
    users.append({"user": NOBODY, "password": NO_PASSWORD})
    return ("# Written by `openlfr nodes site-link`: the sites whose leaves may link to this\n"
            "# hub (bcrypt hashes of their secrets).\n"
            f"authorization: {json.dumps({'users': users}, indent=2)}\n")


def sites_path(auth_file: Path) -> Path:
    """The sites file of the centre whose authorisation file is ``auth_file``."""
    return auth_file.with_name(SITES_FILE)


def write_sites(path: Path, hashes: Mapping[str, str]) -> None:
    write_private(path, sites_conf(hashes), 0o640)


def read_sites(path: Path) -> dict[str, str]:
    """The sites and hashes of a sites file written by :func:`sites_conf` ({} if missing)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    body = text.split("authorization:", 1)[1] if "authorization:" in text else "{}"
    try:
        doc = json.loads(body)
        return {u["user"].removeprefix("site-"): u["password"] for u in doc["users"]
                if u["user"] != NOBODY}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InvalidInput(f"{path} is not a sites file written by openlfr",
                           field="sites_file") from None


def leaf_permissions(permissions: dict[str, dict[str, list[str]]],
                     hub_domain: str = HUB_DOMAIN) -> dict[str, dict[str, list[str]]]:
    """A node's permissions at its site's leaf: the same, with its JetStream API requests
    addressed to the hub's domain (its buckets are at the hub)."""
    def move(subject: str) -> str:
        return (f"$JS.{hub_domain}.API." + subject.removeprefix("$JS.API.")
                if subject.startswith("$JS.API.") else subject)

    out: dict[str, dict[str, list[str]]] = {}
    for direction, rules in permissions.items():
        out[direction] = {k: [move(s) for s in v] for k, v in rules.items()}
    return out


def leaf_users_conf(users: Iterable[tuple[str, dict[str, dict[str, list[str]]]]]) -> str:
    """The leaf's users: (nkey, permissions at the leaf) per node of the site."""
    body: list[dict[str, Any]] = [{"nkey": nkey, "permissions": perms} for nkey, perms in users]
    # Never an empty list (nats-server would let anyone in): a user that may do nothing,
    # whose private key was never kept.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from openlfr.nodes.keys import public_nkey

    nobody = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    body.append({"nkey": public_nkey(nobody), "permissions": NOTHING})
    return ("# Written by `openlfr nodes site-link`: the site's nodes (nkey users, each only\n"
            "# its own subjects).\n"
            f"authorization: {json.dumps({'users': body}, indent=2)}\n")


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write ``text`` to ``path`` atomically with ``mode`` (a new file renamed over)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def new_secret() -> str:
    return secrets.token_urlsafe(32)
