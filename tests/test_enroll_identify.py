"""Enrolment and identification through the command line, on real photos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from openlfr.cli import app
from openlfr.vision import get_engine, load_image
from openlfr.watchlist import Watchlist

from .conftest import tight_crop

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture()
def enrol_folder(tmp_path, face_images, no_face_path, truncated_path) -> Path:
    """<subject>/<images>: Obama with two good photos, a cup (no face) and a truncated file;
    Biden as a tight crop; a group photo (six faces) under its own subject."""
    root = tmp_path / "people"
    (root / "obama").mkdir(parents=True)
    shutil.copy(face_images["obama"], root / "obama" / "a.jpg")
    shutil.copy(face_images["obama2"], root / "obama" / "b.jpg")
    shutil.copy(no_face_path, root / "obama" / "cup.png")
    shutil.copy(truncated_path, root / "obama" / "broken.jpg")
    (root / "joe_biden").mkdir()
    image = load_image(face_images["biden"])
    face = get_engine().detect(image)[0]
    cv2.imwrite(str(root / "joe_biden" / "crop.jpg"), tight_crop(image, face.box))
    (root / "crowd").mkdir()
    shutil.copy(face_images["group"], root / "crowd" / "group.jpg")
    return root


def test_enrol_folder_accepts_good_photos_and_names_every_rejection(enrol_folder, tmp_path):
    wl_path = tmp_path / "wl.watchlist"
    result = _run("enroll", enrol_folder, "--watchlist", wl_path, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    by_name = {Path(r["path"]).name: r for r in out["results"]}
    assert by_name["a.jpg"]["accepted"] and by_name["b.jpg"]["accepted"]
    assert by_name["crop.jpg"]["accepted"], by_name["crop.jpg"]  # tight crop, padded
    assert by_name["cup.png"]["reason"].startswith("no_face")
    assert by_name["broken.jpg"]["reason"].startswith("unreadable")
    assert "truncated" in by_name["broken.jpg"]["reason"]
    assert by_name["group.jpg"]["reason"].startswith("multiple_faces")
    assert out["accepted"] == 3 and out["rejected"] == 3
    assert out["subjects"] == 2 and out["templates"] == 3

    wl = Watchlist.load(wl_path)
    assert set(wl.subjects) == {"obama", "joe_biden"}
    assert wl.subjects["joe_biden"].display_name == "joe biden"
    assert len(wl.subjects["obama"].references) == 2


def test_enrol_single_image_extends_the_file_and_skips_duplicates(face_images, tmp_path):
    wl_path = tmp_path / "wl.watchlist"
    first = _run("enroll", face_images["obama"], "--watchlist", wl_path, "--subject", "p1",
                 "--name", "Barack Obama", "--meta", "case=A-1", "--json")
    assert first.exit_code == 0, first.output
    second = _run("enroll", face_images["biden"], "--watchlist", wl_path, "--subject", "p2",
                  "--json")
    assert second.exit_code == 0, second.output
    again = _run("enroll", face_images["obama"], "--watchlist", wl_path, "--subject", "p1",
                 "--json")
    assert again.exit_code == 1
    assert json.loads(again.stdout)["results"][0]["reason"].startswith("duplicate")
    wl = Watchlist.load(wl_path)
    assert wl.subjects["p1"].display_name == "Barack Obama"
    assert wl.subjects["p1"].metadata == {"case": "A-1"}
    assert wl.subject_count == 2 and len(wl) == 2


def test_identify_finds_the_enrolled_person_and_not_others(face_images, tmp_path):
    wl_path = tmp_path / "wl.watchlist"
    assert _run("enroll", face_images["obama"], "--watchlist", wl_path,
                "--subject", "obama").exit_code == 0
    hit = _run("identify", face_images["obama3"], "--watchlist", wl_path, "--json")
    assert hit.exit_code == 0, hit.output
    out = json.loads(hit.stdout)
    assert len(out["faces"]) == 1
    face = out["faces"][0]
    assert face["match"] == "obama" and face["above_threshold"]
    assert face["candidates"][0]["score"] > out["threshold"]
    assert face["quality"]["ok"] is True
    assert len(face["box"]) == 4

    miss = json.loads(_run("identify", face_images["biden"], "--watchlist", wl_path,
                           "--json").stdout)
    assert miss["faces"][0]["match"] is None
    assert miss["faces"][0]["candidates"][0]["score"] < miss["threshold"]

    crowd = json.loads(_run("identify", face_images["group"], "--watchlist", wl_path,
                            "--json").stdout)
    assert len(crowd["faces"]) == 6
    assert all(f["match"] is None for f in crowd["faces"])

    table = _run("identify", face_images["obama2"], "--watchlist", wl_path)
    assert table.exit_code == 0 and "possible match" in table.output


def test_threshold_option_changes_the_decision(face_images, tmp_path):
    wl_path = tmp_path / "wl.watchlist"
    _run("enroll", face_images["obama"], "--watchlist", wl_path, "--subject", "obama")
    strict = json.loads(_run("identify", face_images["obama2"], "--watchlist", wl_path,
                             "--threshold", "0.99", "--json").stdout)
    assert strict["threshold"] == 0.99
    assert strict["faces"][0]["match"] is None
    bad = _run("identify", face_images["obama2"], "--watchlist", wl_path, "--threshold", "7")
    assert bad.exit_code == 2 and "threshold" in bad.output


def test_clear_errors_without_tracebacks(face_images, truncated_path, tmp_path):
    wl_path = tmp_path / "wl.watchlist"
    missing = _run("enroll", tmp_path / "nope", "--watchlist", wl_path)
    assert missing.exit_code == 2 and "no such file" in missing.output
    assert _run("enroll", face_images["obama"], "--watchlist", wl_path).exit_code == 0
    broken = _run("identify", truncated_path, "--watchlist", wl_path)
    assert broken.exit_code == 2 and "truncated" in broken.output
    not_a_watchlist = tmp_path / "fake.watchlist"
    not_a_watchlist.write_text("hello")
    res = _run("identify", face_images["obama"], "--watchlist", not_a_watchlist)
    assert res.exit_code == 2 and str(not_a_watchlist) in res.output
    for res in (missing, broken):
        assert "Traceback" not in res.output
    # A failed enrolment leaves an existing watchlist as it was.
    before = wl_path.read_bytes()
    assert _run("enroll", truncated_path, "--watchlist", wl_path, "--subject", "x").exit_code == 1
    assert wl_path.read_bytes() == before


@pytest.mark.dlib
def test_dlib_backend_watchlist_is_not_mixed_with_sface(face_images, tmp_path):
    wl_path = tmp_path / "dlib.watchlist"
    made = _run("enroll", face_images["obama"], "--watchlist", wl_path, "--subject", "obama",
                "--backend", "dlib", "--json")
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["model_id"].startswith("dlib")
    clash = _run("enroll", face_images["biden"], "--watchlist", wl_path, "--subject", "biden",
                 "--backend", "sface")
    assert clash.exit_code == 2 and "dlib" in clash.output
    hit = json.loads(_run("identify", face_images["obama2"], "--watchlist", wl_path,
                          "--json").stdout)
    assert hit["faces"][0]["match"] == "obama"
    miss = json.loads(_run("identify", face_images["biden"], "--watchlist", wl_path,
                           "--json").stdout)
    assert miss["faces"][0]["match"] is None


def test_a_watchlist_of_another_sface_variant_is_refused(face_images, tmp_path):
    """Flip-averaged SFace templates are a different model id: no silent mixing."""
    import numpy as np

    from openlfr.watchlist import Reference

    wl = Watchlist(model_id="sface-2021dec-int8bq+flip", dim=128)
    wl.ensure_subject("x")
    vector = np.ones(128, np.float32) / np.sqrt(128)
    wl.add_reference("x", Reference(id="x/1"), vector)
    path = tmp_path / "flip.watchlist"
    wl.save(path)
    res = _run("identify", face_images["obama"], "--watchlist", path)
    assert res.exit_code == 2
    assert "sface-2021dec-int8bq+flip" in res.output and "not comparable" in res.output


def test_watchlist_show_and_remove(face_images, tmp_path):
    wl_path = tmp_path / "wl.watchlist"
    _run("enroll", face_images["obama"], "--watchlist", wl_path, "--subject", "p1",
         "--meta", "case=A-1")
    _run("enroll", face_images["obama2"], "--watchlist", wl_path, "--subject", "p1")
    _run("enroll", face_images["biden"], "--watchlist", wl_path, "--subject", "p2")
    shown = json.loads(_run("watchlist", "show", wl_path, "--json").stdout)
    assert [s["id"] for s in shown["subjects"]] == ["p1", "p2"]
    assert len(shown["subjects"][0]["references"]) == 2
    assert shown["subjects"][0]["metadata"] == {"case": "A-1"}
    assert "vector" not in json.dumps(shown) and shown["templates"] == 3

    bad = _run("watchlist", "remove", wl_path, "p1", "nobody")
    assert bad.exit_code == 2 and "nobody" in bad.output
    assert Watchlist.load(wl_path).subject_count == 2  # nothing changed

    gone = json.loads(_run("watchlist", "remove", wl_path, "p1", "--json").stdout)
    assert gone["removed"] == {"p1": 2} and gone["templates"] == 1
    after = json.loads(_run("identify", face_images["obama3"], "--watchlist", wl_path,
                            "--json").stdout)
    assert after["faces"][0]["match"] is None
    assert [c["subject"] for c in after["faces"][0]["candidates"]] == ["p2"]


def test_enroll_flip_averages_the_mirror_image_into_the_same_models_template(face_images,
                                                                               tmp_path):
    import numpy as np

    plain_path, flip_path = tmp_path / "plain.watchlist", tmp_path / "flip.watchlist"
    for path, extra in ((plain_path, []), (flip_path, ["--flip"])):
        result = _run("enroll", face_images["obama"], "--watchlist", path, "--subject", "p1",
                      "--json", *extra)
        assert result.exit_code == 0, result.output
    plain, flipped = Watchlist.load(plain_path), Watchlist.load(flip_path)
    assert plain.model_id == flipped.model_id  # comparable with live templates
    (a,), (b,) = plain.templates.values(), flipped.templates.values()
    assert not np.allclose(a, b, atol=1e-3) and float(a @ b) > 0.9
