"""RTSP benchmarks over a real server (GStreamer's, ``scripts/rtsp-server.py``; installed by
``scripts/test-services``), on 127.0.0.1 over TCP, with the shared Hamilton clip (never copied
into the project: it is encoded to H.264/H.265 in a temporary folder).

    python benchmarks/bench_rtsp.py latency --rounds 5   # camera-to-alert latency p50/p95
    python benchmarks/bench_rtsp.py decode --seconds 8   # CPU of decoding: OpenCV vs PyAV

``latency`` serves the clip (H.264, 640×360, 29.97 fps) and runs ``openlfr watch
cam=rtsp://… --json`` as an operator would, once per round, for one pass of the clip. The
server logs when it sent each frame; an alert says when the frame it was raised on arrived
(``frame_wall``) and how long after the first frame in which the person's face was of enrolment
quality it came (``latency``). So, per alert:

* ``delivery`` = arrival minus sending of the alert's frame (RTSP, depacketising, decoding);
* ``camera_to_alert`` = ``latency`` + ``delivery``: from the camera sending the first frame in
  which the person could be recognised to the alert.

``decode`` reads the same stream for ``--seconds`` with OpenCV's capture (what openlfr uses) and
with PyAV (``pip install av``; skipped if it is not importable), each in its own process, and
reports CPU-seconds per camera-second (user + system time of that process while it reads at the
camera's pace, divided by the seconds read), at 640×360 and at 1080p, for H.264 and H.265.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the tests' RTSP server helper

from bench_live import (  # noqa: E402
    CLIP,
    DATA,
    build_watchlist,
    check_subjects,
    openlfr_cmd,
    pct,
)

from tests.rtspserver import RtspServer, encode, missing  # noqa: E402

DECODER = textwrap.dedent("""
    import json, os, resource, sys, time
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
    how, url, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])

    def cpu():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    n = 0
    if how == "opencv":
        import cv2
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
        ok, image = cap.read()
        c0, t0 = cpu(), time.monotonic()  # from the first frame: opening is not decoding
        while time.monotonic() - t0 < seconds:
            ok, image = cap.read()
            if not ok:
                break
            n += 1
    else:
        import av
        container = av.open(url, options={"rtsp_transport": "tcp"})
        stream = container.streams.video[0]
        if how == "pyav-1-thread":
            stream.codec_context.thread_count = 1
        else:
            stream.thread_type = "AUTO"
        frames = container.decode(stream)
        image = next(frames).to_ndarray(format="bgr24")
        c0, t0 = cpu(), time.monotonic()
        for frame in frames:
            image = frame.to_ndarray(format="bgr24")  # what the pipeline needs: BGR pixels
            n += 1
            if time.monotonic() - t0 >= seconds:
                break
    took = time.monotonic() - t0
    print(json.dumps({"frames": n, "seconds": round(took, 2), "shape": list(image.shape),
                      "cpu_per_camera_second": round((cpu() - c0) / took, 4)}))
""")


def decode(data: Path, work: Path, seconds: float) -> dict[str, object]:
    results: dict[str, object] = {}
    for label, size in (("640x360", None), ("1920x1080", (1920, 1080))):
        for codec in ("h264", "h265"):
            clip = encode(data / CLIP, work / f"decode-{label}-{codec}.mp4", codec, 30.0, size)
            row: dict[str, object] = {}
            for how in ("opencv", "pyav", "pyav-1-thread"):
                with RtspServer(clip, codec) as server:
                    done = subprocess.run([sys.executable, "-c", DECODER, how, server.url(),
                                           str(seconds)], capture_output=True, text=True,
                                          timeout=seconds + 60)
                if done.returncode != 0:
                    last = (done.stderr.strip().splitlines() or ["?"])[-1]
                    row[how] = {"error": last}
                    continue
                row[how] = json.loads(done.stdout.splitlines()[-1])
            results[f"{label} {codec}"] = row
            print(f"  {label} {codec}: " + ", ".join(
                f"{k} {v.get('cpu_per_camera_second', v.get('error'))}"  # type: ignore[union-attr]
                for k, v in row.items()), file=sys.stderr)
    return results


def latency(data: Path, work: Path, rounds: int, seconds: float, extra: list[str]
            ) -> dict[str, object]:
    watchlist = build_watchlist(data, work)
    clip = encode(data / CLIP, work / "hamilton-h264.mp4", "h264", 30.0)
    rows: list[dict[str, float]] = []
    subjects: list[dict[str, object]] = []
    for r in range(rounds):
        log = work / f"frames-{r}.log"
        with RtspServer(clip, "h264", log_frames=log) as server:
            out = subprocess.run(
                [*openlfr_cmd(), "watch", f"cam={server.url()}", "--watchlist", str(watchlist),
                 "--json", "--max-seconds", str(seconds), *extra],
                check=True, capture_output=True, text=True, timeout=seconds + 120).stdout
        events = [json.loads(line) for line in out.splitlines()]
        alerts = [e for e in events if e["event"] == "alert"]
        subjects.append(check_subjects(alerts))
        sent: dict[int, dict[int, float]] = {}
        for line in log.read_text().splitlines():
            client, frame, wall = line.split()
            sent.setdefault(int(client), {})[int(frame)] = float(wall)
        # the watching client's stream: the one that sent the most frames (the probe's and a
        # description's clients send one or none)
        ours = max(sent.values(), key=len) if sent else {}
        for alert in alerts:
            if alert.get("latency") is None or alert["frame"] not in ours:
                continue  # no enrolment-quality face, or a later pass of the clip
            delivery = alert["frame_wall"] - ours[alert["frame"]]
            rows.append({"latency": alert["latency"], "delivery": delivery,
                         "camera_to_alert": alert["latency"] + delivery,
                         "frame_to_alert": alert["wall_time"] - ours[alert["frame"]]})
        print(f"  round {r + 1}: {len(alerts)} alert(s), subjects "
              f"{subjects[-1]['alerted']}", file=sys.stderr)

    def summary(key: str) -> dict[str, float | None]:
        values = [row[key] for row in rows]
        return {"p50": pct(values, 50), "p95": pct(values, 95),
                "max": max(values) if values else None}

    return {"rounds": rounds, "seconds": seconds, "alerts": len(rows),
            "subjects": subjects, "camera_to_alert": summary("camera_to_alert"),
            "alert_latency": summary("latency"), "delivery": summary("delivery"),
            "frame_to_alert": summary("frame_to_alert"), "per_alert": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["latency", "decode", "all"])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--rounds", type=int, default=5, help="latency: runs of the command")
    parser.add_argument("--seconds", type=float, default=None,
                        help="latency: length of each run (default 11: one pass of the clip "
                             "after the camera opens); decode: seconds read (default 8)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("extra", nargs="*", help="more openlfr watch options, after --")
    args = parser.parse_args()
    if not (args.data / CLIP).exists():
        sys.exit(f"{args.data / CLIP}: not found (pass --data)")
    why = missing()
    if why is not None:
        sys.exit(why)
    results: dict[str, object] = {"cpu_count": os.cpu_count(),
                                  "load_average_at_start": os.getloadavg()}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="openlfr-bench-rtsp-") as tmp:
        work = Path(tmp)
        if args.what in ("latency", "all"):
            results["latency"] = latency(args.data, work, args.rounds, args.seconds or 11.0,
                                         args.extra)
            shown = {k: v for k, v in results["latency"].items()  # type: ignore[union-attr]
                     if k != "per_alert"}
            print(json.dumps(shown, indent=1), file=sys.stderr)
        if args.what in ("decode", "all"):
            results["decode"] = decode(args.data, work, args.seconds or 8.0)
    results["load_average_at_end"] = os.getloadavg()
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    text = json.dumps(results, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
