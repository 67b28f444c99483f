"""``openlfr eval verify`` end to end on a tiny LFW-style dataset built from real photos."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from openlfr.cli import app
from openlfr.evaluation.verify import pick_face, run_verify
from openlfr.vision import Face

runner = CliRunner()

LFW_PAIRS = (
    "2\t2\n"
    # fold 1: everything scorable
    "Obama\t1\t2\n"
    "Obama\t1\t3\n"
    "Obama\t1\tBiden\t1\n"
    "Obama\t2\tAstronaut\t1\n"
    # fold 2: one matched and one mismatched pair with a no-face image
    "Obama\t2\t3\n"
    "Coffee\t1\t2\n"
    "Obama\t3\tBiden\t1\n"
    "Coffee\t1\tBiden\t1\n"
)


@pytest.fixture(scope="module")
def lfw_dir(
    tmp_path_factory: pytest.TempPathFactory,
    face_images: dict[str, Path],
    astronaut_path: Path,
    no_face_path: Path,
) -> Path:
    root = tmp_path_factory.mktemp("lfw")
    images = root / "images"

    def put(name: str, index: int, source: Path | np.ndarray) -> None:
        target = images / name / f"{name}_{index:04d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, Path):
            # Photos scaled down to at most 400 px (LFW images are 250x250): faster to decode.
            image = cv2.imread(str(source))
            assert image is not None
            scale = min(1.0, 400 / max(image.shape[:2]))
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            assert cv2.imwrite(str(target), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        else:
            # Lossless bytes under the .jpg name (images are identified by content): JPEG
            # artefacts on the coffee cup can make YuNet see a borderline "face" when padded.
            ok, buf = cv2.imencode(".png", source)
            assert ok
            target.write_bytes(buf.tobytes())

    put("Obama", 1, face_images["obama"])
    put("Obama", 2, face_images["obama2"])
    put("Obama", 3, face_images["obama3"])
    put("Biden", 1, face_images["biden"])
    put("Astronaut", 1, astronaut_path)
    coffee = cv2.imread(str(no_face_path))
    put("Coffee", 1, coffee)
    put("Coffee", 2, cv2.flip(coffee, 1))
    data = face_images["obama"].read_bytes()
    broken = images / "Broken" / "Broken_0001.jpg"
    broken.parent.mkdir()
    broken.write_bytes(data[: len(data) // 3])
    (root / "pairs.txt").write_text(LFW_PAIRS, encoding="utf-8")
    (root / "pairs.csv").write_text(
        "file_x,file_y,decision\n"
        "Obama/Obama_0001.jpg,Obama/Obama_0002.jpg,yes\n"
        "Obama/Obama_0001.jpg,Obama/Obama_0003.jpg,YES\n"
        "Obama/Obama_0002.jpg,Obama/Obama_0003.jpg,1\n"
        "Obama/Obama_0001.jpg,Biden/Biden_0001.jpg,no\n"
        "Obama/Obama_0002.jpg,Biden/Biden_0001.jpg,False\n"
        "Obama/Obama_0003.jpg,Astronaut/Astronaut_0001.jpg,0\n"
        "Biden/Biden_0001.jpg,Astronaut/Astronaut_0001.jpg,no\n",
        encoding="utf-8",
    )
    return root


def _verify_json(*args: str) -> dict[str, object]:
    result = runner.invoke(app, ["eval", "verify", "--json", "--no-progress", *args])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    lines = [ln for ln in result.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stdout  # exactly one JSON object on stdout
    return json.loads(lines[0])


REQUIRED_KEYS = {
    "backend", "model_id", "pairs", "failed_images", "failed_pairs", "accuracy",
    "accuracy_std", "auc", "eer", "threshold", "tar_at_far", "folds", "seconds",
}


def test_verify_lfw_format_with_failed_images(lfw_dir: Path, tmp_path: Path) -> None:
    plot = tmp_path / "roc.png"
    out = _verify_json("--dataset", str(lfw_dir / "images"), "--pairs",
                       str(lfw_dir / "pairs.txt"), "--backend", "sface", "--plot", str(plot))
    assert out.keys() >= REQUIRED_KEYS
    assert out["backend"] == "sface"
    assert str(out["model_id"]).startswith("sface")
    assert out["pairs"] == 8
    assert out["folds"] == 2
    assert set(out["tar_at_far"]) == {"0.01", "0.001"}  # type: ignore[arg-type]
    failed = {f["path"]: f["reason"] for f in out["failed_images"]}  # type: ignore[union-attr]
    assert set(failed) == {"Coffee/Coffee_0001.jpg", "Coffee/Coffee_0002.jpg"}
    assert all("no face" in r for r in failed.values())
    assert out["failed_pairs"] == 2
    # every scored pair is right; the two failed pairs (both in fold 2) are errors
    folds = {f["fold"]: f for f in out["per_fold"]}  # type: ignore[union-attr]
    assert folds[1]["accuracy"] == 1.0
    assert folds[2]["accuracy"] == 0.5
    assert folds[2]["failed_pairs"] == 2
    assert out["accuracy"] == pytest.approx(0.75)
    assert out["auc"] == 1.0
    assert out["eer"] == 0.0
    assert 0.0 < float(out["threshold"]) < 1.0  # type: ignore[arg-type]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out["plot"] == str(plot)


def test_verify_csv_format_and_unreadable_image(lfw_dir: Path, tmp_path: Path) -> None:
    out = _verify_json("-d", str(lfw_dir / "images"), "-p", str(lfw_dir / "pairs.csv"),
                       "--scores")
    assert out["pairs"] == 7
    assert out["failed_images"] == []
    assert out["failed_pairs"] == 0
    assert out["accuracy"] == 1.0
    assert out["auc"] == 1.0
    assert out["folds"] == 7
    scores = out["scores"]
    assert isinstance(scores, list) and len(scores) == 7
    same = [s["score"] for s in scores if s["same"]]
    diff = [s["score"] for s in scores if not s["same"]]
    assert min(same) > max(diff)

    csv = tmp_path / "with_broken.csv"
    csv.write_text(
        (lfw_dir / "pairs.csv").read_text()
        + "Broken/Broken_0001.jpg,Obama/Obama_0001.jpg,yes\n"
        + "Missing/Missing_0001.jpg,Biden/Biden_0001.jpg,no\n",
        encoding="utf-8",
    )
    out = _verify_json("-d", str(lfw_dir / "images"), "-p", str(csv))
    failed = {f["path"]: f["reason"] for f in out["failed_images"]}  # type: ignore[union-attr]
    assert set(failed) == {"Broken/Broken_0001.jpg", "Missing/Missing_0001.jpg"}
    assert failed["Broken/Broken_0001.jpg"].startswith("unreadable")
    assert "no such file" in failed["Missing/Missing_0001.jpg"]
    assert out["failed_pairs"] == 2
    assert out["accuracy"] == pytest.approx(7 / 9)  # 9 folds of one pair, two always wrong


def test_verify_table_output(lfw_dir: Path) -> None:
    result = runner.invoke(app, ["eval", "verify", "-d", str(lfw_dir / "images"),
                                 "-p", str(lfw_dir / "pairs.txt"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout
    assert "Coffee/Coffee_0001.jpg" in result.stdout
    assert "TAR @ FAR" in result.stdout


@pytest.mark.parametrize(
    ("pairs_text", "message"),
    [
        ("1\t1\nObama\tone\t3\nObama\t1\tBiden\t1\n", "pairs.txt:2"),
        ("2\t2\nObama\t1\t2\nObama\t1\t3\n", "pairs.txt:3"),
        ("1\t1\nObama\t1\t2\nObama\t1\t3\n", "pairs.txt:3"),
        ("file_x,file_y,decision\nObama/Obama_0001.jpg,Obama/Obama_0002.jpg,perhaps\n",
         "pairs.txt:2"),
        ("this is not a pairs file\n", "pairs.txt:1"),
    ],
)
def test_malformed_pairs_file_exits_2(lfw_dir: Path, tmp_path: Path, pairs_text: str,
                                      message: str) -> None:
    bad = tmp_path / "pairs.txt"
    bad.write_text(pairs_text, encoding="utf-8")
    result = runner.invoke(app, ["eval", "verify", "--json", "-d", str(lfw_dir / "images"),
                                 "-p", str(bad)])
    assert result.exit_code == 2
    assert result.stdout == ""
    err = " ".join(result.stderr.split())  # Rich may wrap long lines
    assert "error:" in err
    assert message in err.replace(" ", "") or message in err
    assert "Traceback" not in result.output + result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-d", "{root}/nope", "-p", "{root}/pairs.txt"], "no such directory"),
        (["-d", "{root}/images", "-p", "{root}/absent.txt"], "no such file"),
        (["-d", "{root}/images", "-p", "{root}/pairs.txt", "-b", "nope"], "unknown backend"),
        (["-d", "{root}", "-p", "{root}/pairs.txt"], "no pair could be scored"),
        (["-d", "{root}/images", "-p", "{root}/pairs.txt", "--plot", "{root}/no/dir/x.png"],
         "does not exist"),
    ],
)
def test_user_errors_exit_2(lfw_dir: Path, args: list[str], message: str) -> None:
    argv = [a.format(root=lfw_dir) for a in args]
    result = runner.invoke(app, ["eval", "verify", "--no-progress", *argv])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output + result.stderr


def test_only_one_class_is_a_clear_error(lfw_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "same.csv"
    bad.write_text("file_x,file_y,decision\nObama/Obama_0001.jpg,Obama/Obama_0002.jpg,yes\n")
    result = runner.invoke(app, ["eval", "verify", "-d", str(lfw_dir / "images"),
                                 "-p", str(bad)])
    assert result.exit_code == 2
    assert "mismatched" in result.stderr


def test_report_keeps_scores_for_plotting(lfw_dir: Path) -> None:
    report = run_verify(lfw_dir / "images", lfw_dir / "pairs.txt", "sface", progress=False)
    s, y = report.score_arrays()
    assert s.shape == y.shape == (8,)
    assert int(np.isnan(s).sum()) == report.failed_pairs == 2
    assert y.tolist() == [True, True, False, False] * 2
    d = report.to_dict()
    assert "scores" not in d
    assert len(report.to_dict(include_scores=True)["scores"]) == 8
    json.dumps(d, allow_nan=False)


def _face(x: float, y: float, w: float, h: float) -> Face:
    return Face((x, y, w, h), np.zeros((5, 2), dtype=np.float32), 0.9)


def test_pick_face_prefers_central_and_large() -> None:
    shape = (250, 250, 3)
    central = _face(75, 75, 100, 100)
    corner = _face(0, 0, 120, 120)  # larger but off-centre
    small = _face(112, 112, 20, 20)  # a bystander's small face, also near the centre
    assert pick_face([corner, central], shape) is central
    assert pick_face([corner, small, central], shape) is central
    assert pick_face([], shape) is None
    # a big face slightly off-centre beats a small one a little nearer the centre
    big = _face(60, 50, 120, 120)
    small = _face(110, 110, 24, 24)
    assert pick_face([small, big], shape) is big


def test_missing_dlib_is_a_clear_error(lfw_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from openlfr.evaluation import verify as verify_module
    from openlfr.vision import engine as engine_module
    from openlfr.vision import registry

    monkeypatch.setitem(sys.modules, "dlib", None)  # "import dlib" now raises ImportError
    # bypass the per-process engine cache, which may already hold a dlib engine
    monkeypatch.setattr(verify_module, "get_engine",
                        lambda name: engine_module.build_engine(registry.backend_spec(name)))
    result = runner.invoke(app, ["eval", "verify", "-d", str(lfw_dir / "images"),
                                 "-p", str(lfw_dir / "pairs.csv"), "-b", "dlib"])
    assert result.exit_code == 2
    assert "openlfr[dlib]" in " ".join(result.stderr.split())
    assert "Traceback" not in result.output + result.stderr


@pytest.mark.dlib
def test_verify_dlib_backend(lfw_dir: Path) -> None:
    pytest.importorskip("dlib")
    out = _verify_json("-d", str(lfw_dir / "images"), "-p", str(lfw_dir / "pairs.csv"),
                       "-b", "dlib")
    assert out["backend"] == "dlib"
    assert str(out["model_id"]).startswith("dlib")
    assert out["accuracy"] == 1.0
    assert out["failed_images"] == []
