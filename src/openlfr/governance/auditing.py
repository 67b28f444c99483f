"""Reading the audit log, for the people who check it (``audit.read``: auditors, admins,
authorising officers) — one service for the JSON API, the console and ``openlfr audit``.

* :class:`AuditFilter`: which entries (actor, action or family of actions, object, deployment,
  time range); the same object for every front end.
* :func:`page`: the selection newest first, ``limit`` at a time, keyset-paged on ``seq`` in
  both directions (``before``: older, ``after``: newer), with the selection's total;
  :func:`newest`: the last few, oldest first (``openlfr audit show``).
* :func:`verify`: recompute the hash chain, optionally against a signed checkpoint (a file
  that cannot be read as one fails the check, it is not an input error); each check is
  recorded (``audit.verify``: its result, entries, first bad entry), and
  :func:`last_verification` says when the chain was last checked, by whom, with what result.
* :func:`verify_selection`: an exported selection against the log (each entry is the log's).
* :func:`make_checkpoint`: sign the head with the installation's Ed25519 key; the
  ``audit.checkpoint`` entry is written first, so the checkpoint covers its own making.
* :func:`export`: the whole log or a selection, as JSON lines or CSV, or the Art. 12 records.
  The ``audit.export`` entry is written here, once, before anything is read (so the export of
  the log covers itself), with the same details whichever front end asked: ``what`` (``log``,
  ``selection`` or ``art12``), the filters of a selection, and ``out`` (where it went:
  ``web``, a file name, ``stdout``); and, when the person named them, ``purpose`` and
  ``recipient`` (fixed lists: :mod:`openlfr.governance.disclosures`), counted on the public
  pages.
* :func:`readable`: an entry's details as labelled pairs, for people.
* :func:`art12_record`: the EU AI Act Art. 12 record of one deployment.

Every function checks the caller's permission (a refusal is audited); a front end only
parses, calls, and prints or streams.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, String, and_, cast, func, or_, select
from sqlalchemy.orm import Session

from openlfr.audit import (
    GENESIS,
    AuditEntry,
    Checkpoint,
    CheckpointError,
    VerifyResult,
    compute_hash,
    format_time,
    load_or_create_signing_key,
    public_key_hex,
    read_jsonl,
    sign_checkpoint,
)
from openlfr.audit import log as audit_log
from openlfr.audit.jsonl import entry_to_line
from openlfr.governance.authz import Actor, NotFound, Perm, RuleError, require
from openlfr.governance.disclosures import disclosure_details
from openlfr.governance.times import form_time, parse_time
from openlfr.governance.views import View, label
from openlfr.store.db import Database
from openlfr.store.models import Alert, AuditRecord, Deployment
from openlfr.transparency.art12 import art12_records

#: The most entries one page may hold.
PAGE_MAX = 500

#: The formats of a log or selection export.
FORMATS = ("jsonl", "csv")

#: The columns of a CSV export, in order.
CSV_COLUMNS = ("seq", "time", "actor", "action", "object_type", "object_id", "details",
               "prev_hash", "hash")

#: A CSV cell starting with one of these is read as a formula by spreadsheets: it is
#: written with a leading apostrophe.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _reader(db: Database, actor: Actor, what: str) -> None:
    require(db, actor, Perm.AUDIT_READ, "audit", what)


# -- the selection ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which entries: every field left None selects everything. The one filter of the console,
    ``GET /api/v1/audit/entries`` and ``openlfr audit list`` / ``export``.

    * ``actor``: who, exactly (``system`` for what the program did by itself);
    * ``action``: an action (``alert.adjudicate``) or, without a dot, a family of actions
      (``alert`` selects every ``alert.*``);
    * ``object_type`` and/or ``object_id``: what the entry is about (``deployment`` ``3``);
    * ``deployment``: every entry about that deployment: the deployment itself, its alerts
      (by the alerts table, so a refusal about one is found too) and every entry whose
      details name it (``"deployment": 3``: alert creation and decisions, crop views, purges,
      camera changes);
    * ``since`` (inclusive) and ``until`` (exclusive): the entry's time, UTC;
    * ``upto``: only entries up to this seq (the log as a page showed it, so that exporting
      "this selection" does not take in what was written after).
    """

    actor: str | None = None
    action: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    deployment: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    upto: int | None = None

    @classmethod
    def parse(cls, *, actor: str | None = None, action: str | None = None,
              object_type: str | None = None, object_id: str | None = None,
              deployment: str | int | None = None, since: str | None = None,
              until: str | None = None, upto: str | int | None = None,
              form: bool = False, zone: tzinfo = UTC) -> AuditFilter:
        """A filter from what a person typed (blank means "any"); a time in the one time
        format (:func:`~openlfr.governance.times.parse_time`, or ``form_time`` for a console
        form, whose inputs are in the zone of people, ``zone``). :class:`RuleError` naming the
        field otherwise."""

        def read(text: str, field: str) -> datetime:
            return form_time(text, field, zone=zone) if form else parse_time(text, field)

        when_from = read(since, "since") if since and since.strip() else None
        when_to = read(until, "until") if until and until.strip() else None
        if when_from is not None and when_to is not None and when_to <= when_from:
            raise RuleError("until must be after since", field="until")
        return cls(actor=_text(actor, "actor"), action=_text(action, "action"),
                   object_type=_text(object_type, "object_type"),
                   object_id=_text(object_id, "object_id"),
                   deployment=_number(deployment, "deployment"),
                   since=when_from, until=when_to, upto=_number(upto, "upto"))

    @property
    def empty(self) -> bool:
        """True when it selects the whole log."""
        return all(getattr(self, name) is None for name in self.__slots__)

    def as_dict(self) -> dict[str, Any]:
        """The filters that are set, as the ``audit.export`` entry records them (times as ISO
        UTC text)."""
        out: dict[str, Any] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = format_time(value)
            if value is not None:
                out[name] = value
        return out

    def query(self) -> dict[str, str]:
        """The filters as query parameters (links to other pages of the same selection);
        ``upto`` is left out: a link shows the log as it is then."""
        out: dict[str, str] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if name == "upto" or value is None:
                continue
            out[name] = (value.strftime("%Y-%m-%dT%H:%M") if isinstance(value, datetime)
                         and value.second == 0 and value.microsecond == 0
                         else format_time(value) if isinstance(value, datetime) else str(value))
        return out

    def where(self) -> list[ColumnElement[bool]]:
        """The SQL conditions."""
        r = AuditRecord
        cond: list[ColumnElement[bool]] = []
        if self.actor is not None:
            cond.append(r.actor == self.actor)
        if self.action is not None:
            if "." in self.action:
                cond.append(r.action == self.action)
            else:
                cond.append(r.action.startswith(self.action + ".", autoescape=True))
        if self.object_type is not None:
            cond.append(r.object_type == self.object_type)
        if self.object_id is not None:
            cond.append(r.object_id == self.object_id)
        if self.deployment is not None:
            n = self.deployment
            cond.append(or_(
                and_(r.object_type == "deployment", r.object_id == str(n)),
                and_(r.object_type == "alert", r.object_id.in_(
                    select(cast(Alert.id, String)).where(Alert.deployment_id == n))),
                # details are stored as canonical JSON: sorted keys, no blanks
                r.details.contains(f'"deployment":{n},', autoescape=True),
                r.details.contains(f'"deployment":{n}}}', autoescape=True)))
        # times are stored as 2026-11-29T15:20:01.123Z: text order is time order; the bound
        # without its Z makes an entry of that very millisecond count as "at or after" it
        if self.since is not None:
            cond.append(r.time >= format_time(self.since)[:-1])
        if self.until is not None:
            cond.append(r.time < format_time(self.until)[:-1])
        if self.upto is not None:
            cond.append(r.seq <= self.upto)
        return cond


EVERYTHING = AuditFilter()


def _given(value: str | None) -> bool:
    return value is not None and value.strip() != ""


def _text(value: str | None, field: str) -> str | None:
    if not _given(value):
        return None
    assert value is not None
    value = value.strip()
    if len(value) > 64:
        raise RuleError(f"{field} is too long (64 characters at most)", field=field)
    return value


def _number(value: str | int | None, field: str) -> int | None:
    if isinstance(value, int):
        number = value
    elif not _given(value):
        return None
    else:
        assert value is not None
        text = value.strip().lstrip("#")
        if not text.isdigit() or len(text) > 15:
            raise RuleError(f"{field} {value!r}: a number expected", field=field)
        number = int(text)
    if number < 1:
        raise RuleError(f"{field} {value!r}: a positive number expected", field=field)
    return number


@dataclass(frozen=True, slots=True)
class EntryPage:
    """Entries newest first; ``next_before`` is the ``before`` of the next older page and
    ``next_after`` the ``after`` of the next newer page (None at either end); ``total``
    counts the whole selection; ``head`` is the log's last seq when the page was read."""

    entries: tuple[AuditEntry, ...]
    total: int
    next_before: int | None
    next_after: int | None = None
    head: int = 0


def page(db: Database, actor: Actor, before: int | None = None, limit: int = 50, *,
         after: int | None = None, selection: AuditFilter = EVERYTHING) -> EntryPage:
    """Up to ``limit`` entries of the selection, newest first: the newest ones with
    ``seq < before`` (older pages), or with ``after`` the oldest ones with ``seq > after``
    (newer pages); the newest of all without either. Keyset paging on ``seq``: a page stays
    the same however many entries are written meanwhile."""
    _reader(db, actor, "show")
    if before is not None and after is not None:
        raise RuleError("give before or after, not both", field="after")
    limit = max(1, min(int(limit), PAGE_MAX))
    cond = selection.where()
    with db.reading() as s:
        query = select(AuditRecord).where(*cond)
        if after is not None:
            query = query.where(AuditRecord.seq > after).order_by(AuditRecord.seq.asc())
        else:
            if before is not None:
                query = query.where(AuditRecord.seq < before)
            query = query.order_by(AuditRecord.seq.desc())
        rows = [audit_log.to_entry(r) for r in s.scalars(query.limit(limit)).all()]
        if after is not None:
            rows.reverse()
        total = int(s.scalar(select(func.count()).select_from(AuditRecord).where(*cond)) or 0)
        head = int(s.scalar(select(func.max(AuditRecord.seq))) or 0)
        older = newer = None
        if rows:
            if _exists(s, cond, AuditRecord.seq < rows[-1].seq):
                older = rows[-1].seq
            if _exists(s, cond, AuditRecord.seq > rows[0].seq):
                newer = rows[0].seq
        elif after is not None and _exists(s, cond, AuditRecord.seq <= after):
            older = after + 1  # past the newest: the way back
    return EntryPage(tuple(rows), total, older, newer, head)


def _exists(s: Session, cond: list[ColumnElement[bool]], edge: ColumnElement[bool]) -> bool:
    return s.scalar(select(AuditRecord.seq).where(*cond, edge).limit(1)) is not None


def actions(db: Database, actor: Actor) -> list[str]:
    """The actions the log holds, for a filter's choices."""
    _reader(db, actor, "show")
    with db.reading() as s:
        return sorted(s.scalars(select(AuditRecord.action).distinct()).all())


def newest(db: Database, actor: Actor, last: int = 20) -> list[AuditEntry]:
    """The ``last`` newest entries, oldest first."""
    _reader(db, actor, "show")
    with db.reading() as s:
        rows = s.scalars(select(AuditRecord).order_by(AuditRecord.seq.desc())
                         .limit(max(1, int(last)))).all()
        return [audit_log.to_entry(r) for r in reversed(rows)]


@dataclass(frozen=True, slots=True)
class Verification:
    """The result of recomputing the chain, and the checkpoint it was held against (None
    without one, or when the checkpoint file could not be read as one)."""

    result: VerifyResult
    checkpoint: Checkpoint | None = None

    def as_dict(self) -> dict[str, Any]:
        r = self.result
        return {"ok": r.ok, "entries": r.entries, "head_hash": r.head_hash,
                "first_bad_seq": r.first_bad_seq, "problem": r.problem}


def verify(db: Database, actor: Actor, checkpoint: Path | Checkpoint | None = None,
           public_key: str | None = None) -> Verification:
    """Recompute the hash chain; with a checkpoint (a file or a read one) also find a
    truncated tail or a rewritten chain, and with ``public_key`` require that signer. A
    checkpoint file that is corrupt or forged makes the check fail."""
    _reader(db, actor, "verify")
    point: Checkpoint | None
    if isinstance(checkpoint, Path):
        try:
            point = Checkpoint.read(checkpoint)
        except CheckpointError as exc:
            return _recorded(db, actor, Verification(
                VerifyResult(False, 0, GENESIS, None, str(exc))), checkpoint=True)
    else:
        point = checkpoint
    with db.reading() as s:
        checked = Verification(audit_log.verify(s, point, public_key), point)
    return _recorded(db, actor, checked, checkpoint=point is not None)


#: The audit action of a check of the chain.
VERIFY_ACTION = "audit.verify"


def _recorded(db: Database, actor: Actor, checked: Verification, *,
              checkpoint: bool) -> Verification:
    """Record that ``actor`` checked the chain, and the result (after the check: the entry is
    not part of what it checked)."""
    r = checked.result
    with db.session() as s:
        audit_log.record(s, actor.name, VERIFY_ACTION, "audit", "chain", {
            "ok": r.ok, "entries": r.entries, "first_bad_seq": r.first_bad_seq,
            "checkpoint": checkpoint})
    return checked


class LastVerification(View):
    """The latest check of the audit chain: when, by whom, and its result."""

    at: datetime
    by: str
    ok: bool
    entries: int
    first_bad_seq: int | None
    checkpoint: bool


def last_verification(db: Database, actor: Actor) -> LastVerification | None:
    """The latest recorded check of the chain (:func:`verify`), or None when it was never
    checked. One indexed query."""
    _reader(db, actor, "last verification")
    with db.reading() as s:
        row = s.scalars(select(AuditRecord).where(AuditRecord.action == VERIFY_ACTION)
                        .order_by(AuditRecord.seq.desc()).limit(1)).first()
        if row is None:
            return None
        entry = audit_log.to_entry(row)
    d = entry.details
    bad = d.get("first_bad_seq")
    return LastVerification(at=datetime.fromisoformat(entry.time), by=entry.actor,
                            ok=d.get("ok") is True, entries=int(str(d.get("entries") or 0)),
                            first_bad_seq=int(str(bad)) if bad is not None else None,
                            checkpoint=d.get("checkpoint") is True)


def verify_selection(db: Database, actor: Actor, entries: Path | Iterable[AuditEntry]
                     ) -> Verification:
    """Check an exported selection (a JSON-lines file, or its entries, oldest first; a line
    that is not an entry is an :class:`~openlfr.audit.AuditFormatError`) against the log: the
    log's chain verifies, and each entry of the selection recomputes to its own hash and is, field
    for field, the log's entry of that seq. ``entries`` counts the selection's entries read;
    ``first_bad_seq`` names the first that is not the log's."""
    _reader(db, actor, "verify")
    if isinstance(entries, Path):
        entries = read_jsonl(entries)
    with db.reading() as s:
        chain = audit_log.verify(s)
        if not chain.ok:
            return Verification(VerifyResult(False, 0, GENESIS, chain.first_bad_seq,
                                             f"the log itself does not verify: {chain.problem}"))
        count, last, head = 0, 0, GENESIS
        for entry in entries:
            count += 1
            problem = None
            if entry.seq <= last:
                problem = f"seq {entry.seq} comes after seq {last}: not in the log's order"
            elif compute_hash(entry) != entry.hash:
                problem = "its hash does not match its fields: the entry was edited"
            else:
                row = s.get(AuditRecord, entry.seq)
                if row is None:
                    problem = "the log has no entry of this seq"
                elif audit_log.to_entry(row) != entry:
                    problem = "it differs from the log's entry of this seq"
            if problem is not None:
                return Verification(VerifyResult(False, count, head, entry.seq, problem))
            last, head = entry.seq, entry.hash
    return Verification(VerifyResult(True, count, head))


def make_checkpoint(db: Database, actor: Actor, key_path: Path, out: str) -> Checkpoint:
    """Sign the head of the chain with the key at ``key_path`` (made on first use). ``out``
    says where the checkpoint goes (a file name, ``stdout``), for the ``audit.checkpoint``
    entry, which is recorded first so the checkpoint covers the record of its own making."""
    _reader(db, actor, "checkpoint")
    key = load_or_create_signing_key(key_path)
    with db.session() as s:
        audit_log.record(s, actor.name, "audit.checkpoint", "audit", "head",
                         {"public_key": public_key_hex(key), "out": out})
        head = audit_log.head(s)
    assert head is not None
    return sign_checkpoint(key, head.seq, head.hash)


def export_filename(deployment: int | None, art12: bool, *,
                    selection: AuditFilter = EVERYTHING, fmt: str = "jsonl") -> str:
    """The file name a download is offered under: a selection says so in its name."""
    if art12:
        return f"art12-{deployment if deployment is not None else 'all'}.jsonl"
    return f"audit-{'log' if selection.empty else 'selection'}.{fmt}"


def export(db: Database, actor: Actor, *, art12: bool = False, deployment: int | None = None,
           selection: AuditFilter = EVERYTHING, fmt: str = "jsonl",
           out: str, purpose: str | None = None,
           recipient: str | None = None) -> Iterator[str]:
    """Record the export (``audit.export``) and return its lines (each ending in ``\\n``):
    the log's entries (re-checkable with the standard library), the entries of a
    ``selection`` only, or, with ``art12``, the Art. 12 record of ``deployment`` (or of every
    deployment). ``fmt`` is ``jsonl`` (every field of each entry, hash included) or ``csv``
    (the same columns; details as JSON; cells safe to open in a spreadsheet). The permission,
    the arguments and the record are settled before this returns; the lines are read as they
    are consumed.

    The entry's details: ``what`` (``log``, ``selection`` or ``art12``), and ``deployment``
    for ``log`` as JSON lines and ``art12``; otherwise ``format`` and ``filters`` (the
    selection's filters, with ``upto`` = the last seq it covers); always ``out``.

    The export of the whole log covers itself (its own entry is its last line). A selection
    covers the entries up to its ``upto``, or up to the entry before its own record."""
    _reader(db, actor, "export")
    shared = disclosure_details(purpose, recipient)
    if fmt not in FORMATS:
        raise RuleError(f"format {fmt!r}: jsonl or csv", field="format")
    if art12 and (fmt != "jsonl" or not selection.empty):
        raise RuleError("the Art. 12 record is JSON lines of whole deployments: no format "
                        "or filters", field="art12")
    if deployment is not None and not art12:
        raise RuleError("a deployment is only for the Art. 12 export; to select the log's "
                        "entries about a deployment, filter by deployment", field="deployment")
    if deployment is not None:
        with db.reading() as s:
            if s.get(Deployment, deployment) is None:
                raise NotFound(f"no deployment {deployment}")
    what = "art12" if art12 else "log" if selection.empty else "selection"
    details: dict[str, Any]
    if what == "selection" or fmt != "jsonl":
        details = {"what": what, "format": fmt, "filters": {}, "out": out}
    else:
        details = {"what": what, "deployment": deployment, "out": out}
    details.update(shared)
    with db.session() as s:
        if what == "selection":
            head = audit_log.head(s)
            last = head.seq if head is not None else 0
            if selection.upto is None or selection.upto > last:
                selection = replace(selection, upto=last)
            details["filters"] = selection.as_dict()
        audit_log.record(s, actor.name, "audit.export", "audit", what, details)
    return _lines(db, deployment, art12, selection, fmt)


def _lines(db: Database, deployment: int | None, art12: bool, selection: AuditFilter,
           fmt: str) -> Iterator[str]:
    with db.reading() as s:
        if art12:
            for record in art12_records(s, deployment):
                yield json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"
            return
        chosen = (audit_log.entries(s) if selection.empty
                  else selected(s, selection))
        if fmt == "csv":
            yield csv_row(CSV_COLUMNS)
            for entry in chosen:
                yield csv_row(csv_cells(entry))
        else:
            for entry in chosen:
                yield entry_to_line(entry) + "\n"


def selected(s: Session, selection: AuditFilter, batch: int = 2000) -> Iterator[AuditEntry]:
    """The entries of a selection, oldest first, streamed in batches."""
    last = 0
    cond = selection.where()
    while True:
        rows = s.scalars(select(AuditRecord).where(*cond, AuditRecord.seq > last)
                         .order_by(AuditRecord.seq).limit(batch)).all()
        if not rows:
            return
        for row in rows:
            yield audit_log.to_entry(row)
        last = rows[-1].seq


def csv_cells(entry: AuditEntry) -> list[str]:
    """One entry as CSV cells (:data:`CSV_COLUMNS`); details as canonical JSON."""
    details = json.dumps(entry.details, sort_keys=True, separators=(",", ":"),
                         ensure_ascii=False)
    return [str(entry.seq), entry.time, entry.actor, entry.action, entry.object_type,
            entry.object_id, details, entry.prev_hash, entry.hash]


def safe_cell(text: str) -> str:
    """A cell a spreadsheet will not run: one starting with ``= + - @``, a tab or a carriage
    return gets a leading apostrophe."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_row(cells: Sequence[str]) -> str:
    """One CSV line (RFC 4180: quoted where needed, CR LF line end, so that a cell holding a
    line break is quoted too), every cell :func:`safe_cell`."""
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\r\n").writerow([safe_cell(c) for c in cells])
    return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class Pair:
    """One detail of an entry for people: its label and either a value in words or, for a
    nested object or list of objects, the pairs inside (``items``)."""

    label: str
    value: str = ""
    items: tuple[Pair, ...] = ()


def readable(details: dict[str, Any]) -> tuple[Pair, ...]:
    """An entry's details as labelled pairs (keys in words, yes/no, "none", lists joined),
    nested objects as nested pairs; the raw JSON stays what is hashed and exported."""
    return tuple(_pair(label(key), value) for key, value in sorted(details.items()))


def _pair(name: str, value: Any) -> Pair:
    if isinstance(value, dict):
        return Pair(name, "" if value else "none", readable(value))
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        return Pair(name, "", tuple(_pair(str(n), v) for n, v in enumerate(value, start=1)))
    if isinstance(value, list):
        return Pair(name, ", ".join(_word(v) for v in value) if value else "none")
    return Pair(name, _word(value))


def _word(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def art12_record(db: Database, actor: Actor, deployment_id: int) -> dict[str, Any]:
    """The Art. 12 record of one deployment (:mod:`openlfr.transparency.art12`)."""
    _reader(db, actor, "art12")
    with db.reading() as s:
        records = art12_records(s, deployment_id)
    if not records:
        raise NotFound(f"no deployment {deployment_id}")
    return records[0]
