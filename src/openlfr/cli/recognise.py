"""``openlfr enroll`` and ``openlfr identify``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from openlfr.cli.common import (
    console,
    err_console,
    fail,
    open_watchlist,
    print_json,
    print_table,
    user_errors,
)
from openlfr.vision import get_engine, load_image, registry
from openlfr.watchlist import Watchlist, WatchlistError
from openlfr.watchlist.enrol import ImageOutcome, enrol, plan
from openlfr.watchlist.identify import identify


def _parse_meta(items: list[str] | None) -> dict[str, str]:
    meta: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--meta {item!r}: expected KEY=VALUE")
        meta[key.strip()] = value.strip()
    return meta


def enroll(
    path: Annotated[Path, typer.Argument(help="An image, or a folder of <subject>/<images>.")],
    watchlist: Annotated[Path, typer.Option("--watchlist", "-w",
                                            help="Watchlist file to create or extend.")],
    subject: Annotated[str | None, typer.Option(
        "--subject", "-s", help="Subject id for a single image (default: file name).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Display name for --subject.")] = None,
    meta: Annotated[list[str] | None, typer.Option(
        "--meta", help="Free metadata KEY=VALUE (repeatable).")] = None,
    backend: Annotated[str | None, typer.Option(
        "--backend", "-b", help="Face backend for a new watchlist (default: fusion with dlib "
                                "installed, else sface).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    flip: Annotated[bool, typer.Option(
        "--flip", help="Average each photo's template with its mirror image's (README: "
                       "accuracy figures).")] = False,
) -> None:
    """Enrol photos into a watchlist. Only photos with exactly one good face are accepted."""
    metadata = _parse_meta(meta)
    with user_errors():
        jobs = plan(path, subject, name)
        if watchlist.exists():
            wl, engine, _ = open_watchlist(watchlist, None)
            if backend and backend != engine.backend:
                fail(f"{watchlist} was built with the {engine.backend!r} backend, "
                     f"not {backend!r}")
        else:
            engine = get_engine(backend or registry.default_backend())
            wl = Watchlist(model_id=engine.model_id, dim=engine.embedder.dim)

    outcomes: list[ImageOutcome] = []
    progress = Progress(TextColumn("enrolling"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=err_console, transient=True,
                        disable=len(jobs) < 2)
    def done(outcome: ImageOutcome) -> None:
        outcomes.append(outcome)
        progress.advance(task)

    try:
        with progress:
            task = progress.add_task("enrol", total=len(jobs))
            enrol(engine, wl, jobs, metadata, on_result=done, flip=flip)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted: saving what was accepted so far[/]")
    accepted = [o for o in outcomes if o.accepted]
    if accepted:
        with user_errors():
            wl.save(watchlist)
    summary = {
        "watchlist": str(watchlist),
        "model_id": wl.model_id,
        "images": len(outcomes),
        "accepted": len(accepted),
        "rejected": len(outcomes) - len(accepted),
        "subjects": wl.subject_count,
        "templates": len(wl),
        "reasons": dict(Counter(o.reason.split(":")[0] for o in outcomes if not o.accepted)),
        "results": [o.as_dict() for o in outcomes],
    }
    if json_out:
        print_json(summary)
    else:
        table = Table(title=f"Enrolment into {watchlist}")
        for col in ("image", "subject", "result", "reason"):
            table.add_column(col, overflow="fold")
        for o in outcomes:
            table.add_row(Path(o.path).name, o.subject_id,
                          "[green]accepted[/]" if o.accepted else "[red]rejected[/]", o.reason)
        print_table(table)
        console.print(f"{len(accepted)} accepted, {len(outcomes) - len(accepted)} rejected; "
                      f"watchlist now holds {wl.subject_count} subjects, {len(wl)} templates"
                      + ("" if accepted else " (file not changed)"))
    if not accepted:
        raise typer.Exit(1)


def identify_cmd(
    image: Annotated[Path, typer.Argument(help="The photo to search.")],
    watchlist: Annotated[Path, typer.Option("--watchlist", "-w", help="Watchlist file.")],
    threshold: Annotated[float | None, typer.Option(
        "--threshold", "-t", help="Cosine threshold (default: the model's).")] = None,
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="Candidates per face.")] = 3,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Every face in a photo, its quality and its best watchlist candidates."""
    with user_errors():
        wl, engine, thr = open_watchlist(watchlist, threshold)
        picture = load_image(image)
        results = identify(engine, wl.gallery(), picture, thr, k=top)
    names = {s.id: s.display_name for s in wl.subjects.values()}
    if json_out:
        print_json({
            "image": str(image),
            "watchlist": str(watchlist),
            "model_id": engine.model_id,
            "threshold": thr,
            "faces": [r.as_dict() for r in results],
        })
        return
    if not results:
        console.print(f"No face found in {image}.")
        return
    table = Table(title=f"{len(results)} face(s) in {image.name} — threshold {thr:.2f}")
    for col in ("#", "box (x,y,w,h)", "quality", "best candidates", "possible match"):
        table.add_column(col, overflow="fold")
    for i, r in enumerate(results, 1):
        q = r.face.quality
        qtext = "ok" if q and q.ok else "; ".join(q.reasons) if q else ""
        cands = ", ".join(f"{names.get(c.subject_id, c.subject_id)} {c.score:.3f}"
                          for c in r.candidates)
        match = r.match
        table.add_row(str(i), ", ".join(f"{v:.0f}" for v in r.face.box), qtext, cands,
                      f"[bold yellow]{match.subject_id}[/]" if match else "no")
    print_table(table)
    console.print("A possible match is for a trained person to review, not a decision.")


def register(app: typer.Typer) -> None:
    app.command("enroll")(enroll)
    app.command("identify")(identify_cmd)


__all__ = ["WatchlistError", "register"]
