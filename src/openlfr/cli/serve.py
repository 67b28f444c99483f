"""``openlfr serve``: the web console, the API and the public pages, with the background jobs
(live runs of running deployments, reconciled every half second; the retention schedule), in
one process."""

from __future__ import annotations

import socket
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from openlfr.cli.admin import set_up
from openlfr.cli.common import err_console, fail
from openlfr.cli.context import DataDirOpt, governance_errors


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535,
                                      help="Port to listen on.")] = 8000,
    data_dir: DataDirOpt = None,
    admin_user: Annotated[str, typer.Option(
        "--admin-user", help="Name of the first admin, on first start.")] = "admin",
    admin_password_file: Annotated[Path | None, typer.Option(
        "--admin-password-file",
        help="File holding the first admin's one-time password, on first start (default: "
             "one is generated and printed once); it must be changed at the first "
             "sign-in.")] = None,
    retention_minutes: Annotated[float, typer.Option(
        "--retention-minutes", min=1.0,
        help="Run the retention rules every this many minutes.")] = 60.0,
    resume: Annotated[bool, typer.Option(
        "--resume/--no-resume",
        help="At start, resume the deployments the previous server paused when it stopped "
             "(deployments left running by a crash run again in any case; those paused for "
             "another reason stay paused).")] = True,
    preview: Annotated[bool, typer.Option(
        "--preview/--no-preview", envvar="OPENLFR_PREVIEW",
        help="Show operators the privacy-masked live view of running cameras (faces that do "
             "not match pixelated).")] = False,
    behind_proxy: Annotated[bool, typer.Option(
        "--behind-proxy",
        help="Trust X-Forwarded-For/-Proto from a reverse proxy (HTTPS, client "
             "addresses for the rate limits).")] = False,
    log_level: Annotated[str, typer.Option("--log-level",
                                           help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve the web console, the JSON API and the public pages.

    By default on http://127.0.0.1:8000/public.

    On first start it creates the data directory, the database and the first admin, whose
    one-time password is printed once (or taken from --admin-password-file) and must be changed
    at the first sign-in. Ctrl-C or SIGTERM
    stops it gracefully: requests finish, live runs stop, the database is closed."""
    import uvicorn

    from openlfr.web.app import create_app
    from openlfr.web.jobs import BackgroundJobs

    if log_level not in ("debug", "info", "warning", "error"):
        fail(f"--log-level {log_level!r}: choose debug, info, warning or error")
    _check_listen(host, port)  # before anything is created
    system = set_up(data_dir, admin_user, admin_password_file)
    try:
        jobs = BackgroundJobs(system, retention_every=retention_minutes * 60, resume=resume,
                              preview=preview)
        with governance_errors():
            app = create_app(system, jobs, trust_proxy=behind_proxy)
        shown_host = f"[{host}]" if ":" in host else host
        err_console.print(f"openlfr serving {system.settings.data_dir} on "
                          f"http://{shown_host}:{port}/public (Ctrl-C to stop)", highlight=False)
        config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                proxy_headers=behind_proxy, server_header=False,
                                timeout_graceful_shutdown=20)
        server = _server_class(uvicorn.Server)(config)
        try:
            server.run()  # handles SIGINT and SIGTERM: stops accepting, finishes, runs shutdown
        except SystemExit:  # uvicorn's own exit (code 3) when it cannot start
            server.started = False
        if not server.started:
            fail(f"could not listen on {host}:{port} (in use, or not an address here?)")
    finally:
        system.close()
    err_console.print("openlfr stopped", highlight=False)


def _check_listen(host: str, port: int) -> None:
    """One clear line, before the data directory is touched, when the address cannot be
    listened on (uvicorn would log a stack of lines and exit 3, the code of a refusal)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        fail(f"--host {host}: not an address of this machine ({exc})")
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            fail(f"could not listen on {host}:{port}: {exc.strerror or exc}")


def _server_class(base: type) -> type:
    class Server(base):  # type: ignore[misc, valid-type]
        """uvicorn's server, but after a graceful stop on SIGINT/SIGTERM it returns (exit code
        0, the database closed) instead of raising the signal again."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            from openlfr.web.events import shutdown_streams

            shutdown_streams()  # end the live alert streams now: they must not hold it up
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

    return Server


def register(root: typer.Typer) -> None:
    root.command("serve")(serve)
