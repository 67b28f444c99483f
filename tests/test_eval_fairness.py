"""``openlfr eval fairness``: intervals and tests against scipy and hand counts, the UTKFace
name parser, pair counting, and small real runs on folders built from the fixture photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from typer.testing import CliRunner

from openlfr.cli import app
from openlfr.evaluation import stats
from openlfr.evaluation.fairness import (
    _index_to_pair,
    count_genuine,
    count_impostor_exhaustive,
    count_impostor_sampled,
)
from openlfr.evaluation.groups import age_band, load_groups, parse_utkface_name, scan_dataset
from tests.test_eval_identify import _put, _scaled

runner = CliRunner()
SFACE_T = 0.35  # the sface default threshold


# -- statistics ------------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "n"), [(0, 10), (1, 10), (5, 10), (10, 10), (3, 1000),
                                      (0, 200_000), (17, 123_456)])
def test_clopper_pearson_matches_scipy(k: int, n: int) -> None:
    ci = stats.clopper_pearson(k, n)
    ref = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert ci is not None
    assert ci[0] == pytest.approx(ref.low, abs=1e-12)
    assert ci[1] == pytest.approx(ref.high, rel=1e-9)


def test_clopper_pearson_by_hand() -> None:
    # k = 0: the upper bound solves (1-p)^n = 0.025, i.e. 1 - 0.025^(1/n).
    lo, hi = stats.clopper_pearson(0, 10)  # type: ignore[misc]
    assert lo == 0.0
    assert hi == pytest.approx(1 - 0.025 ** (1 / 10))
    lo, hi = stats.clopper_pearson(10, 10)  # type: ignore[misc]
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 10))
    assert stats.clopper_pearson(0, 0) is None
    assert stats.rate(0, 0) is None
    with pytest.raises(ValueError):
        stats.clopper_pearson(5, 4)


def test_rate_ratio() -> None:
    r = stats.rate_ratio({"a": (10, 1000), "b": (2, 1000), "c": (0, 0)})
    assert r.value == pytest.approx(5.0)
    assert (r.highest, r.lowest) == ("a", "b")
    hi_a = stats.clopper_pearson(10, 1000)[1]  # type: ignore[index]
    hi_b = stats.clopper_pearson(2, 1000)[1]  # type: ignore[index]
    assert r.upper_bounds_ratio == pytest.approx(hi_a / hi_b)
    zero = stats.rate_ratio({"a": (10, 1000), "b": (0, 1000)})
    assert zero.value is None and "infinite" in zero.note
    assert zero.at_least == pytest.approx(0.01 / (1 - 0.025 ** (1 / 1000)))
    none = stats.rate_ratio({"a": (0, 100), "b": (0, 50)})
    assert none.value is None and "0/0" in none.note
    assert stats.rate_ratio({"a": (1, 10)}).value is None


def test_homogeneity_tests_match_scipy() -> None:
    counts = [(30, 1000), (50, 1000), (20, 1000)]
    t = stats.homogeneity_test(counts)
    chi2, p, _, _ = sps.chi2_contingency([[30, 970], [50, 950], [20, 980]])
    assert t.test == "chi2" and t.p_value == pytest.approx(p) and t.statistic == pytest.approx(chi2)
    assert t.significant is True
    small = stats.homogeneity_test([(0, 50), (4, 50)])
    assert small.test == "fisher"
    assert small.p_value == pytest.approx(sps.fisher_exact([[0, 50], [4, 46]])[1])
    same = stats.homogeneity_test([(10, 1000), (10, 1000)])
    assert same.test == "chi2" and same.significant is False
    nothing = stats.homogeneity_test([(0, 100), (0, 200)])
    assert nothing.test == "none" and nothing.significant is False
    assert stats.homogeneity_test([(1, 10)]).significant is None


# -- UTKFace names -----------------------------------------------------------------------------


def test_utkface_parser() -> None:
    assert parse_utkface_name("25_0_1_20170116174525125.jpg.chip.jpg") == {
        "age": "18-29", "gender": "male", "race": "Black"}
    assert parse_utkface_name("some/dir/70_1_2_20170110.jpg.chip.jpg") == {
        "age": "60+", "gender": "female", "race": "Asian"}
    assert parse_utkface_name("3_1_4_2017.jpg")["age"] == "0-17"  # type: ignore[index]
    # Malformed: a missing field, an out-of-range code, not a number.
    for bad in ("39_1_20170116174525125.jpg.chip.jpg", "61_1_20170109150557335.jpg.chip.jpg",
                "25_2_0_2017.jpg", "25_0_5_2017.jpg", "x_0_0_2017.jpg", "readme.txt",
                "25__0_2017.jpg", "999_0_0_2017.jpg"):
        assert parse_utkface_name(bad) is None, bad
    assert [age_band(a) for a in (0, 17, 18, 29, 30, 44, 45, 59, 60, 101)] == [
        "0-17", "0-17", "18-29", "18-29", "30-44", "30-44", "45-59", "45-59", "60+", "60+"]


# -- pair counting ---------------------------------------------------------------------------


def _random_unit(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_pair_counts_by_loops() -> None:
    x = _random_unit(30)
    ident = np.array([i // 3 for i in range(30)])  # 10 identities of 3 images
    imp = count_impostor_exhaustive(x, ident, 0.1)
    gen = count_genuine(x, ident, 0.1)
    exp_imp = exp_fm = exp_gen = exp_fnm = 0
    for i in range(30):
        for j in range(i + 1, 30):
            s = float(x[i] @ x[j])
            if ident[i] == ident[j]:
                exp_gen += 1
                exp_fnm += s < 0.1
            else:
                exp_imp += 1
                exp_fm += s >= 0.1
    assert (imp.pairs, imp.errors) == (exp_imp, exp_fm) == (435 - 30, exp_fm)
    assert (gen.pairs, gen.errors) == (exp_gen, exp_fnm)
    assert not imp.sampled


def test_sampled_pairs_are_distinct_impostors() -> None:
    n = 50
    k = np.arange(n * (n - 1) // 2)
    i, j = _index_to_pair(k, n)
    assert np.all(i < j) and len(set(zip(i.tolist(), j.tolist(), strict=True))) == len(k)
    x = _random_unit(n, seed=1)
    ident = np.array([i // 2 for i in range(n)])
    a = count_impostor_sampled(x, ident, 0.0, 300, np.random.default_rng(5))
    b = count_impostor_sampled(x, ident, 0.0, 300, np.random.default_rng(5))
    assert a == b and a.pairs == 300 and a.available == n * (n - 1) // 2 - 25 and a.sampled
    assert all(type(v) is int for v in (a.errors, a.pairs, a.available))  # JSON-serialisable
    # Roughly half of random pairs have a positive cosine.
    assert 0.3 < a.errors / a.pairs < 0.7


# -- datasets and groups -------------------------------------------------------------------------


def test_eval_fairness_json(people_dir: Path, groups_csv: Path, tmp_path: Path) -> None:
    html_path = tmp_path / "report.html"
    plot = tmp_path / "fmr.png"
    result = runner.invoke(app, ["eval", "fairness", "-d", str(people_dir), "--groups",
                                 str(groups_csv), "--threshold", str(SFACE_T), "--json",
                                 "--no-progress", "--report", str(html_path), "--plot",
                                 str(plot)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out["groups"]) == {"gender", "tone"}
    male, female = out["groups"]["gender"]["M"], out["groups"]["gender"]["F"]
    # M: obama x3, biden, p0, p1 = 6 images: C(6,2) - C(3,2) impostor pairs, 3 genuine.
    assert (male["n_impostor"], male["n_genuine"]) == (12, 3)
    assert (female["n_impostor"], female["n_genuine"]) == (6, 0)
    assert female["fnmr"] is None and female["fnmr_ci"] is None
    assert male["fnmr"] == 0.0  # the three Obama photos match each other
    for g in (male, female):
        assert set(g) >= {"fmr", "fmr_ci", "fnmr", "fnmr_ci", "n_impostor", "n_genuine"}
        lo, hi = g["fmr_ci"]
        assert lo <= g["fmr"] <= hi
    assert set(out["fmr_ratio"]) == {"gender", "tone"}
    assert set(out["significant"]) == {"gender", "tone"}
    assert set(out["p_value"]) == {"gender", "tone"}
    assert out["no_face_images"] == 0  # coffee has no label: not embedded
    assert out["unlabelled_images"]["gender"] == 1
    text = html_path.read_text()
    assert "data:image/png;base64," in text and "in 10,000 comparisons" in text
    assert plot.stat().st_size > 1000


def test_eval_fairness_one_attribute_and_table(people_dir: Path, groups_csv: Path) -> None:
    result = runner.invoke(app, ["eval", "fairness", "-d", str(people_dir), "-g",
                                 str(groups_csv), "-t", "0.3", "-a", "tone", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "tone" in result.output and "gender" not in result.output
    assert "in 10,000 comparisons" in result.output


def test_eval_fairness_utkface_flat(face_images: dict[str, Path], no_face_path: Path,
                                    tmp_path: Path) -> None:
    root = tmp_path / "utk"
    names = {"obama": "50_0_1_2017010101.jpg.chip.jpg", "obama2": "51_0_1_2017010102.jpg.chip.jpg",
             "biden": "70_0_0_2017010103.jpg.chip.jpg", "obama3": "52_0_1_2017010104.jpg.chip.jpg"}
    for key, name in names.items():
        _put(root / name, _scaled(face_images[key]))
    _put(root / "61_1_2017010105.jpg.chip.jpg", _scaled(face_images["biden"]))  # lacks a field
    _put(root / "30_1_0_2017010106.jpg.chip.jpg", _scaled(no_face_path))
    ds = scan_dataset(root)
    assert not ds.has_identities and len(ds.images) == 6
    groups = load_groups("utkface", ds)
    assert groups.skipped == 1
    result = runner.invoke(app, ["eval", "fairness", "-d", str(root), "-g", "utkface", "-t",
                                 str(SFACE_T), "--json", "--no-progress"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["no_face_images"] == 1
    black = out["groups"]["race"]["Black"]
    # Three photos of one man taken as three people: the flat folder has no identity labels.
    assert black["n_impostor"] == 3 and black["n_genuine"] == 0
    assert black["fmr"] == 1.0
    assert out["groups"]["race"]["White"]["fmr"] is None  # one image: no pairs
    assert any("lack a UTKFace field" in n for n in out["notes"])


def test_eval_fairness_errors(people_dir: Path, groups_csv: Path, tmp_path: Path) -> None:
    base = ["eval", "fairness", "-d", str(people_dir), "-t", "0.4", "--no-progress"]
    result = runner.invoke(app, [*base, "-g", str(tmp_path / "missing.csv")])
    assert result.exit_code == 2 and "no such file" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("name;gender\nobama;M\n")
    result = runner.invoke(app, [*base, "-g", str(bad)])
    assert result.exit_code == 2 and "header" in result.output
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("identity,gender\nobama,M,extra\n")
    result = runner.invoke(app, [*base, "-g", str(ragged)])
    assert result.exit_code == 2 and "line 2" in result.output
    result = runner.invoke(app, [*base, "-g", str(groups_csv), "-a", "age"])
    assert result.exit_code == 2 and "unknown attribute 'age'" in result.output
    nomatch = tmp_path / "nomatch.csv"
    nomatch.write_text("identity,gender\nnobody,M\n")
    result = runner.invoke(app, [*base, "-g", str(nomatch)])
    assert result.exit_code == 2 and "matches" in result.output
    result = runner.invoke(app, ["eval", "fairness", "-d", str(people_dir), "-g",
                                 str(groups_csv), "-t", "2", "--no-progress"])
    assert result.exit_code == 2 and "between -1 and 1" in result.output


def test_eval_fairness_sampled_pairs(people_dir: Path, groups_csv: Path) -> None:
    result = runner.invoke(app, ["eval", "fairness", "-d", str(people_dir), "-g",
                                 str(groups_csv), "-t", str(SFACE_T), "-a", "gender",
                                 "--max-pairs", "5", "--json", "--no-progress"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    male = out["groups"]["gender"]["M"]
    assert male["n_impostor"] == 5 and male["impostor_available"] == 12
    assert male["impostor_sampled"] is True
    assert isinstance(male["impostor_available"], int)
