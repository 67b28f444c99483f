"""``openlfr watch``: run the live pipeline on cameras, streams or video files."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from openlfr.cli.common import (
    console,
    err_console,
    fail,
    open_watchlist,
    print_json,
    print_table,
    user_errors,
)
from openlfr.cli.context import Context, DataDirOpt, acting
from openlfr.errors import InvalidInput
from openlfr.video.bestshot import ShotPolicy
from openlfr.video.pipeline import AUTO_TILING_ABOVE, TILING_MODES, CameraPipeline, PipelineConfig
from openlfr.video.preview import PreviewServer
from openlfr.video.runner import Runner, Summary, close_quietly
from openlfr.video.sinks import CallbackSink
from openlfr.video.sources import CaptureSource, SourceState, SourceStatus, open_sources
from openlfr.video.stats import CameraFigures
from openlfr.video.types import Alert

if TYPE_CHECKING:
    from openlfr.governance.live import DeploymentRun, RunOptions, RunResult
    from openlfr.governance.reconcile import Reconciler
    from openlfr.watchlist.gallery import Gallery

#: Detections per second per camera: people walk, so 15 a second tracks them well and lets
#: two cores serve several 25-30 fps cameras. ``--detect-fps 0`` detects every frame.
DEFAULT_DETECT_FPS = 15.0

def _quiet_opencv() -> None:
    """Before any camera opens: quiet FFmpeg's console messages (a corrupt packet is counted,
    not printed) and ask for RTSP over TCP (UDP is lost behind most NATs and firewalls). Either
    variable, if already set, wins. The sources' own log lines about their state are not
    printed either when no logging is configured: this command shows each camera's state."""
    sources_log = logging.getLogger("openlfr.video.sources")
    if not logging.getLogger().handlers and not sources_log.handlers:
        sources_log.addHandler(logging.NullHandler())
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
    with contextlib.suppress(Exception):
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # type: ignore[attr-defined]


def _fmt(value: float | None, unit: str = "", digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def _state_text(state: str, since: float, now: float) -> str:
    """``reconnecting 1m05s``: how long a camera has been connecting or retrying."""
    if state not in (str(SourceState.CONNECTING), str(SourceState.RECONNECTING)) or not since:
        return state
    age = max(int(now - since), 0)
    return f"{state} {age // 60}m{age % 60:02d}s" if age >= 60 else f"{state} {age}s"


def _named(camera: str, error: str) -> str:
    """``camera: error``, without naming the camera twice."""
    return error if error.startswith(f"{camera}:") else f"{camera}: {error}"


def _table(figures: list[CameraFigures], elapsed: float, preview: str | None) -> Table:
    title = f"openlfr watch — {elapsed:,.0f} s" + (f" — preview {preview}" if preview else "")
    now = time.time()
    problems = [f"[yellow]{escape(_named(f.camera, f.error))}[/]" for f in figures
                if f.error and f.state in (str(SourceState.RECONNECTING),
                                           str(SourceState.FAILED))]
    caption = "\n".join([*problems, "An alert is a possible match for a person to review."])
    table = Table(title=title, caption=caption)
    for col in ("camera", "state", "fps in", "fps done", "dropped", "faces", "tracks",
                "embeds", "alerts", "latency p95"):
        table.add_column(col, justify="left" if col in ("camera", "state") else "right")
    for f in figures:
        colour = {"running": "green", "ended": "blue", "reconnecting": "yellow",
                  "connecting": "yellow", "failed": "red"}.get(f.state, "white")
        table.add_row(f.camera, f"[{colour}]{_state_text(f.state, f.since, now)}[/]",
                      _fmt(f.fps_in, digits=1),
                      _fmt(f.fps_processed, digits=1), str(f.dropped), str(f.faces),
                      f"{f.tracks} ({f.active_tracks})", str(f.embeddings),
                      f"[bold yellow]{f.alerts}[/]" if f.alerts else "0",
                      _fmt(f.latency_p95, " s"))
    return table


def _camera_event(status: SourceStatus) -> dict[str, object]:
    """The JSON line for a camera's change of state (``since``: epoch seconds)."""
    return {"event": "camera", "camera": status.name, "state": str(status.state),
            "since": round(status.since, 3), "error": status.error,
            "reconnects": status.reconnects}


def _camera_problems(summary: Summary) -> tuple[list[str], bool]:
    """One text per failed camera, and whether no camera ever delivered a frame."""
    failed = [_named(f.camera, f.error or "failed") for f in summary.cameras
              if f.state == str(SourceState.FAILED)]
    none_opened = bool(failed) and all(
        f.frames_in == 0 and f.state == str(SourceState.FAILED) for f in summary.cameras)
    return failed, none_opened


def _print_alert(alert: Alert) -> None:
    kind = "update" if alert.is_update else "POSSIBLE MATCH"
    name = f" ({alert.display_name})" if alert.display_name != alert.subject_id else ""
    stamp = time.strftime("%H:%M:%S", time.localtime(alert.wall_time))
    console.print(
        f"[bold yellow]{stamp} {kind}[/] camera [bold]{alert.camera}[/] t={alert.t:.2f}s "
        f"frame {alert.frame} track {alert.track_id}: [bold]{alert.subject_id}[/]{name} "
        f"score {alert.score:.3f} ≥ {alert.threshold:.2f} (reference {alert.reference_id})",
        highlight=False,
    )


def _print_summary(summary: Summary) -> None:
    table = Table(title="Summary" + (" (interrupted)" if summary.interrupted else ""))
    for col in ("camera", "state", "frames", "dropped", "faces", "tracks", "embeddings",
                "alerts", "latency p50/p95"):
        table.add_column(col, justify="left" if col in ("camera", "state") else "right")
    for f in summary.cameras:
        table.add_row(f.camera, f.state, str(f.frames), str(f.dropped), str(f.faces),
                      str(f.tracks), str(f.embeddings), str(f.alerts),
                      f"{_fmt(f.latency_p50)}/{_fmt(f.latency_p95)} s")
    print_table(table)
    console.print(
        f"{summary.frames} frames in {summary.seconds:.1f} s ({summary.fps:.1f} fps), "
        f"{summary.faces} faces, {summary.tracks} tracks, {summary.embeddings} embeddings, "
        f"{summary.alerts} alerts, {summary.dropped_frames} frames dropped. "
        "Nothing was kept of faces that did not match.",
        highlight=False,
    )


def watch(
    sources: Annotated[list[str] | None, typer.Argument(
        metavar="SOURCE...",
        help="Video files, stream URLs (rtsp://, rtmp://, http(s)://, MJPEG) or webcam indexes; "
             "NAME=SOURCE names a camera. A camera that cannot be opened or is lost is retried "
             "while the others run (streams and webcams for ever, files 3 times). Not with "
             "--deployment.")] = None,
    watchlist: Annotated[Path | None, typer.Option(
        "--watchlist", "-w", help="Watchlist file. Not with --deployment.")] = None,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", "-t", help="Cosine threshold (default: the model's). Not with "
                                  "--deployment.")] = None,
    deployment: Annotated[int | None, typer.Option(
        "--deployment", "-d", min=1,
        help="Run an authorised deployment: its cameras, watchlists and threshold, only "
             "inside its window; alerts are stored (encrypted, audited) before they are "
             "shown. Needs --user.")] = None,
    user: Annotated[str | None, typer.Option(
        "--user", "-u", envvar="OPENLFR_USER", show_envvar=True,
        help="Who runs the deployment (password from OPENLFR_PASSWORD or a prompt).")] = None,
    data_dir: DataDirOpt = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="One JSON object per line: alerts, then a summary.")] = False,
    realtime: Annotated[bool, typer.Option(
        "--realtime",
        help="Pace files at their own frame rate, like a camera (streams always are).")] = False,
    max_seconds: Annotated[float | None, typer.Option(
        "--max-seconds", min=0.001, help="Stop after this many seconds.")] = None,
    loop: Annotated[bool, typer.Option(
        "--loop", help="Start files again at their end (files only).")] = False,
    preview: Annotated[int | None, typer.Option(
        "--preview", metavar="PORT", min=0, max=65535,
        help="Serve a privacy-masked MJPEG preview on 127.0.0.1:PORT.")] = None,
    detect_fps: Annotated[float, typer.Option(
        "--detect-fps", min=0.0,
        help="Run the face detector at most this often per camera (0: every frame).")
    ] = DEFAULT_DETECT_FPS,
    detect_size: Annotated[int, typer.Option(
        "--detect-size", min=64, help="Scale frames down to this longer side to detect.")] = 640,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="Analysis threads (default: one per CPU).")] = None,
    max_embeddings: Annotated[int, typer.Option(
        "--max-embeddings", min=1, help="Embeddings per track at most.")] = 3,
    tiling: Annotated[str, typer.Option(
        "--tiling", metavar="auto|on|off",
        help=f"Also detect small faces at full resolution, in tiles: off (the default), auto "
             f"(frames wider than {AUTO_TILING_ABOVE} px) or on (any frame larger than "
             f"--detect-size).")
    ] = "off",
    full_scan_every: Annotated[int, typer.Option(
        "--full-scan-every", min=1,
        help="With tiling: scan the whole frame in tiles every N detected frames (tracked "
             "faces' regions in between).")] = 15,
    motion_gate: Annotated[bool, typer.Option(
        "--motion-gate",
        help="Skip the detector while nothing moves and nobody is tracked (a still scene is "
             "still looked at once a second).")] = False,
    roi_every: Annotated[int, typer.Option(
        "--roi-every", min=1,
        help="Detect the whole frame every N detected frames and only around tracked faces "
             "in between (1: always the whole frame).")] = 1,
) -> None:
    """Watch cameras for watchlisted faces. Faces that do not match leave no trace but counts.

    Either SOURCE... with --watchlist FILE, or --deployment ID (with --user)."""
    if tiling not in TILING_MODES:
        fail(f"--tiling must be one of {', '.join(TILING_MODES)}, not {tiling!r}")
    small = SmallFaces(tiling, full_scan_every, motion_gate, roi_every)
    try:
        if deployment is not None:
            who = _deployment_user(sources, watchlist, threshold, user)
            _watch_deployment(deployment, who, data_dir, json_out, realtime, max_seconds,
                              loop, preview, detect_fps, detect_size, workers, max_embeddings,
                              small)
            return
        if not sources:
            fail("give at least one SOURCE (or --deployment ID)")
        if watchlist is None:
            fail("--watchlist FILE is required with SOURCE... (or use --deployment ID)")
        _watch(sources, watchlist, threshold, json_out, realtime, max_seconds, loop, preview,
               detect_fps, detect_size, workers, max_embeddings, small)
    except KeyboardInterrupt:  # before the cameras run (e.g. a slow stream to open)
        err_console.print("[yellow]interrupted before the cameras started[/]")
        raise typer.Exit(130) from None


@dataclass(frozen=True)
class SmallFaces:
    """``--tiling``, ``--full-scan-every``, ``--motion-gate`` and ``--roi-every`` (see
    :class:`PipelineConfig`)."""

    tiling: str = "off"
    full_scan_every: int = 15
    motion_gate: bool = False
    roi_every: int = 1


def _deployment_user(sources: list[str] | None, watchlist: Path | None,
                     threshold: float | None, user: str | None) -> str:
    """Who runs ``--deployment``; it takes its cameras, watchlists and threshold from the
    deployment, so none of them may be given."""
    given = [name for name, value in (("SOURCE", sources), ("--watchlist", watchlist),
                                      ("--threshold", threshold)) if value]
    if given:
        fail(f"--deployment takes its cameras, watchlists and threshold from the "
             f"deployment: do not give {', '.join(given)}")
    if not user:
        fail("--deployment needs --user NAME (who runs it)")
    return user


class _Out:
    """Where the command writes: one line at a time (alerts come from worker threads), as text
    or, with ``--json``, as one JSON object per line."""

    def __init__(self, json_out: bool) -> None:
        self.json = json_out
        self.lock = threading.Lock()

    def emit(self, event: dict[str, object]) -> None:
        with self.lock:
            print_json(event)

    def alert(self, alert: Alert) -> None:
        if self.json:
            self.emit(alert.as_event())
        else:
            with self.lock:
                _print_alert(alert)


def _watch(sources: list[str], watchlist: Path, threshold: float | None, json_out: bool,
           realtime: bool, max_seconds: float | None, loop: bool, preview: int | None,
           detect_fps: float, detect_size: int, workers: int | None,
           max_embeddings: int, small: SmallFaces = SmallFaces()) -> None:
    _quiet_opencv()
    out = _Out(json_out)
    cameras = _open_cameras(sources, watchlist, threshold, CallbackSink(out.alert),
                            realtime=realtime, loop=loop, detect_fps=detect_fps,
                            detect_size=detect_size, max_embeddings=max_embeddings,
                            small=small)
    server = _start_preview([s for s, _ in cameras], preview)
    runner = Runner(cameras, workers=workers, max_seconds=max_seconds,
                    on_frame=server.publish if server else None)
    if server is not None:
        err_console.print(f"privacy-masked preview on {server.url}", highlight=False)
    report_states = _StateLines(runner, out)
    summary = _run_cameras(runner, server, out, report_states)
    _end_watch(summary, out, report_states)


def _open_cameras(sources: list[str], watchlist: Path, threshold: float | None,
                  sink: CallbackSink, *, realtime: bool, loop: bool, detect_fps: float,
                  detect_size: int, max_embeddings: int, small: SmallFaces = SmallFaces()
                  ) -> list[tuple[CaptureSource, CameraPipeline]]:
    """The watchlist's gallery and threshold, and each SOURCE opened with its pipeline."""
    with user_errors():
        wl, engine, thr = open_watchlist(watchlist, threshold)
        if not wl.subjects:
            fail(f"{watchlist}: the watchlist holds no subject")
        config = PipelineConfig(threshold=thr, detect_fps=detect_fps,
                                detect_max_side=detect_size,
                                shots=ShotPolicy(max_embeddings=max_embeddings),
                                tiling=small.tiling, full_scan_every=small.full_scan_every,
                                motion_gate=small.motion_gate, roi_every=small.roi_every)
        gallery = wl.gallery()
        names = {sid: s.display_name for sid, s in wl.subjects.items()}
        opened = open_sources(sources, realtime=realtime, loop=loop)
    return [
        (s, CameraPipeline(s.name, engine, gallery, config, sink, fps=s.fps, names=names))
        for s in opened
    ]


def _start_preview(opened: list[CaptureSource], port: int | None) -> PreviewServer | None:
    """The privacy-masked preview on ``port``, started; a bad port closes the cameras first."""
    if port is None:
        return None
    try:
        server = PreviewServer([s.name for s in opened], port=port)
    except InvalidInput as exc:  # the port: close the cameras before exiting
        close_quietly(opened)
        fail(str(exc))
    server.start()
    return server


class _StateLines:
    """For each camera whose state (or, while retrying, error) changed: a JSON line, or a line
    on stderr when there is no live table."""

    def __init__(self, runner: Runner, out: _Out) -> None:
        self.runner = runner
        self.out = out
        self.seen: dict[str, tuple[SourceState, str]] = {}

    def __call__(self) -> None:
        for name, status in self.runner.statuses().items():
            key = (status.state, status.error)
            if self.seen.get(name) != key:
                self.seen[name] = key
                if self.out.json:
                    self.out.emit(_camera_event(status))
                else:
                    why = f" ({status.error})" if status.error and status.state in (
                        SourceState.RECONNECTING, SourceState.FAILED) else ""
                    with self.out.lock:
                        err_console.print(f"camera {name}: {status.state}{why}",
                                          highlight=False, markup=False, soft_wrap=True)


def _run_cameras(runner: Runner, server: PreviewServer | None, out: _Out,
                 report_states: _StateLines) -> Summary:
    """Run the cameras to their end: the live table on a terminal, state lines otherwise."""
    if out.json or not console.is_terminal:
        report_states()
    try:
        if out.json or not console.is_terminal:
            summary = runner.run(tick=report_states)
        else:
            with Live(console=console, refresh_per_second=2, transient=False) as live:
                def refresh() -> None:
                    live.update(Group(_table(runner.figures(), runner.elapsed,
                                             server.url if server else None),
                                      Text("Ctrl-C to stop", style="dim")))

                summary = runner.run(tick=refresh)
                refresh()
    finally:
        if server is not None:
            server.stop()
    return summary


def _end_watch(summary: Summary, out: _Out, report_states: _StateLines) -> None:
    """The summary; exit 2 when no camera could be opened at all, 1 when a camera failed."""
    if out.json:
        report_states()
        out.emit(summary.as_event())
    else:
        if not console.is_terminal:
            report_states()
        if summary.interrupted:
            err_console.print("[yellow]interrupted[/]")
        _print_summary(summary)
    failed, none_opened = _camera_problems(summary)
    if none_opened:  # nothing could be watched at all: a configuration error
        err_console.print(f"[bold red]error:[/] no camera could be opened: "
                          f"{'; '.join(failed)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    if failed:
        err_console.print(f"[bold red]error:[/] camera(s) failed: {'; '.join(failed)}",
                          highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _watch_deployment(deployment_id: int, user: str, data_dir: Path | None, json_out: bool,
                      realtime: bool, max_seconds: float | None, loop: bool,
                      preview: int | None, detect_fps: float, detect_size: int,
                      workers: int | None, max_embeddings: int,
                      small: SmallFaces = SmallFaces()) -> None:
    """``watch --deployment``: start (or resume) the deployment, then run it here through the
    same reconcile logic as ``openlfr serve`` (:mod:`openlfr.governance.reconcile`), limited to
    this deployment: its run ends when the deployment stops anywhere, and watchlist changes
    reach it within a second."""
    from openlfr.governance import deployments as deps
    from openlfr.governance.live import RunOptions, running_elsewhere
    from openlfr.governance.reconcile import Reconciler

    _quiet_opencv()
    out = _Out(json_out)
    with acting(data_dir, user) as ctx:
        cameras = [c.name for c in deps.show(ctx.db, ctx.actor, deployment_id).cameras]
        server: PreviewServer | None = None
        if preview is not None:
            if not cameras:
                fail(f"deployment {deployment_id} has no camera")
            server = PreviewServer(cameras, port=preview)
        options = RunOptions(realtime=realtime, loop=loop, detect_fps=detect_fps,
                             detect_max_side=detect_size, workers=workers,
                             max_embeddings=max_embeddings, max_seconds=max_seconds,
                             tiling=small.tiling, full_scan_every=small.full_scan_every,
                             motion_gate=small.motion_gate, roi_every=small.roi_every)
        here = _DeploymentHere(ctx, deployment_id, options, out, server)
        busy = running_elsewhere(ctx.db, deployment_id)
        if busy is not None:
            fail(f"deployment {deployment_id} is running in another process (its cameras "
                 f"reported {busy:.0f} s ago, e.g. under `openlfr serve`); stop or pause it "
                 "there first")
        resumed = deps.start(ctx.db, ctx.actor, deployment_id)
        if resumed and not json_out:
            err_console.print(f"deployment {deployment_id} resumed", highlight=False)
        reconciler = Reconciler(ctx.system, here, only=[deployment_id])
        if server is not None:
            server.start()
            err_console.print(f"privacy-masked preview on {server.url}", highlight=False)
        try:
            if json_out or not console.is_terminal:
                result = _follow(reconciler, here)
            else:
                with Live(console=console, refresh_per_second=2, transient=False) as shown:
                    here.live = shown
                    result = _follow(reconciler, here)
                    here.tick()
        finally:
            reconciler.stop_all("interrupted")
            if server is not None:
                server.stop()
    _end_deployment(result, here)


class _DeploymentHere:
    """The launcher the reconciler starts the deployment's run with, in this process; what the
    run reports (alerts, camera states, figures) goes to the live table or JSON lines."""

    def __init__(self, ctx: Context, deployment_id: int, options: RunOptions, out: _Out,
                 server: PreviewServer | None) -> None:
        self.ctx = ctx
        self.deployment_id = deployment_id
        self.options = options
        self.out = out
        self.server = server
        self.runs: list[DeploymentRun] = []
        self.states: dict[str, SourceState] = {}
        self.live: Live | None = None

    def launch(self, dep_id: int, gallery: Gallery, names: dict[str, str]) -> DeploymentRun:
        from openlfr.governance.live import DeploymentRun

        run = DeploymentRun(self.ctx.system, dep_id, self.ctx.actor, options=self.options,
                            on_alert=self.show,
                            on_frame=self.server.publish if self.server else None,
                            on_start=self.started, tick=self.tick, gallery=(gallery, names))
        self.runs.append(run)
        run.start()
        return run

    def show(self, row_id: int, alert: Alert) -> None:
        """Called only after the alert is stored (committed): what is shown is on record."""
        if self.out.json:
            event = alert.as_event()
            event.update(deployment=self.deployment_id, alert_row=row_id,
                         label="possible match")
            self.out.emit(event)
        else:
            with self.out.lock:
                _print_alert(alert)
                console.print(f"  stored as alert {row_id} of deployment "
                              f"{self.deployment_id}: review it with "
                              f"`openlfr alerts show {row_id}`", highlight=False)

    def started(self, _run: DeploymentRun) -> None:
        if self.out.json:
            self.out.emit({"event": "deployment", "deployment": self.deployment_id,
                           "state": "running"})
            self.report_states()
        else:
            err_console.print(f"deployment {self.deployment_id} is running", highlight=False)

    def report_states(self) -> None:
        if not self.runs:
            return
        run = self.runs[-1]
        for name, state in run.states().items():
            if self.states.get(name) != state:
                self.states[name] = state
                if self.out.json:
                    status = next(s.status() for s in run.sources if s.name == name)
                    self.out.emit({"event": "camera", "camera": name, "state": str(state),
                                   "error": status.error})

    def tick(self) -> None:
        if self.out.json:
            self.report_states()
        elif (self.live is not None and self.runs
              and (runner := self.runs[-1].runner) is not None):
            self.live.update(Group(
                _table(self.runs[-1].figures(), runner.elapsed,
                       self.server.url if self.server else None),
                Text(f"deployment {self.deployment_id} — Ctrl-C to pause it (resume with the "
                     "same command or in the console; end it with `openlfr deployment stop`)",
                     style="dim")))


def _follow(reconciler: Reconciler, here: _DeploymentHere) -> RunResult:
    """Reconcile until this process's run has finished; Ctrl-C pauses it."""
    deployment_id, runs = here.deployment_id, here.runs
    try:
        while True:
            report = reconciler.tick()
            if report.failed and not runs:
                fail(f"deployment {deployment_id} could not run: "
                     f"{reconciler.errors.get(deployment_id, 'see the log')}", code=1)
            if runs and not runs[-1].running:
                break
            if not runs and not report.started:
                # not (or no longer) to run: stopped or paused elsewhere at once
                fail(f"deployment {deployment_id} is not running any more")
            time.sleep(0.25)
    except KeyboardInterrupt:
        for run in runs:
            run.stop()
    for run in runs:
        run.join()
    result = runs[-1].join()
    assert result is not None
    return result


def _end_deployment(result: RunResult, here: _DeploymentHere) -> None:
    """The summary and what became of the deployment; exit 1 when a camera failed."""
    deployment_id = here.deployment_id
    summary = result.summary
    if here.out.json:
        here.report_states()
        here.out.emit(result.as_event())
    else:
        if summary.interrupted:
            err_console.print("[yellow]interrupted[/]")
        _print_summary(summary)
        if result.ended:
            err_console.print(f"deployment {deployment_id} has ended: {result.end_reason}",
                              highlight=False)
        elif result.paused:
            err_console.print(f"deployment {deployment_id} is paused ({result.pause_reason}): "
                              "resume it with the same command or in the console; end it "
                              "with `openlfr deployment stop`", highlight=False)
        else:
            err_console.print(f"deployment {deployment_id} is no longer running here",
                              highlight=False)
    failed = [f.camera for f in summary.cameras if f.state == str(SourceState.FAILED)]
    if failed:
        err_console.print(f"[bold red]error:[/] camera(s) failed: {', '.join(failed)}",
                          highlight=False)
        raise typer.Exit(1)

def register(app: typer.Typer) -> None:
    app.command("watch")(watch)
