"""The hash-chained audit log: every kind of tampering is found, and named (DESIGN invariant 2)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import json
import os
import random
import stat
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from openlfr.audit import (
    GENESIS,
    AuditChain,
    AuditEntry,
    AuditFormatError,
    Checkpoint,
    CheckpointError,
    canonical_bytes,
    check_no_biometrics,
    compute_hash,
    generate_signing_key,
    load_or_create_signing_key,
    public_key_hex,
    read_jsonl,
    sign_checkpoint,
    verify_chain,
    write_jsonl,
)

N = 50
START = datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC)


def make_chain(n: int = N) -> list[AuditEntry]:
    chain = AuditChain()
    entries = []
    for i in range(n):
        entries.append(
            chain.append(
                actor=f"user{i % 3}",
                action=["watchlist.create", "alert.adjudicate", "threshold.set"][i % 3],
                object_type="thing",
                object_id=str(i),
                details={"i": i, "note": f"entry {i} – ünïcode", "nested": {"b": [1, "x"]}},
                time=START + timedelta(seconds=i),
            )
        )
    return entries


def independent_hash(entry: AuditEntry) -> str:
    body = {
        "seq": entry.seq,
        "time": entry.time,
        "actor": entry.actor,
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def rehash(entry: AuditEntry, **changes: object) -> AuditEntry:
    """An entry changed by a forger who also recomputes its own hash."""
    changed = dataclasses.replace(entry, **changes)
    return dataclasses.replace(changed, hash=compute_hash(changed))


# --------------------------------------------------------------------------- a good chain


def test_chain_of_50_verifies() -> None:
    entries = make_chain()
    result = verify_chain(entries)
    assert result.ok and bool(result)
    assert result.entries == N
    assert result.head_hash == entries[-1].hash
    assert result.first_bad_seq is None and result.problem is None
    assert [e.seq for e in entries] == list(range(1, N + 1))
    assert entries[0].prev_hash == GENESIS == "0" * 64
    for prev, entry in itertools.pairwise(entries):
        assert entry.prev_hash == prev.hash


def test_empty_chain_verifies() -> None:
    result = verify_chain([])
    assert result.ok and result.entries == 0 and result.head_hash == GENESIS


def test_verify_streams_a_generator() -> None:
    entries = make_chain()
    assert verify_chain(e for e in entries).ok


def test_chain_resumes_from_head() -> None:
    entries = make_chain(10)
    chain = AuditChain.from_head(entries[-1])
    more = chain.append("bob", "user.create", "user", "7", {})
    assert more.seq == 11 and more.prev_hash == entries[-1].hash
    assert chain.seq == 11 and chain.head_hash == more.hash
    assert verify_chain([*entries, more]).ok


def test_default_time_is_utc_milliseconds() -> None:
    entry = AuditChain().append("a", "b", "c", "d")
    assert entry.time.endswith("Z") and len(entry.time) == len("2026-11-26T14:05:09.123Z")
    stamp = datetime.fromisoformat(entry.time[:-1]).replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60


def test_caller_cannot_mutate_stored_details() -> None:
    details: dict = {"a": [1, 2]}
    entry = AuditChain().append("a", "b", "c", "d", details)
    details["a"].append(3)
    assert entry.details == {"a": [1, 2]}
    assert verify_chain([entry]).ok


# --------------------------------------------------------------------------- tampering


EDITS = {
    "actor": "mallory",
    "action": "alert.delete",
    "object_type": "other",
    "object_id": "999",
    "time": "2026-11-26T09:00:00Z",
    "details": {"i": -1},
}


@pytest.mark.parametrize("field", sorted(EDITS))
@pytest.mark.parametrize("index", [0, 1, 24, N - 1])
def test_editing_any_field_is_detected_at_that_entry(field: str, index: int) -> None:
    entries = make_chain()
    entries[index] = dataclasses.replace(entries[index], **{field: EDITS[field]})
    result = verify_chain(entries)
    assert not result.ok
    assert result.first_bad_seq == index + 1
    assert "edited" in result.problem
    assert result.entries == index + 1
    assert result.head_hash == (entries[index - 1].hash if index else GENESIS)


def test_editing_details_in_place_is_detected() -> None:
    entries = make_chain()
    entries[10].details["nested"]["b"].append("sneaky")
    result = verify_chain(entries)
    assert result.first_bad_seq == 11 and "edited" in result.problem


@pytest.mark.parametrize("index", [0, 10, N - 1])
def test_edit_with_recomputed_own_hash_breaks_the_next_link(index: int) -> None:
    entries = make_chain()
    entries[index] = rehash(entries[index], actor="mallory")
    result = verify_chain(entries)
    if index == N - 1:
        assert result.ok  # the last link has no successor: only a checkpoint can tell
        cp = sign_checkpoint(generate_signing_key(), N, make_chain()[-1].hash)
        bad = verify_chain(entries, cp)
        assert not bad.ok and bad.first_bad_seq == N and "rewritten" in bad.problem
    else:
        assert not result.ok and result.first_bad_seq == index + 2
        assert "prev_hash" in result.problem


def test_editing_seq_is_detected() -> None:
    entries = make_chain()
    entries[5] = dataclasses.replace(entries[5], seq=60)
    result = verify_chain(entries)
    assert result.first_bad_seq == 6 and "edited" in result.problem


def test_editing_stored_hash_is_detected() -> None:
    entries = make_chain()
    entries[7] = dataclasses.replace(entries[7], hash="f" * 64)
    result = verify_chain(entries)
    assert result.first_bad_seq == 8 and "edited" in result.problem


@pytest.mark.parametrize("index", [0, 1, 20, N - 2])
def test_deleting_an_entry_is_detected(index: int) -> None:
    entries = make_chain()
    del entries[index]
    result = verify_chain(entries)
    assert not result.ok
    assert result.first_bad_seq == index + 1
    assert f"seq {index + 1} is missing" in result.problem


def test_deleting_the_last_entry_needs_a_checkpoint() -> None:
    entries = make_chain()
    cp = sign_checkpoint(generate_signing_key(), N, entries[-1].hash)
    assert verify_chain(entries[:-1]).ok
    result = verify_chain(entries[:-1], cp)
    assert not result.ok and result.first_bad_seq == N and "truncated" in result.problem


@pytest.mark.parametrize("index", [0, 1, 20, N - 1])
def test_inserting_a_forged_entry_is_detected(index: int) -> None:
    entries = make_chain()
    prev_hash = entries[index - 1].hash if index else GENESIS
    forged = AuditEntry(
        seq=index + 1,
        time="2026-11-26T09:00:00Z",
        actor="mallory",
        action="watchlist.delete",
        object_type="watchlist",
        object_id="1",
        details={},
        prev_hash=prev_hash,
    )
    forged = dataclasses.replace(forged, hash=compute_hash(forged))
    assert verify_chain([*entries[:index], forged]).ok  # the forgery itself is consistent
    entries.insert(index, forged)
    result = verify_chain(entries)
    assert not result.ok
    # The break shows at the genuine entry that follows the forgery.
    assert result.first_bad_seq == index + 2
    assert f"found seq {index + 1}" in result.problem


def test_inserting_with_renumbered_seq_is_detected_by_prev_hash() -> None:
    entries = make_chain(10)
    forged = rehash(entries[4], actor="mallory", seq=6)  # claims to be seq 6 after seq 5
    forged = rehash(forged, prev_hash=entries[4].hash)
    tampered = [*entries[:5], forged, *(rehash(e, seq=e.seq + 1) for e in entries[5:])]
    result = verify_chain(tampered)
    assert not result.ok and result.first_bad_seq == 7 and "prev_hash" in result.problem


@pytest.mark.parametrize("index", [0, 10, N - 2])
def test_swapping_two_entries_is_detected(index: int) -> None:
    entries = make_chain()
    entries[index], entries[index + 1] = entries[index + 1], entries[index]
    result = verify_chain(entries)
    assert not result.ok
    assert result.first_bad_seq == index + 1
    assert f"found seq {index + 2}" in result.problem


def test_duplicated_entry_is_detected() -> None:
    entries = make_chain()
    entries.insert(11, entries[10])
    result = verify_chain(entries)
    assert not result.ok and result.first_bad_seq == 12 and "duplicated" in result.problem


def test_random_tampering_is_always_detected_no_later_than_the_touched_entry() -> None:
    rng = random.Random(20261126)
    original = make_chain()
    for _ in range(300):
        entries = list(original)
        op = rng.choice(["edit", "rehash", "delete", "swap", "duplicate", "move"])
        i = rng.randrange(N - 1)  # not the last entry: tail changes need a checkpoint
        if op == "edit":
            field = rng.choice(sorted(EDITS))
            entries[i] = dataclasses.replace(entries[i], **{field: EDITS[field]})
        elif op == "rehash":
            entries[i] = rehash(entries[i], object_id="forged")
        elif op == "delete":
            del entries[i]
        elif op == "swap":
            j = rng.randrange(i + 1, N)
            entries[i], entries[j] = entries[j], entries[i]
        elif op == "duplicate":
            entries.insert(i, entries[rng.randrange(N)])
        else:
            entries.insert(rng.randrange(N), entries.pop(i))
            if entries == original:
                continue
        result = verify_chain(entries)
        assert not result.ok, op
        assert result.first_bad_seq is not None and result.first_bad_seq <= i + 2, op
        assert result.problem


def test_expected_key_without_checkpoint_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="checkpoint"):
        verify_chain([], expected_public_key="00" * 32)


def test_wrong_genesis_is_detected() -> None:
    entries = make_chain()
    entries[0] = rehash(entries[0], prev_hash="1" * 64)
    result = verify_chain(entries)
    assert not result.ok and result.first_bad_seq == 1
    assert "genesis" in result.problem


def test_wrong_genesis_without_rehash_is_an_edit() -> None:
    entries = make_chain()
    entries[0] = dataclasses.replace(entries[0], prev_hash="1" * 64)
    result = verify_chain(entries)
    assert result.first_bad_seq == 1 and "edited" in result.problem


def test_unencodable_entry_is_reported_not_raised() -> None:
    entries = make_chain(5)
    entries[2] = dataclasses.replace(entries[2], details={"score": 0.5})
    result = verify_chain(entries)
    assert result.first_bad_seq == 3 and "float" in result.problem


# --------------------------------------------------------------------------- checkpoints


def test_truncated_tail_passes_plain_but_fails_against_checkpoint() -> None:
    entries = make_chain()
    key = generate_signing_key()
    cp = sign_checkpoint(key, N, entries[-1].hash)
    assert verify_chain(entries, cp).ok
    assert verify_chain(entries, cp, expected_public_key=public_key_hex(key)).ok
    short = entries[:40]
    assert verify_chain(short).ok
    result = verify_chain(short, cp)
    assert not result.ok
    assert result.first_bad_seq == 41
    assert "truncated" in result.problem and "seq 40" in result.problem


def test_checkpoint_in_the_middle_allows_a_longer_chain() -> None:
    entries = make_chain()
    cp = sign_checkpoint(generate_signing_key(), 30, entries[29].hash)
    assert verify_chain(entries, cp).ok


def test_rewritten_chain_is_caught_by_checkpoint() -> None:
    entries = make_chain(20)
    cp = sign_checkpoint(generate_signing_key(), 20, entries[-1].hash)
    chain = AuditChain()
    rewritten = [
        chain.append(e.actor, e.action, e.object_type, e.object_id, e.details, e.time)
        for e in entries[:10]
    ]
    rewritten += [
        chain.append("mallory", e.action, e.object_type, e.object_id, e.details, e.time)
        for e in entries[10:]
    ]
    assert verify_chain(rewritten).ok
    result = verify_chain(rewritten, cp)
    assert not result.ok and result.first_bad_seq == 20 and "rewritten" in result.problem


def test_empty_chain_checkpoint() -> None:
    cp = sign_checkpoint(generate_signing_key(), 0, GENESIS)
    assert verify_chain([], cp).ok
    assert verify_chain(make_chain(3), cp).ok


@pytest.mark.parametrize(
    "change",
    [
        {"head_hash": "a" * 64},
        {"seq": 49},
        {"time": "2020-01-01T00:00:00Z"},
        {"signature": "00" * 64},
    ],
)
def test_altered_checkpoint_is_refused(change: dict) -> None:
    entries = make_chain()
    cp = sign_checkpoint(generate_signing_key(), N, entries[-1].hash)
    assert cp.verify()
    altered = dataclasses.replace(cp, **change)
    assert not altered.verify()
    result = verify_chain(entries, altered)
    assert not result.ok and "checkpoint" in result.problem


def test_flipped_signature_bit_is_refused() -> None:
    cp = sign_checkpoint(generate_signing_key(), 1, "b" * 64)
    sig = bytearray(bytes.fromhex(cp.signature))
    sig[0] ^= 1
    assert not dataclasses.replace(cp, signature=sig.hex()).verify()


def test_checkpoint_signed_with_another_key_is_flagged() -> None:
    entries = make_chain()
    ours, theirs = generate_signing_key(), generate_signing_key()
    forged = sign_checkpoint(theirs, N, entries[-1].hash)
    assert forged.verify()  # valid signature by *some* key …
    assert not forged.verify(public_key_hex(ours))  # … but not by ours
    assert forged.verify(public_key_hex(theirs))
    result = verify_chain(entries, forged, expected_public_key=public_key_hex(ours))
    assert not result.ok and "expected key" in result.problem
    # Swapping in our public key without re-signing does not help the forger either.
    assert not dataclasses.replace(forged, public_key=public_key_hex(ours)).verify()


def test_checkpoint_file_round_trip(tmp_path) -> None:
    key = generate_signing_key()
    cp = sign_checkpoint(key, 5, "c" * 64, time="2026-11-26T10:00:00Z")
    path = cp.write(tmp_path / "cp.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Checkpoint.read(path) == cp
    assert Checkpoint.read(path, expected_public_key=public_key_hex(key)) == cp
    assert [p.name for p in tmp_path.iterdir()] == ["cp.json"]  # no temp file left behind
    cp2 = sign_checkpoint(key, 6, "d" * 64)
    cp2.write(path)  # replaces atomically
    assert Checkpoint.read(path) == cp2


def test_checkpoint_file_errors(tmp_path) -> None:
    key = generate_signing_key()
    path = sign_checkpoint(key, 5, "c" * 64).write(tmp_path / "cp.json")
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        Checkpoint.read(tmp_path / "missing.json")
    (tmp_path / "corrupt.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        Checkpoint.read(tmp_path / "corrupt.json")
    (tmp_path / "other.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="corrupt"):
        Checkpoint.read(tmp_path / "other.json")
    data = json.loads(path.read_text())
    data["head_hash"] = "e" * 64
    (tmp_path / "forged.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="altered or forged"):
        Checkpoint.read(tmp_path / "forged.json")
    del data["signature"]
    (tmp_path / "partial.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="lacks"):
        Checkpoint.read(tmp_path / "partial.json")
    with pytest.raises(CheckpointError, match="expected key"):
        Checkpoint.read(path, expected_public_key=public_key_hex(generate_signing_key()))


# --------------------------------------------------------------------------- keys


def test_signing_key_file_created_0600_and_reloaded(tmp_path) -> None:
    path = tmp_path / "keys" / "audit.key"
    key = load_or_create_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes()) == 32
    again = load_or_create_signing_key(path)
    assert public_key_hex(again) == public_key_hex(key)
    assert len(public_key_hex(key)) == 64


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("mode", [0o644, 0o604, 0o640])
def test_readable_signing_key_is_refused(tmp_path, mode: int) -> None:
    path = tmp_path / "audit.key"
    load_or_create_signing_key(path)
    path.chmod(mode)
    with pytest.raises(CheckpointError, match="chmod 600"):
        load_or_create_signing_key(path)


def test_corrupt_signing_key_is_refused(tmp_path) -> None:
    path = tmp_path / "audit.key"
    path.write_bytes(b"short")
    path.chmod(0o600)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_or_create_signing_key(path)


# --------------------------------------------------------------------------- canonical form


def test_canonical_bytes_ignore_key_order() -> None:
    a = {"z": 1, "a": {"y": [1, 2], "b": "x"}, "m": None}
    b = {"m": None, "a": {"b": "x", "y": [1, 2]}, "z": 1}
    assert list(a) != list(b)
    ea = AuditChain().append("u", "act", "t", "1", a, time="2026-11-26T09:00:00Z")
    eb = AuditChain().append("u", "act", "t", "1", b, time="2026-11-26T09:00:00Z")
    assert canonical_bytes(ea) == canonical_bytes(eb)
    assert ea.hash == eb.hash


def test_known_hash_of_a_fixed_entry() -> None:
    entry = AuditChain().append(
        actor="alice",
        action="threshold.set",
        object_type="deployment",
        object_id="42",
        details={"threshold": "0.42", "reason": "calibrated – floor", "by": ["bob", 1, True]},
        time="2026-11-26T14:05:09.123Z",
    )
    expected_bytes = (
        '{"action":"threshold.set","actor":"alice","details":{"by":["bob",1,true],'
        '"reason":"calibrated – floor","threshold":"0.42"},"object_id":"42",'
        '"object_type":"deployment","prev_hash":"' + "0" * 64 + '","seq":1,'
        '"time":"2026-11-26T14:05:09.123Z"}'
    ).encode()
    assert canonical_bytes(entry) == expected_bytes
    assert entry.hash == hashlib.sha256(expected_bytes).hexdigest()
    assert entry.hash == independent_hash(entry)


def test_every_hash_is_independently_recomputable() -> None:
    for entry in make_chain():
        assert entry.hash == independent_hash(entry)


@pytest.mark.parametrize(
    "details",
    [
        {"score": 0.5},
        {"x": float("nan")},
        {"x": float("inf")},
        {"x": [1, 2.0]},
        {"x": (1, 2)},
        {"x": {1, 2}},
        {"x": datetime(2026, 1, 1, tzinfo=UTC)},
        {1: "int key"},
        {"x": 2**53},
        {"x": np.int64(3)},
        {"x": np.float64(0.5)},
    ],
)
def test_non_json_values_are_refused(details: dict) -> None:
    with pytest.raises(ValueError):
        AuditChain().append("u", "act", "t", "1", details)


def test_float_refusal_message_is_clear() -> None:
    with pytest.raises(ValueError, match=r"floats are not allowed.*'0\.42'"):
        AuditChain().append("u", "act", "t", "1", {"threshold": 0.42})


@pytest.mark.parametrize(
    "time",
    [
        "2026-11-26 14:05:09Z",
        "2026-11-26T14:05:09+00:00",
        "2026-11-26T14:05:09.1Z",
        "2026-13-01T00:00:00Z",
    ],
)
def test_bad_times_are_refused(time: str) -> None:
    with pytest.raises(ValueError, match="time"):
        AuditChain().append("u", "act", "t", "1", {}, time=time)


def test_naive_datetime_is_refused_and_aware_is_converted() -> None:
    with pytest.raises(ValueError, match="timezone"):
        AuditChain().append("u", "a", "t", "1", {}, time=datetime(2026, 1, 1))
    cet = datetime(2026, 1, 1, 10, 0, tzinfo=UTC) + timedelta(0)
    entry = AuditChain().append("u", "a", "t", "1", {}, time=cet.astimezone())
    assert entry.time == "2026-01-01T10:00:00.000Z"


def test_empty_actor_is_refused() -> None:
    with pytest.raises(ValueError, match="actor"):
        AuditChain().append("", "act", "t", "1")


def test_lone_surrogate_is_refused() -> None:
    with pytest.raises(ValueError, match="Unicode"):
        AuditChain().append("u", "act", "t", "1", {"x": "\ud800"})


# --------------------------------------------------------------------------- no biometrics


JPEG_B64 = "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAAMCAgMCAgMDAwMEAwMEBQgFBQQEBQoHBwYIDAoMDAsKCwsN" * 5
VECTOR_TEXT = ", ".join(f"{0.01 * i:.4f}" for i in range(128))


@pytest.mark.parametrize(
    "details",
    [
        {"crop": b"\xff\xd8\xff\xe0"},
        {"crop": bytearray(b"abc")},
        {"crop": memoryview(b"abc")},
        {"template": np.zeros(128, dtype=np.float32)},
        {"frame": np.zeros((2, 2, 3), dtype=np.uint8)},
        {"image": JPEG_B64},
        {"image": "data:image/jpeg;base64,/9j/4AAQ"},
        {"image": "\n".join(JPEG_B64[i : i + 76] for i in range(0, len(JPEG_B64), 76))},
        {"nested": {"deeper": [JPEG_B64]}},
        {"embedding": VECTOR_TEXT},
        {"embedding": f"[{VECTOR_TEXT}]"},
        {"embedding": list(range(128))},
        {"embedding": [0.1] * 16},
        {VECTOR_TEXT: "key"},
    ],
)
def test_biometric_looking_details_are_refused(details: dict) -> None:
    with pytest.raises(ValueError, match=r"biometric|base64"):
        check_no_biometrics(details)
    with pytest.raises(ValueError):
        AuditChain().append("u", "alert.create", "alert", "1", details)


@pytest.mark.parametrize(
    "details",
    [
        {"hash": "a" * 64, "sha256": "0123456789abcdef" * 4},
        {"score": "0.8731", "threshold": "0.42"},
        {"ids": [str(i) for i in range(100)]},
        {"ids": list(range(15))},
        {"reason": "Confirmed by two officers; subject matched 0.81 at 14:05, 0.79 at 14:06."},
        {"window": "2026-12-01T08:00Z/2026-12-01T18:00Z"},
        {"reason": "the subject was confirmed by the second officer on duty " * 10},
    ],
)
def test_ordinary_details_are_accepted(details: dict) -> None:
    check_no_biometrics(details)
    assert AuditChain().append("u", "act", "t", "1", details).details == details


def test_oversized_details_are_refused() -> None:
    with pytest.raises(ValueError, match="bytes"):
        AuditChain().append("u", "act", "t", "1", {"note": "word " * 5000})


# --------------------------------------------------------------------------- JSON lines


def test_jsonl_round_trip(tmp_path) -> None:
    entries = make_chain()
    path = tmp_path / "audit.jsonl"
    assert write_jsonl(entries, path) == N
    back = list(read_jsonl(path))
    assert back == entries
    assert verify_chain(read_jsonl(path)).ok
    text = path.read_text(encoding="utf-8")
    assert "ünïcode" in text  # ensure_ascii=False
    assert text.count("\n") == N


def test_jsonl_stream_round_trip() -> None:
    entries = make_chain(5)
    buffer = io.StringIO()
    write_jsonl(entries, buffer)
    assert list(read_jsonl(io.StringIO(buffer.getvalue()))) == entries


def test_exported_file_verifies_with_stdlib_only(tmp_path) -> None:
    path = tmp_path / "audit.jsonl"
    write_jsonl(make_chain(), path)
    prev = "0" * 64
    n = 0
    with path.open(encoding="utf-8") as handle:
        for n, line in enumerate(handle, start=1):
            entry = json.loads(line)
            stored = entry.pop("hash")
            body = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            assert hashlib.sha256(body.encode("utf-8")).hexdigest() == stored
            assert entry["seq"] == n and entry["prev_hash"] == prev
            prev = stored
    assert n == N


def test_tampered_jsonl_line_is_detected(tmp_path) -> None:
    path = tmp_path / "audit.jsonl"
    write_jsonl(make_chain(), path)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[12] = lines[12].replace('"actor":"user0"', '"actor":"mallory"')
    path.write_text("".join(lines), encoding="utf-8")
    result = verify_chain(read_jsonl(path))
    assert not result.ok and result.first_bad_seq == 13


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "Expecting"),
        ("[1, 2]", "JSON object"),
        ("", "empty line"),
        ('{"seq": 1}', "lacks"),
        ("EXTRA", "unknown field"),
        ("FLOAT", "floats"),
        ("NAN", "NaN"),
        ("DUP", "duplicate key"),
        ("SEQSTR", "'seq' must be an integer"),
    ],
)
def test_bad_jsonl_lines_name_their_line_number(tmp_path, bad: str, message: str) -> None:
    entries = make_chain(5)
    good = [json.dumps(e.to_dict(), ensure_ascii=False) for e in entries]
    template = entries[2].to_dict()
    if bad == "EXTRA":
        bad = json.dumps({**template, "extra": 1})
    elif bad == "FLOAT":
        bad = json.dumps({**template, "details": {"score": 0.5}})
    elif bad == "NAN":
        bad = json.dumps({**template, "details": {"score": float("nan")}})
    elif bad == "DUP":
        bad = json.dumps(template)[:-1] + ', "actor": "mallory"}'
    elif bad == "SEQSTR":
        bad = json.dumps({**template, "seq": "3"})
    good[2] = bad
    path = tmp_path / "audit.jsonl"
    path.write_text("\n".join(good) + "\n", encoding="utf-8")
    reader = read_jsonl(path)
    assert next(reader) == entries[0]
    assert next(reader) == entries[1]
    with pytest.raises(AuditFormatError, match=message) as info:
        next(reader)
    assert info.value.line == 3
    assert f"{path}:3:" in str(info.value)


def test_invalid_utf8_names_its_line(tmp_path) -> None:
    path = tmp_path / "audit.jsonl"
    write_jsonl(make_chain(3), path)
    path.write_bytes(path.read_bytes() + b'{"x": "\xff"}\n')
    with pytest.raises(AuditFormatError):
        list(read_jsonl(path))
