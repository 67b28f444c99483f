"""``openlfr nodes ...`` (on the centre: sites and nodes) and ``openlfr node enroll`` (on a
node: make its keys and register them with the centre)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from openlfr.cli.common import console, err_console, print_json, print_table
from openlfr.cli.context import DataDirOpt, UserOpt, acting, governance_errors
from openlfr.errors import InvalidInput, NotFound
from openlfr.governance import nodes
from openlfr.governance.authz import Perm, require
from openlfr.governance.views import NodeToken
from openlfr.nodes import enrol as node_enrol
from openlfr.nodes import topology
from openlfr.nodes.broker import (
    add_site_source,
    load_or_create_seed,
    node_permissions,
)
from openlfr.nodes.keys import seed_nkey

app = typer.Typer(help="Sites and the nodes that run their cameras (on the centre).",
                  no_args_is_help=True)
node_app = typer.Typer(help="This machine as a node of a centre.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
HoursOpt = Annotated[int, typer.Option(
    "--valid-hours", help=f"How long the enrolment token is valid (1 to "
                          f"{nodes.TOKEN_MAX_HOURS} hours).")]


def _show_token(issued: NodeToken) -> None:
    console.print(f"enrolment token for node {issued.node.name} (valid until "
                  f"{issued.expires_at.isoformat(timespec='minutes')}):\n"
                  f"[bold]{issued.token}[/]\n"
                  "It is shown only now. On the node run:\n"
                  f"  openlfr node enroll --server https://CENTRE --token {issued.token}",
                  highlight=False, soft_wrap=True)


@app.command("add-site")
def add_site(
    name: Annotated[str, typer.Argument(help="The site's name, e.g. high-street.")],
    user: UserOpt,
    description: Annotated[str, typer.Option("--description", help="What the site is.")] = "",
    data_dir: DataDirOpt = None,
) -> None:
    """Add a site (administrators)."""
    with acting(data_dir, user) as ctx:
        site = nodes.add_site(ctx.db, ctx.actor, name, description)
    err_console.print(f"[green]✓[/] added site {site.name}", highlight=False)


@app.command("sites")
def sites(user: UserOpt, data_dir: DataDirOpt = None, json_out: JsonOpt = False) -> None:
    """List the sites."""
    with acting(data_dir, user) as ctx:
        rows = nodes.list_sites(ctx.db, ctx.actor)
    if json_out:
        print_json([r.model_dump(mode="json") for r in rows])
        return
    table = Table("site", "nodes", "description", "added", "by")
    for r in rows:
        table.add_row(r.name, str(r.nodes), r.description,
                      r.created_at.isoformat(timespec="minutes"), r.created_by)
    print_table(table)


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The node's name, e.g. van-1 (unique).")],
    site: Annotated[str, typer.Option("--site", help="The site it is at.")],
    user: UserOpt,
    valid_hours: HoursOpt = nodes.TOKEN_HOURS,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Add a node to a site (administrators); prints its one-time enrolment token."""
    with acting(data_dir, user) as ctx:
        issued = nodes.add_node(ctx.db, ctx.actor, site, name, valid_hours)
    if json_out:
        print_json(issued.model_dump(mode="json"))
        return
    err_console.print(f"[green]✓[/] added node {issued.node.name} at {issued.node.site}",
                      highlight=False)
    _show_token(issued)


@app.command("token")
def token(
    name: Annotated[str, typer.Argument(help="A node waiting to enroll.")],
    user: UserOpt,
    valid_hours: HoursOpt = nodes.TOKEN_HOURS,
    data_dir: DataDirOpt = None,
) -> None:
    """Issue another enrolment token for a node that has not enrolled (the old one stops
    working)."""
    with acting(data_dir, user) as ctx:
        issued = nodes.new_token(ctx.db, ctx.actor, name, valid_hours)
    _show_token(issued)


@app.command("list")
def list_(user: UserOpt, data_dir: DataDirOpt = None, json_out: JsonOpt = False) -> None:
    """List the nodes, their state and the cameras they run."""
    with acting(data_dir, user) as ctx:
        rows = nodes.list_nodes(ctx.db, ctx.actor)
    if json_out:
        print_json([r.model_dump(mode="json") for r in rows])
        return
    table = Table("node", "site", "state", "cameras", "broker identity", "since")
    for r in rows:
        since = r.disabled_at or r.enrolled_at or r.created_at
        table.add_row(r.name, r.site, r.status, ", ".join(r.cameras) or "-",
                      r.nkey or "-", since.isoformat(timespec="minutes"))
    print_table(table)


@app.command("show")
def show(name: Annotated[str, typer.Argument()], user: UserOpt, data_dir: DataDirOpt = None
         ) -> None:
    """One node, as JSON."""
    with acting(data_dir, user) as ctx:
        print_json(nodes.show_node(ctx.db, ctx.actor, name).model_dump(mode="json"))


@app.command("disable")
def disable(
    name: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit log).")],
    user: UserOpt,
    data_dir: DataDirOpt = None,
) -> None:
    """Disable a node for good and revoke its broker credentials at once (administrators)."""
    with acting(data_dir, user) as ctx:
        node = nodes.disable(ctx.db, ctx.settings, ctx.actor, name, reason)
    err_console.print(f"[green]✓[/] node {node.name} disabled; its broker credentials are "
                      "revoked", highlight=False)


@app.command("broker-users")
def broker_users(user: UserOpt, data_dir: DataDirOpt = None,
                 no_reload: Annotated[bool, typer.Option(
                     "--no-reload", help="Only write the file (before the broker's first "
                                         "start).")] = False) -> None:
    """Write the broker's users (the centre and every enrolled node) to the authorisation
    file, and make the broker reload it (administrators)."""
    with acting(data_dir, user) as ctx:
        require(ctx.db, ctx.actor, Perm.NODE_MANAGE, "node", "broker")
        count = nodes.write_broker_users(ctx.db, ctx.settings, reload=not no_reload)
        path = ctx.settings.nats_auth_path
    err_console.print(f"[green]✓[/] {path}: the centre and {count} node(s)", highlight=False)


@app.command("sync")
def sync(user: UserOpt, data_dir: DataDirOpt = None,
         force: Annotated[bool, typer.Option(
             "--force", help="Write every node's state, changed or not.")] = False) -> None:
    """Write each node's desired state and sealed galleries to the broker now (when they
    changed; administrators)."""
    with acting(data_dir, user) as ctx:
        require(ctx.db, ctx.actor, Perm.NODE_MANAGE, "node", "sync")
        if nodes.broker_of(ctx.settings) is None:
            from openlfr.errors import InvalidInput
            raise InvalidInput("no broker is configured (OPENLFR_NATS_URL)", field="nats_url")
        sent = nodes.sync_desired(ctx.db, ctx.system.keyring, ctx.settings, force=force)
    for s in sent:
        err_console.print(f"[green]✓[/] {s.node}: {len(s.deployments)} deployment(s), "
                          f"{s.cameras} camera(s), {len(s.galleries)} gallery(ies) sent",
                          highlight=False)
    if not sent:
        err_console.print("nothing changed: nothing sent", highlight=False)


@node_app.command("enroll")
def enroll(
    server: Annotated[str, typer.Option("--server", help="The centre's address, "
                                                         "https://centre.example")],
    token: Annotated[str, typer.Option("--token", help="The one-time enrolment token.")],
    node_dir: Annotated[Path | None, typer.Option(
        "--node-dir", envvar="OPENLFR_NODE_DIR", show_envvar=True,
        help="This node's private folder for its keys (default: the per-user "
             "openlfr-node folder).")] = None,
    ca_file: Annotated[Path | None, typer.Option(
        "--ca-file", help="A CA certificate to check the centre's TLS certificate "
                          "against.")] = None,
) -> None:
    """Make this node's keys and register them with the centre (once per node)."""
    folder = node_dir or node_enrol.default_node_dir()
    with governance_errors():
        answer = node_enrol.enroll(server, token, folder, ca_file=ca_file)
    err_console.print(f"[green]✓[/] enrolled as node {answer['name']} at site "
                      f"{answer['site']} (id {answer['node_id']}); keys in {folder}",
                      highlight=False)
    console.print(f"broker: {answer.get('broker_url') or 'not configured on the centre yet'}\n"
                  f"identity: {answer['nkey']}", highlight=False)


# -- the broker's topology: a hub and site leaves (openlfr.nodes.topology) ---------------------

ETC = Path("/etc/nats")
FileOpt = Annotated[Path | None, typer.Option(
    "--out", help="Write the configuration to this file (default: print it). Files it "
                  "includes are named relative to this file's folder (nats-server 2.9 reads "
                  "them so); printed, relative to /etc/nats.")]


def _tls(cert: Path | None, key: Path | None, ca: Path | None,
         what: str) -> topology.Tls | None:
    if cert is None and key is None:
        if ca is not None:
            raise InvalidInput(f"--{what}-ca needs --{what}-cert and --{what}-key",
                               field=f"{what}_ca")
        return None
    if cert is None or key is None:
        raise InvalidInput(f"--{what}-cert and --{what}-key go together", field=f"{what}_cert")
    return topology.Tls(str(cert), str(key), None if ca is None else str(ca))


@app.command("broker-config")
def broker_config(
    role: Annotated[str, typer.Option("--role", help="hub (the centre's broker) or leaf (a "
                                                      "site's broker).")],
    site: Annotated[str | None, typer.Option(
        "--site", help="The site (leaf): its JetStream domain.")] = None,
    out: FileOpt = None,
    listen: Annotated[str, typer.Option("--listen", help="Where clients connect.")
                      ] = f"0.0.0.0:{topology.CLIENT_PORT}",
    leaf_listen: Annotated[str, typer.Option(
        "--leaf-listen", help="Where sites' leaves connect (hub).")
    ] = f"0.0.0.0:{topology.LEAF_PORT}",
    store_dir: Annotated[Path, typer.Option("--store-dir", help="JetStream's folder.")
                         ] = Path("/var/lib/nats"),
    pid_file: Annotated[Path, typer.Option("--pid-file", help="The server's pid file (the "
                                                              "centre's OPENLFR_NATS_PID_FILE).")
                        ] = Path("/run/nats/nats.pid"),
    auth_file: Annotated[Path, typer.Option(
        "--auth-file", help="The users file the centre writes (hub; OPENLFR_NATS_AUTH_FILE).")
    ] = Path("/var/lib/openlfr/nats-auth.conf"),
    sites_file: Annotated[Path, typer.Option(
        "--sites-file", help="The sites allowed to link (hub): the copy of the centre's "
                             "sites file made when the broker starts.")
    ] = Path(topology.ACTIVE_SITES),
    link_file: Annotated[Path, typer.Option(
        "--link-file", help="The site's link to the hub with its secret (leaf).")
    ] = ETC / "openlfr-link.conf",
    users_file: Annotated[Path, typer.Option(
        "--users-file", help="The site's node users (leaf).")
    ] = ETC / "openlfr-site-users.conf",
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="Clients' TLS: the "
                                                                     "server certificate.")
                        ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="Its private key.")] = None,
    tls_ca: Annotated[Path | None, typer.Option("--tls-ca", help="A CA to check clients' "
                                                                 "certificates.")] = None,
    leaf_cert: Annotated[Path | None, typer.Option(
        "--leaf-cert", help="The leafnode listener's TLS certificate (hub).")] = None,
    leaf_key: Annotated[Path | None, typer.Option("--leaf-key", help="Its private key.")
                        ] = None,
    hub_ca: Annotated[Path | None, typer.Option(
        "--hub-ca", help="The CA that signed the hub's leafnode certificate (leaf: then the "
                         "link is TLS).")] = None,
) -> None:
    """Write a nats-server configuration for the hub (the centre's broker) or a site's leaf
    (README "Operating sites and nodes")."""
    with governance_errors():
        conf_dir = str(out.parent.absolute() if out is not None else ETC)
        tls = _tls(tls_cert, tls_key, tls_ca, "tls")
        if role == "hub":
            if site is not None:
                raise InvalidInput("--site is for a leaf", field="site")
            text = topology.hub_conf(
                conf_dir=conf_dir, store_dir=str(store_dir), pid_file=str(pid_file),
                auth_file=str(auth_file), sites_file=str(sites_file), listen=listen,
                leaf_listen=leaf_listen, tls=tls,
                leaf_tls=_tls(leaf_cert, leaf_key, None, "leaf"))
        elif role == "leaf":
            if site is None:
                raise InvalidInput("a leaf needs --site", field="site")
            if leaf_cert is not None or leaf_key is not None:
                raise InvalidInput("--leaf-cert and --leaf-key are for the hub",
                                   field="leaf_cert")
            text = topology.leaf_conf(
                site=site, conf_dir=conf_dir, store_dir=str(store_dir),
                pid_file=str(pid_file), link_file=str(link_file), users_file=str(users_file),
                listen=listen, tls=tls, hub_ca=None if hub_ca is None else str(hub_ca))
        else:
            raise InvalidInput(f"--role is hub or leaf, not {role!r}", field="role")
        if out is None:
            console.print(text, end="", highlight=False, markup=False, soft_wrap=True)
            return
        topology.write_private(out, text, 0o644)
        staged = topology.sites_path(auth_file)
        if role == "hub" and not staged.exists():  # the hub's include needs one, even empty
            topology.write_sites(staged, {})
            err_console.print(f"[green]✓[/] {staged}: no site may link yet", highlight=False)
    err_console.print(f"[green]✓[/] {out}: the {role}'s configuration", highlight=False)


@app.command("site-link")
def site_link(
    site: Annotated[str, typer.Argument(help="The site whose leaf links to the hub.")],
    user: UserOpt,
    hub: Annotated[str | None, typer.Option(
        "--hub", help="The hub's leafnode address as the site reaches it, "
                      "nats-leaf://hub.example:7422 (tls://… with TLS).")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out-dir", help="Where to write the site's two files, to carry to the site's "
                          "/etc/nats.")] = None,
    users_only: Annotated[bool, typer.Option(
        "--users-only", help="Only write the site's node users (after an enrolment or a "
                             "disabling at the site); the secret stays.")] = False,
    revoke: Annotated[bool, typer.Option(
        "--revoke", help="Remove the site from the hub's sites file: its leaf is cut off at "
                         "the hub's next restart (its secret stolen, the site closed).")
    ] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """A site's credentials for its leaf (administrators): a new secret for its link (its
    bcrypt hash in the hub's sites file, in force from the hub's next restart, when the old
    one stops working) and the site's enrolled nodes as the leaf's users; or, with
    --revoke, none."""
    with acting(data_dir, user) as ctx:
        require(ctx.db, ctx.actor, Perm.NODE_MANAGE, "site", site)
        topology.site_domain(site)
        sites_file = topology.sites_path(ctx.settings.nats_auth_path)
        if revoke:
            hashes = topology.read_sites(sites_file)
            if hashes.pop(site, None) is None:
                raise NotFound(f"site {site!r} may not link to the hub already")
            topology.write_sites(sites_file, hashes)
            err_console.print(f"[green]✓[/] {sites_file}: site {site} removed; it is cut "
                              "off when the hub's broker restarts (systemctl restart "
                              "openlfr-broker)", highlight=False)
            return
        if out_dir is None:
            raise InvalidInput("--out-dir is needed (where to write the site's files)",
                               field="out_dir")
        if hub is None and not users_only:
            raise InvalidInput("--hub is needed (the hub's leafnode address)", field="hub")
        if site not in {s.name for s in nodes.list_sites(ctx.db, ctx.actor)}:
            raise NotFound(f"no site {site!r}")
        members = [n for n in nodes.list_nodes(ctx.db, ctx.actor)
                   if n.site == site and n.status == "enrolled" and n.nkey]
        topology.write_private(out_dir / "openlfr-site-users.conf", topology.leaf_users_conf(
            (n.nkey or "", topology.leaf_permissions(node_permissions(n.id)))
            for n in members), 0o640)
        if not users_only:
            secret = topology.new_secret()
            link = topology.link_conf(site, hub or "", secret)
            hashes = topology.read_sites(sites_file)
            hashes[site] = topology.hash_secret(secret)
            topology.write_private(out_dir / "openlfr-link.conf", link, 0o600)
            topology.write_sites(sites_file, hashes)
    err_console.print(f"[green]✓[/] {out_dir}: site {site}'s "
                      + ("node users" if users_only else "link and node users")
                      + f" ({len(members)} node(s)); copy to the site's /etc/nats and reload "
                        "its broker" + ("" if users_only else f"; {sites_file} changed: "
                                        "restart the hub's broker to let the site link"),
                      highlight=False)


@app.command("site-source")
def site_source(
    site: Annotated[str, typer.Argument(help="A site whose leaf is linked to the hub.")],
    user: UserOpt,
    data_dir: DataDirOpt = None,
) -> None:
    """Make the site's stream at its leaf and add it as a source of the hub's stream, so
    that the site's alerts reach the centre (administrators; once, with the leaf linked)."""
    with acting(data_dir, user) as ctx:
        require(ctx.db, ctx.actor, Perm.NODE_MANAGE, "site", site)
        settings = ctx.settings
        if not settings.nats_url:
            raise InvalidInput("no broker is configured (OPENLFR_NATS_URL)", field="nats_url")
        add_site_source(settings.nats_url, seed_nkey(load_or_create_seed(
            settings.nats_seed_path)), site, ca_file=settings.nats_ca_file)
    err_console.print(f"[green]✓[/] the hub's stream sources site {site}'s stream "
                      f"{topology.site_stream(site)}", highlight=False)


@node_app.command("run")
def run(
    node_dir: Annotated[Path | None, typer.Option(
        "--dir", "--node-dir", envvar="OPENLFR_NODE_DIR", show_envvar=True,
        help="This node's folder (its keys, node.json and outbox; default: the per-user "
             "openlfr-node folder).")] = None,
    broker: Annotated[str | None, typer.Option(
        "--broker", help="The broker's address, if not the one named at enrolment "
                         "(nats://HOST:4222 or tls://...).")] = None,
    ca_file: Annotated[Path | None, typer.Option(
        "--ca-file", help="A CA certificate to check the broker's TLS certificate "
                          "against.")] = None,
    health_every: Annotated[float, typer.Option(
        "--health-every", min=0.5, help="Seconds between health reports.")] = 5.0,
    detect_fps: Annotated[float, typer.Option(
        "--detect-fps", min=0.0, help="Detections per second per camera.")] = 15.0,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="Analysis threads (default: one per CPU).")] = None,
    realtime: Annotated[bool, typer.Option(
        "--realtime", help="Read video files at their own speed (as a camera).")] = False,
    loop: Annotated[bool, typer.Option(
        "--loop", help="Start video files again at their end (demonstrations, "
                       "tests).")] = False,
    state_domain: Annotated[str | None, typer.Option(
        "--state-domain", envvar="OPENLFR_NODE_STATE_DOMAIN", show_envvar=True,
        help="The centre's JetStream domain (hub) when --broker is this site's leaf "
             "broker.")] = None,
) -> None:
    """Run this node: follow the centre's desired state, hold its lease, run the cameras,
    and send alerts, events and health to the centre, until Ctrl-C or SIGTERM."""
    from openlfr.nodes.agent import AgentOptions, run_node
    from openlfr.nodes.noderun import NodeRunOptions

    folder = node_dir or node_enrol.default_node_dir()
    options = AgentOptions(health_every=health_every, state_domain=state_domain or None,
                           run=NodeRunOptions(realtime=realtime, loop=loop,
                                              detect_fps=detect_fps, workers=workers))
    with governance_errors():
        run_node(folder, options=options, url=broker, ca_file=ca_file)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="nodes")
    root.add_typer(node_app, name="node")
