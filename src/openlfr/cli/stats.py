"""``openlfr stats``: the public figures of each deployment, checked against the audit log.
No sign-in: these numbers are meant to be published."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from openlfr.audit import log as audit_log
from openlfr.cli.common import console, err_console, fail, print_json
from openlfr.cli.context import DataDirOpt, opened
from openlfr.transparency.shared import WHAT_WORDS, shared_counts
from openlfr.transparency.stats import (
    DeploymentFigures,
    Totals,
    check_against_audit,
    deployment_stats,
    totals,
)

EXIT_INCONSISTENT = 1


def stats(
    data_dir: DataDirOpt = None,
    deployment: Annotated[int | None, typer.Option(
        "--deployment", "-d", min=1, help="Only this deployment.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Public figures per deployment, checked against the audit log (no sign-in), and what
    was shared (counts of exports and disclosures by purpose and recipient category).

    Per deployment and camera: duration, faces seen (counts), alerts, confirmed, false
    alerts, no action, outcomes, watchlist size, threshold; and whether the audit log agrees.
    Exit 1 if it does not."""
    with opened(data_dir) as system, system.db.reading() as s:
        figures = deployment_stats(s, deployment)
        if deployment is not None and not figures:
            fail(f"no deployment {deployment}")
        problems = check_against_audit(s)
        chain = audit_log.verify(s)
        shared = shared_counts(s, [f.deployment_id for f in figures])
    sums = totals(figures)
    consistent = not problems and chain.ok
    audit = {"consistent": consistent, "chain_ok": chain.ok, "chain_entries": chain.entries,
             "chain_problem": chain.problem, "mismatches": problems}
    if json_out:
        print_json({"deployments": [f.to_dict() for f in figures], "totals": sums.to_dict(),
                    "audit_check": audit,
                    "shared": {"overall": [c.model_dump() for c in shared.overall],
                               "deployments": {str(k): [c.model_dump() for c in v]
                                               for k, v in shared.by_deployment.items()}}})
    else:
        if not figures:
            console.print("no deployments yet", highlight=False)
        for f in figures:
            _print_deployment(f)
        if len(figures) > 1:
            console.print(f"[bold]total[/] of {sums.deployments} deployments: "
                          + _counts(sums, sums.planned_hours, sums.actual_hours),
                          highlight=False, soft_wrap=True)
        console.print("[bold]shared[/] (exports and disclosures, from the audit log): "
                      + ("; ".join(f"{WHAT_WORDS.get(c.what, c.what)} ({c.purpose}, "
                                   f"{c.recipient}) ×{c.count}" for c in shared.overall)
                         or "nothing"), highlight=False, soft_wrap=True)
        if consistent:
            console.print(f"[green]✓[/] consistent with the audit log ({chain.entries} "
                          "entries, chain verified)", highlight=False)
    if not consistent:
        if not chain.ok:
            err_console.print(f"[bold red]audit chain broken at seq {chain.first_bad_seq}:[/] "
                              f"{chain.problem}", highlight=False, soft_wrap=True)
        for line in problems:
            err_console.print(f"[bold red]inconsistent with the audit log:[/] {line}",
                              highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INCONSISTENT)


def _counts(f: DeploymentFigures | Totals, planned: float, actual: float | None) -> str:
    ran = "never ran" if actual is None else f"ran {actual:g} h"
    outcomes = ", ".join(f"{k} {v}" for k, v in f.outcomes.items() if v) or "none recorded"
    return (f"planned {planned:g} h, {ran}; {f.tracks} people passing, {f.faces_seen} faces "
            f"seen ({f.frames} frames); "
            f"{f.alerts} alert(s): {f.confirmed} confirmed, {f.false_alerts} false, "
            f"{f.no_action} no action, {f.pending} pending; outcomes: {outcomes}; "
            f"{f.engaged} engaged")


def _print_deployment(f: DeploymentFigures) -> None:
    size = "unknown" if f.watchlist_size is None else str(f.watchlist_size)
    console.print(f"[bold]deployment {f.deployment_id}[/] {escape(f.name)} at "
                  f"{escape(f.site)} ({f.status}): threshold {f.threshold:.4f} "
                  f"({escape(f.model_id)}), watchlist size {size} "
                  f"({f.watchlist_size_basis})", highlight=False, soft_wrap=True)
    console.print("  " + _counts(f, f.planned_hours, f.actual_hours), highlight=False,
                  soft_wrap=True)
    for c in f.cameras:
        console.print(f"  camera {escape(c.camera)}: {c.tracks} people passing, "
                      f"{c.faces_seen} faces seen "
                      f"({c.frames} frames, {c.dropped_frames} dropped); {c.alerts} alert(s): "
                      f"{c.confirmed} confirmed, {c.false_alerts} false, {c.no_action} no "
                      f"action, {c.pending} pending", highlight=False, soft_wrap=True)


def register(root: typer.Typer) -> None:
    root.command("stats")(stats)
