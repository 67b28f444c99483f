"""``openlfr audit ...`` as a separate process: verify, tamper detection naming the entry,
checkpoint and truncation, export re-checkable with the standard library; on SQLite and
PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from openlfr.audit import log as audit_log
from tests.govfix import Gov, audit_records
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
    assert refused.returncode == 3 and "audit.read" in refused.stderr

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


def test_list_pages_a_selection_and_export_writes_exactly_it(gov: Gov, tmp_path: Path) -> None:
    # the installation's log: the first admin, then an account per role, all by admin
    first = run(gov, "audit", "list", "--actor", "admin", "--action", "user", "--limit", "2",
                "--json", "--user", "au1")
    assert first.returncode == 0, first.stderr
    page = json.loads(first.stdout)
    assert page["total"] == 6 and [e["seq"] for e in page["entries"]] == [7, 6]
    assert page["next_before"] == 6 and page["next_after"] is None
    older = run(gov, "audit", "list", "--actor", "admin", "--action", "user", "--limit", "2",
                "--before", "6", "--user", "au1")
    assert older.returncode == 0, older.stderr
    lines = older.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["5", "4"]
    assert "Account created (user.create)" in lines[0] and "Role: operator" in lines[0]
    assert "older: --before 4" in older.stderr and "newer: --after 5" in older.stderr
    newer = run(gov, "audit", "list", "--actor", "admin", "--action", "user", "--limit", "2",
                "--after", "5", "--json", "--user", "au1")
    assert [e["seq"] for e in json.loads(newer.stdout)["entries"]] == [7, 6]

    out = tmp_path / "selection.csv"
    done = run(gov, "audit", "export", "--actor", "admin", "--action", "user", "--format",
               "csv", "--upto", "7", "--out", str(out), "--user", "au1")
    assert done.returncode == 0, done.stderr
    assert "6 audit entries (a selection) written" in done.stderr
    rows = out.read_text(encoding="utf-8").splitlines()
    assert rows[0].startswith("seq,time,actor,action") and len(rows) == 7
    assert [r.split(",")[0] for r in rows[1:]] == ["2", "3", "4", "5", "6", "7"]
    record = audit_log.to_entry(audit_records(gov, "audit.export")[-1])
    assert record.details == {"what": "selection", "format": "csv", "out": "selection.csv",
                              "filters": {"actor": "admin", "action": "user", "upto": 7}}

    for bad, named in ((("--since", "yesterday"), "since"), (("--format", "xls"), "--format"),
                       (("--art12", "all", "--actor", "admin"), "--art12")):
        wrong = run(gov, "audit", "export" if bad[0] != "--since" else "list", *bad,
                    "--user", "au1")
        assert wrong.returncode == 2, wrong.stderr
        assert named in wrong.stderr and "Traceback" not in wrong.stderr
        assert len(wrong.stderr.strip().splitlines()) == 1


def test_verify_checks_an_exported_selection(gov: Gov, tmp_path: Path) -> None:
    out = tmp_path / "mine.jsonl"
    done = run(gov, "audit", "export", "--actor", "admin", "--out", str(out), "--user", "au1")
    assert done.returncode == 0, done.stderr
    ok = run(gov, "audit", "verify", "--selection", str(out), "--user", "au1")
    assert ok.returncode == 0, ok.stderr
    assert "the 6 entries" in ok.stdout and "the log's own" in ok.stdout
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(lines[:2]) + lines[2].replace("operator", "admin"),
                   encoding="utf-8")
    bad = run(gov, "audit", "verify", "--selection", str(out), "--user", "au1")
    assert bad.returncode == 1 and "seq 4" in bad.stderr and "edited" in bad.stderr
    out.write_text("not json\n", encoding="utf-8")
    junk = run(gov, "audit", "verify", "--selection", str(out), "--user", "au1")
    assert junk.returncode == 2 and "line 1" in junk.stderr and "Traceback" not in junk.stderr
