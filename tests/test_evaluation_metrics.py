"""Verification metrics (hand-computed cases and scikit-learn) and pairs-file parsing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from openlfr.errors import InvalidInput
from openlfr.evaluation import metrics as m
from openlfr.evaluation.pairs import (
    CSV_FOLDS,
    Pair,
    PairsError,
    assign_folds,
    lfw_image_path,
    parse_decision,
    read_pairs,
)

# --------------------------------------------------------------------------- hand-computed


def test_separable_case() -> None:
    s = [0.9, 0.8, 0.3, 0.1]
    y = [True, True, False, False]
    assert m.roc_auc(s, y) == 1.0
    assert m.eer(s, y).far == 0.0
    choice = m.best_threshold(s, y)
    assert choice.threshold == pytest.approx(0.55)
    assert choice.accuracy == 1.0
    assert m.tar_at_far(s, y, 0.001).tar == 1.0


def test_overlapping_case_by_hand() -> None:
    # positives 0.9, 0.6; negatives 0.7, 0.2
    s = [0.9, 0.6, 0.7, 0.2]
    y = [1, 1, 0, 0]
    roc = m.roc_curve(s, y)
    assert np.isinf(roc.thresholds[0])
    np.testing.assert_allclose(roc.thresholds[1:], [0.9, 0.7, 0.6, 0.2])
    np.testing.assert_allclose(roc.far, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(roc.tar, [0, 0.5, 0.5, 1, 1])
    # AUC = P(positive score > negative score) = 3/4
    assert m.roc_auc(s, y) == pytest.approx(0.75)
    point = m.eer(s, y)
    assert point.far == pytest.approx(0.5)
    assert point.threshold == pytest.approx(0.7)
    # FAR <= 0: only 0.9 accepted; FAR <= 0.5: down to 0.6
    assert m.tar_at_far(s, y, 0.0) == m.OperatingPoint(threshold=0.9, far=0.0, tar=0.5)
    assert m.tar_at_far(s, y, 0.5) == m.OperatingPoint(threshold=0.6, far=0.5, tar=1.0)
    # two separate best splits (3 of 4 right): the lower one, between 0.2 and 0.6
    choice = m.best_threshold(s, y)
    assert choice.threshold == pytest.approx(0.4)
    assert choice.accuracy == pytest.approx(0.75)
    assert m.accuracy(s, y, 0.65) == pytest.approx(0.5)


def test_eer_interpolates_between_roc_points() -> None:
    # sorted: .9 (m) .8 (m) .7 (mismatched) .6 (m) .1 (mismatched)
    s = [0.9, 0.8, 0.6, 0.7, 0.1]
    y = [1, 1, 1, 0, 0]
    roc = m.roc_curve(s, y)
    np.testing.assert_allclose(roc.far, [0, 0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(roc.frr, [1, 2 / 3, 1 / 3, 1 / 3, 0, 0])
    # FRR - FAR goes from 1/3 (far 0) to -1/6 (far 1/2): zero two thirds of the way, at 1/3
    point = m.eer(s, y)
    assert point.far == pytest.approx(1 / 3)
    assert point.tar == pytest.approx(2 / 3)
    assert point.threshold == pytest.approx(0.7)


def test_eer_exactly_on_a_roc_point() -> None:
    s = [0.9, 0.5, 0.6, 0.1]
    y = [1, 1, 0, 0]
    # (far, frr): (0,1) (0,.5) (.5,.5) (.5,0) (1,0)
    assert m.eer(s, y).far == pytest.approx(0.5)
    s2 = [0.9, 0.8, 0.7, 0.85, 0.1, 0.05]
    y2 = [1, 1, 1, 0, 0, 0]
    # (far, frr): (0,1) (0,2/3) (1/3,2/3) (1/3,1/3) ...
    assert m.eer(s2, y2).far == pytest.approx(1 / 3)


def test_failed_pairs_are_errors_and_left_out_of_roc() -> None:
    s = [0.9, np.nan, 0.1, np.nan, 0.8, -np.inf]
    y = [1, 1, 0, 0, 1, 0]
    roc = m.roc_curve(s, y)
    np.testing.assert_allclose(roc.far, [0, 0, 0, 1])  # three scored pairs only
    assert m.roc_auc(s, y) == 1.0
    assert m.eer(s, y).far == 0.0
    # 3 of the 6 pairs are right whatever the threshold; the failed ones never are
    for t in (-1.0, 0.0, 0.5, 0.95, 2.0):
        assert m.accuracy(s, y, t) <= 0.5
    assert m.accuracy(s, y, 0.5) == pytest.approx(0.5)
    assert m.best_threshold(s, y).accuracy == pytest.approx(0.5)
    # a failed matched pair is wrong even at a threshold of -inf
    assert m.accuracy([np.nan], [1], -np.inf) == 0.0
    assert m.accuracy([np.nan], [0], np.inf) == 0.0


def test_kfold_by_hand() -> None:
    # fold 1: pos .8 neg .3 | fold 2: pos .45 neg .5 | fold 3: pos .9 neg .4
    s = [0.8, 0.3, 0.45, 0.5, 0.9, 0.4]
    y = [1, 0, 1, 0, 1, 0]
    f = [1, 1, 2, 2, 3, 3]
    res = m.kfold_accuracy(s, y, f)
    # fold 1 chosen on {.45,.9 | .5,.4}: best split 0.425 -> fold 1 all right
    # fold 2 chosen on {.8,.9 | .3,.4}: 0.6 -> .45 rejected (wrong), .5 rejected (right)
    # fold 3 chosen on {.8,.45 | .3,.5}: 0.375 -> .9 right, .4 accepted (wrong)
    np.testing.assert_allclose(res.thresholds, [0.425, 0.6, 0.375])
    np.testing.assert_allclose(res.accuracies, [1.0, 0.5, 0.5])
    assert res.accuracy == pytest.approx(2 / 3)
    assert res.accuracy_std == pytest.approx(np.std([1.0, 0.5, 0.5]))
    assert res.threshold == pytest.approx((0.425 + 0.6 + 0.375) / 3)


def test_kfold_counts_failed_pairs_in_their_fold() -> None:
    s = [0.9, 0.1, np.nan, 0.2, 0.8, 0.3]
    y = [1, 0, 1, 0, 1, 0]
    res = m.kfold_accuracy(s, y, [1, 1, 2, 2, 3, 3])
    np.testing.assert_allclose(res.accuracies, [1.0, 0.5, 1.0])


def test_best_threshold_takes_middle_of_tied_range() -> None:
    s = [0.1, 0.2, 0.6, 0.7]
    y = [0, 0, 1, 1]
    assert m.best_threshold(s, y).threshold == pytest.approx(0.4)  # middle of the gap
    # 0.4 is both a matched and a mismatched score: the splits just below and just above it
    # are equally good (3 of 4), so the threshold is the middle of 0.1 .. 0.8
    s = [0.1, 0.4, 0.4, 0.8]
    y = [0, 1, 0, 1]
    choice = m.best_threshold(s, y)
    assert choice.threshold == pytest.approx(0.45)
    assert choice.accuracy == pytest.approx(0.75)


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="matched"):
        m.roc_curve([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="length"):
        m.roc_curve([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="folds"):
        m.kfold_accuracy([0.1, 0.9], [0, 1], [1, 1])
    with pytest.raises(ValueError, match="no scored"):
        m.best_threshold([np.nan], [1])
    with pytest.raises(ValueError, match="target"):
        m.tar_at_far([0.1, 0.9], [0, 1], 1.5)


# --------------------------------------------------------------------------- vs scikit-learn


def _random_case(seed: int, n: int = 400, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.5
    s = np.where(y, rng.normal(0.55, 0.15, n), rng.normal(0.25, 0.15, n))
    if ties:
        s = np.round(s, 2)
    return s, y


@pytest.mark.parametrize(("seed", "ties"), [(0, False), (1, True), (2, False), (3, True)])
def test_roc_and_auc_match_sklearn(seed: int, ties: bool) -> None:
    s, y = _random_case(seed, ties=ties)
    fpr, tpr, thr = sk_roc_curve(y, s, drop_intermediate=False)
    roc = m.roc_curve(s, y)
    np.testing.assert_allclose(roc.far, fpr)
    np.testing.assert_allclose(roc.tar, tpr)
    np.testing.assert_allclose(roc.thresholds[1:], thr[1:])
    assert m.roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 5])
def test_tar_at_far_matches_sklearn(seed: int) -> None:
    s, y = _random_case(seed, n=3000)
    fpr, tpr, thr = sk_roc_curve(y, s, drop_intermediate=False)
    for target in (0.1, 0.01, 0.001):
        ok = fpr <= target
        expected = tpr[ok].max()
        point = m.tar_at_far(s, y, target)
        assert point.tar == pytest.approx(expected)
        assert point.far <= target
        # the threshold really gives that operating point
        rates = m.rates_at(s, y, point.threshold)
        assert rates.tar == pytest.approx(point.tar)
        assert rates.far == pytest.approx(point.far)
        assert point.threshold == pytest.approx(thr[ok][-1])


@pytest.mark.parametrize("seed", [0, 3])
def test_eer_is_where_far_meets_frr(seed: int) -> None:
    s, y = _random_case(seed, n=2000)
    fpr, tpr, _ = sk_roc_curve(y, s, drop_intermediate=False)
    fnr = 1 - tpr
    i = int(np.argmax(fnr <= fpr))
    lo, hi = sorted([fpr[i - 1], fpr[i]])
    rate = m.eer(s, y).far
    assert lo - 1e-12 <= rate <= hi + 1e-12
    assert min(fnr[i - 1], fnr[i]) - 1e-12 <= rate <= max(fnr[i - 1], fnr[i]) + 1e-12


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_threshold_is_optimal(seed: int) -> None:
    s, y = _random_case(seed, n=300, ties=seed == 1)
    choice = m.best_threshold(s, y)
    grid = np.r_[np.unique(s) - 1e-9, np.unique(s) + 1e-9]
    brute = max(m.accuracy(s, y, t) for t in grid)
    assert choice.accuracy == pytest.approx(brute)
    assert m.accuracy(s, y, choice.threshold) == pytest.approx(brute)


# --------------------------------------------------------------------------- pairs files


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


LFW_TEXT = (
    "2\t2\n"
    "Alice\t1\t2\n"
    "Bob\t1\t12\n"
    "Alice\t1\tBob\t3\n"
    "Carol\t2\tDave\t1\n"
    "Carol\t1\t2\n"
    "Dave\t1\t2\n"
    "Alice\t2\tCarol\t1\n"
    "Bob\t1\tDave\t2\n"
)


def test_lfw_pairs(tmp_path: Path) -> None:
    pairs = read_pairs(_write(tmp_path, "pairs.txt", LFW_TEXT))
    assert len(pairs) == 8
    assert pairs[0] == Pair("Alice/Alice_0001.jpg", "Alice/Alice_0002.jpg", True, 1, 2)
    assert pairs[1].right == "Bob/Bob_0012.jpg"
    assert pairs[2] == Pair("Alice/Alice_0001.jpg", "Bob/Bob_0003.jpg", False, 1, 4)
    assert [p.fold for p in pairs] == [1, 1, 1, 1, 2, 2, 2, 2]
    assert [p.same for p in pairs] == [True, True, False, False] * 2
    assert lfw_image_path("X_Y", 7) == "X_Y/X_Y_0007.jpg"


def test_lfw_pairs_spaces_and_blank_lines(tmp_path: Path) -> None:
    text = LFW_TEXT.replace("\t", " ").replace("Carol 1 2\n", "\nCarol 1 2\n\n") + "\n\n"
    pairs = read_pairs(_write(tmp_path, "pairs.txt", text))
    assert len(pairs) == 8
    assert pairs[4].line == 7


def test_lfw_single_fold_is_dealt_into_folds(tmp_path: Path) -> None:
    lines = ["10"] + [f"P{i}\t1\t2" for i in range(10)] + [f"P{i}\t1\tQ{i}\t1" for i in range(10)]
    pairs = read_pairs(_write(tmp_path, "pairs.txt", "\n".join(lines) + "\n"))
    assert len(pairs) == 20
    assert sorted({p.fold for p in pairs}) == list(range(1, CSV_FOLDS + 1))
    for fold in range(1, CSV_FOLDS + 1):
        assert sorted(p.same for p in pairs if p.fold == fold) == [False, True]


@pytest.mark.parametrize(
    ("text", "line", "match"),
    [
        (LFW_TEXT.replace("Bob\t1\t12\n", "Bob\t1\n"), 3, "matched pair"),
        (LFW_TEXT.replace("Bob\t1\t12\n", "Bob\tx\t12\n"), 3, "positive integer"),
        (LFW_TEXT.replace("Bob\t1\t12\n", "Bob\t0\t12\n"), 3, "positive integer"),
        (LFW_TEXT.replace("Alice\t1\tBob\t3\n", "Alice\t1\t3\n"), 4, "mismatched pair"),
        (LFW_TEXT.replace("Carol\t1\t2\n", "Carol\t1\tBob\t2\n"), 6, "matched pair"),
        (LFW_TEXT + "Extra\t1\t2\n", 10, "announces 2 folds"),
        (LFW_TEXT.rsplit("Bob\t1\tDave\t2\n", 1)[0], 8, "7 pair lines"),
        (LFW_TEXT.replace("Alice\t1\t2\n", "../etc\t1\t2\n"), 2, "identity name"),
        ("hello world\n", 1, "unrecognised format"),
        ("\n\n10 x\n", 3, "unrecognised format"),
    ],
)
def test_lfw_errors_name_file_and_line(tmp_path: Path, text: str, line: int, match: str) -> None:
    path = _write(tmp_path, "bad.txt", text)
    with pytest.raises(PairsError, match=match) as info:
        read_pairs(path)
    assert f"{path}:{line}:" in str(info.value)
    assert isinstance(info.value, InvalidInput)  # the user's file: exit 2


def test_missing_and_empty_pairs_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_pairs(tmp_path / "absent.txt")
    with pytest.raises(PairsError, match="empty"):
        read_pairs(_write(tmp_path, "empty.txt", "\n  \n"))
    with pytest.raises(PairsError, match="not a file"):
        read_pairs(tmp_path)
    bad = tmp_path / "binary.txt"
    bad.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(PairsError, match="UTF-8"):
        read_pairs(bad)


def test_csv_pairs(tmp_path: Path) -> None:
    rows = ["File_X, file_y ,Decision,note"]
    decisions = ["yes", "No", "TRUE", "false", "1", "0", "YES", "no"]
    rows += [f"a/{i}.jpg,b/{i}.jpg,{d},n{i}" for i, d in enumerate(decisions)]
    path = _write(tmp_path, "pairs.csv", "\n".join(rows) + "\n")
    pairs = read_pairs(path)
    assert [p.same for p in pairs] == [True, False] * 4
    assert pairs[0].left == "a/0.jpg" and pairs[0].right == "b/0.jpg"
    assert pairs[3].line == 5
    # 8 pairs -> 8 folds of one pair each, deterministic
    assert sorted(p.fold for p in pairs) == list(range(1, 9))
    assert [p.fold for p in read_pairs(path)] == [p.fold for p in pairs]


def test_csv_folds_are_balanced_and_deterministic(tmp_path: Path) -> None:
    rows = ["file_x,file_y,decision"] + [
        f"x{i}.jpg,y{i}.jpg,{'yes' if i % 3 else 'no'}" for i in range(95)
    ]
    pairs = read_pairs(_write(tmp_path, "p.csv", "\n".join(rows)))
    folds = [p.fold for p in pairs]
    counts = np.bincount(folds)[1:]
    assert len(counts) == CSV_FOLDS
    assert counts.max() - counts.min() <= 1
    for fold in range(1, CSV_FOLDS + 1):
        matched = sum(p.same for p in pairs if p.fold == fold)
        assert 5 <= matched <= 8  # 63 matched over 10 folds
    assert folds != sorted(folds)  # shuffled
    assert assign_folds([p.same for p in pairs], CSV_FOLDS, 1) != folds
    assert assign_folds([p.same for p in pairs], CSV_FOLDS, 1) == assign_folds(
        [p.same for p in pairs], CSV_FOLDS, 1
    )


@pytest.mark.parametrize(
    ("text", "line", "match"),
    [
        ("file_x,file_y\na.jpg,b.jpg\n", 1, "lacks the column"),
        ("file_x,file_y,decision\na.jpg,b.jpg,maybe\n", 2, "yes/no"),
        ("file_x,file_y,decision\na.jpg,b.jpg,yes\na.jpg,b.jpg\n", 3, "expected 3 fields"),
        ("file_x,file_y,decision\na.jpg,,yes\n", 2, "empty"),
        ("file_x,file_y,decision\n/etc/x.jpg,b.jpg,yes\n", 2, "relative"),
        ("file_x,file_y,decision\n../x.jpg,b.jpg,yes\n", 2, "relative"),
        ("file_x,file_y,decision\n\n", 1, "no pairs"),
    ],
)
def test_csv_errors_name_file_and_line(tmp_path: Path, text: str, line: int, match: str) -> None:
    path = _write(tmp_path, "bad.csv", text)
    with pytest.raises(PairsError, match=match) as info:
        read_pairs(path)
    assert f"{path}:{line}:" in str(info.value)


def test_parse_decision() -> None:
    for v in ("yes", "YES", "True", "1", " y "):
        assert parse_decision(v) is True
    for v in ("no", "FALSE", "0", "N"):
        assert parse_decision(v) is False
    with pytest.raises(ValueError):
        parse_decision("2")
