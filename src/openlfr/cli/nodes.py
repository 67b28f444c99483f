"""``openlfr nodes ...`` (on the centre: sites and nodes) and ``openlfr node enroll`` (on a
node: make its keys and register them with the centre)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from openlfr.cli.common import console, err_console, print_json, print_table
from openlfr.cli.context import DataDirOpt, UserOpt, acting, governance_errors
from openlfr.governance import nodes
from openlfr.governance.authz import Perm, require
from openlfr.governance.views import NodeToken
from openlfr.nodes import enrol as node_enrol

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
) -> None:
    """Run this node: follow the centre's desired state, hold its lease, run the cameras,
    and send alerts, events and health to the centre, until Ctrl-C or SIGTERM."""
    from openlfr.nodes.agent import AgentOptions, run_node
    from openlfr.nodes.noderun import NodeRunOptions

    folder = node_dir or node_enrol.default_node_dir()
    options = AgentOptions(health_every=health_every, run=NodeRunOptions(
        realtime=realtime, loop=loop, detect_fps=detect_fps, workers=workers))
    with governance_errors():
        run_node(folder, options=options, url=broker, ca_file=ca_file)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="nodes")
    root.add_typer(node_app, name="node")
