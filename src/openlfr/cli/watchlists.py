"""``openlfr watchlist show|remove``: what a watchlist file holds, and taking people off it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from openlfr.cli.common import console, fail, print_json, user_errors
from openlfr.watchlist import Watchlist

app = typer.Typer(help="Inspect a watchlist file or remove subjects from it.",
                  no_args_is_help=True)

WatchlistArg = Annotated[Path, typer.Argument(help="Watchlist file.")]


def _load(path: Path) -> Watchlist:
    if not path.exists():
        fail(f"{path}: no such watchlist file")
    return Watchlist.load(path)


@app.command()
def show(
    watchlist: WatchlistArg,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Subjects, their references (image source and digest) and metadata. No templates."""
    with user_errors():
        wl = _load(watchlist)
    subjects = [
        {
            "id": s.id,
            "display_name": s.display_name,
            "metadata": s.metadata,
            "references": [
                {"id": r.id, "source": r.source, "image_sha256": r.image_sha256,
                 "added_at": r.added_at}
                for r in s.references
            ],
        }
        for s in wl.subjects.values()
    ]
    if json_out:
        print_json({"watchlist": str(watchlist), "model_id": wl.model_id,
                    "subjects": subjects, "templates": len(wl)})
        return
    table = Table(title=f"{watchlist}: {wl.subject_count} subjects, {len(wl)} templates "
                        f"({wl.model_id})")
    for col in ("subject", "name", "images", "metadata"):
        table.add_column(col, overflow="fold")
    for s in subjects:
        meta = ", ".join(f"{k}={v}" for k, v in s["metadata"].items())
        table.add_row(s["id"], s["display_name"], str(len(s["references"])), meta)
    console.print(table)


@app.command()
def remove(
    watchlist: WatchlistArg,
    subjects: Annotated[list[str], typer.Argument(help="Subject ids to remove.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Remove subjects and all their templates. Unknown ids are an error; nothing is changed."""
    with user_errors():
        wl = _load(watchlist)
        unknown = [s for s in subjects if s not in wl.subjects]
        if unknown:
            fail(f"{watchlist}: no subject {', '.join(map(repr, unknown))} on this watchlist")
        removed = {s: wl.remove_subject(s) for s in subjects}
        wl.save(watchlist)
    if json_out:
        print_json({"watchlist": str(watchlist), "removed": removed,
                    "subjects": wl.subject_count, "templates": len(wl)})
        return
    console.print(f"removed {len(removed)} subject(s), {sum(removed.values())} template(s); "
                  f"{wl.subject_count} subjects remain")
