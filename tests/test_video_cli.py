"""``openlfr watch`` end to end: JSON lines, the readable display, limits, Ctrl-C, errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from typer.testing import CliRunner

from openlfr.cli import app

ALERT_KEYS = {"event", "camera", "t", "frame", "track", "subject", "score"}
SUMMARY_KEYS = {"event", "frames", "faces", "tracks", "embeddings", "alerts", "dropped_frames",
                "seconds", "fps"}


def _watch(*args: object, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, ["watch", *(str(a) for a in args)], env=env)


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_json_lines_alert_then_summary(clips):
    result = _watch(clips.obama, clips.stranger, clips.empty, "--watchlist", clips.watchlist,
                    "--json")
    assert result.exit_code == 0, result.output
    events = _events(result.stdout)
    alerts = [e for e in events if e["event"] == "alert"]
    assert len(alerts) == 1 and set(alerts[0]) >= ALERT_KEYS
    alert = alerts[0]
    assert alert["camera"] == "obama" and alert["subject"] == "obama"
    assert isinstance(alert["track"], int) and isinstance(alert["frame"], int)
    assert alert["score"] >= alert["threshold"] and alert["t"] >= 0
    summary = events[-1]
    assert summary["event"] == "summary" and set(summary) >= SUMMARY_KEYS
    assert summary["frames"] == 110 and summary["alerts"] == 1
    assert summary["dropped_frames"] == 0 and summary["fps"] > 0
    assert summary["embeddings"] <= summary["tracks"] * 3
    assert {c["camera"] for c in summary["cameras"]} == {"obama", "stranger", "empty"}
    updates = [e for e in events if e["event"] == "alert_update"]
    assert all(u["alert_id"] == alert["alert_id"] for u in updates)
    states = [(e["camera"], e["state"]) for e in events if e["event"] == "camera"]
    assert ("obama", "running") in states and ("obama", "ended") in states


def test_threshold_option_is_applied(clips):
    result = _watch(clips.obama, "--watchlist", clips.watchlist, "--json", "--threshold", "0.99")
    assert result.exit_code == 0, result.output
    events = _events(result.stdout)
    assert not [e for e in events if e["event"] == "alert"]
    assert events[-1]["alerts"] == 0


def test_readable_output_names_the_match_and_summarises(clips):
    result = _watch(clips.obama, "--watchlist", clips.watchlist)
    assert result.exit_code == 0, result.output
    assert "POSSIBLE MATCH" in result.stdout and "obama" in result.stdout
    # piped: the summary table is tab-separated values, its title on standard error
    assert "Summary" in result.stderr and "camera\tstate\tframes" in result.stdout
    assert "Nothing was kept of faces that did not match" in result.stdout


def test_on_a_terminal_the_live_table_is_shown_then_the_summary(clips):
    # Rich's documented switch: the output is a terminal (CliRunner's is not).
    result = _watch(clips.obama, "--watchlist", clips.watchlist, env={"TTY_COMPATIBLE": "1"})
    assert result.exit_code == 0, result.output
    assert "openlfr watch" in result.stdout and "Ctrl-C to stop" in result.stdout
    assert result.stdout.index("Ctrl-C to stop") < result.stdout.index("Summary")


def test_max_seconds_ends_a_looping_realtime_run(clips):
    """An endless camera ends when --max-seconds have passed, not before; the frames that came
    in fit the seconds at the clip's own rate (how many were analysed depends on the machine's
    load, the rest count as dropped)."""
    result = _watch(clips.empty, "--watchlist", clips.watchlist, "--json", "--realtime",
                    "--loop", "--max-seconds", "1.5")
    assert result.exit_code == 0, result.output
    summary = _events(result.stdout)[-1]
    assert summary["seconds"] >= 1.4 and summary["interrupted"] is False
    (camera,) = summary["cameras"]
    assert camera["state"] == "stopped"
    assert 0 < summary["frames"] <= camera["frames_in"]
    assert camera["frames_in"] <= 15 * summary["seconds"] + 2  # paced: 15 fps, not faster
    assert camera["frames_in"] - 1 <= summary["frames"] + summary["dropped_frames"]


def test_ctrl_c_stops_cleanly_with_the_summary(clips):
    code = "from openlfr.cli import main; main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "watch", str(clips.obama), "--watchlist",
         str(clips.watchlist), "--json", "--realtime", "--loop"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    # Ctrl-C once the run has analysed frames (its first alert, on the looping clip), not
    # after a fixed time: a busy machine only makes the wait longer. The timer ends a run that
    # never alerts, so the test fails instead of hanging.
    guard = threading.Timer(120, proc.kill)
    guard.start()
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the camera's state: the run has started
        assert json.loads(first)["event"] == "camera"
        seen = [json.loads(first)]
        while seen[-1]["event"] != "alert":
            line = proc.stdout.readline()
            assert line, f"the run ended without an alert: {seen}"
            seen.append(json.loads(line))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        guard.cancel()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    summary = _events(out)[-1]
    assert summary["event"] == "summary" and summary["interrupted"] is True
    assert summary["alerts"] >= 1 and summary["frames"] >= 1


@pytest.mark.parametrize(("args", "message"), [
    (["door=a.mp4", "door=b.mp4"], "camera name 'door' given more than once"),
    (["ftp://host/x"], "unsupported URL scheme 'ftp'"),
    (["{obama}", "--threshold", "1.5"], "--threshold 1.5"),
    (["{obama}", "--watchlist-missing"], "no such watchlist file"),
    (["{obama}", "--watchlist-bad"], "watchlist"),
    (["{obama}", "--tiling", "sometimes"], "--tiling must be one of auto, on, off"),
])
def test_bad_input_is_one_clear_line_and_exit_code_2(clips, tmp_path, args, message):
    watchlist = clips.watchlist
    args = [a.replace("{obama}", str(clips.obama)) for a in args]
    if "--watchlist-missing" in args:
        args.remove("--watchlist-missing")
        watchlist = tmp_path / "missing.watchlist"
    if "--watchlist-bad" in args:
        args.remove("--watchlist-bad")
        watchlist = tmp_path / "bad.watchlist"
        watchlist.write_bytes(b"not a watchlist at all")
    result = _watch(*args, "--watchlist", watchlist, "--json")
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_only_missing_files_end_with_one_clear_line_and_exit_code_2(clips, tmp_path):
    """A missing file is retried a few times (it may be put in place), then given up: a run
    of only missing files ends with a clear error, it does not wait for ever."""
    result = _watch("nope.mp4", f"door={tmp_path / 'door.avi'}", "--watchlist",
                    clips.watchlist, "--json")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no camera could be opened: nope: nope.mp4: no such file" in result.stderr
    assert f"; door: {tmp_path / 'door.avi'}: no such file" in result.stderr
    assert "gave up after 3 retries" in result.stderr
    events = _events(result.stdout)
    assert events[-1]["event"] == "summary" and events[-1]["frames"] == 0
    failed = {e["camera"] for e in events if e["event"] == "camera" and e["state"] == "failed"}
    assert failed == {"nope", "door"}


def test_a_busy_preview_port_is_a_clear_error(clips):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _watch(clips.empty, "--watchlist", clips.watchlist, "--preview", port)
    assert result.exit_code == 2
    assert f"--preview {port}: cannot listen" in result.stderr


def test_help_describes_the_command():
    result = CliRunner().invoke(app, ["watch", "--help"])
    assert result.exit_code == 0
    for option in ("--watchlist", "--threshold", "--json", "--realtime", "--max-seconds",
                   "--loop", "--preview"):
        assert option in result.stdout


def test_preview_option_serves_a_masked_mjpeg_stream_on_localhost(clips):
    import urllib.request

    code = "from openlfr.cli import main; main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "watch", str(clips.stranger), "--watchlist",
         str(clips.watchlist), "--json", "--realtime", "--loop", "--preview", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "privacy-masked preview on http://127.0.0.1:" in line, line
        url = line.strip().rsplit(" ", 1)[-1]
        page = urllib.request.urlopen(url, timeout=60).read().decode()
        assert "/cameras/stranger.mjpg" in page
        jpeg = urllib.request.urlopen(url + "cameras/stranger.jpg", timeout=60).read()
        assert jpeg[:2] == b"\xff\xd8"
        # Ended by Ctrl-C once the preview was seen, not by --max-seconds racing the requests.
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert _events(out)[-1]["event"] == "summary"


def test_the_live_table_shows_how_long_a_camera_has_been_retrying_and_why():
    from rich.console import Console

    from openlfr.cli.watch import _table
    from openlfr.video.stats import CameraStats

    error = "side: cannot open http://127.0.0.1:9/x: stream unreachable, refused, or not a video"
    figures = [
        CameraStats("gate").figures(state="running", since=time.time() - 5),
        CameraStats("side").figures(state="reconnecting", since=time.time() - 75,
                                    error=error),
        CameraStats("door").figures(state="connecting", since=time.time() - 2),
    ]
    console = Console(record=True, width=200)
    console.print(_table(figures, 80.0, None))
    text = console.export_text()
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if "│" in line}
    assert "reconnecting 1m1" in rows["side"]  # 1m15s, give or take a slow machine
    assert "connecting " in rows["door"] and "s" in rows["door"]
    assert "running" in rows["gate"]
    assert error in text and "side: side:" not in text
