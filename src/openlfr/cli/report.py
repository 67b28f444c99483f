"""``openlfr report annual --year Y``: the annual report for a regulator or a police and crime
panel, as JSON, CSV and a printable HTML page (``audit.read``: auditors, admins, authorising
officers; its making is audited). The service is :mod:`openlfr.transparency.annual`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from openlfr.cli.common import console, fail, print_json
from openlfr.cli.context import DataDirOpt, UserOpt, acting
from openlfr.errors import InvalidInput
from openlfr.transparency import annual

app = typer.Typer(help="Reports for regulators and oversight bodies.", no_args_is_help=True)


@app.command("annual")
def annual_report(
    user: UserOpt,
    year: Annotated[str, typer.Option(
        "--year", help="The year (UTC, 1 January to 31 December), e.g. 2026.")],
    out: Annotated[Path, typer.Option(
        "--out", help="The folder to write annual-report-YEAR.json, .csv and .html into "
                      "(made if missing).")] = Path("."),
    formats: Annotated[str, typer.Option(
        "--format", help="Which files, comma-separated: json, csv, html.")] = "json,csv,html",
    data_dir: DataDirOpt = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print what was written and the key figures as JSON.")] = False,
) -> None:
    """Write the annual report of --year: deployments and their authorisation basis, faces
    seen and people passing, alerts (confirmed and false), outcomes, field tests, urgent
    uses, equality figures, residents' questions and objections, threshold changes and
    overrides, and whether the figures agree with the audit log."""
    try:
        chosen = annual.check_formats(formats.split(","))
    except InvalidInput as exc:
        fail(str(exc))
    if out.exists() and not out.is_dir():
        fail(f"--out {out}: not a folder")
    try:  # before anything is recorded: a folder that cannot be made is bad input
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"--out {out}: cannot make the folder ({exc.strerror or exc})")
    with acting(data_dir, user) as ctx:
        report = annual.make_report(ctx.db, ctx.actor, year, out=str(out.resolve()),
                                    formats=chosen,
                                    responsible_body=ctx.settings.responsible_body)
    try:
        paths = annual.write_report(report, out, chosen)
    except OSError as exc:
        fail(f"--out {out}: cannot write the report ({exc.strerror or exc})")
    summary = summary_of(report)
    if json_out:
        print_json({"year": report.year, "files": [str(p) for p in paths],
                    "audit_seq": report.audit_seq, "summary": summary})
        return
    for p in paths:
        console.print(f"wrote {escape(str(p))}", highlight=False, soft_wrap=True)
    console.print(f"[bold]{report.year}[/]: " + "; ".join(
        f"{k.replace('_', ' ')} {v}" for k, v in summary.items()), highlight=False,
        soft_wrap=True)


def summary_of(report: annual.AnnualReport) -> dict[str, object]:
    """The key figures, for the terminal."""
    def fig(section: str, key: str) -> object:
        return next((f.value for f in report.section(section).facts if f.key == key), None)

    return {"deployments": fig("deployments", "counted"),
            "people_passing": fig("people", "people_passing"),
            "faces_seen": fig("people", "faces_seen"), "alerts": fig("alerts", "alerts"),
            "confirmed": fig("alerts", "confirmed"),
            "false_alerts": fig("alerts", "false_alerts"),
            "engaged": fig("outcomes", "engaged"),
            "questions": fig("questions", "received"),
            "overrides": fig("thresholds", "overrides_recorded"),
            "audit_consistent": bool(fig("integrity", "chain_ok"))
            and bool(fig("integrity", "figures_agree"))}


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="report")
