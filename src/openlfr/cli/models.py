"""``openlfr models list|verify|pull``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from openlfr.cli.common import console, fail, print_json, user_errors
from openlfr.vision import registry

app = typer.Typer(help="The face models: where they are and whether they are the pinned files.",
                  no_args_is_help=True)


@app.command("list")
def list_models(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every backend, the files it needs, their digests and where each was found."""
    rows = []
    for backend in registry.BACKENDS.values():
        for name in backend.files:
            st = registry.check(name)
            rows.append({
                "backend": backend.name,
                "model": name,
                "file": st.model.filename,
                "role": st.model.role,
                "licence": st.model.licence,
                "sha256": st.model.sha256,
                "source": st.source,
                "path": str(st.path) if st.path else None,
                "ok": st.ok,
            })
    if json_out:
        print_json({"default_backend": registry.DEFAULT_BACKEND, "models": rows})
        return
    table = Table(title=f"openlfr models (default backend: {registry.DEFAULT_BACKEND})")
    for col in ("file", "used by", "role", "licence", "sha256", "found"):
        table.add_column(col, overflow="fold")
    seen: dict[str, list[str]] = {}
    for r in rows:
        seen.setdefault(r["model"], []).append(r["backend"])
    for r in rows:
        if r["model"] not in seen:
            continue
        backends = seen.pop(r["model"])
        where = f"[green]{r['source']}[/]" if r["ok"] else "[red]missing or wrong digest[/]"
        table.add_row(r["file"], ", ".join(backends), r["role"], r["licence"],
                      r["sha256"][:12] + "…", where)
    console.print(table)


@app.command()
def verify(
    backend: Annotated[list[str] | None, typer.Option(
        "--backend", "-b", help="Backends to verify (default: all).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check every model file's SHA-256. Exits non-zero naming any wrong or missing file."""
    names = backend or list(registry.BACKENDS)
    with user_errors():
        results = {b: registry.verify_backend(b) for b in names}
    problems = [s for sts in results.values() for s in sts if not s.ok]
    if json_out:
        print_json({
            "ok": not problems,
            "backends": {
                b: [{"model": s.model.name, "ok": s.ok, "path": str(s.path) if s.path else None,
                     "expected_sha256": s.model.sha256, "found_sha256": s.found_sha256,
                     "message": s.message} for s in sts]
                for b, sts in results.items()
            },
        })
    else:
        for b, sts in results.items():
            bad = [s for s in sts if not s.ok]
            mark = "[green]ok[/]" if not bad else "[red]FAILED[/]"
            console.print(f"{b}: {mark}")
            for s in sts:
                console.print(f"  {'✓' if s.ok else '✗'} {s.model.filename}  "
                              f"{s.path or ''}", highlight=False)
                if not s.ok:
                    console.print(f"    [red]{s.message}[/]", highlight=False)
    if problems:
        raise typer.Exit(1)


@app.command()
def pull(
    backend: Annotated[str, typer.Option("--backend", "-b")] = registry.DEFAULT_BACKEND,
) -> None:
    """Download a backend's missing files from their official URLs into the model cache.

    Needs internet. Installing the registry packages (the usual way) needs no download at all.
    """
    with user_errors():
        spec = registry.backend_spec(backend)
    for name in spec.files:
        if registry.check(name).ok:
            console.print(f"{name}: already present")
            continue
        try:
            path = registry.pull(name)
        except registry.ModelError as exc:
            fail(str(exc))
        console.print(f"{name}: downloaded and verified → {path}")
