"""``openlfr eval ...``: accuracy evaluation commands."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from openlfr.cli.common import console, print_json, print_table, user_errors
from openlfr.errors import InvalidInput
from openlfr.evaluation.verify import FailedImage
from openlfr.vision import registry

app = typer.Typer(help="Measure accuracy on labelled data.", no_args_is_help=True)

#: Failed images listed in the human-readable output (all of them are in the JSON).
SHOW_FAILED = 10
BACKEND_HELP = f"Face backend: {', '.join(registry.BACKENDS)}."


def _print_failures(failed_images: Sequence[FailedImage], label: str,
                    plot: Path | None) -> None:
    """The first few images that could not be used (all of them are in the JSON), and where
    the plot went."""
    for failed in failed_images[:SHOW_FAILED]:
        console.print(f"  {label}: {escape(failed.path)}: {escape(failed.reason)}",
                      highlight=False)
    if len(failed_images) > SHOW_FAILED:
        console.print(f"  … and {len(failed_images) - SHOW_FAILED} more (see --json)")
    if plot is not None:
        console.print(f"plot written to {escape(str(plot))}", highlight=False)


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
                raise InvalidInput(f"--plot {plot}: cannot write ({exc})") from exc

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
    print_table(table)
    _print_failures(report.failed_images, "failed", plot)


CACHE_HELP = ("Template cache directory (one .npz per model, keyed by image SHA-256): a rerun "
              "resumes from it. Default: off.")


def _check_out(option: str, path: Path | None) -> None:
    if path is not None and not path.parent.is_dir():
        raise FileNotFoundError(f"{option} {path}: directory {path.parent} does not exist")


def _fmt_rate(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f}%"


@app.command()
def identify(
    dataset: Annotated[Path, typer.Option("--dataset", "-d", show_default=False,
                                          help="Directory with one folder per identity.")],
    gallery_sizes: Annotated[str, typer.Option(
        "--gallery-sizes", help="Comma-separated numbers of enrolled identities.")] = "100,1000",
    backend: Annotated[str, typer.Option("--backend", "-b", help=BACKEND_HELP)] = (
        registry.DEFAULT_BACKEND
    ),
    json_out: Annotated[bool, typer.Option("--json",
                                           help="Print one JSON object on stdout.")] = False,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Write FNIR-vs-FPIR curves (one per gallery size) to this PNG.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the choice of enrolled "
                                                     "identities.")] = 0,
    cache: Annotated[Path | None, typer.Option("--cache", help=CACHE_HELP)] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress",
                                           help="Progress bar on stderr while embedding.")] = True,
    enrol_image: Annotated[str, typer.Option(
        "--enrol-image", help="Each enrolled identity's enrolment image: 'best' (highest "
                              "quality score) or 'first' (first in name order).")] = "first",
) -> None:
    """Open-set identification (the watchlist case): enrol one image per identity for each
    gallery size, search with the other images (mated) and with never-enrolled identities
    (non-mated); report FNIR at FPIR 0.1/0.01/0.001, rank-1 accuracy and FPIR/TPIR at the
    model's default threshold."""
    from openlfr.evaluation.identify import parse_sizes, plot_identify, run_identify

    with user_errors():
        registry.backend_spec(backend)
        sizes = parse_sizes(gallery_sizes)
        _check_out("--plot", plot)
        report = run_identify(dataset, sizes, backend, seed=seed, cache_dir=cache,
                              progress=progress, enrol_image=enrol_image)
        if plot is not None:
            try:
                plot_identify(report, plot)
            except OSError as exc:
                raise InvalidInput(f"--plot {plot}: cannot write ({exc})") from exc

    if json_out:
        out = report.to_dict()
        out["plot"] = str(plot) if plot is not None else None
        print_json(out)
        return
    table = Table(title=f"open-set identification: {report.model_id} on "
                        f"{escape(report.dataset)} ({report.identities} identities, "
                        f"{report.images} images, {len(report.failed_images)} without a face)")
    for col in ("gallery", "mated", "non-mated", "rank-1", "FNIR@FPIR 0.1", "FNIR@FPIR 0.01",
                "FNIR@FPIR 0.001", f"FPIR / TPIR @ {report.default_threshold:g}"):
        table.add_column(col, justify="right")
    for r in report.results:
        table.add_row(str(r.gallery_size), str(r.mated_searches), str(r.nonmated_searches),
                      _fmt_rate(r.rank1),
                      *(_fmt_rate(r.fnir_at_fpir[k]) for k in ("0.1", "0.01", "0.001")),
                      f"{_fmt_rate(r.fpir_at_default, 3)} / {_fmt_rate(r.tpir_at_default)}")
    print_table(table)
    for r in report.results:
        for note in r.notes:
            console.print(f"  N={r.gallery_size}: {escape(note)}", highlight=False)
    _print_failures(report.failed_images, "no face", plot)


@app.command()
def fairness(
    dataset: Annotated[Path, typer.Option("--dataset", "-d", show_default=False,
                                          help="Identity folders, or a flat folder of images "
                                               "(one person each).")],
    groups: Annotated[str, typer.Option(
        "--groups", "-g", show_default=False,
        help="CSV 'identity,<attr>,...' or 'file,<attr>,...' (paths relative to the dataset), "
             "or 'utkface' to read age/gender/race from UTKFace file names.")],
    threshold: Annotated[float, typer.Option("--threshold", "-t", show_default=False,
                                             help="Cosine threshold to measure at.")],
    backend: Annotated[str, typer.Option("--backend", "-b", help=BACKEND_HELP)] = (
        registry.DEFAULT_BACKEND
    ),
    attribute: Annotated[list[str] | None, typer.Option(
        "--attribute", "-a", help="Only this attribute (repeatable). Default: all.")] = None,
    max_pairs: Annotated[int, typer.Option(
        "--max-pairs", help="Impostor pairs per group above which a seeded sample is "
                            "used.")] = 200_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the pair sample.")] = 0,
    json_out: Annotated[bool, typer.Option("--json",
                                           help="Print one JSON object on stdout.")] = False,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Write per-group FMR with 95% intervals to this PNG.")] = None,
    report_out: Annotated[Path | None, typer.Option(
        "--report", help="Write a self-contained HTML report here.")] = None,
    cache: Annotated[Path | None, typer.Option("--cache", help=CACHE_HELP)] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress",
                                           help="Progress bar on stderr while embedding.")] = True,
) -> None:
    """False-match and false-non-match rates per demographic group at a fixed threshold, with
    95% Clopper–Pearson intervals, the highest/lowest FMR ratio and a test of equal rates."""
    from openlfr.evaluation.fairness import (
        plot_fairness,
        run_fairness,
        summary_sentences,
        write_html_report,
    )

    with user_errors():
        registry.backend_spec(backend)
        _check_out("--plot", plot)
        _check_out("--report", report_out)
        report = run_fairness(dataset, groups, threshold, backend, attributes=attribute,
                              max_pairs=max_pairs, seed=seed, cache_dir=cache,
                              progress=progress)
        try:
            if plot is not None:
                plot_fairness(report, plot)
            if report_out is not None:
                write_html_report(report, report_out)
        except OSError as exc:
            raise InvalidInput(f"cannot write the plot or report ({exc})") from exc

    if json_out:
        out = report.to_dict()
        out["plot"] = str(plot) if plot is not None else None
        out["report"] = str(report_out) if report_out is not None else None
        print_json(out)
        return
    for attr in report.attributes:
        table = Table(title=f"{escape(attr.attribute)} at threshold {report.threshold:g} "
                            f"({report.model_id})")
        for col in ("group", "images", "impostor pairs", "FMR [95% CI]", "genuine pairs",
                    "FNMR [95% CI]"):
            table.add_column(col, justify="right")
        for g in attr.groups:
            d = g.to_dict()
            fci = d["fmr_ci"]
            nci = d["fnmr_ci"]
            table.add_row(
                escape(g.group), str(g.images),
                f"{d['n_impostor']:,}" + (" (sampled)" if d["impostor_sampled"] else ""),
                f"{_fmt_rate(d['fmr'], 4)}" + (
                    f" [{_fmt_rate(fci[0], 4)}, {_fmt_rate(fci[1], 4)}]" if fci else ""),
                f"{d['n_genuine']:,}",
                f"{_fmt_rate(d['fnmr'])}" + (
                    f" [{_fmt_rate(nci[0])}, {_fmt_rate(nci[1])}]" if nci else ""))
        print_table(table)
    for sentence in summary_sentences(report):
        console.print(f"  {escape(sentence)}", highlight=False)
    if report.failed_images:
        console.print(f"  {len(report.failed_images)} images without a usable face were left "
                      "out (see --json)", highlight=False)
    for note in report.notes:
        console.print(f"  note: {escape(note)}", highlight=False)
    for out_path in (plot, report_out):
        if out_path is not None:
            console.print(f"written: {escape(str(out_path))}", highlight=False)
