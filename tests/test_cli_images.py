"""Hostile image files on the command line: ``enroll`` rejects the bad one as ``unreadable``
and goes on with the others; ``identify`` and ``watchlist add --image`` print one line and
exit 2 — never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner, Result

from openlfr.cli import app
from tests.govfix import Gov
from tests.hostile import bad_dimensions_tiff, malformed_exif_jpeg, png_bomb

REASON = "Warrant W-77 of the crown court, failing to appear at trial"
PURPOSE = "Find people wanted by the courts at the event"


def _run(*args: object, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def _one_line_error(result: Result, words: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:") and words in lines[0], lines[0]
    assert "Traceback" not in result.output


@pytest.fixture()
def hostile(tmp_path: Path, face_images: dict[str, Path]) -> dict[str, Path]:
    files = {
        "bad.tif": bad_dimensions_tiff(),
        "tall.png": png_bomb(1, 64_000_000),
        "sideways.jpg": malformed_exif_jpeg(Image.open(face_images["obama2"])),
    }
    out = {}
    for name, data in files.items():
        out[name] = tmp_path / "files" / name
        out[name].parent.mkdir(exist_ok=True)
        out[name].write_bytes(data)
    return out


def test_enroll_rejects_the_bad_files_and_keeps_the_others(
        tmp_path: Path, face_images: dict[str, Path], hostile: dict[str, Path]) -> None:
    folder = tmp_path / "people" / "obama"
    folder.mkdir(parents=True)
    shutil.copy(face_images["obama"], folder / "a.jpg")
    for name in ("bad.tif", "tall.png", "sideways.jpg"):
        shutil.copy(hostile[name], folder / name)
    shutil.copy(face_images["obama3"], folder / "z.jpg")  # after the bad ones, in order
    wl_path = tmp_path / "wl.watchlist"
    result = _run("enroll", tmp_path / "people", "--watchlist", wl_path, "--json")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    out = json.loads(result.stdout)
    by_name = {Path(r["path"]).name: r for r in out["results"]}
    assert by_name["bad.tif"]["reason"] == ("unreadable: corrupt or truncated image (Invalid "
                                            "dimensions)")
    assert by_name["tall.png"]["reason"].startswith(
        "unreadable: too large: 1×64,000,000 pixels, more than the limit of 40,000,000")
    assert [n for n, r in by_name.items() if r["accepted"]] == ["a.jpg", "sideways.jpg",
                                                                "z.jpg"]
    assert out["reasons"] == {"unreadable": 2}


def test_identify_names_a_bad_file_on_one_line(
        tmp_path: Path, face_images: dict[str, Path], hostile: dict[str, Path]) -> None:
    wl_path = tmp_path / "wl.watchlist"
    assert _run("enroll", face_images["obama"], "--watchlist", wl_path).exit_code == 0
    _one_line_error(_run("identify", hostile["bad.tif"], "--watchlist", wl_path),
                    "bad.tif: corrupt or truncated image (Invalid dimensions)")
    _one_line_error(_run("identify", hostile["tall.png"], "--watchlist", wl_path),
                    "tall.png: too large: 1×64,000,000 pixels")
    found = _run("identify", hostile["sideways.jpg"], "--watchlist", wl_path, "--json")
    assert found.exit_code == 0, found.output
    faces = json.loads(found.stdout)["faces"]
    assert len(faces) == 1 and faces[0]["match"]  # upright, and Obama


def test_watchlist_add_names_a_bad_image_on_one_line(
        gov: Gov, face_images: dict[str, Path], hostile: dict[str, Path]) -> None:
    env = gov.env()
    created = _run("watchlist", "create", "city", "--purpose", PURPOSE, "--json",
                   "--user", "op1", env=env)
    assert created.exit_code == 0, created.output
    wl_id = json.loads(created.stdout)["id"]
    for name, words in [("bad.tif", "image 2 (custody): unreadable: corrupt or truncated "
                                    "image (Invalid dimensions)"),
                        ("tall.png", "image 2 (custody): unreadable: too large")]:
        result = _run("watchlist", "add", wl_id, "case-7", "--category", "wanted_by_court",
                      "--reason", REASON, "--expires", "30d", "--image", face_images["obama"],
                      "--image", hostile[name], "--source", "custody", "--user", "op1",
                      env=env)
        _one_line_error(result, words)
    added = _run("watchlist", "add", wl_id, "case-7", "--category", "wanted_by_court",
                 "--reason", REASON, "--expires", "30d", "--image", hostile["sideways.jpg"],
                 "--source", "custody", "--user", "op1", "--json", env=env)
    assert added.exit_code == 0, added.output
    assert len(json.loads(added.stdout)["images"]) == 1
