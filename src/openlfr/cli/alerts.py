"""``openlfr alerts ...``: possible matches and their human review."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from openlfr.cli.audit import PurposeOpt, RecipientOpt
from openlfr.cli.common import console, err_console, fail, print_json, print_table
from openlfr.cli.context import DataDirOpt, UserOpt, acting
from openlfr.governance import alerts as svc
from openlfr.governance.authz import NotFound
from openlfr.governance.views import LABEL, AlertView
from openlfr.store.models import Deployment

app = typer.Typer(help="Possible matches and their review by people.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
AlertArg = Annotated[int, typer.Argument(help="The alert's number.", min=1)]


def _subject(a: AlertView) -> str:
    if a.subject_reference is not None:
        return f"{a.subject_reference} (subject {a.subject_id})"
    return "a subject no longer on record"


def _summary(a: AlertView) -> str:
    return (f"alert {a.id}: {LABEL} with {_subject(a)} — score {a.score:.3f} "
            f"≥ threshold {a.threshold:.3f}, camera {a.camera}, "
            f"{a.seen_at.isoformat(timespec='seconds')}")


def _status(a: AlertView) -> str:
    if a.status.value == "pending" and a.two_person_rule:
        return f"pending ({a.confirmations}/2 confirmations)"
    return a.status.value


def _show(a: AlertView) -> None:
    console.print(f"[bold]Alert {a.id} — {LABEL}[/] (a person must verify it; the system "
                  "never acts on it)", highlight=False)
    rows = [
        ("deployment", f"{a.deployment_id} {a.deployment}"
                       + (" (two-person rule)" if a.two_person_rule else "")),
        ("camera / track", f"{a.camera} / {a.track_id}"),
        ("seen at", a.seen_at.isoformat(timespec="seconds")),
        ("candidate", _subject(a)),
        ("watchlist", str(a.watchlist_id) if a.watchlist_id is not None else "-"),
        ("score", f"{a.score:.4f} (threshold {a.threshold:.4f}, model {a.model_id})"),
        ("revision", str(a.revision)),
        ("status", _status(a)),
        ("decided at", a.decided_at.isoformat(timespec="seconds") if a.decided_at else "-"),
        ("held", f"by {a.held_by}: {a.held_reason}" if a.held_reason else "no"),
        ("crop", "encrypted, stored" if a.has_crop else "none (purged)"),
    ]
    if a.purged_at:
        rows.append(("purged at", a.purged_at.isoformat(timespec="seconds")))
    for key, value in rows:
        console.print(f"  {key:<15} {escape(value)}", highlight=False)
    for adj in a.adjudications:
        why = f" — {adj.reason}" if adj.reason else ""
        console.print(f"  {'decision':<15} {adj.decision.value} by {adj.user} at "
                      f"{adj.at.isoformat(timespec='seconds')}{escape(why)}", highlight=False)
    if a.outcome is not None:
        o = a.outcome
        notes = f" — {o.notes}" if o.notes else ""
        console.print(f"  {'outcome':<15} {'engaged' if o.engaged else 'not engaged'}, action "
                      f"{o.action.value}, by {o.recorded_by}{escape(notes)}", highlight=False)


@app.command("list")
def list_(
    user: UserOpt,
    data_dir: DataDirOpt = None,
    deployment: Annotated[int | None, typer.Option(
        "--deployment", help="Only this deployment's alerts.")] = None,
    camera: Annotated[str | None, typer.Option(
        "--camera", help="Only this camera's alerts.")] = None,
    status: Annotated[str | None, typer.Option(
        "--status", help="pending, decided (any but pending), confirmed, rejected, no_action "
                         "or all (the default).")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="Seen at or after this time, with its zone: 2026-05-01T08:00Z or "
                        "2026-05-01T08:00+01:00.")] = None,
    until: Annotated[str | None, typer.Option(
        "--until", help="Seen before this time (with its zone).")] = None,
    min_score: Annotated[str | None, typer.Option(
        "--min-score", help="Score at least this.")] = None,
    max_score: Annotated[str | None, typer.Option(
        "--max-score", help="Score at most this.")] = None,
    before: Annotated[int | None, typer.Option(
        "--before", help="The older page: alerts numbered below this.", min=1)] = None,
    after: Annotated[int | None, typer.Option(
        "--after", help="The newer page: alerts numbered above this.", min=0)] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many on a page, newest "
                                       f"first (1 to {svc.MAX_PAGE}).", min=1)] = 100,
    json_out: JsonOpt = False,
) -> None:
    """List alerts (possible matches), newest first, a page at a time; the total and how to
    see the next page go to stderr."""
    with acting(data_dir, user) as ctx:
        where = svc.alert_filter(deployment=deployment, camera=camera, status=status,
                                 since=since, until=until, min_score=min_score,
                                 max_score=max_score)
        page = svc.search_alerts(ctx.db, ctx.actor, where, before=before, after=after,
                                 limit=limit)
        rows = list(page.items)
        if deployment is not None and not rows:
            with ctx.db.reading() as s:
                if s.get(Deployment, deployment) is None:  # a mistyped id is not "no alerts"
                    raise NotFound(f"no deployment {deployment}")
    if json_out:
        print_json([a.model_dump(mode="json") for a in rows])
    elif rows:
        table = Table("id", "kind", "seen at", "deployment", "camera", "candidate", "score",
                      "status", "held",
                      title="Alerts: possible matches for a person to verify")
        for a in rows:
            table.add_row(str(a.id), LABEL, a.seen_at.isoformat(timespec="seconds"),
                          str(a.deployment_id), escape(a.camera), escape(_subject(a)),
                          f"{a.score:.3f}", _status(a), "yes" if a.held_reason else "")
        print_table(table)
    if not rows:
        err_console.print(f"no alerts{' on this page' if page.total else ''} "
                          f"({page.total} match)", highlight=False)
        return
    more = []
    if page.older is not None:
        more.append(f"older: --before {page.older}")
    if page.newer is not None:
        more.append(f"newer: --after {page.newer}")
    err_console.print(f"alerts {page.start}–{page.start + len(rows) - 1} of {page.total}, "
                      "newest first" + (f"; {', '.join(more)}" if more else ""),
                      highlight=False)


@app.command("show")
def show(
    alert_id: AlertArg,
    user: UserOpt,
    data_dir: DataDirOpt = None,
    crop_out: Annotated[Path | None, typer.Option(
        "--crop-out", help="Write the decrypted probe crop to this .jpg file (audited; the "
                           "file is created with mode 0600).")] = None,
    purpose: PurposeOpt = None,
    recipient: RecipientOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show one alert, its decisions and outcome; optionally write its crop for review
    (an export: give its --purpose and --recipient)."""
    if crop_out is None and (purpose or recipient):
        fail("--purpose and --recipient describe an export: give them with --crop-out")
    if crop_out is not None:
        if crop_out.suffix.lower() not in (".jpg", ".jpeg"):
            fail(f"--crop-out {crop_out}: the crop is a JPEG; name the file .jpg")
        if not crop_out.parent.is_dir():
            fail(f"--crop-out {crop_out}: the folder {crop_out.parent} does not exist")
        if crop_out.exists():
            fail(f"--crop-out {crop_out}: the file exists; choose a new name")
    with acting(data_dir, user) as ctx:
        view = svc.get_alert(ctx.db, ctx.actor, alert_id)
        data = svc.alert_crop(ctx.system, ctx.actor, alert_id, out="file", purpose=purpose,
                              recipient=recipient) if crop_out else None
    if crop_out is not None and data is not None:
        try:
            fd = os.open(crop_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        except OSError as exc:
            fail(f"--crop-out {crop_out}: cannot write it ({exc.strerror})")
    if json_out:
        out = view.model_dump(mode="json")
        if crop_out is not None:
            out["crop_file"] = str(crop_out)
        print_json(out)
    else:
        _show(view)
    if crop_out is not None:
        err_console.print(f"[green]✓[/] wrote the crop to {escape(str(crop_out))} (delete it "
                          "after the review)", highlight=False)


@app.command("adjudicate")
def adjudicate(
    alert_id: AlertArg,
    decision: Annotated[str, typer.Argument(help="confirm, reject or no_action.")],
    user: UserOpt,
    data_dir: DataDirOpt = None,
    reason: Annotated[str | None, typer.Option(
        "--reason", help="Why (required for reject and no_action).")] = None,
) -> None:
    """Decide on a possible match: confirm, reject (a false alert) or no action."""
    with acting(data_dir, user) as ctx:
        chosen = svc.parse_decision(decision)
        view = svc.adjudicate(ctx.db, ctx.actor, alert_id, chosen, reason)
    err_console.print(f"[green]✓[/] {ctx.actor.name}: {chosen.value} recorded; alert "
                      f"{view.id} is now {_status(view)}", highlight=False)
    console.print(_summary(view), highlight=False)


@app.command("outcome")
def outcome(
    alert_id: AlertArg,
    user: UserOpt,
    action: Annotated[str, typer.Option("--action", help="none, advice, arrest or other.")],
    engaged: Annotated[bool | None, typer.Option(
        "--engaged/--not-engaged", show_default=False,
        help="Whether the person was engaged (one of the two is required).")] = None,
    data_dir: DataDirOpt = None,
    notes: Annotated[str | None, typer.Option("--notes", help="Free notes.")] = None,
    not_subject: Annotated[bool, typer.Option(
        "--not-subject", help="The engaged person turned out not to be the subject (a "
        "confirmed alert that was false).")] = False,
    stopped: Annotated[str | None, typer.Option(
        "--stopped", help="After a false alert: yes or no (required then).")] = None,
    stop_minutes: Annotated[str | None, typer.Option(
        "--stop-minutes", help=f"How long the stop lasted, 1 to {svc.MAX_STOP_MINUTES}.")] = None,
    ethnicity: Annotated[str | None, typer.Option(
        "--perceived-ethnicity", help="Optional, the officer's perception (census 2021): "
        "asian, black, mixed, white, other_ethnic_group or not_recorded.")] = None,
    sex: Annotated[str | None, typer.Option(
        "--perceived-sex", help="Optional: female, male or not_recorded.")] = None,
) -> None:
    """Record what happened after a confirmed or a false alert (once); after a false alert,
    whether the person was stopped, for how long, and their perceived ethnicity and sex (for
    the public sector equality duty)."""
    if engaged is None:
        fail("say whether the person was engaged: --engaged or --not-engaged")
    with acting(data_dir, user) as ctx:
        view = svc.record_outcome(ctx.db, ctx.actor, alert_id, engaged,
                                  svc.parse_action(action), notes, not_subject=not_subject,
                                  stop=svc.stop_from_form(stopped, stop_minutes, ethnicity, sex))
    assert view.outcome is not None
    err_console.print(f"[green]✓[/] outcome of alert {view.id}: "
                      f"{'engaged' if engaged else 'not engaged'}, action "
                      f"{view.outcome.action.value}", highlight=False)


@app.command("hold")
def hold(
    alert_id: AlertArg,
    user: UserOpt,
    reason: Annotated[str, typer.Option("--reason", help="Why it must be kept.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Keep an alert past the retention period (supervisors and authorising officers)."""
    with acting(data_dir, user) as ctx:
        view = svc.hold_alert(ctx.db, ctx.actor, alert_id, reason)
    err_console.print(f"[green]✓[/] alert {view.id} is held: retention will keep it",
                      highlight=False)


@app.command("release")
def release(
    alert_id: AlertArg,
    user: UserOpt,
    data_dir: DataDirOpt = None,
) -> None:
    """Release a held alert: retention purges it when it is old enough."""
    with acting(data_dir, user) as ctx:
        view = svc.release_hold(ctx.db, ctx.actor, alert_id)
    err_console.print(f"[green]✓[/] alert {view.id} is no longer held", highlight=False)
