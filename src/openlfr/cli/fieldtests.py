"""``openlfr fieldtest ...``: plan, add-volunteer, show, list, alerts, end, report. Thin: parse,
call :mod:`openlfr.governance.fieldtests`, print."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from openlfr.cli.common import (
    EXIT_CONFLICT,
    err_console,
    fail,
    print_json,
    print_table,
    user_errors,
)
from openlfr.cli.context import DataDirOpt, UserOpt, acting
from openlfr.governance import fieldtests as ft
from openlfr.governance import watchlists
from openlfr.governance.times import parse_time

app = typer.Typer(help="Field tests (blue list): consenting volunteers walk past a deployment.",
                  no_args_is_help=True)

TestArg = Annotated[int, typer.Argument(help="Field test id.", min=1)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _json(value: Any) -> Any:
    return json.loads(json.dumps(asdict(value), default=str))


@app.command("plan")
def plan_cmd(
    deployment: Annotated[int, typer.Argument(help="Deployment id (draft or authorised).",
                                              min=1)],
    user: UserOpt,
    purpose: Annotated[str | None, typer.Option("--purpose", help="Why the test is run.")]
    = None,
    as_json: JsonOpt = False, data_dir: DataDirOpt = None,
) -> None:
    """Plan a field test of a deployment: it gets a test watchlist of its own (approved like
    any watchlist); an authorised deployment goes back to draft."""
    with acting(data_dir, user) as ctx:
        view = ft.plan_field_test(ctx.system, ctx.actor, deployment, purpose)
    if as_json:
        print_json(_json(view))
        return
    err_console.print(f"[green]✓[/] field test {view.id} planned for deployment {deployment}; "
                      f"its test watchlist is {view.watchlist_id}", highlight=False)


@app.command("add-volunteer")
def add_volunteer_cmd(
    test: TestArg, user: UserOpt,
    label: Annotated[str, typer.Option("--label", help="A pseudonym for the volunteer.")],
    image: Annotated[Path, typer.Option("--image", help="The volunteer's reference photo.")],
    source: Annotated[str, typer.Option("--source", help="Where the photo came from.")],
    consent_by: Annotated[str, typer.Option("--consent-by", help="Who took the consent.")],
    consent_at: Annotated[str, typer.Option("--consent-at",
                                            help="When (ISO time with its zone, or now).")],
    consent_ref: Annotated[str, typer.Option("--consent-ref",
                                             help="Reference of the consent record.")],
    passes: Annotated[list[str], typer.Option(
        "--pass", help="CAMERA=START/END, a planned pass (repeatable).")],
    age_band: Annotated[str | None, typer.Option(
        "--age-band", help=f"Self-declared: {', '.join(ft.AGE_BANDS)}.")] = None,
    sex: Annotated[str | None, typer.Option("--sex", help="Self-declared: female or male.")]
    = None,
    ethnicity: Annotated[str | None, typer.Option(
        "--ethnicity", help="Self-declared census group: asian, black, mixed, white, "
                            "other_ethnic_group.")] = None,
    as_json: JsonOpt = False, data_dir: DataDirOpt = None,
) -> None:
    """Enrol one consenting volunteer with the consent record and the planned passes."""
    if not image.is_file():
        fail(f"--image {image}: no such file")
    if image.stat().st_size > watchlists.MAX_IMAGE_BYTES:
        fail(f"--image {image}: more than the limit of {watchlists.MAX_IMAGE_BYTES:,} bytes")
    with user_errors():
        specs = [ft.parse_pass(p) for p in passes]
        when = parse_time(consent_at, "consent_at")
    with acting(data_dir, user) as ctx:
        view = ft.add_volunteer(ctx.system, ctx.actor, test, label, image.read_bytes(), source,
                                consent_by, when, consent_ref, specs, age_band=age_band,
                                sex=sex, ethnicity=ethnicity)
    if as_json:
        print_json(_json(view))
        return
    err_console.print(f"[green]✓[/] volunteer {view.label} added to field test {test} with "
                      f"{len(view.passes)} planned pass(es); the test watchlist needs approval "
                      "again", highlight=False)


@app.command("show")
def show_cmd(test: TestArg, user: UserOpt, as_json: JsonOpt = False,
             data_dir: DataDirOpt = None) -> None:
    """A field test: its volunteers, their passes, and its report once ended."""
    with acting(data_dir, user) as ctx:
        view = ft.show_field_test(ctx.db, ctx.actor, test)
    if as_json:
        print_json(_json(view))
        return
    err_console.print(f"field test {view.id} of deployment {view.deployment_id} "
                      f"({view.deployment}): {view.status}", highlight=False)
    from rich.table import Table

    table = Table("volunteer", "consent", "age band", "sex", "ethnic group", "passes")
    for v in view.volunteers:
        table.add_row(v.label, f"{v.consent_reference} by {v.consent_by}",
                      v.age_band or "", ft.group_words("sex", v.sex) if v.sex else "",
                      ft.group_words("ethnicity", v.ethnicity) if v.ethnicity else "",
                      "; ".join(f"{p.camera} {p.starts_at:%Y-%m-%d %H:%M:%S}–"
                                f"{p.ends_at:%H:%M:%S}Z" for p in v.passes))
    print_table(table)
    if view.report is not None:
        typer.echo(view.report.markdown())


@app.command("list")
def list_cmd(user: UserOpt, deployment: Annotated[int | None, typer.Option(
        "--deployment", help="Only this deployment's tests.", min=1)] = None,
             as_json: JsonOpt = False, data_dir: DataDirOpt = None) -> None:
    """The field tests."""
    with acting(data_dir, user) as ctx:
        views = ft.list_field_tests(ctx.db, ctx.actor, deployment)
    if as_json:
        print_json([_json(v) for v in views])
        return
    from rich.table import Table

    table = Table("id", "deployment", "status", "volunteers", "TPIR")
    for v in views:
        table.add_row(str(v.id), str(v.deployment_id), v.status, str(len(v.volunteers)),
                      v.report.overall.tpir.text() if v.report else "")
    print_table(table)


@app.command("alerts")
def alerts_cmd(test: TestArg, user: UserOpt, as_json: JsonOpt = False,
               data_dir: DataDirOpt = None) -> None:
    """The test view: the test's alerts (never in the operational queue)."""
    with acting(data_dir, user) as ctx:
        rows = ft.test_alerts(ctx.db, ctx.actor, test)
    if as_json:
        print_json([_json(r) for r in rows])
        return
    from rich.table import Table

    table = Table("alert", "camera", "volunteer", "score", "seen", "time to alert",
                  "in a planned pass")
    for r in rows:
        table.add_row(str(r.id), r.camera, r.volunteer or "", f"{r.score:.3f}",
                      r.seen_at.isoformat(timespec="seconds"),
                      "" if r.latency is None else f"{r.latency:.1f} s",
                      "yes" if r.in_pass else "no")
    print_table(table)


@app.command("end")
def end_cmd(test: TestArg, user: UserOpt, as_json: JsonOpt = False,
            data_dir: DataDirOpt = None) -> None:
    """End the test: store its report with the deployment and destroy the volunteers' images,
    templates and test-alert crops."""
    with acting(data_dir, user) as ctx:
        done = ft.end_field_test(ctx.system, ctx.actor, test)
    if as_json:
        print_json({"field_test": done.field_test_id, "crops_purged": done.crops_purged,
                    "watchlist_destroyed": done.watchlist_destroyed,
                    "purge_pending": done.purge_pending, "report": done.report.as_json()})
        return
    typer.echo(done.report.markdown())
    err_console.print(f"[green]✓[/] field test {test} ended; {done.crops_purged} test-alert "
                      f"crop(s) purged; volunteers' data "
                      f"{'destroyed' if done.watchlist_destroyed else 'purge pending'}",
                      highlight=False)


@app.command("report")
def report_cmd(test: TestArg, user: UserOpt, public: Annotated[bool, typer.Option(
        "--public", help="As the public page shows it (no volunteer).")] = False,
               as_json: JsonOpt = False, data_dir: DataDirOpt = None) -> None:
    """An ended test's report, as Markdown (or JSON)."""
    with acting(data_dir, user) as ctx:
        view = ft.show_field_test(ctx.db, ctx.actor, test)
    if view.report is None:
        fail(f"field test {test} has not ended: its report is made when it ends", EXIT_CONFLICT)
    report = view.report.public() if public else view.report
    if as_json:
        print_json(report.as_json())
        return
    typer.echo(report.markdown(public=public))
