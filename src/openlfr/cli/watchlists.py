"""``openlfr watchlist ...``: governed watchlists in the database (create, add, approve,
remove-subject, destroy, list, show ID) and offline watchlist files (show FILE, remove FILE).

``show`` takes either: an argument naming an existing file is a watchlist file, a number is the
id of a watchlist in the database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from openlfr.cli.common import console, err_console, fail, print_json, print_table, user_errors
from openlfr.cli.context import DataDirOpt, UserOpt, acting
from openlfr.governance import watchlists
from openlfr.governance.views import SubjectView
from openlfr.store.enums import Category, choices
from openlfr.watchlist import Watchlist

app = typer.Typer(help="Governed watchlists in the database, and watchlist files.",
                  no_args_is_help=True)

WatchlistArg = Annotated[Path, typer.Argument(help="Watchlist file.")]
OptUser = Annotated[str | None, typer.Option(
    "--user", "-u", envvar="OPENLFR_USER", show_envvar=True,
    help="Who is acting (password from OPENLFR_PASSWORD or a prompt).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _load(path: Path) -> Watchlist:
    if not path.exists():
        fail(f"{path}: no such watchlist file")
    return Watchlist.load(path)


@app.command()
def show(
    watchlist: Annotated[str, typer.Argument(
        help="A watchlist file, or the id of a watchlist in the database.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    user: OptUser = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Subjects, their references (image source and digest) and metadata. No templates.

    A number that is not an existing file is a watchlist id in the database (needs --user)."""
    if not Path(watchlist).is_file() and watchlist.strip().isdigit():
        _show_db(_watchlist_id(watchlist), user, data_dir, json_out)
        return
    _show_file(Path(watchlist), json_out)


def _show_file(watchlist: Path, json_out: bool) -> None:
    with user_errors():
        wl = _load(watchlist)
    subjects: list[dict[str, Any]] = [
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
    print_table(table)


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


# -- the governed watchlists in the database -----------------------------------------------------

def _watchlist_id(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        fail(f"{value}: neither an existing watchlist file nor a watchlist id (a number)")
    if number < 1:
        fail(f"{value}: a watchlist id is a positive number")
    return number


def _read_images(paths: list[Path] | None, sources: list[str] | None) -> list[tuple[bytes, str]]:
    paths = paths or []
    sources = [s for s in (sources or [])]
    if not paths:
        fail("--image is required (one or more reference images)")
    if not sources:
        fail("--source is required: where each image came from (one for all images, or one "
             "per --image, in the same order)")
    if len(sources) == 1:
        sources = sources * len(paths)
    if len(sources) != len(paths):
        fail(f"{len(paths)} --image but {len(sources)} --source: give one --source for all "
             "images or one per image")
    out: list[tuple[bytes, str]] = []
    for path, source in zip(paths, sources, strict=True):
        if not path.is_file():
            fail(f"--image {path}: no such file")
        if path.stat().st_size > watchlists.MAX_IMAGE_BYTES:
            fail(f"--image {path}: {path.stat().st_size:,} bytes, more than the limit of "
                 f"{watchlists.MAX_IMAGE_BYTES:,}")
        try:
            out.append((path.read_bytes(), source))
        except OSError as exc:
            fail(f"--image {path}: cannot read it ({exc})")
    return out


def _print_subject(info: SubjectView, verb: str, json_out: bool) -> None:
    if json_out:
        print_json(info.model_dump(mode="json"))
        return
    err_console.print(f"[green]✓[/] {verb} subject {info.id} ({info.reference}) on watchlist "
                      f"{info.watchlist_id}: {len(info.images)} image(s), expires "
                      f"{info.expires_at:%Y-%m-%d %H:%M} UTC", highlight=False)


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="The watchlist's name.")],
    purpose: Annotated[str, typer.Option("--purpose", help="The one deployment purpose it "
                                                           "serves.")],
    user: UserOpt,
    backend: Annotated[str | None, typer.Option(
        "--backend", "-b", help="Face backend (default: fusion with dlib installed, else "
                                "sface).")] = None,
    max_subjects: Annotated[int | None, typer.Option(
        "--max-subjects", help="Size limit (default OPENLFR_WATCHLIST_MAX_SUBJECTS).")] = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create an empty draft watchlist in the database (operators, supervisors, officers)."""
    with acting(data_dir, user) as ctx:
        info = watchlists.create_watchlist(ctx.system, ctx.actor, name, purpose, backend,
                                           max_subjects)
    if json_out:
        print_json(info.model_dump(mode="json"))
        return
    err_console.print(f"[green]✓[/] created watchlist {info.id} ({info.name}, {info.model_id}, "
                      f"up to {info.max_subjects} subjects): a draft until approved",
                      highlight=False)


@app.command("add")
def add(
    watchlist_id: Annotated[int, typer.Argument(help="Watchlist id.", min=1)],
    reference: Annotated[str, typer.Argument(help="The subject's name or case reference.")],
    category: Annotated[str, typer.Option("--category", help=choices(Category) + ".")],
    reason: Annotated[str, typer.Option("--reason", help="Why this person is on the list.")],
    expires: Annotated[str, typer.Option(
        "--expires", help="When the subject leaves the list: 2027-01-31 (end of that day, "
                          "UTC), an ISO time, or 90d / 12w / 48h from now.")],
    user: UserOpt,
    image: Annotated[list[Path] | None, typer.Option(
        "--image", help="Reference image (repeatable).")] = None,
    source: Annotated[list[str] | None, typer.Option(
        "--source", help="Where the image came from (once for all, or once per --image).")
    ] = None,
    minor: Annotated[bool, typer.Option("--minor", help="The subject is under 18.")] = False,
    minor_justification: Annotated[str | None, typer.Option(
        "--minor-justification", help="Required for an under-18 (implies --minor).")] = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Add a subject with reference images; an approved watchlist goes back to draft."""
    images = _read_images(image, source)
    with acting(data_dir, user) as ctx:
        expires_at = watchlists.parse_expiry(expires)
        info = watchlists.add_subject(ctx.system, ctx.actor, watchlist_id, reference,
                                      category, reason, expires_at, images, minor,
                                      minor_justification)
    _print_subject(info, "added", json_out)


@app.command("add-image")
def add_image(
    subject_id: Annotated[int, typer.Argument(help="Subject id.", min=1)],
    user: UserOpt,
    image: Annotated[list[Path] | None, typer.Option(
        "--image", help="Reference image (repeatable).")] = None,
    source: Annotated[list[str] | None, typer.Option(
        "--source", help="Where the image came from (once for all, or once per --image).")
    ] = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Add reference images to a subject; an approved watchlist goes back to draft."""
    images = _read_images(image, source)
    with acting(data_dir, user) as ctx:
        info = watchlists.add_image(ctx.system, ctx.actor, subject_id, images)
    _print_subject(info, "extended", json_out)


@app.command("approve")
def approve(
    watchlist_id: Annotated[int, typer.Argument(help="Watchlist id.", min=1)],
    user: UserOpt,
    data_dir: DataDirOpt = None,
) -> None:
    """Approve a watchlist (an authorising officer who neither built nor changed it)."""
    with acting(data_dir, user) as ctx:
        info = watchlists.approve_watchlist(ctx.db, ctx.actor, watchlist_id)
    err_console.print(f"[green]✓[/] watchlist {info.id} approved by {info.approved_by}: "
                      f"{info.subjects} subjects, {info.images} images", highlight=False)


@app.command("remove-subject")
def remove_subject(
    subject_id: Annotated[int, typer.Argument(help="Subject id.", min=1)],
    user: UserOpt,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (audited).")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Take a subject and its images off its watchlist (back to draft if approved)."""
    with acting(data_dir, user) as ctx:
        result = watchlists.remove_subject(ctx.db, ctx.actor, subject_id, reason)
    if result.destroyed:
        err_console.print(f"[green]✓[/] removed subject {subject_id} and {result.images} "
                          "image(s)", highlight=False)
    else:
        err_console.print(f"[yellow]![/] removed subject {subject_id} and {result.images} "
                          "image(s), but the purge is pending: another program holds the "
                          "database open, so they may remain in its files until `openlfr "
                          "retention run` completes it", highlight=False)


@app.command("destroy")
def destroy(
    watchlist_id: Annotated[int, typer.Argument(help="Watchlist id.", min=1)],
    reason: Annotated[str, typer.Option("--reason", help="Why (audited).")],
    user: UserOpt,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Destroy a watchlist: its subjects, images and data key (authorising officers)."""
    with acting(data_dir, user) as ctx:
        result = watchlists.destroy_watchlist(ctx.system, ctx.actor, watchlist_id, reason)
    if json_out:
        print_json(result.as_dict())
        return
    if result.destroyed:
        err_console.print(f"[green]✓[/] watchlist {result.watchlist_id} destroyed: "
                          f"{result.subjects} subjects, {result.images} images and its data "
                          "key deleted", highlight=False)
        return
    err_console.print(f"[yellow]![/] watchlist {result.watchlist_id}: {result.subjects} "
                      f"subjects and {result.images} images deleted"
                      + (" and its data key destroyed" if result.key_destroyed else "")
                      + ", but the purge is PENDING: another program holds the database open "
                      "(a backup?), so deleted data may remain in its files; `openlfr retention "
                      "run` completes it once that program is done", highlight=False)


@app.command("list")
def list_(
    user: UserOpt,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The watchlists in the database, their state and size."""
    with acting(data_dir, user) as ctx:
        rows = watchlists.list_watchlists(ctx.db, ctx.actor)
    if json_out:
        print_json([r.model_dump(mode="json") for r in rows])
        return
    table = Table("id", "name", "status", "subjects", "images", "model", "approved by",
                  "editors")
    for r in rows:
        table.add_row(str(r.id), r.name, r.status, str(r.subjects), str(r.images), r.model_id,
                      r.approved_by or "", ", ".join(r.editors))
    print_table(table)


def _show_db(watchlist_id: int, user: str | None, data_dir: Path | None,
             json_out: bool) -> None:
    if not user:
        fail("--user is required to read a watchlist in the database (or set OPENLFR_USER)")
    with acting(data_dir, user) as ctx:
        info = watchlists.show_watchlist(ctx.db, ctx.actor, watchlist_id)
    if json_out:
        print_json(info.model_dump(mode="json"))
        return
    console.print(f"watchlist {info.id}: {info.name} — {info.status}"
                  + (f" (approved by {info.approved_by})" if info.approved_by else "")
                  + f"; {info.subjects}/{info.max_subjects} subjects, {info.images} images, "
                    f"{info.model_id}", highlight=False)
    console.print(f"purpose: {info.purpose}", highlight=False)
    console.print(f"editors: {', '.join(info.editors) or '-'}", highlight=False)
    table = Table("subject", "reference", "category", "minor", "expires", "images (source)",
                  "added by", "reason")
    for s in info.subject_list:
        table.add_row(str(s.id), s.reference, s.category, "yes" if s.is_minor else "",
                      f"{s.expires_at:%Y-%m-%d}", "; ".join(i.source for i in s.images),
                      s.added_by, s.reason)
    print_table(table)
