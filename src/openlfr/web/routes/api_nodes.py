"""Sites and nodes: ``/api/v1/sites`` and ``/api/v1/nodes`` (administrators change them,
everyone signed in reads them), and ``POST /api/v1/nodes/enrol``, where a node enrolls with its
one-time token instead of an account (``openlfr node enroll``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from openlfr.governance import nodes
from openlfr.governance.views import Enrolment, NodeToken, NodeView, SiteView
from openlfr.web.deps import CurrentActor, web

router = APIRouter(prefix="/api/v1", tags=["sites and nodes"])


class SiteIn(BaseModel):
    name: str = Field(max_length=100, description="e.g. high-street (no spaces)")
    description: str = Field(default="", max_length=2000)


class NodeIn(BaseModel):
    site: str = Field(max_length=100)
    name: str = Field(max_length=100, description="e.g. van-1 (no spaces; unique)")
    valid_hours: int = Field(default=nodes.TOKEN_HOURS, description=(
        f"How long the enrolment token is valid (1 to {nodes.TOKEN_MAX_HOURS} hours)."))


class TokenIn(BaseModel):
    valid_hours: int = Field(default=nodes.TOKEN_HOURS)


class DisableIn(BaseModel):
    reason: str = Field(max_length=2000)


class EnrolIn(BaseModel):
    token: str = Field(max_length=200, description="The one-time enrolment token.")
    signing_key: str = Field(max_length=100, description="Ed25519 public key, base64.")
    box_key: str = Field(max_length=100, description="X25519 public key, base64.")


@router.get("/sites", response_model=list[SiteView])
def list_sites(request: Request, actor: CurrentActor) -> list[SiteView]:
    """The sites and how many nodes each has."""
    return nodes.list_sites(web(request).db, actor)


@router.post("/sites", status_code=201, response_model=SiteView)
def add_site(request: Request, body: SiteIn, actor: CurrentActor) -> SiteView:
    """Add a site (administrators)."""
    return nodes.add_site(web(request).db, actor, body.name, body.description)


@router.get("/nodes", response_model=list[NodeView])
def list_nodes(request: Request, actor: CurrentActor) -> list[NodeView]:
    """Every node: its site, its state, its public keys and the cameras it runs."""
    return nodes.list_nodes(web(request).db, actor)


@router.post("/nodes", status_code=201, response_model=NodeToken)
def add_node(request: Request, body: NodeIn, actor: CurrentActor) -> NodeToken:
    """Add a node to a site (administrators): the answer holds its one-time enrolment token,
    shown only now."""
    return nodes.add_node(web(request).db, actor, body.site, body.name, body.valid_hours)


@router.post("/nodes/enrol", response_model=Enrolment)
def enrol(request: Request, body: EnrolIn) -> Enrolment:
    """A node enrolls: its one-time token and the public halves of the keys it made. No
    account: the token is the credential (spent by this call)."""
    w = web(request)
    return nodes.enrol(w.db, w.system.settings, body.token, body.signing_key, body.box_key)


@router.get("/nodes/{name}", response_model=NodeView)
def show_node(request: Request, name: str, actor: CurrentActor) -> NodeView:
    return nodes.show_node(web(request).db, actor, name)


@router.post("/nodes/{name}/token", response_model=NodeToken)
def new_token(request: Request, name: str, body: TokenIn, actor: CurrentActor) -> NodeToken:
    """Another enrolment token for a node that has not enrolled yet (the old one stops
    working)."""
    return nodes.new_token(web(request).db, actor, name, body.valid_hours)


@router.post("/nodes/{name}/disable", response_model=NodeView)
def disable(request: Request, name: str, body: DisableIn, actor: CurrentActor) -> NodeView:
    """Disable a node for good and revoke its broker credentials at once (administrators)."""
    w = web(request)
    return nodes.disable(w.db, w.system.settings, actor, name, body.reason)
