"""``openlfr models list|show|add|remove|verify|pull``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from openlfr.cli.common import console, fail, print_json, print_table, user_errors
from openlfr.cli.context import DataDirOpt, UserOpt, acting, opened
from openlfr.config import load_settings
from openlfr.governance.system import System
from openlfr.vision import registry

app = typer.Typer(help="The face models: the built-in ones and those you add, where their files "
                       "are, whether they are the recorded files, and their floors.",
                  no_args_is_help=True)


@contextmanager
def installation(data_dir: Path | None) -> Iterator[System | None]:
    """The installation when there is one (to list the models added to it), else ``None``."""
    with user_errors():
        settings = load_settings(data_dir)
    if not settings.database_url and not (settings.data_dir / "openlfr.db").exists():
        yield None
        return
    with opened(data_dir) as system:
        yield system


def _file_rows() -> list[dict[str, Any]]:
    rows = []
    for spec in registry.BACKENDS.values():
        for model in spec.files:
            st = registry.check_file(model)
            rows.append({
                "backend": spec.name,
                "model": model.name,
                "file": model.filename,
                "role": model.role,
                "licence": model.licence,
                "sha256": model.sha256,
                "source": st.source,
                "path": str(st.path) if st.path else None,
                "ok": st.ok,
            })
    return rows


@app.command("list")
def list_models(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Every recogniser (built-in and added) with its state and floor, and the built-in
    files with their digests and where each was found."""
    from openlfr.governance.models import ModelInfo, list_models

    rows = _file_rows()
    with installation(data_dir) as system:
        recognisers: list[ModelInfo] = (
            list_models(system.db, system.settings.data_dir, verify=True)
            if system is not None else [])
    if json_out:
        print_json({"default_backend": registry.default_backend(), "models": rows,
                    "recognisers": [_brief(m) for m in recognisers]})
        return
    if recognisers:
        rec = Table(title="recognisers")
        for col in ("name", "model id", "origin", "state", "floor", "file"):
            rec.add_column(col, overflow="fold")
        for m in recognisers:
            floor = "–" if m.floor is None else f"{m.floor:g} ({m.floor_source})"
            file = ("[green]ok[/]" if m.file_ok else "[red]changed or missing[/]"
                    if m.file_ok is False else "built-in files below")
            rec.add_row(escape(m.name), escape(m.model_id), m.origin, m.state, floor, file)
        print_table(rec)
    table = Table(title=f"openlfr models (default backend: {registry.default_backend()})")
    for col in ("file", "used by", "role", "licence", "sha256", "found"):
        table.add_column(col, overflow="fold")
    seen: dict[str, list[str]] = {}
    for r in rows:
        seen.setdefault(str(r["model"]), []).append(str(r["backend"]))
    for r in rows:
        if r["model"] not in seen:
            continue
        backends = seen.pop(str(r["model"]))
        where = f"[green]{r['source']}[/]" if r["ok"] else "[red]missing or wrong digest[/]"
        table.add_row(str(r["file"]), ", ".join(backends), str(r["role"]), str(r["licence"]),
                      str(r["sha256"])[:12] + "…", where)
    print_table(table)


def _brief(m: Any) -> dict[str, Any]:
    out: dict[str, Any] = m.as_dict()
    out.pop("report", None)
    out["calibrated"] = m.floor_source == "calibrated"
    return out


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="The backend's name.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """One recogniser: its spec, state, floor and, once calibrated, the fairness report on
    the evaluation data behind its floor."""
    from openlfr.governance.models import ModelInfo, get_model

    with installation(data_dir) as system:
        if system is None:
            if name not in registry.BACKENDS:
                fail(f"unknown backend {name!r}; known: {', '.join(registry.BACKENDS)} (models "
                     "you add are kept in an installation: give --data-dir)")
            spec = registry.BACKENDS[name]
            info = ModelInfo(spec.name, spec.model_id, spec.origin, spec.description,
                             "built-in", spec.default_floor, "default")
        else:
            info = get_model(system.db, name, system.settings.data_dir)
    if json_out:
        print_json(info.as_dict())
        return
    lines = [f"{info.name}: {info.description}",
             f"  model id   {info.model_id}",
             f"  origin     {info.origin}",
             f"  state      {info.state}" + ("" if info.usable else
                                             " (no deployment can use it yet)")]
    if info.floor is not None:
        lines.append(f"  floor      {info.floor:g} ({info.floor_source})")
    if info.sha256:
        lines.append(f"  sha256     {info.sha256}")
        lines.append(f"  file       {info.path}")
    if info.file_ok is not None:
        lines.append("  integrity  " + ("ok" if info.file_ok else f"FAILED: {info.file_problem}"))
    if info.config:
        c = info.config
        lines.append(f"  input      {c['width']}x{c['height']} {c['colour'].upper()} "
                     f"{c['layout'].upper()}, mean {c['mean']}, std {c['std']}; output "
                     f"{c['output_name']} ({c['dim']}-d); detector {c['detector']}")
    if info.added_by:
        lines.append(f"  added      by {info.added_by} at {info.added_at}")
    for line in lines:
        console.print(escape(line), highlight=False)
    if info.report:
        _print_report(info.report)
    elif info.origin == "user":
        console.print(f"  run `openlfr calibrate --backend {escape(info.name)} -d DATASET -g "
                      "GROUPS --user NAME` to record its floor and fairness report",
                      highlight=False)


def _print_report(ev: dict[str, Any]) -> None:
    ds = ev.get("dataset", {})
    console.print(f"fairness report (calibration of {escape(str(ev.get('date', '')))}, "
                  f"threshold {escape(str(ev.get('threshold')))}, watchlist size "
                  f"{ev.get('watchlist_size')}, target FPIR {escape(str(ev.get('target_fpir')))})",
                  highlight=False)
    console.print(f"  dataset {escape(str(ds.get('path')))}: {ds.get('images')} images, "
                  f"{ds.get('identities')} identities, SHA-256 "
                  f"{escape(str(ds.get('sha256', ''))[:16])}…", highlight=False)
    table = Table()
    for col in ("attribute", "group", "impostor pairs", "false matches", "FMR",
                "above the rest", "too small"):
        table.add_column(col)
    for attr, a in ev.get("fairness", {}).get("attributes", {}).items():
        for g, gd in a.get("groups", {}).items():
            table.add_row(escape(attr), escape(g), str(gd.get("impostor_pairs")),
                          str(gd.get("false_matches")), str(gd.get("fmr") or "–"),
                          "yes" if gd.get("above_rest") else "no",
                          "yes" if gd.get("too_small") else "no")
    print_table(table)


def _size(values: list[str]) -> tuple[int, int]:
    text = " ".join(values).strip().lower()
    m = (re.fullmatch(r"(\d{1,5})\s*(?:x|,|\s)\s*(\d{1,5})", text)
         or re.fullmatch(r"(\d{1,5})", text))
    if m is None:
        fail(f"--input-size {text!r}: width and height in pixels, e.g. 112x112 or 112 112")
    w = int(m.group(1))
    h = int(m.group(2)) if m.lastindex == 2 else w
    return w, h


def _numbers(values: list[str], option: str) -> list[float]:
    parts = [p for v in values for p in re.split(r"[,\s]+", v.strip()) if p]
    try:
        return [float(p) for p in parts]
    except ValueError:
        fail(f"{option} {' '.join(values)!r}: numbers, one per colour channel (or one for all)")


@app.command()
def add(
    file: Annotated[Path, typer.Argument(help="The ONNX recogniser.", show_default=False)],
    user: UserOpt,
    name: Annotated[str, typer.Option("--name", help="Its name (what --backend takes).",
                                      show_default=False)],
    input_size: Annotated[list[str], typer.Option(
        "--input-size", help="Crop size in pixels: WxH (e.g. 112x112), 'W H' or W,H.",
        show_default=False)],
    mean: Annotated[list[str], typer.Option(
        "--mean", help="Per-channel mean subtracted from 0-255 pixels, in the network's "
                       "colour order: '127.5,127.5,127.5' or one value for all.")],
    std: Annotated[list[str], typer.Option(
        "--std", help="Per-channel standard deviation the pixels are divided by after the "
                      "mean: '127.5' or three values.")],
    colour: Annotated[str, typer.Option(
        "--colour", help="Colour order the network expects: rgb or bgr.")] = "rgb",
    detector: Annotated[str, typer.Option(
        "--detector", help=f"Detector to pair it with: {', '.join(registry.DETECTORS)} "
                           "(aligned to the 5-point ArcFace template).")] = "yunet",
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Add your own ONNX face recogniser (e.g. an ArcFace model your licence allows).

    It is checked (one image input of --input-size, one vector output), hashed (SHA-256),
    copied into the data directory and recorded. No deployment can use it until `openlfr
    calibrate --backend NAME` has recorded its floor and fairness report on your data."""
    from openlfr.governance.models import add_model

    width, height = _size(input_size)
    mean_values, std_values = _numbers(mean, "--mean"), _numbers(std, "--std")
    with acting(data_dir, user) as ctx:
        info = add_model(ctx.db, ctx.actor, ctx.settings.data_dir, file, name, width=width,
                         height=height, mean=mean_values, std=std_values, colour=colour,
                         detector=detector)
    if json_out:
        print_json(info.as_dict())
        return
    console.print(f"added {escape(info.name)} ({escape(info.model_id)}, SHA-256 "
                  f"{info.sha256}); {info.state}: run `openlfr calibrate --backend "
                  f"{escape(info.name)}` on your evaluation data before any deployment can "
                  "use it", highlight=False)


@app.command()
def remove(
    name: Annotated[str, typer.Argument(help="The added model's name.")],
    user: UserOpt,
    data_dir: DataDirOpt = None,
) -> None:
    """Remove a model you added, and its file (refused while a deployment or watchlist uses
    it). Its recorded floors stay."""
    from openlfr.governance.models import remove_model

    with acting(data_dir, user) as ctx:
        remove_model(ctx.db, ctx.actor, ctx.settings.data_dir, name)
    console.print(f"removed {escape(name)}", highlight=False)


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
    for model in spec.files:
        if registry.check_file(model).ok:
            console.print(f"{model.name}: already present")
            continue
        try:
            path = registry.pull(model.name)
        except registry.ModelError as exc:
            fail(str(exc))
        console.print(f"{model.name}: downloaded and verified → {path}")
