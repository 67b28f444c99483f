"""``openlfr fieldtest``: plan, add-volunteer, show, alerts, end, report, as a real process on
a real installation; bad input is one line and exit 2."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from openlfr.governance import watchlists
from tests.govfix import Gov, run_cli
from tests.test_web_fieldtests import authorised


def test_the_fieldtest_commands(sqlite_gov: Gov, face_images):
    gov = sqlite_gov
    dep_id = authorised(gov, face_images)
    r = run_cli(gov, "fieldtest", "plan", dep_id, "--json", user="op1")
    assert r.returncode == 0, r.stderr
    test_id = json.loads(r.stdout)["id"]
    now = datetime.now(UTC)
    window = (f"gate={(now - timedelta(minutes=1)).isoformat(timespec='seconds')}/"
              f"{(now + timedelta(minutes=9)).isoformat(timespec='seconds')}")
    common = ["fieldtest", "add-volunteer", test_id, "--label", "V7", "--image",
              face_images["biden"], "--source", "photo with consent", "--consent-by", "PC Smith",
              "--consent-at", "now", "--consent-ref", "C-77", "--sex", "male"]
    bad = run_cli(gov, *common, "--pass", "gate=tomorrow", user="op1")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "CAMERA=START/END" in bad.stderr
    bad = run_cli(gov, *common, "--pass", window, "--age-band", "7", user="op1")
    assert bad.returncode == 2 and "age band '7'" in bad.stderr
    r = run_cli(gov, *common, "--pass", window, user="op1")
    assert r.returncode == 0, r.stderr
    shown = json.loads(run_cli(gov, "fieldtest", "show", test_id, "--json", user="au1").stdout)
    assert [v["label"] for v in shown["volunteers"]] == ["V7"]
    assert shown["volunteers"][0]["passes"][0]["camera"] == "gate"
    assert run_cli(gov, "fieldtest", "report", test_id, user="op1").returncode == 6
    assert shown["watchlist_id"] is not None
    watchlists.approve_watchlist(gov.db, gov.actors["ao2"], shown["watchlist_id"])
    r = run_cli(gov, "fieldtest", "alerts", test_id, user="op1")
    assert r.returncode == 0 and r.stdout.splitlines()[0].startswith("alert\tcamera")
    r = run_cli(gov, "fieldtest", "end", test_id, user="op1")
    assert r.returncode == 0, r.stderr
    assert "| volunteer V7 | 1 | 1 | 0 of 1 = 0 % (95 % CI 0 %–98 %)" in r.stdout
    public = run_cli(gov, "fieldtest", "report", test_id, "--public", user="au1")
    assert public.returncode == 0 and "V7" not in public.stdout and "| all |" in public.stdout
    again = run_cli(gov, "fieldtest", "end", test_id, user="op1")
    assert again.returncode == 6 and "already ended" in again.stderr
