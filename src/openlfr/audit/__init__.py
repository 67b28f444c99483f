"""The append-only, hash-chained audit log and its verifier (database-independent core).

Every state change (watchlist, subject, deployment, threshold, alert, adjudication, user,
export, purge) is recorded as an :class:`AuditEntry` in the same transaction as the change
(DESIGN.md, invariant 2). Entries form a hash chain:

* entry ``n`` has ``seq == n`` (1, 2, 3, … no gaps) and ``prev_hash`` = the ``hash`` of entry
  ``n - 1`` (:data:`GENESIS`, 64 zeros, for entry 1);
* ``hash`` = SHA-256 (lowercase hex) of the entry's canonical bytes: every field except ``hash``
  as JSON with sorted keys, no whitespace, UTF-8, non-ASCII kept as is, no floats
  (:func:`canonical_bytes`; the rules are in :mod:`openlfr.audit.entry`).

So an edit, deletion, insertion or reordering of past entries is found by
:func:`verify_chain` at the first entry it touches. A truncated tail, or a rewrite of the whole
chain with fresh hashes, is found against a :class:`Checkpoint`: the head ``(seq, hash)`` signed
with an Ed25519 key and kept apart from the database (:mod:`openlfr.audit.checkpoint`).

``details`` never carry biometric data: :func:`check_no_biometrics` refuses bytes, arrays,
base64 blobs and number vectors when an entry is built.

Verifying independently
-----------------------
Export the entries as JSON lines (:func:`write_jsonl`, one entry per line, ``hash``
included) and anyone can recompute the chain with the Python standard library::

    import hashlib, json
    prev = "0" * 64
    for n, line in enumerate(open("audit.jsonl", encoding="utf-8"), start=1):
        entry = json.loads(line)
        stored = entry.pop("hash")
        body = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(body.encode("utf-8")).hexdigest() == stored, n
        assert entry["seq"] == n and entry["prev_hash"] == prev, n
        prev = stored
    # then compare (n, prev) with a signed checkpoint

Typical use::

    chain = AuditChain.from_head(last_stored_entry)      # or AuditChain() for a new log
    entry = chain.append("alice", "deployment.authorise", "deployment", "42",
                         {"window": "2026-12-01T08:00Z/2026-12-01T18:00Z"})
    key = load_or_create_signing_key(path)               # raw 32 bytes, mode 0600
    sign_checkpoint(key, chain.seq, chain.head_hash).write("audit-checkpoint.json")
    result = verify_chain(read_jsonl("audit.jsonl"), Checkpoint.read("audit-checkpoint.json"))
"""

from openlfr.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    generate_signing_key,
    load_or_create_signing_key,
    public_key_hex,
    sign_checkpoint,
)
from openlfr.audit.entry import (
    GENESIS,
    JSON,
    AuditChain,
    AuditEntry,
    build_entry,
    canonical_bytes,
    check_no_biometrics,
    compute_hash,
    format_time,
)
from openlfr.audit.jsonl import AuditFormatError, read_jsonl, write_jsonl
from openlfr.audit.verify import VerifyResult, verify_chain

__all__ = [
    "GENESIS",
    "JSON",
    "AuditChain",
    "AuditEntry",
    "AuditFormatError",
    "Checkpoint",
    "CheckpointError",
    "VerifyResult",
    "build_entry",
    "canonical_bytes",
    "check_no_biometrics",
    "compute_hash",
    "format_time",
    "generate_signing_key",
    "load_or_create_signing_key",
    "public_key_hex",
    "read_jsonl",
    "sign_checkpoint",
    "verify_chain",
    "write_jsonl",
]
