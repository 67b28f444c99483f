"""Purges that hold: a deletion is reported done only when nothing of it can be recovered.

Destroying a watchlist, removing or expiring a subject, purging alerts and destroying a
deployment's key each delete rows in one audited transaction. That alone leaves traces:

* the **data key's file** in the key store (:mod:`openlfr.store.keystore`), deleted only once
  the transaction has committed (:meth:`openlfr.store.crypto.Keyring.shred`);
* on SQLite, the old pages in the **write-ahead log** and, while a reader holds a snapshot from
  before the deletion, in the database file itself: ``secure_delete`` overwrites deleted
  content, but the overwritten pages reach the file only through a checkpoint, which that
  reader blocks (:meth:`openlfr.store.db.Database.checkpoint`).

:func:`finish` runs right after the transaction: it deletes key files, tries the checkpoint a
few times for a fraction of a second, and, if anything is left, records a **pending purge**
(table ``pending_purges``, audited ``purge.pending``) and says so: the caller reports
"purge pending", never "destroyed". The retention job (:func:`complete_pending`) retries and,
once the log is empty and no destroyed key has a file, deletes the records and audits
``purge.complete`` with counts only.

On PostgreSQL the database keeps no log in the data directory; a purge there is done when the
key files are gone (the database's dead tuples and WAL hold only ciphertext, whose key no
longer exists; see the README on backups).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, func, select

from openlfr.audit import log as audit_log
from openlfr.store.crypto import Keyring
from openlfr.store.db import Database
from openlfr.store.models import PendingPurge


@dataclass(frozen=True, slots=True)
class PurgeOutcome:
    """What is left of a deletion. ``done``: nothing recoverable in the data directory."""

    done: bool
    log_emptied: bool
    key_files_left: int = 0

    @property
    def pending(self) -> bool:
        return not self.done


def _shred(db: Database, keyring: Keyring | None, key_ids: Iterable[int]) -> int:
    """Delete destroyed keys' files; the number of those named in ``key_ids`` still there."""
    if keyring is None:
        return 0
    with db.reading() as s, contextlib.suppress(OSError):  # counted below, from the disk
        keyring.shred(s)
    return sum(1 for k in key_ids if keyring.store.exists(k))


def finish(db: Database, keyring: Keyring | None, action: str, target_type: str,
           target_id: object, key_ids: Iterable[int] = ()) -> PurgeOutcome:
    """Complete the deletion just committed (audited as ``action`` on the target): delete the
    files of ``key_ids`` (destroyed in that transaction), empty SQLite's log; if either cannot
    be done now, record and audit a pending purge."""
    left = _shred(db, keyring, list(key_ids))
    emptied = db.checkpoint()
    outcome = PurgeOutcome(done=emptied and left == 0, log_emptied=emptied, key_files_left=left)
    if outcome.done:
        return outcome
    with db.session() as s:
        s.add(PendingPurge(action=action, target_type=target_type, target_id=str(target_id)))
        s.flush()
        audit_log.record(s, audit_log.SYSTEM, "purge.pending", target_type, target_id, {
            "action": action,
            "log_emptied": emptied,  # False: a reader held the database (SQLite)
            "key_files_left": left,
        })
    return outcome


def is_pending(db: Database, target_type: str, target_id: object) -> bool:
    """Whether a purge of this object (e.g. a destroyed watchlist) is still pending."""
    with db.reading() as s:
        return s.scalars(select(PendingPurge.id).where(
            PendingPurge.target_type == target_type,
            PendingPurge.target_id == str(target_id)).limit(1)).first() is not None


def pending_count(db: Database) -> int:
    with db.reading() as s:
        return int(s.scalar(select(func.count()).select_from(PendingPurge)) or 0)


@dataclass(frozen=True, slots=True)
class Completion:
    completed: int  # pending purges completed by this call
    pending: int  # still pending after it


def complete_pending(db: Database, keyring: Keyring | None) -> Completion:
    """Retry every pending purge (and sweep the key store): delete destroyed keys' files,
    empty SQLite's log; when both are done, delete the pending records and audit
    ``purge.complete`` with counts only. Also run by every retention job."""
    with db.reading() as s:
        rows = [(i, a) for i, a in s.execute(select(PendingPurge.id, PendingPurge.action))]
    left = 0
    if keyring is not None:
        with db.reading() as s:
            try:
                _, failed = keyring.shred(s)
                left = len(failed)
            except OSError:
                left = 1
    emptied = db.checkpoint()
    if not (emptied and left == 0):
        return Completion(0, pending_count(db))
    if not rows:
        return Completion(0, 0)
    ids = [i for i, _ in rows]
    by_action = Counter(a for _, a in rows)
    with db.session() as s:
        s.execute(delete(PendingPurge).where(PendingPurge.id.in_(ids)))
        audit_log.record(s, audit_log.SYSTEM, "purge.complete", "purge", "pending", {
            "purges": len(ids),
            "by_action": dict(sorted(by_action.items())),
        })
    db.checkpoint()  # tidy: the entry just written holds nothing to hide
    return Completion(len(ids), pending_count(db))
