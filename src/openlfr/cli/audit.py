"""``openlfr audit verify|checkpoint|list|export|show``: the tamper-evident log, for the people
who check it (``audit.read``: auditors, admins, authorising officers). ``list`` and ``export``
take the same filters as the console and the API (:class:`~openlfr.governance.auditing.
AuditFilter`)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from openlfr.cli.common import console, err_console, fail, print_json
from openlfr.cli.context import DataDirOpt, UserOpt, acting
from openlfr.governance import auditing
from openlfr.governance.auditing import AuditFilter, Pair
from openlfr.governance.views import label
from openlfr.privatefile import open_private
from openlfr.store.enums import DisclosurePurpose, RecipientCategory, choices

app = typer.Typer(help="The audit log: verify, checkpoint, list, export, show.",
                  no_args_is_help=True)

# The filters of ``list`` and ``export`` (the console's and the API's, by the same names).
ActorOpt = Annotated[str | None, typer.Option(
    "--actor", help="Who: an account name, or `system`.")]
ActionOpt = Annotated[str | None, typer.Option(
    "--action", help="An action (alert.adjudicate), or a family without a dot (alert).")]
ObjectTypeOpt = Annotated[str | None, typer.Option(
    "--object-type", help="What the entry is about: deployment, alert, watchlist, user…")]
ObjectIdOpt = Annotated[str | None, typer.Option("--object-id", help="Its id.")]
DeploymentOpt = Annotated[int | None, typer.Option(
    "--deployment", min=1, help="Entries about this deployment, its cameras and its alerts.")]
SinceOpt = Annotated[str | None, typer.Option(
    "--since", help="From this time (inclusive), with its zone: 2026-05-01T08:00Z or "
                    "2026-05-01T08:00+01:00.")]
UntilOpt = Annotated[str | None, typer.Option(
    "--until", help="Up to this time (exclusive), in the same format as --since.")]
UptoOpt = Annotated[int | None, typer.Option(
    "--upto", min=1, help="Only entries up to this seq (the log as it was then).")]

EXIT_BROKEN = 1  # the chain does not verify

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@app.command("verify")
def verify(
    user: UserOpt,
    data_dir: DataDirOpt = None,
    checkpoint: Annotated[Path | None, typer.Option(
        "--checkpoint", help="A signed checkpoint file (`openlfr audit checkpoint`): also "
                             "detects a truncated tail or a rewritten chain.")] = None,
    public_key: Annotated[str | None, typer.Option(
        "--public-key", help="The signing key's public key (64 hex digits) the checkpoint "
                             "must be signed with; needs --checkpoint.")] = None,
    selection: Annotated[Path | None, typer.Option(
        "--selection", help="An exported selection (JSON lines): check that each of its "
                            "entries is, hash and fields, the log's entry of that seq.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Recompute the hash chain in the database; exit 1 naming the first bad entry. With
    --selection, also check an exported selection against it."""
    if selection is not None:
        if checkpoint is not None or public_key is not None:
            fail("--selection is checked against the database alone: no --checkpoint")
        if not selection.is_file():
            fail(f"--selection {selection}: no such file")
        _verify_selection(data_dir, user, selection, json_out)
        return
    if public_key is not None:
        public_key = public_key.strip().lower()
        if checkpoint is None:
            fail("--public-key needs --checkpoint FILE (it says who must have signed it)")
        if not _HEX64.match(public_key):
            fail(f"--public-key {public_key!r}: 64 hexadecimal digits expected")
    if checkpoint is not None and not checkpoint.is_file():
        fail(f"--checkpoint {checkpoint}: no such file")
    with acting(data_dir, user) as ctx:
        checked = auditing.verify(ctx.db, ctx.actor, checkpoint, public_key)
    result, point = checked.result, checked.checkpoint
    data = {**checked.as_dict(),
            "checkpoint": None if point is None else {
                "file": str(checkpoint), "seq": point.seq, "head_hash": point.head_hash,
                "time": point.time, "public_key": point.public_key,
                "public_key_checked": public_key is not None}}
    if json_out:
        print_json(data)
    elif result.ok:
        console.print(f"[green]✓[/] audit chain OK: {result.entries} entries, head "
                      f"{result.head_hash}", highlight=False)
        if point is not None:
            console.print(f"  reaches the checkpoint of {point.time} (seq {point.seq}), signed "
                          f"by {point.public_key}"
                          + ("" if public_key else " — compare this key with the one you "
                             "published, or pass --public-key"), highlight=False)
    _fail_if_broken(result, "audit chain verification", said=json_out)


def _fail_if_broken(result: auditing.VerifyResult, what: str, said: bool) -> None:
    """Exit ``EXIT_BROKEN`` when a check failed, saying where and why unless ``said`` (the
    JSON already did)."""
    if result.ok:
        return
    if not said:
        where = (f" at seq {result.first_bad_seq}" if result.first_bad_seq is not None
                 else "")
        err_console.print(f"[bold red]{what} FAILED{where}:[/] "
                          f"{escape(result.problem or '')}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_BROKEN)


def _verify_selection(data_dir: Path | None, user: str, path: Path, json_out: bool) -> None:
    with acting(data_dir, user) as ctx:
        result = auditing.verify_selection(ctx.db, ctx.actor, path).result
    if json_out:
        print_json({"ok": result.ok, "entries": result.entries,
                    "first_bad_seq": result.first_bad_seq, "problem": result.problem})
    elif result.ok:
        console.print(f"[green]✓[/] the {result.entries} entries of {escape(str(path))} are the "
                      "log's own, and the log's chain verifies", highlight=False)
    _fail_if_broken(result, "selection check", said=json_out)


@app.command("checkpoint")
def checkpoint_cmd(
    user: UserOpt,
    data_dir: DataDirOpt = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write the signed checkpoint here (default: print it). Keep it away "
                      "from the database: another machine, a ticket, a letter.")] = None,
) -> None:
    """Sign the head of the chain with the installation's Ed25519 key."""
    with acting(data_dir, user) as ctx:
        point = auditing.make_checkpoint(ctx.db, ctx.actor, ctx.settings.signing_key_path,
                                         out.name if out is not None else "stdout")
        if out is not None:
            try:
                point.write(out)
            except OSError as exc:
                fail(f"--out {out}: cannot write it ({exc})")
    if out is None:
        sys.stdout.write(json.dumps(point.to_dict(), indent=2, sort_keys=True) + "\n")
    else:
        err_console.print(f"[green]✓[/] checkpoint of seq {point.seq} written to {out}",
                          highlight=False)
    err_console.print(f"public key: {point.public_key}", highlight=False)
    err_console.print("Keep the checkpoint apart from the database, publish the public key, and "
                      "check later with `openlfr audit verify --checkpoint FILE --public-key "
                      "KEY`.", highlight=False)


@app.command("list")
def list_cmd(
    user: UserOpt,
    data_dir: DataDirOpt = None,
    actor: ActorOpt = None,
    action: ActionOpt = None,
    object_type: ObjectTypeOpt = None,
    object_id: ObjectIdOpt = None,
    deployment: DeploymentOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    before: Annotated[int | None, typer.Option(
        "--before", min=1, help="Older page: entries before this seq.")] = None,
    after: Annotated[int | None, typer.Option(
        "--after", min=0, help="Newer page: entries after this seq.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=auditing.PAGE_MAX,
                                       help="Entries per page.")] = 50,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The entries the filters select, newest first, a page at a time; each entry's details
    in words. The last line says how to reach the next older and newer pages."""
    with acting(data_dir, user) as ctx:
        chosen = AuditFilter.parse(actor=actor, action=action, object_type=object_type,
                                   object_id=object_id, deployment=deployment, since=since,
                                   until=until)
        got = auditing.page(ctx.db, ctx.actor, before, limit, after=after, selection=chosen)
    if json_out:
        print_json({"entries": [e.to_dict() for e in got.entries], "total": got.total,
                    "next_before": got.next_before, "next_after": got.next_after,
                    "head": got.head})
        return
    for e in got.entries:
        sys.stdout.write("\t".join([
            str(e.seq), e.time, e.actor, f"{label(e.action)} ({e.action})",
            f"{e.object_type} {e.object_id}", _words(auditing.readable(e.details))]) + "\n")
    pages = [f"older: --before {got.next_before}" if got.next_before else "",
             f"newer: --after {got.next_after}" if got.next_after else ""]
    shown = (f"#{got.entries[0].seq} to #{got.entries[-1].seq}" if got.entries
             else "no entry")
    err_console.print(f"{got.total} {'entry' if got.total == 1 else 'entries'} selected; "
                      f"{shown} shown" + "".join(f"; {p}" for p in pages if p),
                      highlight=False, soft_wrap=True)


def _words(pairs: tuple[Pair, ...]) -> str:
    """Details in words on one line: ``Label: value; Nested: (Inner: value)``."""
    return "; ".join(f"{p.label}: ({_words(p.items)})" if p.items else f"{p.label}: {p.value}"
                     for p in pairs)


#: The optional purpose and recipient category of an export (fixed lists, counted on the public
#: pages): shared by ``openlfr audit export`` and ``openlfr alerts show --crop-out``.
PurposeOpt = Annotated[str | None, typer.Option(
    "--purpose", help=f"Why it is exported: {choices(DisclosurePurpose)} (recorded in the "
                      "audit entry, counted on the public pages).")]
RecipientOpt = Annotated[str | None, typer.Option(
    "--recipient", help=f"Who receives it: {choices(RecipientCategory)}.")]


@app.command("export")
def export(
    user: UserOpt,
    data_dir: DataDirOpt = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write the export here (default: standard output).")] = None,
    art12: Annotated[str | None, typer.Option(
        "--art12", metavar="DEPLOYMENT_ID|all",
        help="Instead of the log, the EU AI Act Art. 12 record of this deployment (or of "
             "all): start, end, reference watchlists, matched inputs, who verified.")] = None,
    purpose: PurposeOpt = None,
    recipient: RecipientOpt = None,
    fmt: Annotated[str, typer.Option(
        "--format", help="jsonl (every field, hash included) or csv (the same columns, "
                         "safe to open in a spreadsheet).")] = "jsonl",
    actor: ActorOpt = None,
    action: ActionOpt = None,
    object_type: ObjectTypeOpt = None,
    object_id: ObjectIdOpt = None,
    deployment: DeploymentOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    upto: UptoOpt = None,
) -> None:
    """The audit log (re-checkable with the standard library), or only the entries the
    filters select, as JSON lines or CSV; or Art. 12 records. The export itself is audited,
    with its filters."""
    if fmt not in auditing.FORMATS:
        fail(f"--format {fmt!r}: jsonl or csv")
    dep_id: int | None = None
    if art12 is not None and art12.strip().lower() != "all":
        try:
            dep_id = int(art12)
        except ValueError:
            fail(f"--art12 {art12!r}: a deployment id (a number) or 'all'")
        if dep_id < 1:
            fail(f"--art12 {art12!r}: a deployment id is a positive number")
    if out is not None and out.is_dir():
        fail(f"--out {out}: is a directory")
    if out is not None and not out.parent.is_dir():
        fail(f"--out {out}: the directory {out.parent} does not exist")
    with acting(data_dir, user) as ctx:
        chosen = AuditFilter.parse(actor=actor, action=action, object_type=object_type,
                                   object_id=object_id, deployment=deployment, since=since,
                                   until=until, upto=upto)
        if art12 is not None and not chosen.empty:
            fail("--art12 takes no filters: it is the record of whole deployments")
        lines = auditing.export(ctx.db, ctx.actor, art12=art12 is not None, deployment=dep_id,
                                selection=chosen, fmt=fmt,
                                out=out.name if out is not None else "stdout",
                                purpose=purpose, recipient=recipient)
        try:
            handle = open_private(out) if out else sys.stdout
        except OSError as exc:
            fail(f"--out {out}: cannot write it ({exc})")
        count = 0
        try:
            for line in lines:
                handle.write(line)
                count += 1
        finally:
            if out is not None:
                handle.close()
            else:
                handle.flush()
    if out is not None:
        if art12 is not None:
            what = "Art. 12 record(s)"
        else:
            if fmt == "csv":
                count -= 1  # the header
            what = "audit entries" if chosen.empty else "audit entries (a selection)"
        err_console.print(f"[green]✓[/] {count} {what} written to {out}", highlight=False)


@app.command("show")
def show(
    user: UserOpt,
    data_dir: DataDirOpt = None,
    last: Annotated[int, typer.Option("--last", "-n", min=1,
                                      help="How many of the newest entries.")] = 20,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The newest entries of the audit log."""
    with acting(data_dir, user) as ctx:
        rows = auditing.newest(ctx.db, ctx.actor, last)
    if json_out:
        print_json([e.to_dict() for e in rows])
        return
    if not rows:
        err_console.print("the audit log is empty")
    for e in rows:
        details = json.dumps(e.details, ensure_ascii=False, sort_keys=True)
        console.print(f"{e.seq:>6}  {e.time}  {escape(e.actor)}  [bold]{escape(e.action)}[/]  "
                      f"{escape(e.object_type)} {escape(e.object_id)}  {escape(details)}",
                      highlight=False, soft_wrap=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="audit")
