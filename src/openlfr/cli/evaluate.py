"""``openlfr eval ...``: accuracy evaluation commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from openlfr.cli.common import console, print_json, user_errors
from openlfr.vision import registry

app = typer.Typer(help="Measure accuracy on labelled data.", no_args_is_help=True)

#: Failed images listed in the human-readable output (all of them are in the JSON).
SHOW_FAILED = 10
BACKEND_HELP = f"Face backend: {', '.join(registry.BACKENDS)}."


@app.command()
def verify(
    dataset: Annotated[Path, typer.Option("--dataset", "-d", show_default=False,
                                          help="Directory holding the images.")],
    pairs: Annotated[Path, typer.Option("--pairs", "-p", show_default=False,
                                        help="Pairs file: LFW pairs.txt format, or CSV with "
                                             "columns file_x,file_y,decision.")],
    backend: Annotated[str, typer.Option("--backend", "-b", help=BACKEND_HELP)] = (
        registry.DEFAULT_BACKEND
    ),
    json_out: Annotated[bool, typer.Option("--json",
                                           help="Print one JSON object on stdout.")] = False,
    plot: Annotated[Path | None, typer.Option("--plot",
                                              help="Write ROC and DET curves to this PNG.")] = None,
    scores_out: Annotated[bool, typer.Option("--scores",
                                             help="Add every pair's score to the JSON.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress",
                                           help="Progress bar on stderr while embedding.")] = True,
) -> None:
    """1:1 verification accuracy on a pairs file (LFW protocol: each fold's threshold is chosen
    on the other folds). Images without a usable face are reported; their pairs count as
    errors."""
    from openlfr.evaluation.verify import run_verify

    with user_errors():
        registry.backend_spec(backend)
        if plot is not None and not plot.parent.is_dir():
            raise FileNotFoundError(f"--plot {plot}: directory {plot.parent} does not exist")
        report = run_verify(dataset, pairs, backend, progress=progress)
        if plot is not None:
            from openlfr.evaluation.plots import plot_roc_det

            s, y = report.score_arrays()
            try:
                plot_roc_det(s, y, plot,
                             title=f"{report.model_id} on {pairs.name} ({report.pairs} pairs)")
            except OSError as exc:
                raise ValueError(f"--plot {plot}: cannot write ({exc})") from exc

    if json_out:
        out = report.to_dict(include_scores=scores_out)
        out["plot"] = str(plot) if plot is not None else None
        print_json(out)
        return

    table = Table(title=f"verification: {report.model_id} on {escape(report.pairs_file)}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("pairs (matched / mismatched)", f"{report.pairs} ({report.matched} / "
                                         f"{report.mismatched})"),
        ("images (failed)", f"{report.images} ({len(report.failed_images)})"),
        ("failed pairs (counted as errors)", str(report.failed_pairs)),
        (f"accuracy ({report.folds}-fold)",
         f"{report.accuracy * 100:.2f}% ± {report.accuracy_std * 100:.2f}"),
        ("threshold (mean over folds)", f"{report.threshold:.4f}"),
        ("AUC", f"{report.auc:.5f}"),
        ("EER", f"{report.eer * 100:.2f}% (threshold {report.eer_threshold:.4f})"),
    ]
    for key, tar in report.tar_at_far.items():
        fold = report.fold_far[key]
        rows.append((f"TAR @ FAR ≤ {float(key) * 100:g}%",
                     f"{tar * 100:.2f}% (threshold {report.threshold_at_far[key]:.4f}; "
                     f"per-fold mean {fold['threshold_mean']:.4f})"))
    d = report.at_default_threshold
    rows.append((f"at default threshold {report.default_threshold:g}",
                 f"TAR {d['tar'] * 100:.2f}%, FAR {d['far'] * 100:.3f}%, "
                 f"accuracy {d['accuracy'] * 100:.2f}%"))
    rows.append(("time", f"{report.seconds:.1f} s"))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    for failed in report.failed_images[:SHOW_FAILED]:
        console.print(f"  failed: {escape(failed.path)}: {escape(failed.reason)}",
                      highlight=False)
    if len(report.failed_images) > SHOW_FAILED:
        console.print(f"  … and {len(report.failed_images) - SHOW_FAILED} more (see --json)")
    if plot is not None:
        console.print(f"plot written to {escape(str(plot))}", highlight=False)
