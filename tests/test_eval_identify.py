"""``openlfr eval identify``: FNIR/FPIR arithmetic by hand, the template cache, and a small real
run on identity folders built from the fixture photos."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from openlfr.cli import app
from openlfr.errors import InvalidInput
from openlfr.evaluation.groups import scan_dataset
from openlfr.evaluation.identify import (
    choose_enrolled,
    det_curve,
    fpir_fnir_at,
    parse_sizes,
    threshold_at_fpir,
)
from openlfr.evaluation.templates import TemplateCache, embed_paths
from openlfr.vision import get_engine

runner = CliRunner()


def _put(target: Path, image: np.ndarray) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", image)
    assert ok
    target.write_bytes(buf.tobytes())


def _scaled(path: Path, side: int = 400) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None
    scale = min(1.0, side / max(image.shape[:2]))
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def build_people(root: Path, face_images: dict[str, Path], no_face_path: Path) -> Path:
    """obama/ (3 images), biden/ (1), p0..p5/ (a crop each from the group photo), and coffee/
    (a photo without a face)."""
    for i, name in enumerate(("obama", "obama2", "obama3"), start=1):
        _put(root / "obama" / f"obama_{i}.png", _scaled(face_images[name]))
    _put(root / "biden" / "biden_1.png", _scaled(face_images["biden"]))
    group = cv2.imread(str(face_images["group"]))
    assert group is not None
    faces = get_engine("sface").detect(group)
    assert len(faces) == 6
    for k, face in enumerate(sorted(faces, key=lambda f: f.box[0])):
        x, y, w, h = (int(v) for v in face.box)
        m = int(0.6 * max(w, h))
        crop = group[max(0, y - m): y + h + m, max(0, x - m): x + w + m]
        _put(root / f"p{k}" / f"p{k}_1.png", crop)
    _put(root / "coffee" / "coffee_1.png", _scaled(no_face_path))
    return root


# -- arithmetic ------------------------------------------------------------------------------


def test_threshold_at_fpir_by_hand() -> None:
    nm = np.array([0.9, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.0, -0.1, -0.2])
    # FPIR 0.1 of 10 searches: one may exceed; the threshold excludes the second highest.
    t = threshold_at_fpir(nm, 0.1)
    assert t is not None and 0.5 < t <= 0.9
    assert np.mean(nm >= t) == pytest.approx(0.1)
    # 0.01 needs 100 non-mated searches.
    assert threshold_at_fpir(nm, 0.01) is None
    assert threshold_at_fpir(np.empty(0), 0.1) is None
    # Ties: never exceed the target.
    tied = np.array([0.7, 0.7, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    t = threshold_at_fpir(tied, 0.1)
    assert t is not None and np.mean(tied >= t) <= 0.1


def test_fpir_fnir_and_det_by_hand() -> None:
    nm = np.array([0.6, 0.2, 0.1, 0.0])
    # Mated: 0.8 and 0.5 correct at rank 1, the third wrong at rank 1 (-inf).
    hit = np.array([0.8, 0.5, -np.inf])
    fpir, fnir = fpir_fnir_at(nm, hit, 0.4)
    assert fpir == pytest.approx(0.25)
    assert fnir == pytest.approx(1 / 3)
    fp, fn = det_curve(nm, hit)
    assert fp[0] == pytest.approx(0.0) and fn[0] == pytest.approx(2 / 3)  # threshold 0.8
    assert fp[-1] == pytest.approx(1.0) and fn[-1] == pytest.approx(1 / 3)
    assert np.all(np.diff(fp) >= 0) and np.all(np.diff(fn) <= 0)


def test_parse_sizes_and_choice() -> None:
    assert parse_sizes("1000, 100,100") == [100, 1000]
    with pytest.raises(InvalidInput):
        parse_sizes("10,x")
    with pytest.raises(InvalidInput):
        parse_sizes("0")
    usable = {"a": [0, 1], "b": [2], "c": [3, 4], "d": [5]}
    two = choose_enrolled(usable, 2, seed=3)
    assert set(two) == {"a", "c"}  # identities with mated probes first
    assert choose_enrolled(usable, 3, seed=3) == choose_enrolled(usable, 3, seed=3)
    with pytest.raises(InvalidInput, match="larger"):
        choose_enrolled(usable, 5, seed=0)


def test_template_cache_resumes(people_dir: Path, tmp_path: Path) -> None:
    engine = get_engine("sface")
    ds = scan_dataset(people_dir)
    paths = ds.images[:4]
    first = embed_paths(engine, people_dir, paths, cache_dir=tmp_path / "c", progress=False)
    assert first.cached == 0
    cache = TemplateCache(tmp_path / "c", engine.model_id)
    assert len(cache) == 4
    again = embed_paths(engine, people_dir, paths, cache_dir=tmp_path / "c", progress=False)
    assert again.cached == 4
    np.testing.assert_allclose(again.vectors, first.vectors, atol=1e-6)
    assert [f.path for f in again.failed] == [f.path for f in first.failed]
    assert not list((tmp_path / "c").glob(".tmp-*"))


# -- the command -----------------------------------------------------------------------------


def test_eval_identify_json(people_dir: Path, tmp_path: Path) -> None:
    plot = tmp_path / "det.png"
    result = runner.invoke(app, ["eval", "identify", "--dataset", str(people_dir),
                                 "--gallery-sizes", "2,4", "--json", "--no-progress",
                                 "--seed", "1", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["backend"] == "sface"
    assert out["no_face_images"] >= 1
    assert [r["gallery_size"] for r in out["results"]] == [2, 4]
    for r in out["results"]:
        assert set(r) >= {"gallery_size", "mated_searches", "nonmated_searches",
                          "no_face_images", "rank1", "fnir_at_fpir", "fpir_at_default",
                          "tpir_at_default"}
        assert set(r["fnir_at_fpir"]) == {"0.1", "0.01", "0.001"}
        assert r["no_face_images"] >= 1
        # obama is the only identity with several images: always enrolled, 2 mated searches.
        assert r["mated_searches"] == 2
        assert r["rank1"] == 1.0
        # 8 usable identities (obama, biden, p0..p5) with 10 usable images.
        assert r["nonmated_searches"] == 10 - 2 - r["gallery_size"]
        # Fewer than 100 non-mated searches: FPIR 0.01 and 0.001 are not resolvable.
        assert r["fnir_at_fpir"]["0.01"] is None and r["fnir_at_fpir"]["0.001"] is None
        assert any("0.001" in n for n in r["notes"])
        assert r["tpir_at_default"] == 1.0
        assert 0.0 <= r["fpir_at_default"] <= 1.0
    assert plot.exists() and plot.stat().st_size > 1000


def test_eval_identify_table(people_dir: Path) -> None:
    result = runner.invoke(app, ["eval", "identify", "-d", str(people_dir),
                                 "--gallery-sizes", "3", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "FNIR" in result.output and "no face" in result.output


def test_eval_identify_too_large(people_dir: Path) -> None:
    result = runner.invoke(app, ["eval", "identify", "-d", str(people_dir),
                                 "--gallery-sizes", "100", "--no-progress"])
    assert result.exit_code == 2
    assert "larger than" in result.output


def test_eval_identify_bad_input(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "identify", "-d", str(tmp_path / "nope"),
                                 "--gallery-sizes", "2"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["eval", "identify", "-d", str(tmp_path),
                                 "--gallery-sizes", "two"])
    assert result.exit_code == 2


# -- enrolment image: best quality ------------------------------------------------------------


def test_enrolment_image_is_the_best_quality_one(people_dir: Path, tmp_path: Path) -> None:
    from openlfr.evaluation.identify import enrolment_image, quality_weights

    # a blurred, shrunk copy of a good photo: the same person, a poor enrolment photo
    root = tmp_path / "people"
    good = cv2.imread(str(people_dir / "obama" / "obama_2.png"))
    small = cv2.resize(good, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)
    _put(root / "obama" / "obama_1.png", cv2.GaussianBlur(small, (7, 7), 0))
    _put(root / "obama" / "obama_2.png", good)
    ds = scan_dataset(root)
    weights = quality_weights(get_engine("sface"), ds, [0, 1])
    assert 0 <= weights[0] < weights[1]
    assert enrolment_image([0, 1], weights) == 1  # the better photo, though second by name
    assert enrolment_image([0, 1], None) == 0  # "first": name order
    assert enrolment_image([0, 1], {0: 0.5, 1: 0.5}) == 0  # ties: name order
    for choice in ("best", "first"):
        result = runner.invoke(app, ["eval", "identify", "-d", str(people_dir), "--json",
                                     "--gallery-sizes", "2", "--no-progress",
                                     "--enrol-image", choice])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["enrol_image"] == choice
    result = runner.invoke(app, ["eval", "identify", "-d", str(people_dir), "--no-progress",
                                 "--gallery-sizes", "2", "--enrol-image", "worst"])
    assert result.exit_code == 2 and "worst" in result.output
