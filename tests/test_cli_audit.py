"""``openlfr audit ...`` as a separate process: verify, tamper detection naming the entry,
checkpoint and truncation, export re-checkable with the standard library; on SQLite and
PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from openlfr.audit import log as audit_log
from tests.govfix import Gov
from tests.govfix import run_cli as run
from tests.test_store_audit import _tamper


def stdlib_check(path: Path) -> tuple[int, str]:
    """The recipe of ``openlfr/audit/__init__.py``, verbatim in spirit: stdlib only."""
    prev = "0" * 64
    n = 0
    for n, line in enumerate(path.open(encoding="utf-8"), start=1):
        entry = json.loads(line)
        stored = entry.pop("hash")
        body = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(body.encode("utf-8")).hexdigest() == stored, n
        assert entry["seq"] == n and entry["prev_hash"] == prev, n
        prev = stored
    return n, prev


def test_verify_passes_then_names_the_edited_entry(gov: Gov) -> None:
    ok = run(gov, "audit", "verify", "--user", "au1", "--json")
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["ok"] is True and data["entries"] == 7

    refused = run(gov, "audit", "verify", "--user", "op1")
    assert refused.returncode == 3
    assert "only an authorising officer, an auditor or an administrator may read, verify and " \
        "export the audit log" in " ".join(refused.stderr.split())

    _tamper(gov, "UPDATE audit_log SET details = '{\"role\":\"admin\"}' WHERE seq = 3")
    bad = run(gov, "audit", "verify", "--user", "au1")
    assert bad.returncode == 1
    assert "seq 3" in bad.stderr and "edited" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_checkpoint_exposes_a_truncated_tail(gov: Gov, tmp_path: Path) -> None:
    point = tmp_path / "elsewhere" / "checkpoint.json"
    made = run(gov, "audit", "checkpoint", "--out", str(point), "--user", "au1")
    assert made.returncode == 0, made.stderr
    saved = json.loads(point.read_text())
    assert f"public key: {saved['public_key']}" in made.stderr
    assert saved["seq"] == 8  # 7 users created, then the checkpoint's own record
    good = run(gov, "audit", "verify", "--checkpoint", str(point), "--public-key",
               saved["public_key"], "--user", "au1")
    assert good.returncode == 0, good.stderr
    wrong_key = run(gov, "audit", "verify", "--checkpoint", str(point), "--public-key",
                    "ab" * 32, "--user", "au1")
    assert wrong_key.returncode == 1 and "expected key" in wrong_key.stderr

    _tamper(gov, f"DELETE FROM audit_log WHERE seq >= {saved['seq'] - 1}")
    plain = run(gov, "audit", "verify", "--user", "au1")
    assert plain.returncode == 0  # a clean cut is invisible without the checkpoint ...
    cut = run(gov, "audit", "verify", "--checkpoint", str(point), "--user", "au1")
    assert cut.returncode == 1  # ... and found with it
    assert "truncated" in cut.stderr and f"seq {saved['seq'] - 1}" in cut.stderr

    missing = run(gov, "audit", "verify", "--checkpoint", str(tmp_path / "nope.json"),
                  "--user", "au1")
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_export_is_rechecked_with_the_standard_library(gov: Gov, tmp_path: Path) -> None:
    out = tmp_path / "audit.jsonl"
    done = run(gov, "audit", "export", "--out", str(out), "--user", "au1")
    assert done.returncode == 0, done.stderr
    count, head = stdlib_check(out)
    with gov.db.reading() as s:
        stored = audit_log.head(s)
    assert stored is not None and (count, head) == (stored.seq, stored.hash)
    last = json.loads(out.read_text().splitlines()[-1])
    assert (last["action"], last["actor"]) == ("audit.export", "au1")  # the export is audited

    art12 = tmp_path / "art12.jsonl"
    none = run(gov, "audit", "export", "--art12", "all", "--out", str(art12), "--user", "au1")
    assert none.returncode == 0, none.stderr
    assert art12.read_text() == ""  # no deployment yet
    bad = run(gov, "audit", "export", "--art12", "x", "--user", "au1")
    assert bad.returncode == 2 and "--art12" in bad.stderr
    shown = run(gov, "audit", "show", "--last", "2", "--json", "--user", "admin")
    assert shown.returncode == 0, shown.stderr
    assert [e["action"] for e in json.loads(shown.stdout)] == ["audit.export", "audit.export"]
