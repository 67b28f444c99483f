"""``openlfr calibrate``: FPIR-at-size arithmetic by hand, curves against scikit-learn and scipy,
the floor search on synthetic scores with known answers, and a real-face run through the CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_curve
from typer.testing import CliRunner

from openlfr.audit.entry import GENESIS, build_entry
from openlfr.cli import app
from openlfr.cli import calibrate as cli_calibrate
from openlfr.errors import InvalidInput
from openlfr.evaluation import calibrate as cal
from openlfr.evaluation import report as rp
from openlfr.evaluation import stats

runner = CliRunner()


# -- arithmetic -------------------------------------------------------------------------------


def test_dec_is_a_plain_decimal_string() -> None:
    assert cal.dec(0.48) == "0.48"
    assert cal.dec(1 / 6000) == "0.000166667"
    assert cal.dec(1.234e-9) == "0.000000001234"
    assert cal.dec(0.0) == "0" and cal.dec(-0.0) == "0"
    assert cal.dec(12345.678, 4) == "12350"
    with pytest.raises(ValueError):
        cal.dec(float("nan"))


def test_fpir_model_by_hand() -> None:
    # One comparison: FPIR = FMR. Two: 1 - (1 - p)^2.
    assert rp.fpir_model(0.1, 1) == pytest.approx(0.1)
    assert rp.fpir_model(0.1, 2) == pytest.approx(1 - 0.9 ** 2)
    assert rp.fpir_model(0.0, 10**6) == 0.0
    assert rp.fpir_model(1e-7, 1000) == pytest.approx(1 - (1 - 1e-7) ** 1000, rel=1e-9)
    # The inverse: the pairwise rate that gives the target at N.
    p = cal.pair_fmr_for(1 / 6000, 1000)
    assert p == pytest.approx(1 - (1 - 1 / 6000) ** (1 / 1000), rel=1e-9)
    assert rp.fpir_model(p, 1000) == pytest.approx(1 / 6000, rel=1e-9)
    assert p == pytest.approx(1 / 6000 / 1000, rel=1e-3)


def test_fmr_curve_matches_sklearn_roc() -> None:
    rng = np.random.default_rng(3)
    imp = rng.normal(0.1, 0.1, 500)
    gen = rng.normal(0.6, 0.1, 200)
    y = np.r_[np.zeros(len(imp)), np.ones(len(gen))]
    fpr, _tpr, thr = roc_curve(y, np.r_[imp, gen], drop_intermediate=False)
    _, fmr = rp.fmr_at(imp, thr[1:])
    assert np.allclose(fmr, fpr[1:])
    k, _ = rp.fmr_at(np.array([0.1, 0.2, 0.2, 0.5]), np.array([0.2, 0.5, 0.6]))
    assert k.tolist() == [3, 1, 0]


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (17, 123_456), (0, 200_000)])
def test_clopper_pearson_arrays_match_scipy(k: int, n: int) -> None:
    lo, hi = rp.clopper_pearson_arrays(np.array([k]), n)
    ref = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert lo[0] == pytest.approx(ref.low, abs=1e-12)
    assert hi[0] == pytest.approx(ref.high, rel=1e-9)
    assert (lo[0], hi[0]) == pytest.approx(stats.clopper_pearson(k, n))


def _unit(n: int, d: int = 8, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_top_impostor_scores_by_loops() -> None:
    x = _unit(40)
    ident = np.array([i // 4 for i in range(40)])
    brute = sorted((float(x[i] @ x[j]) for i in range(40) for j in range(i + 1, 40)
                    if ident[i] != ident[j]), reverse=True)
    top = cal.top_impostor_scores(x, ident, 25)
    assert top.pairs == len(brute) == 780 - 60
    assert np.allclose(top.top, brute[:25], atol=1e-6)
    # FMR 2/720: two pairs may reach the threshold, the third may not.
    t = top.threshold_at(2 / 720)
    assert t is not None and sum(s >= t for s in brute) == 2
    assert top.threshold_at(0.5 / 720) is None  # fewer pairs than 1 / FMR
    assert top.threshold_at(30 / 720) is None  # beyond the kept tail
    assert top.false_matches(brute[4]) == 5
    assert top.false_matches(-1.0) is None


def test_nonmated_searches_by_hand() -> None:
    x = _unit(12, seed=2)
    ident = np.array(["a", "a", "b", "c", "c", "d", "e", "f", "g", "h", "i", "j"])
    top = cal.nonmated_top_scores(x, ident, 3, 2, seed=5)
    ids = np.unique(ident)
    expected: list[float] = []
    for r in range(2):
        rng = np.random.default_rng([5, r, 3])
        chosen = ids[rng.choice(len(ids), size=3, replace=False)]
        gal = [int(np.flatnonzero(ident == v)[0]) for v in chosen]
        for i in range(12):
            if ident[i] not in chosen:
                expected.append(max(float(x[i] @ x[g]) for g in gal))
    assert np.allclose(top, expected, atol=1e-6)
    assert cal.galleries_needed(0.01, 100) == 10  # 10 false positives allowed in 1,000
    assert cal.galleries_needed(1 / 6000, 10) == cal.MAX_GALLERIES
    assert cal.galleries_needed(0.5, 1000) == 1


def test_fpir_estimate_prefers_searches_and_falls_back() -> None:
    nonmated = np.linspace(0.0, 0.99, 100)  # 100 searches
    imps = cal.AllImpostors(10_000, np.linspace(0.9, 0.1, 500))
    est = cal.estimate_fpir_threshold(10, 0.05, nonmated, 4, imps)
    assert est.method == "searches" and est.n == 100 and est.allowed == 5
    assert np.mean(nonmated >= est.threshold) <= 0.05
    assert np.mean(nonmated >= np.nextafter(est.threshold, -np.inf) - 1e-9) > 0.05
    # 100 searches cannot resolve 1/1000: from the impostor pairs, FMR = 1 - 0.999^(1/10).
    est = cal.estimate_fpir_threshold(10, 0.001, nonmated, 4, imps)
    assert est.method == "impostor-pairs" and "cannot resolve" in est.notes[0]
    allowed = int(10_000 * cal.pair_fmr_for(0.001, 10))
    assert est.allowed == allowed == 1
    assert np.sum(imps.top >= est.threshold) == allowed
    # Neither can resolve it.
    with pytest.raises(InvalidInput, match="cannot resolve"):
        cal.estimate_fpir_threshold(10, 1e-6, nonmated, 4, imps)


# -- the floor search ---------------------------------------------------------------------------


def _spread(n: int, lo: float, hi: float) -> np.ndarray:
    return np.linspace(lo, hi, n)


def test_search_equal_groups_floor_is_the_fpir_step() -> None:
    same = _spread(20_000, -0.2, 0.45)
    groups = {"g": {"a": same, "b": same.copy()}}
    found = cal.search_threshold(groups, 0.3012, step=0.01)
    assert found.threshold == 0.31 and not found.failures


def test_search_one_group_with_high_impostors_forces_the_floor_up() -> None:
    base = _spread(20_000, -0.2, 0.45)
    high = np.r_[base[:-50], np.full(50, 0.65)]  # 50 pairs of group a score 0.65
    groups = {"g": {"a": high, "b": base}}
    found = cal.search_threshold(groups, 0.30, step=0.01)
    # Up to 0.65 group a has 50 false matches against b's few or none: significant. From
    # 0.66 both have none.
    assert found.threshold == 0.66
    assert found.failures[-1][0] == 0.65
    assert {c.group for c in found.failures[-1][1]} == {"a"}
    at = {c.group: c for c in found.checks}
    assert at["a"].false_matches == 0 and at["b"].false_matches == 0
    assert at["a"].too_small and at["b"].too_small  # nothing to compare at the floor
    # Group b being *lower* is never a reason to raise the floor.
    assert all(c.group == "a" for _, cs in found.failures for c in cs)


def test_worst_group_floor_by_hand() -> None:
    """Per group, the lowest step at which its FMR is at most the pairwise rate the target
    allows at the size; the highest over groups; too small a group is not resolved."""
    from types import SimpleNamespace as NS

    base = _spread(10_000, -0.2, 0.45)
    high = np.r_[base[:-50], np.full(50, 0.65)]  # 50 pairs of group a score 0.65
    small = _spread(100, -0.3, 0.2)
    attrs = [NS(attribute="race", groups=[NS(group="a", impostor_scores=high),
                                          NS(group="b", impostor_scores=base)]),
             NS(attribute="age", groups=[NS(group="old", impostor_scores=small)])]
    allowed = cal.pair_fmr_for(0.01, 10)  # about 0.001: 10 false matches in 10,000 pairs
    worst = cal.worst_group(attrs, 0.01, 10)  # type: ignore[arg-type]
    assert worst["pair_fmr_allowed"] == cal.dec(allowed)
    groups = worst["groups"]
    assert groups["race=a"] == {"floor": "0.66", "impostor_pairs": 10_000, "resolved": True}
    assert groups["race=b"]["floor"] == "0.45"
    # 100 pairs cannot show a rate of 1 in 1,000: above every score, not resolved
    assert groups["age=old"] == {"floor": "0.21", "impostor_pairs": 100, "resolved": False}
    assert (worst["floor"], worst["group"], worst["resolved"]) == ("0.66", "race=a", True)


def test_rate_curve_by_hand() -> None:
    nonmated = np.array([0.1, 0.2, 0.3, 0.4])  # best scores of 4 non-mated searches
    genuine = np.array([0.35, 0.5, 0.6, 0.7])
    curve = {p["threshold"]: p for p in cal.rate_curve(
        nonmated, cal.AllImpostors(0, np.empty(0)), genuine, 10, step=0.1)}
    assert curve["0.3"] == {"threshold": "0.3", "fpir": "0.5", "fnir": "0"}
    assert curve["0.5"] == {"threshold": "0.5", "fpir": "0", "fnir": "0.25"}
    assert curve["1"]["fnir"] == "1"


def test_search_keeps_the_floor_above_the_last_failure() -> None:
    base = _spread(20_000, -0.2, 0.3)
    a = np.r_[base[:-110], np.full(100, 0.45), np.full(10, 0.55)]
    b = np.r_[base[:-100], np.full(100, 0.45)]
    groups = {"g": {"a": a, "b": b}}
    checks = {t: cal.check_groups({"g": {k: np.sort(v) for k, v in groups["g"].items()}}, t)
              for t in (0.4, 0.5, 0.6)}
    assert not any(c.above_rest for c in checks[0.4])  # 110 vs 100: could be chance
    assert any(c.above_rest for c in checks[0.5])  # 10 vs 0
    found = cal.search_threshold(groups, 0.4, step=0.1)
    assert found.threshold == 0.6 and [t for t, _ in found.failures] == [0.5]


def test_search_errors() -> None:
    with pytest.raises(InvalidInput, match="above 1"):
        cal.search_threshold({"g": {"a": np.zeros(3)}}, 1.0000002)
    always = {"g": {"a": np.full(5000, 1.0), "b": np.full(5000, -1.0)}}
    with pytest.raises(InvalidInput, match="every threshold"):
        cal.search_threshold(always, 0.9, step=0.05)
    assert cal.candidate_thresholds(0.30, 0.01)[0] == 0.3
    assert cal.candidate_thresholds(0.3000001, 0.01)[:2] == [0.31, 0.32]
    assert cal.candidate_thresholds(0.95, 0.05) == [0.95, 1.0]


def test_parse_rate() -> None:
    assert cli_calibrate.parse_rate("1/6000") == pytest.approx(1 / 6000)
    assert cli_calibrate.parse_rate("0.001") == 0.001
    assert cli_calibrate.parse_rate("1e-4") == pytest.approx(1e-4)
    for bad in ("abc", "1/0", "0", "1", "2/3/4", "-0.1"):
        with pytest.raises(InvalidInput):
            cli_calibrate.parse_rate(bad)
    # The CLI's defaults are the module's (kept apart so the CLI loads fast).
    assert cli_calibrate.DEFAULT_WATCHLIST_SIZE == cal.DEFAULT_WATCHLIST_SIZE
    assert cli_calibrate.parse_rate(cli_calibrate.DEFAULT_TARGET_FPIR) == cal.DEFAULT_TARGET_FPIR
    assert cli_calibrate.DEFAULT_STEP == cal.DEFAULT_STEP


# -- real faces through the CLI ------------------------------------------------------------


def _no_floats(value: Any, where: str = "evidence") -> None:
    assert not isinstance(value, float), where
    if isinstance(value, dict):
        for k, v in value.items():
            _no_floats(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _no_floats(v, f"{where}[{i}]")


def test_calibrate_dry_run_json_on_real_faces(people_dir: Path, groups_csv: Path,
                                              tmp_path: Path) -> None:
    html_path = tmp_path / "floor.html"
    result = runner.invoke(app, ["calibrate", "-d", str(people_dir), "-g", str(groups_csv),
                                 "--watchlist-size", "2", "--target-fpir", "1/5", "--dry-run",
                                 "--json", "--no-progress", "--report", str(html_path),
                                 "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    ev = out["evidence"]
    assert out["recorded"] is None and out["model_id"] == ev["model_id"]
    assert out["watchlist_size"] == ev["watchlist_size"] == 2
    # The floor is a step of 0.01 at or above the threshold that meets the target.
    t = out["threshold"]
    assert round(t * 100) == pytest.approx(t * 100)
    assert t >= float(ev["fpir"]["threshold_meeting_target"])
    assert ev["threshold"] == cal.dec(t)
    # 8 identities with a face > 2: FPIR measured by searches, ~7 probes per gallery.
    fp = ev["fpir"]
    assert fp["method"] == "searches" and fp["galleries"] == cal.galleries_needed(0.2, 7)
    assert fp["false_positives"] <= fp["searches"] * 0.2
    ds = ev["dataset"]
    assert (ds["images"], ds["identities"], ds["no_face_images"]) == (11, 9, 1)
    assert ds["usable_images"] == 10 and ds["duplicate_images"] == 0
    # obama x3 gives 3 genuine pairs; 10 usable images of 8 identities give 45 - 3 impostors.
    assert (ds["genuine_pairs"], ds["impostor_pairs"]) == (3, 42)
    digest = hashlib.sha256()
    for rel in sorted(str(p.relative_to(people_dir)) for p in people_dir.rglob("*.png")):
        digest.update(f"{rel}\0{hashlib.sha256((people_dir / rel).read_bytes()).hexdigest()}\n"
                      .encode())
    assert ds["sha256"] == digest.hexdigest()
    groups = ev["fairness"]["attributes"]
    assert set(groups) == {"gender", "tone"}
    male = groups["gender"]["groups"]["M"]
    assert male["impostor_pairs"] == 12 and male["fmr_ci"] is not None
    assert male["false_matches"] <= male["impostor_pairs"]
    # Evidence goes into the audit log as it is: no floats, nothing biometric, small.
    _no_floats(ev)
    entry = build_entry(1, GENESIS, "tester", "floor.record", "threshold_floor",
                        ev["model_id"], ev)
    assert entry.hash
    text = html_path.read_text()
    assert text.count("data:image/png;base64,") >= 2
    assert "in every 10,000 faces scanned" in text
    # the worst-measured group's floor and the rate curve, for authorisation
    assert float(ev["worst_group"]["floor"]) >= 0 and ev["worst_group"]["group"]
    assert len(ev["curve"]) > 50 and {"threshold", "fpir", "fnir"} <= set(ev["curve"][0])


def test_calibrate_table_output(people_dir: Path, groups_csv: Path) -> None:
    result = runner.invoke(app, ["calibrate", "-d", str(people_dir), "-g", str(groups_csv),
                                 "-a", "gender", "--watchlist-size", "2", "--target-fpir",
                                 "0.2", "--dry-run", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "threshold floor" in result.output and "dry run: nothing recorded" in result.output
    assert "tone" not in result.output


def test_calibrate_errors(people_dir: Path, groups_csv: Path, tmp_path: Path) -> None:
    base = ["calibrate", "-d", str(people_dir), "-g", str(groups_csv), "--no-progress"]
    result = runner.invoke(app, base, env={"OPENLFR_USER": ""})
    assert result.exit_code == 2 and "--user" in result.output
    result = runner.invoke(app, [*base, "--dry-run", "--target-fpir", "often"])
    assert result.exit_code == 2 and "--target-fpir" in result.output
    result = runner.invoke(app, [*base, "--dry-run", "--watchlist-size", "0"])
    assert result.exit_code == 2 and "--watchlist-size" in result.output
    # 8 identities and 42 impostor pairs cannot resolve 1/6000 at 1,000.
    result = runner.invoke(app, [*base, "--dry-run"])
    assert result.exit_code == 2 and "cannot resolve" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["calibrate", "-d", str(tmp_path / "none"), "-g", "utkface",
                                 "--dry-run", "--no-progress"])
    assert result.exit_code == 2 and "no such directory" in result.output
    result = runner.invoke(app, [*base, "--dry-run", "--report",
                                 str(tmp_path / "missing" / "r.html")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_eval_fairness_report_has_all_figures(people_dir: Path, groups_csv: Path,
                                              tmp_path: Path) -> None:
    html_path = tmp_path / "fair.html"
    result = runner.invoke(app, ["eval", "fairness", "-d", str(people_dir), "-g",
                                 str(groups_csv), "-t", "0.48", "--no-progress", "--report",
                                 str(html_path)])
    assert result.exit_code == 0, result.output
    text = html_path.read_text()
    # FMR per group, DET (obama's genuine pairs), FMR against threshold, FPIR against size.
    assert text.count("data:image/png;base64,") == 4
    assert "DET" in text and "watchlist" in text and "faces scanned" in text


# -- recording the floor ---------------------------------------------------------------------


def test_calibrate_records_the_floor_audited(people_dir: Path, groups_csv: Path,
                                             gov: Any) -> None:
    """With --user the floor and its evidence are stored and audited; governance then uses it
    instead of the model's default floor. A role that may not record floors is refused."""
    from openlfr.audit import log as audit_log
    from openlfr.governance.floors import current_floor

    base = ["calibrate", "-d", str(people_dir), "-g", str(groups_csv), "-a", "gender",
            "--watchlist-size", "2", "--target-fpir", "1/5", "--json", "--no-progress"]
    env = gov.env()
    refused = runner.invoke(app, [*base, "--user", "op1"], env=env)
    assert refused.exit_code == 3, refused.output
    assert ("only an authorising officer or an administrator may record a model's threshold "
            "floor" in " ".join(refused.output.split()))
    result = runner.invoke(app, [*base, "--user", "ao1"], env=env)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["recorded"] is not None
    with gov.db.reading() as s:
        floor = current_floor(s, out["model_id"])
        entries = list(audit_log.entries(s))
        assert audit_log.verify(s).ok
    # enforced: the higher of the floor found and the worst-measured group's
    assert floor.source == "calibrated" and floor.threshold == max(
        out["threshold"], float(out["evidence"]["worst_group"]["floor"]))
    assert floor.recorded_by == "ao1"
    assert floor.evidence["dataset"]["sha256"] == out["evidence"]["dataset"]["sha256"]
    recorded = [e for e in entries if e.action == "floor.record"]
    assert len(recorded) == 1 and recorded[0].actor == "ao1"
    assert recorded[0].details["threshold"] == audit_log.fmt_float(out["threshold"])
    refusals = [e for e in entries if e.action == "access.refused"]
    assert [e.actor for e in refusals] == ["op1"]
