"""The console's page of sites and nodes (``/console/nodes``): everyone signed in sees them and
the cameras each node runs; administrators add a site, add a node (its one-time enrolment token
is shown once, on the page that answers the form), issue a new token to a node that has not
enrolled, and disable a node (its broker credentials are revoked at once)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from openlfr.governance import nodes
from openlfr.governance.authz import Actor
from openlfr.web.deps import PageActor, web
from openlfr.web.routes.console_governance import (
    EXPECTED,
    Confirm,
    _error_page,
    _page,
    _see_other,
    confirm_first,
)

router = APIRouter(prefix="/console", include_in_schema=False)

_DONE = {"site": "Site added.", "disabled": "Node disabled: its broker credentials are revoked."}


def _ctx(request: Request, actor: Actor) -> dict[str, Any]:
    db = web(request).db
    return {"sites": nodes.list_sites(db, actor), "nodes": nodes.list_nodes(db, actor),
            "site_form": {"name": "", "description": ""},
            "node_form": {"site": "", "name": "", "valid_hours": str(nodes.TOKEN_HOURS)},
            "max_hours": nodes.TOKEN_MAX_HOURS,
            "done": _DONE.get(request.query_params.get("done", ""))}


def _error(request: Request, actor: Actor, exc: Exception, where: str,
           **forms: dict[str, str]) -> Response:
    return _error_page(request, actor, "gov_nodes.html", _ctx(request, actor), exc, where,
                       **forms)


@router.get("/nodes")
def nodes_page(request: Request, actor: PageActor) -> Response:
    return _page(request, actor, "gov_nodes.html", _ctx(request, actor))


@router.get("/nodes/{name}")
def node_page(request: Request, name: str, actor: PageActor) -> Response:
    """One node: whether it is heard (online, last seen), the lease it holds per deployment,
    and each of its cameras' health as it last reported it."""
    view = nodes.show_node(web(request).db, actor, name)
    return _page(request, actor, "gov_node.html", {"node": view})


@router.post("/sites")
def site_add(request: Request, actor: PageActor,
             name: Annotated[str, Form(max_length=100)] = "",
             description: Annotated[str, Form(max_length=2000)] = "") -> Response:
    try:
        nodes.add_site(web(request).db, actor, name, description)
    except EXPECTED as exc:
        return _error(request, actor, exc, "site",
                      site_form={"name": name, "description": description})
    return _see_other("/console/nodes?done=site")


def _hours(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        from openlfr.errors import InvalidInput
        raise InvalidInput(f"the token's validity must be a whole number of hours (got "
                           f"{text[:20]!r})", field="valid_hours") from None


@router.post("/nodes")
def node_add(request: Request, actor: PageActor,
             site: Annotated[str, Form(max_length=100)] = "",
             name: Annotated[str, Form(max_length=100)] = "",
             valid_hours: Annotated[str, Form(max_length=10)] = "") -> Response:
    form = {"site": site, "name": name, "valid_hours": valid_hours}
    try:
        issued = nodes.add_node(web(request).db, actor, site, name,
                                _hours(valid_hours or str(nodes.TOKEN_HOURS)))
    except EXPECTED as exc:
        return _error(request, actor, exc, "node", node_form=form)
    ctx = _ctx(request, actor)
    ctx.update(issued=issued, server=str(request.base_url).rstrip("/"))
    return _page(request, actor, "gov_nodes.html", ctx, 201)


@router.post("/nodes/{name}/token")
def node_token(request: Request, name: str, actor: PageActor) -> Response:
    try:
        issued = nodes.new_token(web(request).db, actor, name)
    except EXPECTED as exc:
        return _error(request, actor, exc, "nodes")
    ctx = _ctx(request, actor)
    ctx.update(issued=issued, server=str(request.base_url).rstrip("/"))
    return _page(request, actor, "gov_nodes.html", ctx)


@router.post("/nodes/{name}/disable")
def node_disable(request: Request, name: str, actor: PageActor,
                 reason: Annotated[str, Form(max_length=2000)] = "",
                 confirm: Confirm = "") -> Response:
    ask = confirm_first(request, actor, confirm, button="Disable the node",
                        question=f"Disable node {name} for good? Its broker credentials are "
                                 "revoked at once; a replacement is a new node.",
                        back="/console/nodes", fields={"reason": reason})
    if ask is not None:
        return ask
    try:
        w = web(request)
        nodes.disable(w.db, w.system.settings, actor, name, reason)
    except EXPECTED as exc:
        return _error(request, actor, exc, "nodes")
    return _see_other("/console/nodes?done=disabled")
