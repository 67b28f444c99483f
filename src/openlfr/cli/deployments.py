"""``openlfr deployment ...``: create, edit, show, list, propose, respond, authorise,
override-threshold, start (``--urgent``), refuse, stop. Thin: parse, call
:mod:`openlfr.governance.deployments` (and :mod:`openlfr.governance.urgent`), print."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from openlfr.cli.common import err_console, fail, print_json, print_table, user_errors
from openlfr.cli.context import DataDirOpt, UserOpt, acting
from openlfr.governance import deployments as deps
from openlfr.governance import urgent
from openlfr.governance.times import parse_time
from openlfr.governance.views import DeploymentView, UrgentUseView
from openlfr.store.db import Database
from openlfr.store.enums import DeploymentStatus, choices
from openlfr.video.zones import check_polygons, polygon_area
from openlfr.vision import registry
from openlfr.vision.registry import DEFAULT_BACKEND, default_backend

app = typer.Typer(help="Deployments: where, why, when and under whose authority.",
                  no_args_is_help=True)

IdArg = Annotated[int, typer.Argument(help="Deployment id.", min=1)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]

def parse_when(text: str, what: str, now: datetime | None = None) -> datetime:
    """A time option in the one time format (:func:`openlfr.governance.times.parse_time`: an
    ISO 8601 time with its zone, ``now``, or a duration from now such as ``+2h`` or ``90d``);
    a bad one exits 2 naming ``what``."""
    with user_errors():
        return parse_time(text, what, now)
    raise AssertionError("unreachable")  # user_errors exits


def _cameras(values: list[str] | None) -> tuple[deps.CameraSpec, ...] | None:
    if values is None:
        return None
    return tuple(deps.CameraSpec.parse(text) for text in values)


def _with_zones(cameras: tuple[deps.CameraSpec, ...], zones: list[str] | None,
                masks: list[str] | None) -> tuple[deps.CameraSpec, ...]:
    """The cameras with the polygons of ``--zones``/``--masks`` (``NAME=JSON``) set."""
    given: dict[str, dict[str, Any]] = {}
    names = {c.name for c in cameras}
    for kind, values in (("zones", zones), ("masks", masks)):
        for text in values or ():
            name, sep, value = text.partition("=")
            name = name.strip()
            if not sep or not name:
                fail(f"--{kind} takes NAME=JSON (e.g. gate='[[[0,0],[0.5,0],[0.5,1]]]'), "
                     f"not {text[:40]!r}")
            if name not in names:
                fail(f"--{kind}: the deployment has no camera named {name!r}")
            given.setdefault(name, {})[kind] = check_polygons(value, name, kind)
    return tuple(replace(c, **given.get(c.name, {})) for c in cameras)


def _with_nodes(cameras: tuple[deps.CameraSpec, ...], nodes: list[str] | None
                ) -> tuple[deps.CameraSpec, ...]:
    """The cameras with the node of ``--node NAME=NODE`` (``NAME=``: the centre)."""
    given: dict[str, str] = {}
    names = {c.name for c in cameras}
    for text in nodes or ():
        name, sep, node = text.partition("=")
        name = name.strip()
        if not sep or not name:
            fail(f"--node takes CAMERA=NODE (e.g. gate=van-1; gate= for the centre), not "
                 f"{text[:40]!r}")
        if name not in names:
            fail(f"--node: the deployment has no camera named {name!r}")
        given[name] = node.strip()
    return tuple(replace(c, node=given[c.name]) if c.name in given else c for c in cameras)


def _model_id(db: Database, backend: str) -> str:
    """The model id of ``--backend``, from its spec (no model is loaded)."""
    from openlfr.governance.models import model_id_for
    from openlfr.vision.registry import ModelError

    try:
        return model_id_for(db, backend)
    except ModelError as exc:
        fail(f"--backend {backend}: {exc}")


# -- options shared by create and edit ---------------------------------------------------------

NameOpt = Annotated[str | None, typer.Option("--name", help="A short name.")]
SiteOpt = Annotated[str | None, typer.Option("--site", help="The site (e.g. a station).")]
LocationOpt = Annotated[str | None, typer.Option(
    "--location", help="Where exactly the cameras are.")]
PurposeOpt = Annotated[str | None, typer.Option("--purpose", help="What it is for.")]
LegalOpt = Annotated[str | None, typer.Option(
    "--legal-basis", help="The legal basis it relies on.")]
DpiaOpt = Annotated[str | None, typer.Option(
    "--dpia", help="Reference of the data protection impact assessment.")]
EqualityOpt = Annotated[str | None, typer.Option(
    "--equality", help="Reference of the equality impact assessment.")]
StartOpt = Annotated[str | None, typer.Option(
    "--start", help="Planned start: ISO 8601 with a timezone, now, or +N[smhd].")]
EndOpt = Annotated[str | None, typer.Option(
    "--end", help="Planned end: ISO 8601 with a timezone, or +N[smhd] from now.")]
ThresholdOpt = Annotated[float | None, typer.Option(
    "--threshold", "-t", help="Cosine threshold (create: default the model's current floor).")]
BackendOpt = Annotated[str | None, typer.Option(
    "--backend", help=f"Recogniser: {', '.join(registry.BACKENDS)} (default "
                      f"{DEFAULT_BACKEND}), or a model added with `openlfr models add`.")]
TwoPersonOpt = Annotated[bool | None, typer.Option(
    "--two-person-rule/--no-two-person-rule",
    help="An alert is verified only when two different people confirm it.")]
SignageOpt = Annotated[bool | None, typer.Option(
    "--signage/--no-signage", help="Signs are in place at the site.")]
NoticeOpt = Annotated[bool | None, typer.Option(
    "--public-notice/--no-public-notice", help="A public notice was published ahead.")]
UrgencyOpt = Annotated[str | None, typer.Option(
    "--urgency-reason", help="Why signage or a public notice is not in place.")]
WatchlistOpt = Annotated[list[int] | None, typer.Option(
    "--watchlist", "-w", help="Id of a watchlist (repeat for several).")]
AlternativesOpt = Annotated[str | None, typer.Option(
    "--alternatives", help="The less intrusive alternatives considered and why they do not "
                           "suffice (required for a new plan; shown publicly).")]
ConsultationOpt = Annotated[int | None, typer.Option(
    "--consultation-days", min=0, help="A public consultation of this many days before it may "
                                       "be authorised (edit: 0 removes it).")]
NoticeAtOpt = Annotated[str | None, typer.Option(
    "--notice-at", help="When the advance public notice was (or will be) published: before "
                        "the window starts (uk-app, unless a critical-threat reason is given "
                        "as --urgency-reason).")]
TargetOpt = Annotated[str | None, typer.Option(
    "--target-fpir", help="The false-alert rate the plan aims at, per person passing (e.g. "
                          "0.001 or 1e-3; default 0.01): authorisation needs a calibration "
                          "for it.")]
FriaOpt = Annotated[str | None, typer.Option(
    "--fria", help="The fundamental rights impact assessment reference (eu-ai-act).")]
EuDbOpt = Annotated[str | None, typer.Option(
    "--eu-db", help="The EU database registration reference (eu-ai-act).")]
CameraOpt = Annotated[list[str] | None, typer.Option(
    "--camera", "-c", help="A camera as NAME=SOURCE (file, rtsp://..., webcam index); "
                           "repeat for several.")]
ZonesOpt = Annotated[list[str] | None, typer.Option(
    "--zones", help="A camera's analysis zones as NAME=JSON, a list of polygons of [x, y] "
                    "points from 0 to 1 (e.g. gate='[[[0.2,0],[1,0],[1,1],[0.2,1]]]'); faces "
                    "are analysed only inside them; '[]' for the whole frame.")]
MasksOpt = Annotated[list[str] | None, typer.Option(
    "--masks", help="A camera's privacy masks as NAME=JSON (polygons like --zones): blacked "
                    "out before anything sees the frame, never analysed.")]
NodeOpt = Annotated[list[str] | None, typer.Option(
    "--node", help="The node that runs a camera, as CAMERA=NODE (openlfr nodes list); "
                   "CAMERA= for the centre itself (the default).")]
LeaseOpt = Annotated[int | None, typer.Option(
    "--lease-seconds", help="How long a lease the centre grants a node running its cameras "
                            "(10 to 3600 s; default 60): cut off longer, a node stops "
                            "matching.")]


@app.command()
def create(
    user: UserOpt,
    name: NameOpt = None, site: SiteOpt = None, location: LocationOpt = None,
    purpose: PurposeOpt = None, legal_basis: LegalOpt = None, dpia: DpiaOpt = None,
    equality: EqualityOpt = None, start: StartOpt = None, end: EndOpt = None,
    threshold: ThresholdOpt = None, backend: BackendOpt = None,
    two_person_rule: TwoPersonOpt = None, signage: SignageOpt = None,
    public_notice: NoticeOpt = None, urgency_reason: UrgencyOpt = None,
    watchlist: WatchlistOpt = None, camera: CameraOpt = None,
    alternatives: AlternativesOpt = None, consultation_days: ConsultationOpt = None,
    zones: ZonesOpt = None, masks: MasksOpt = None, node: NodeOpt = None,
    notice_at: NoticeAtOpt = None, target_fpir: TargetOpt = None, fria: FriaOpt = None,
    eu_db: EuDbOpt = None, lease_seconds: LeaseOpt = None,
    json_out: JsonOpt = False, data_dir: DataDirOpt = None,
) -> None:
    """Create a draft deployment. It runs only once another authorising officer authorises it,
    and only between --start and --end."""
    if not name:
        fail("--name is required")
    if start is None or end is None:
        fail("--start and --end are required")
    planned_start = parse_when(start, "--start")
    planned_end = parse_when(end, "--end")
    cameras = _with_nodes(_with_zones(_cameras(camera) or (), zones, masks), node)
    with acting(data_dir, user) as ctx:
        model_id = _model_id(ctx.db, backend or default_backend())
        plan = deps.Plan(
            name=name, site=site or "", location=location or "", purpose=purpose or "",
            legal_basis=legal_basis or "", dpia_ref=dpia or "", equality_ref=equality or "",
            planned_start=planned_start, planned_end=planned_end, threshold=threshold,
            model_id=model_id, two_person_rule=bool(two_person_rule), signage=bool(signage),
            public_notice=bool(public_notice), urgency_reason=urgency_reason,
            watchlist_ids=tuple(watchlist or ()), cameras=cameras, alternatives=alternatives,
            consultation_days=consultation_days or None,
            lease_seconds=deps.DEFAULT_LEASE_S if lease_seconds is None else lease_seconds,
            **_profile_fields(notice_at, target_fpir, fria, eu_db, new=True))
        new_id = deps.create(ctx.db, ctx.actor, plan, ctx.system.keyring)
        view = deps.show(ctx.db, ctx.actor, new_id)
    if json_out:
        print_json(view.model_dump(mode="json"))
        return
    err_console.print(f"[green]✓[/] created deployment {new_id} (draft)", highlight=False)
    if view.missing:
        err_console.print("before it can be authorised it needs: " + "; ".join(view.missing),
                          highlight=False)


@app.command()
def edit(
    deployment: IdArg, user: UserOpt,
    name: NameOpt = None, site: SiteOpt = None, location: LocationOpt = None,
    purpose: PurposeOpt = None, legal_basis: LegalOpt = None, dpia: DpiaOpt = None,
    equality: EqualityOpt = None, start: StartOpt = None, end: EndOpt = None,
    threshold: ThresholdOpt = None, backend: BackendOpt = None,
    two_person_rule: TwoPersonOpt = None, signage: SignageOpt = None,
    public_notice: NoticeOpt = None, urgency_reason: UrgencyOpt = None,
    watchlist: WatchlistOpt = None, camera: CameraOpt = None,
    alternatives: AlternativesOpt = None, consultation_days: ConsultationOpt = None,
    zones: ZonesOpt = None, masks: MasksOpt = None, node: NodeOpt = None,
    notice_at: NoticeAtOpt = None, target_fpir: TargetOpt = None, fria: FriaOpt = None,
    eu_db: EuDbOpt = None, lease_seconds: LeaseOpt = None,
    json_out: JsonOpt = False, data_dir: DataDirOpt = None,
) -> None:
    """Change a draft or authorised deployment (--watchlist and --camera replace the lists).
    An authorised deployment goes back to draft and needs a new authorisation."""
    changes: dict[str, Any] = {}
    for key, value in (("name", name), ("site", site), ("location", location),
                       ("purpose", purpose), ("legal_basis", legal_basis),
                       ("dpia_ref", dpia), ("equality_ref", equality),
                       ("threshold", threshold), ("two_person_rule", two_person_rule),
                       ("signage", signage), ("public_notice", public_notice),
                       ("urgency_reason", urgency_reason), ("alternatives", alternatives)):
        if value is not None:
            changes[key] = value
    if consultation_days is not None:
        changes["consultation_days"] = consultation_days or None
    if lease_seconds is not None:
        changes["lease_seconds"] = lease_seconds
    changes.update(_profile_fields(notice_at, target_fpir, fria, eu_db))
    if start is not None:
        changes["planned_start"] = parse_when(start, "--start")
    if end is not None:
        changes["planned_end"] = parse_when(end, "--end")
    if watchlist is not None:
        changes["watchlist_ids"] = tuple(watchlist)
    if camera is not None:
        changes["cameras"] = _with_nodes(_with_zones(_cameras(camera) or (), zones, masks),
                                         node)
    if (not changes and backend is None and zones is None and masks is None
            and node is None):
        fail("nothing to change: give at least one option")
    with acting(data_dir, user) as ctx:
        if camera is None and (zones is not None or masks is not None or node is not None):
            current = deps.show(ctx.db, ctx.actor, deployment).cameras
            changes["cameras"] = _with_nodes(_with_zones(  # the stored cameras, new polygons
                tuple(deps.CameraSpec(c.name, c.source) for c in current), zones, masks), node)
        if backend is not None:
            changes["model_id"] = _model_id(ctx.db, backend)
        changed = deps.edit(ctx.db, ctx.actor, deployment, keyring=ctx.system.keyring,
                            **changes)
        view = deps.show(ctx.db, ctx.actor, deployment)
    if json_out:
        print_json({"changed": changed, "deployment": view.model_dump(mode="json")})
        return
    if not changed:
        err_console.print("nothing changed", highlight=False)
        return
    err_console.print(f"[green]✓[/] deployment {deployment}: changed {', '.join(changed)}; "
                      f"now {view.status}", highlight=False)


def _zones_text(camera: dict[str, Any]) -> str:
    """A camera's zones and masks in words: how many, and the share of the frame."""
    out = ""
    for kind, word in (("zones", "analysis zone"), ("masks", "privacy mask")):
        polys = camera.get(kind) or []
        if polys:
            area = sum(polygon_area(p) for p in polys)
            out += (f"\n  {len(polys)} {word}{'s' if len(polys) > 1 else ''} "
                    f"({100 * area:.1f} % of the frame)")
    return out


def _expected(v: DeploymentView) -> str:
    """What its calibration lets one expect at its threshold, or why nothing can be said."""
    if v.calibration_id is None:
        return (f"no recorded calibration at {v.watchlist_size} subjects and target "
                f"{v.target_fpir if v.target_fpir is not None else '-'}: it cannot be "
                "authorised on the default floor")
    alerts = ("false alerts not measured" if v.expected_false_alerts_per_10k is None
              else f"about {v.expected_false_alerts_per_10k:.3g} false alerts per 10,000 "
                   "people passing")
    misses = ("miss rate not measured" if v.expected_miss_rate is None
              else f"{v.expected_miss_rate:.1%} of watchlisted people passing missed")
    return (f"{alerts}; {misses} (calibration {v.calibration_id}, worst-group floor "
            f"{v.calibration_floor:.4f})")


def _show_table(shown: DeploymentView) -> None:
    view = shown.model_dump(mode="json")
    table = Table(title=f"Deployment {view['id']}: {view['name']}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key in ("status", "site", "location", "purpose", "legal_basis", "dpia_ref",
                "equality_ref", "planned_start", "planned_end", "model_id"):
        table.add_row(key, str(view[key] or "-"))
    override = view["threshold_override_reason"]
    table.add_row("threshold", f"{view['threshold']:.4f} (floor {view['floor']:.4f}, "
                  f"{view['floor_source']})" + (f"; override by {view['threshold_override_by']}"
                                                f": {override}" if override else "")
                  + (f" (confirmed by {view['threshold_override_confirmed_by']})"
                     if view["threshold_override_confirmed_by"] else ""))
    for key in ("two_person_rule", "signage", "public_notice"):
        table.add_row(key, "yes" if view[key] else "no")
    if view["urgency_reason"]:
        table.add_row("urgency_reason", view["urgency_reason"])
    table.add_row("alternatives", escape(view.get("alternatives") or "-"))
    if view.get("consultation_days"):
        state = view["consultation"]
        table.add_row("consultation", f"{view['consultation_days']} days; {state}" + (
            f" (opened {view['consultation_opened_at']}, ends {view['consultation_ends_at']})"
            if view.get("consultation_opened_at") else ""))
    if view.get("consultation_response"):
        table.add_row("response", escape(view["consultation_response"]) + (
            f"\n({view['consultation_response_by']}, {view['consultation_response_at']})"))
    for key in ("notice_at", "target_fpir", "fria_ref", "eu_db_ref"):
        if view.get(key) is not None:
            table.add_row(key, escape(str(view[key])))
    table.add_row("expected", _expected(shown))
    table.add_row("watchlists", ", ".join(f"{w['id']} {w['name']} ({w['status']})"
                                          for w in view["watchlists"]) or "-")
    table.add_row("cameras", "\n".join(
        f"{c['name']}={c['source']}" + (f"  ({c['state']}" + (
            f" since {c['state_since']}" if c.get("state_since") else "") + (
            f"; last error: {escape(c['last_error'])}" if c.get("last_error") else "") + ")"
            if c.get("state") else "") + _zones_text(c) for c in view["cameras"]) or "-")
    table.add_row("created", f"{view['created_at']} by {view['created_by']}")
    if view["authorised_by"]:
        table.add_row("authorised", f"{view['authorised_at']} by {view['authorised_by']}"
                      + (f" ({view['authorised_rank']})" if view.get("authorised_rank") else "")
                      + ("; watchlist criteria approved" if view.get("criteria_approved")
                         else ""))
    if view.get("authority_ref"):
        table.add_row("authority", escape(
            f"{view['authority_name']}, decision {view['authority_ref']} of "
            f"{view['authority_date']}; scope: {view['authority_scope']}"))
    if view["started_at"]:
        table.add_row("started", view["started_at"])
    if view.get("pause_reason") and view["status"] == "paused":
        table.add_row("paused", f"{view['pause_reason']} (resume with `openlfr deployment "
                      "start`)")
    if view["ended_at"]:
        table.add_row("ended", f"{view['ended_at']}: {view['end_reason']}")
    if view["missing"]:
        table.add_row("missing", "; ".join(view["missing"]))
    print_table(table)


@app.command()
def show(deployment: IdArg, user: UserOpt, json_out: JsonOpt = False,
         data_dir: DataDirOpt = None) -> None:
    """Everything about one deployment (camera sources without credentials)."""
    with acting(data_dir, user) as ctx:
        view = deps.show(ctx.db, ctx.actor, deployment)
        use = urgent.urgent_use(ctx.db, ctx.actor, deployment)
    if json_out:
        print_json(view.model_dump(mode="json")
                   | {"urgent_use": use.model_dump(mode="json") if use else None})
    else:
        _show_table(view)
        if use is not None:
            _show_urgent(use)


@app.command("list")
def list_(
    user: UserOpt,
    status: Annotated[str | None, typer.Option(
        "--status", help=f"Only these: {choices(DeploymentStatus)}.")] = None,
    json_out: JsonOpt = False, data_dir: DataDirOpt = None,
) -> None:
    """Every deployment, oldest first."""
    wanted: DeploymentStatus | None = None
    if status is not None:
        try:
            wanted = DeploymentStatus(status.strip().lower())
        except ValueError:  # the enum's refusal: the user's --status
            fail(f"--status {status!r}: choose {choices(DeploymentStatus)}")
    with acting(data_dir, user) as ctx:
        views = [v.model_dump(mode="json") for v in
                 deps.list_deployments(ctx.db, ctx.actor, wanted)]
    if json_out:
        print_json(views)
        return
    table = Table(title="Deployments")
    for col in ("id", "name", "status", "site", "planned start", "planned end", "threshold",
                "watchlists", "cameras"):
        table.add_column(col)
    for v in views:
        table.add_row(str(v["id"]), v["name"], v["status"], v["site"], v["planned_start"],
                      v["planned_end"], f"{v['threshold']:.4f}",
                      ", ".join(str(w["id"]) for w in v["watchlists"]),
                      ", ".join(c["name"] for c in v["cameras"]))
    print_table(table)


def _profile_fields(notice_at: str | None, target_fpir: str | None, fria: str | None,
                    eu_db: str | None, new: bool = False) -> dict[str, Any]:
    """The plan fields of the jurisdiction profiles given as options (``new``: a new plan,
    whose target rate is the default unless given)."""
    from openlfr.cli.calibrate import parse_rate

    out: dict[str, Any] = {}
    if notice_at is not None:
        out["notice_at"] = parse_when(notice_at, "--notice-at")
    if target_fpir is not None:
        with user_errors():
            out["target_fpir"] = parse_rate(target_fpir)
    elif new:
        out["target_fpir"] = deps.DEFAULT_TARGET_FPIR
    if fria is not None:
        out["fria_ref"] = fria
    if eu_db is not None:
        out["eu_db_ref"] = eu_db
    return out


RankOpt = Annotated[str | None, typer.Option(
    "--rank", help="Your police rank (uk-app: superintendent or above).")]
CriteriaOpt = Annotated[bool, typer.Option(
    "--approve-criteria", help="You approve the watchlist criteria for this deployment "
                               "(uk-app; `deployment show` lists them).")]
RepresentativeOpt = Annotated[bool, typer.Option(
    "--representative", help="You attest that the data of the calibration its threshold is "
                             "checked against is representative of the people who will "
                             "pass.")]
AuthorityRefOpt = Annotated[str | None, typer.Option(
    "--authority-ref", help="The independent authority's decision reference (eu-ai-act).")]
AuthorityOpt = Annotated[str | None, typer.Option(
    "--authority", help="The independent authority that decided (eu-ai-act).")]
AuthorityDateOpt = Annotated[str | None, typer.Option(
    "--authority-date", help="The date of its decision, YYYY-MM-DD (eu-ai-act).")]
AuthorityScopeOpt = Annotated[str | None, typer.Option(
    "--authority-scope", help="The scope of its decision (eu-ai-act).")]


def parse_day(text: str | None, option: str) -> date | None:
    """A date ``YYYY-MM-DD`` (exit 2 naming ``option`` otherwise)."""
    if text is None:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        fail(f"{option} takes a date as YYYY-MM-DD, not {text[:40]!r}")
    raise AssertionError("unreachable")


@app.command()
def authorise(deployment: IdArg, user: UserOpt, rank: RankOpt = None,
              approve_criteria: CriteriaOpt = False, representative: RepresentativeOpt = False,
              authority_ref: AuthorityRefOpt = None, authority: AuthorityOpt = None,
              authority_date: AuthorityDateOpt = None,
              authority_scope: AuthorityScopeOpt = None,
              data_dir: DataDirOpt = None) -> None:
    """Authorise a draft (authorising officers; never one who created or changed it). What
    else it records depends on the jurisdiction profile (`openlfr admin profile`)."""
    decision = deps.Decision(rank=rank, criteria_approved=approve_criteria,
                             representative=representative, authority_ref=authority_ref,
                             authority_name=authority,
                             authority_date=parse_day(authority_date, "--authority-date"),
                             authority_scope=authority_scope)
    with acting(data_dir, user) as ctx:
        if _urgent_waiting(ctx.db, ctx.actor, deployment):
            urgent.authorise_urgent(ctx.db, ctx.actor, deployment, decision=decision)
            err_console.print(f"[green]✓[/] urgent use of deployment {deployment} authorised: "
                              "it runs on as an authorised deployment", highlight=False)
            return
        deps.authorise(ctx.db, ctx.system.keyring, ctx.actor, deployment,
                       consultation_after_days=ctx.system.settings.consultation_after_days,
                       decision=decision)
    err_console.print(f"[green]✓[/] deployment {deployment} authorised", highlight=False)


@app.command()
def propose(deployment: IdArg, user: UserOpt, json_out: JsonOpt = False,
            data_dir: DataDirOpt = None) -> None:
    """Publish a draft as proposed: its public consultation opens now, for the days set in the
    plan (publishing again restarts it). Residents comment from its public page."""
    with acting(data_dir, user) as ctx:
        view = deps.propose(ctx.db, ctx.actor, deployment)
    if json_out:
        print_json(view.model_dump(mode="json"))
        return
    assert view.consultation_ends_at is not None
    err_console.print(f"[green]✓[/] deployment {deployment} published as proposed; comments "
                      f"until {view.consultation_ends_at.isoformat()}", highlight=False)


@app.command()
def respond(
    deployment: IdArg, user: UserOpt,
    text: Annotated[str, typer.Option(
        "--text", help="The response to the comments of the consultation (published).")],
    json_out: JsonOpt = False, data_dir: DataDirOpt = None,
) -> None:
    """Record the response to a consultation's comments, once its period has ended
    (authorising officers). Needed before it can be authorised."""
    with acting(data_dir, user) as ctx:
        view = deps.record_response(ctx.db, ctx.actor, deployment, text)
    if json_out:
        print_json(view.model_dump(mode="json"))
        return
    err_console.print(f"[green]✓[/] response recorded for deployment {deployment}; it is "
                      "published with the deployment", highlight=False)


@app.command("override-threshold")
def override_threshold(
    deployment: IdArg, user: UserOpt,
    reason: Annotated[str, typer.Option("--reason", help="Why the floor may be crossed.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Record why a threshold below the model's floor may be used (authorising officers).
    An authorised deployment goes back to draft."""
    with acting(data_dir, user) as ctx:
        deps.override_threshold(ctx.db, ctx.actor, deployment, reason)
    err_console.print(f"[green]✓[/] threshold override recorded for deployment {deployment}",
                      highlight=False)


@app.command()
def start(deployment: IdArg, user: UserOpt, data_dir: DataDirOpt = None,
          urgent_: Annotated[bool, typer.Option(
              "--urgent", help="eu-ai-act only: start a draft without prior authorisation, "
                               "with --justification; it must be authorised within 24 h or "
                               "it stops and its results are deleted.")] = False,
          justification: Annotated[str | None, typer.Option(
              "--justification", help="Why the use is urgent (with --urgent; at least "
                                      f"{urgent.JUSTIFICATION_WORDS} words).")] = None,
          ) -> None:
    """Mark an authorised (or paused: resume it) deployment running, inside its window. A
    running `openlfr serve` opens its cameras within 2 s; `openlfr watch --deployment ID` runs
    them in its own process instead. With --urgent (eu-ai-act): a draft, without prior
    authorisation."""
    if urgent_ or justification is not None:
        _start_urgent(deployment, user, data_dir, urgent_, justification)
        return
    with acting(data_dir, user) as ctx:
        resumed = deps.start(ctx.db, ctx.actor, deployment)
    err_console.print(f"[green]✓[/] deployment {deployment} "
                      f"{'is resumed' if resumed else 'is running'} (a running `openlfr "
                      "serve` opens its cameras within 2 s)", highlight=False)


@app.command()
def stop(
    deployment: IdArg, user: UserOpt,
    reason: Annotated[str, typer.Option("--reason", help="Why it ends now.")],
    data_dir: DataDirOpt = None,
) -> None:
    """End a deployment (final; running, paused or authorised). Its live run, wherever it
    runs, stops within 2 s."""
    with acting(data_dir, user) as ctx:
        deps.stop(ctx.db, ctx.actor, deployment, reason)
    err_console.print(f"[green]✓[/] deployment {deployment} ended", highlight=False)


# -- the urgent-use path (eu-ai-act; openlfr.governance.urgent) ---------------------------------

def _show_urgent(use: UrgentUseView) -> None:
    state = {"waiting": "waiting for authorisation", "authorised": "authorised",
             "refused": "refused", "expired": "not authorised within 24 h"}[use.state]
    lines = [f"urgent use: started by {use.started_by} at {use.started_at.isoformat()} "
             f"without prior authorisation; {state}"]
    if use.seconds_left is not None:
        s = use.seconds_left
        lines.append(f"  {s // 3600} h {s % 3600 // 60:02d} min left to authorise it "
                     f"(deadline {use.deadline.isoformat()})")
    elif use.decided_by:
        lines.append(f"  decided by {use.decided_by} at "
                     f"{use.decided_at.isoformat() if use.decided_at else '?'}")
    if use.results_deleted_at is not None:
        lines.append(f"  results deleted at {use.results_deleted_at.isoformat()} "
                     f"({use.deleted_counts.get('alerts', 0)} alert(s); counts kept)")
    lines.append(f"  justification: {use.justification}")
    for line in lines:
        typer.echo(line)


def _urgent_waiting(db: Database, actor: Any, deployment: int) -> bool:
    view = urgent.urgent_use(db, actor, deployment)
    return view is not None and view.state == urgent.WAITING


def _start_urgent(deployment: int, user: str, data_dir: Any, urgent_: bool,
                  justification: str | None) -> None:
    if not urgent_:
        fail("--justification is for an urgent start: add --urgent")
    if justification is None:
        fail("an urgent start needs --justification: why the use cannot wait for "
             "authorisation")
    with acting(data_dir, user) as ctx:
        view = urgent.start_urgent(ctx.db, ctx.system.keyring, ctx.actor, deployment,
                                   justification or "")
    err_console.print(f"[yellow]![/] deployment {deployment} is running as an urgent use "
                      f"without prior authorisation: an authorising officer must authorise it "
                      f"within {urgent.URGENT_HOURS} h (by {view.deadline.isoformat()}), "
                      "or it stops and its results are deleted", highlight=False)


@app.command()
def refuse(
    deployment: IdArg, user: UserOpt,
    reason: Annotated[str, typer.Option("--reason", help="Why the urgent use is refused.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Refuse an urgent use (authorising officers): it stops at once and every result of it
    (alerts, probe images, decisions, outcomes, its data key) is deleted; counts are kept."""
    with acting(data_dir, user) as ctx:
        view = urgent.refuse_urgent(ctx.system, ctx.actor, deployment, reason)
    n = view.deleted_counts.get("alerts", 0)
    err_console.print(f"[green]✓[/] urgent use of deployment {deployment} refused: it has "
                      f"ended and its results were deleted ({n} alert(s))", highlight=False)
