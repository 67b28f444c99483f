"""``openlfr calibrate``: find a model's threshold floor on labelled data and record it."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from openlfr.cli.common import console, fail, print_json, print_table, user_errors
from openlfr.errors import InvalidInput
from openlfr.vision import registry

if TYPE_CHECKING:
    from openlfr.evaluation.calibrate import Calibration
    from openlfr.vision.engine import FaceEngine

#: The defaults of openlfr.evaluation.calibrate (not imported here: it loads matplotlib).
DEFAULT_WATCHLIST_SIZE = 1000
DEFAULT_TARGET_FPIR = "1/6000"
DEFAULT_STEP = 0.01

BACKEND_HELP = (f"Face backend: {', '.join(registry.BACKENDS)}, or a model added with "
                "`openlfr models add` (its first calibration makes it usable).")
CACHE_HELP = ("Template cache directory (one .npz per model, keyed by image SHA-256): a rerun "
              "resumes from it. Default: off.")


def parse_rate(text: str, option: str = "--target-fpir") -> float:
    """``"1/6000"``, ``"0.0001"`` or ``"1e-4"`` → a float strictly between 0 and 1."""
    raw = text.strip().replace("_", "")
    try:
        # a fraction of integers; anything else as a float: Fraction("1e-10000000") would take
        # a minute to build its ten-million-digit denominator
        value = float(Fraction(raw)) if "/" in raw else float(raw)
    except (ValueError, ZeroDivisionError, OverflowError) as exc:
        raise InvalidInput(f"{option} {text!r}: not a number (write e.g. 1/6000 or "
                            "0.000167)") from exc
    if not 0.0 < value < 1.0:
        raise InvalidInput(f"{option} {text}: a rate must lie strictly between 0 and 1")
    return value


#: The options of ``openlfr calibrate``.
_Dataset = Annotated[Path, typer.Option("--dataset", "-d", show_default=False,
                                        help="Identity folders, or a flat folder of images "
                                             "(one person each).")]
_GroupsSpec = Annotated[str, typer.Option(
    "--groups", "-g", show_default=False,
    help="CSV 'identity,<attr>,...' or 'file,<attr>,...' (paths relative to the dataset), "
         "or 'utkface' to read age/gender/race from UTKFace file names.")]
_Backend = Annotated[str, typer.Option("--backend", "-b", help=BACKEND_HELP)]
_WatchlistSize = Annotated[int, typer.Option(
    "--watchlist-size", help="Planned number of people on the watchlist.")]
_TargetFpir = Annotated[str, typer.Option(
    "--target-fpir", help="Highest acceptable share of searches for people not on the "
                          "list that return a candidate, e.g. 1/6000 or 0.001.")]
_Attribute = Annotated[list[str] | None, typer.Option(
    "--attribute", "-a", help="Only this attribute (repeatable). Default: all.")]
_Step = Annotated[float, typer.Option("--step", help="Grid of candidate thresholds.")]
_Alpha = Annotated[float, typer.Option(
    "--alpha", help="Significance level of the test of each group against the rest.")]
_MaxPairs = Annotated[int, typer.Option(
    "--max-pairs", help="Impostor pairs per group above which a seeded sample is used.")]
_Seed = Annotated[int, typer.Option("--seed", help="Seed of galleries and pair samples.")]
_User = Annotated[str | None, typer.Option(
    "--user", "-u", envvar="OPENLFR_USER",
    help="Record the floor as this user (password from OPENLFR_PASSWORD or prompted). "
         "Required unless --dry-run.")]
_DataDir = Annotated[Path | None, typer.Option(
    "--data-dir", envvar="OPENLFR_DATA_DIR", help="openlfr data directory holding the database.")]
_DryRun = Annotated[bool, typer.Option("--dry-run", help="Compute and print; store nothing.")]
_JsonOut = Annotated[bool, typer.Option("--json", help="Print the calibration as JSON.")]
_ReportOut = Annotated[Path | None, typer.Option(
    "--report", help="Write a self-contained HTML report here.")]
_Cache = Annotated[Path | None, typer.Option("--cache", help=CACHE_HELP)]
_Progress = Annotated[bool, typer.Option("--progress/--no-progress",
                                         help="Progress bar on stderr.")]


def calibrate_cmd(
    dataset: _Dataset,
    groups: _GroupsSpec,
    backend: _Backend = registry.DEFAULT_BACKEND,
    watchlist_size: _WatchlistSize = DEFAULT_WATCHLIST_SIZE,
    target_fpir: _TargetFpir = DEFAULT_TARGET_FPIR,
    attribute: _Attribute = None,
    step: _Step = DEFAULT_STEP,
    alpha: _Alpha = 0.05,
    max_pairs: _MaxPairs = 200_000,
    seed: _Seed = 0,
    user: _User = None,
    data_dir: _DataDir = None,
    dry_run: _DryRun = False,
    json_out: _JsonOut = False,
    report_out: _ReportOut = None,
    cache: _Cache = None,
    progress: _Progress = True,
) -> None:
    """Find and record the model's threshold floor.

    The lowest threshold that meets a target false-positive identification rate at a
    planned watchlist size and at which no demographic group falsely matches significantly
    more often than the others; record it, with its evidence, as the model's threshold floor
    (audited). Deployments below the floor need a recorded override."""
    if not dry_run and not user:
        fail("--user NAME is required to record the floor (or use --dry-run to compute and "
             "print only)")
    with user_errors():
        target = parse_rate(target_fpir)
        _check_report_dir(report_out)
        recorded: dict[str, object] | None = None
        if dry_run:
            cal = _calibrate_dry(data_dir, dataset, groups, backend, watchlist_size, target,
                                 attribute, max_pairs, seed, step, alpha, cache, progress)
        else:
            assert user is not None
            cal, recorded = _calibrate_and_record(
                user, data_dir, dataset, groups, backend, watchlist_size, target, attribute,
                max_pairs, seed, step, alpha, cache, progress)
        if report_out is not None:
            _write_report(cal, report_out)
    if json_out:
        _print_json(cal, recorded, report_out)
    else:
        _print_floor(cal, recorded, user, report_out)


def _check_report_dir(report_out: Path | None) -> None:
    if report_out is not None and not report_out.parent.is_dir():
        raise FileNotFoundError(f"--report {report_out}: directory {report_out.parent} "
                                "does not exist")


def _write_report(cal: Calibration, report_out: Path) -> None:
    from openlfr.evaluation.calibrate import write_report

    try:
        write_report(cal, report_out)
    except OSError as exc:
        raise InvalidInput(f"--report {report_out}: cannot write ({exc})") from exc


def _print_json(cal: Calibration, recorded: dict[str, object] | None,
                report_out: Path | None) -> None:
    out = cal.to_dict()
    out["recorded"] = recorded
    out["report"] = str(report_out) if report_out is not None else None
    print_json(out)


def _floor_table(cal: Calibration) -> Table:
    ev = cal.evidence
    table = Table(title=f"threshold floor of {escape(cal.model_id)}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    fp = ev["fpir"]
    rows = [
        ("floor", f"{cal.threshold:g}"),
        ("watchlist size / target FPIR", f"{cal.watchlist_size:,} / {cal.target_fpir:.3g}"),
        ("FPIR estimated by", fp["method"]),
        ("FPIR target met from", fp["threshold_meeting_target"]),
        ("FPIR at the floor", fp.get("fpir") or fp.get("modelled_fpir") or "n/a"),
        ("thresholds failing the group check", str(ev["fairness"]["thresholds_failing"])),
        ("dataset", f"{ev['dataset']['images']:,} images, {ev['dataset']['identities']:,} "
                    f"identities, {ev['dataset']['no_face_images']:,} without a face"),
        ("dataset SHA-256", ev["dataset"]["sha256"][:16] + "…"),
    ]
    for name, value in rows:
        table.add_row(name, escape(str(value)))
    return table


def _print_floor(cal: Calibration, recorded: dict[str, object] | None, user: str | None,
                 report_out: Path | None) -> None:
    """The floor as a table, what it means, the notes, and what was recorded or written."""
    from openlfr.evaluation.calibrate import summary_sentences

    print_table(_floor_table(cal))
    for sentence in summary_sentences(cal):
        console.print(f"  {escape(sentence)}", highlight=False)
    for note in cal.evidence["notes"]:
        console.print(f"  note: {escape(note)}", highlight=False)
    if recorded is None:
        console.print("dry run: nothing recorded", highlight=False)
    else:
        console.print(f"recorded as the floor of {escape(cal.model_id)} by "
                      f"{escape(str(user))}", highlight=False)
    if report_out is not None:
        console.print(f"written: {escape(str(report_out))}", highlight=False)


def _calibrate_dry(data_dir: Path | None, dataset: Path, groups: str, backend: str,
                   watchlist_size: int, target: float, attribute: list[str] | None,
                   max_pairs: int, seed: int, step: float, alpha: float, cache: Path | None,
                   progress: bool) -> Calibration:
    """Calibrate without signing in or recording (a model added to the installation is
    loaded from it)."""
    from openlfr.evaluation.calibrate import calibrate

    engine = _added_engine(data_dir, backend) if backend not in registry.BACKENDS else None
    return calibrate(dataset, groups, backend, watchlist_size, target,
                     attributes=attribute, max_pairs=max_pairs, seed=seed, step=step,
                     alpha=alpha, cache_dir=cache, progress=progress, engine=engine)


def _added_engine(data_dir: Path | None, backend: str) -> FaceEngine:
    """The engine of a model added to the installation (its file checked against its
    recorded SHA-256 as it loads)."""
    from openlfr.cli.models import installation
    from openlfr.governance.models import spec_named
    from openlfr.vision.engine import get_engine

    with installation(data_dir) as system:
        if system is None:
            raise registry.ModelError(f"unknown backend {backend!r}; known: "
                                      f"{', '.join(registry.BACKENDS)}")
        with system.db.reading() as s:
            spec = spec_named(s, backend, system.settings.data_dir)
    return get_engine(spec)


def _calibrate_and_record(user: str, data_dir: Path | None, dataset: Path, groups: str,
                          backend: str, watchlist_size: int, target: float,
                          attribute: list[str] | None, max_pairs: int, seed: int, step: float,
                          alpha: float, cache: Path | None, progress: bool,
                          ) -> tuple[Calibration, dict[str, object]]:
    """Sign in and check the permission first (so a long run does not end in a refusal), then
    calibrate and record the floor in one audited transaction."""
    from openlfr.cli.context import acting
    from openlfr.evaluation.calibrate import calibrate
    from openlfr.governance.authz import Perm, require
    from openlfr.governance.floors import record_floor

    # acting() turns refusals and failed sign-ins into clean exits (codes 3 and 4).
    from openlfr.governance.models import spec_named
    from openlfr.vision.engine import get_engine

    with acting(data_dir, user) as ctx:
        require(ctx.db, ctx.actor, Perm.FLOOR_RECORD, "threshold_floor", backend)
        with ctx.db.reading() as s:
            spec = spec_named(s, backend, ctx.settings.data_dir)
        cal = calibrate(dataset, groups, backend, watchlist_size, target,
                        attributes=attribute, max_pairs=max_pairs, seed=seed, step=step,
                        alpha=alpha, cache_dir=cache, progress=progress,
                        engine=get_engine(spec))
        cal = cal.with_evidence(run_by=user)
        floor = record_floor(ctx.db, ctx.actor, cal.model_id, cal.threshold, cal.evidence)
    return cal, {"model_id": floor.model_id, "threshold": floor.threshold,
                 "source": floor.source, "recorded_by": floor.recorded_by,
                 "recorded_at": floor.recorded_at}


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_cmd)


__all__ = ["parse_rate", "register"]
