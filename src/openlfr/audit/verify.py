"""Verify an audit chain: streaming, O(1) memory, stops at the first bad entry.

For the entry at position ``n`` (counting from 1) the verifier checks, in this order:

1. its ``hash`` equals SHA-256 of its canonical bytes — otherwise it was **edited**;
2. its ``seq`` is ``n`` — a larger one means entries were **deleted** before it, a smaller one
   that entries were **reordered** or **inserted** (a duplicate seq);
3. its ``prev_hash`` is the hash of entry ``n - 1`` (:data:`GENESIS` for ``n == 1``) — otherwise
   an entry before it was replaced or inserted, or the first entry has the **wrong genesis**;
4. with a checkpoint, entry ``checkpoint.seq`` has ``checkpoint.head_hash`` — otherwise history
   up to the checkpoint was rewritten.

With a checkpoint the chain must also reach ``checkpoint.seq``; a shorter chain had its **tail
truncated**. Without one, a truncated tail (or a complete rewrite with fresh hashes) cannot be
told from a shorter honest chain: keep signed checkpoints apart from the database.

``first_bad_seq`` is the *position* where the chain breaks (the seq the entry there should have
had). A forged entry inserted with a correct hash and the right ``prev_hash`` is itself
consistent; the break shows at the entry after it, whose seq or ``prev_hash`` no longer fits.

An independent check with nothing but the standard library is shown in the package
docstring (:mod:`openlfr.audit`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from openlfr.audit.checkpoint import Checkpoint
from openlfr.audit.entry import GENESIS, AuditEntry, compute_hash


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of :func:`verify_chain`.

    ``entries`` counts the entries read (up to and including the first bad one); ``head_hash``
    is the hash of the last entry that verified (:data:`GENESIS` if none did);
    ``first_bad_seq`` and ``problem`` are ``None`` when ``ok``. For a truncated tail
    ``first_bad_seq`` is the first seq that is missing.
    """

    ok: bool
    entries: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None

    def __bool__(self) -> bool:
        return self.ok

    def summary(self) -> str:
        """One line for a terminal or a log."""
        if self.ok:
            return f"OK: {self.entries} entries, head {self.head_hash}"
        return f"FAILED at seq {self.first_bad_seq}: {self.problem}"


def _entry_problem(entry: AuditEntry, position: int, prev_hash: str) -> str | None:
    try:
        recomputed = compute_hash(entry)
    except ValueError as exc:
        return f"entry #{position} cannot be encoded canonically ({exc}): it was edited"
    if entry.hash != recomputed:
        return (
            f"entry #{position} (seq {entry.seq!r}) was edited: stored hash {entry.hash!r} "
            f"but its contents hash to {recomputed}"
        )
    if entry.seq != position:
        if entry.seq > position:
            what = f"entry seq {position} is missing (deleted)"
        else:
            what = "entries are out of order or duplicated (reordered or inserted)"
        return f"expected seq {position} but found seq {entry.seq}: {what}"
    if entry.prev_hash != prev_hash:
        if position == 1:
            return (
                f"entry seq 1 has the wrong genesis: prev_hash {entry.prev_hash!r}, "
                f"expected {GENESIS}"
            )
        return (
            f"entry seq {position} has prev_hash {entry.prev_hash!r} but entry seq "
            f"{position - 1} has hash {prev_hash}: an entry before it was deleted, inserted, "
            "replaced or reordered"
        )
    return None


def verify_chain(
    entries: Iterable[AuditEntry],
    checkpoint: Checkpoint | None = None,
    *,
    expected_public_key: str | None = None,
) -> VerifyResult:
    """Check a whole chain from seq 1, in order; see the module docstring for the rules.

    ``entries`` is consumed once (any iterable: a list, a JSON-lines reader, a database cursor).
    ``checkpoint``, if given, must carry a valid signature — by ``expected_public_key`` when that
    is given — or nothing is read and the result names the checkpoint as the problem.
    """
    if checkpoint is not None:
        trouble = checkpoint.problem(expected_public_key)
        if trouble is not None:
            return VerifyResult(False, 0, GENESIS, None, trouble)
    elif expected_public_key is not None:
        raise ValueError("expected_public_key only makes sense with a checkpoint")

    prev_hash = GENESIS
    count = 0
    for entry in entries:
        count += 1
        problem = _entry_problem(entry, count, prev_hash)
        if (
            problem is None
            and checkpoint is not None
            and count == checkpoint.seq
            and entry.hash != checkpoint.head_hash
        ):
            problem = (
                f"entry seq {count} has hash {entry.hash} but the checkpoint of "
                f"{checkpoint.time} records {checkpoint.head_hash}: the chain was rewritten"
            )
        if problem is not None:
            return VerifyResult(False, count, prev_hash, count, problem)
        prev_hash = entry.hash

    if checkpoint is not None and count < checkpoint.seq:
        return VerifyResult(
            False,
            count,
            prev_hash,
            count + 1,
            f"the chain ends at seq {count} but the checkpoint of {checkpoint.time} covers seq "
            f"{checkpoint.seq}: the tail was truncated",
        )
    if checkpoint is not None and checkpoint.seq == 0 and checkpoint.head_hash != GENESIS:
        return VerifyResult(
            False, count, prev_hash, None, "a checkpoint at seq 0 must carry the GENESIS hash"
        )
    return VerifyResult(True, count, prev_hash)
