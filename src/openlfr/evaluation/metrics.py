"""Verification metrics in plain NumPy: ROC, AUC, EER, TAR at FAR, best and k-fold accuracy.

Conventions used throughout:

* ``scores`` are similarities (higher = more alike); a pair is *accepted* when
  ``score >= threshold``. ``labels`` are booleans: ``True`` for a matched (same person) pair.
* A *failed* pair (an image in it had no usable face) has a score of NaN. Failed pairs are
  left out of the ROC, AUC, EER and TAR-at-FAR — those describe the scores we have — and are
  always counted as errors by the accuracy functions, whatever the threshold: a system that
  cannot compare two photos gets the decision wrong (for a matched pair it behaves as a score
  of -∞; for a mismatched pair it is counted wrong as well, so failing is never rewarded).
* FAR is the fraction of mismatched pairs accepted, TAR the fraction of matched pairs
  accepted, FRR = 1 - TAR.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Roc:
    """ROC points ordered by decreasing threshold. The first point is ``(+inf, 0, 0)``; each
    other point is a distinct score used as the threshold (no points are dropped)."""

    thresholds: FloatArray
    far: FloatArray
    tar: FloatArray

    @property
    def frr(self) -> FloatArray:
        return 1.0 - self.tar


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    far: float
    tar: float


@dataclass(frozen=True)
class ThresholdChoice:
    """A threshold and the accuracy it gives on the set it was chosen on (failed pairs wrong)."""

    threshold: float
    accuracy: float


@dataclass(frozen=True)
class KFoldResult:
    """Accuracy of each fold with the threshold chosen on the other folds."""

    folds: tuple[int, ...]
    accuracies: tuple[float, ...]
    thresholds: tuple[float, ...]

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def accuracy_std(self) -> float:
        """Population standard deviation (``ddof=0``) of the fold accuracies."""
        return float(np.std(self.accuracies))

    @property
    def threshold(self) -> float:
        """Mean of the thresholds chosen for the folds."""
        return float(np.mean(self.thresholds))


def as_arrays(scores: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[FloatArray, BoolArray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length: {s.size} vs {y.size}")
    if y.dtype != np.bool_:
        if y.size and not np.all((y == 0) | (y == 1)):
            raise ValueError("labels must be booleans or 0/1")
        y = y.astype(bool)
    if np.any(np.isinf(s) & (s > 0)):
        raise ValueError("scores must not be +inf")
    # -inf is accepted and means the same as NaN: a failed pair.
    s = np.where(np.isneginf(s), np.nan, s)
    return s, y


def scored(scores: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[FloatArray, BoolArray]:
    """Only the pairs that have a score (failed pairs removed)."""
    s, y = as_arrays(scores, labels)
    ok = ~np.isnan(s)
    return s[ok], y[ok]


def _need_both_classes(y: BoolArray) -> None:
    if not y.any() or y.all():
        raise ValueError(
            "need at least one matched and one mismatched scored pair "
            f"(have {int(y.sum())} matched, {int((~y).sum())} mismatched)"
        )


def roc_curve(scores: npt.ArrayLike, labels: npt.ArrayLike) -> Roc:
    """FAR and TAR at every distinct score used as the threshold (failed pairs excluded).

    Equal to ``sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)``.
    """
    s, y = scored(scores, labels)
    _need_both_classes(y)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_value = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]
    tps = np.cumsum(y_sorted)[last_of_value].astype(np.float64)
    fps = (last_of_value + 1).astype(np.float64) - tps
    tar = np.r_[0.0, tps / tps[-1]]
    far = np.r_[0.0, fps / fps[-1]]
    thresholds = np.r_[np.inf, s_sorted[last_of_value]]
    return Roc(thresholds=thresholds, far=far, tar=tar)


def auc(far: npt.ArrayLike, tar: npt.ArrayLike) -> float:
    """Area under a curve given by points ordered by increasing ``far`` (trapezoid rule)."""
    x = np.asarray(far, dtype=np.float64)
    y = np.asarray(tar, dtype=np.float64)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def roc_auc(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    roc = roc_curve(scores, labels)
    return auc(roc.far, roc.tar)


def eer(scores: npt.ArrayLike, labels: npt.ArrayLike) -> OperatingPoint:
    """Equal error rate: where FAR = FRR, linearly interpolated between ROC points.

    Returns the point with ``far`` = the EER, ``tar`` = 1 - EER, and ``threshold`` = the
    first ROC threshold (going down) at which FAR ≥ FRR.
    """
    roc = roc_curve(scores, labels)
    frr = roc.frr
    diff = frr - roc.far  # decreasing from 1 to -1 along the curve
    i = int(np.argmax(diff <= 0))
    if diff[i] == 0 or i == 0:
        rate = float(roc.far[i])
    else:
        d0, d1 = float(diff[i - 1]), float(diff[i])
        t = d0 / (d0 - d1)
        rate = float(roc.far[i - 1] + t * (roc.far[i] - roc.far[i - 1]))
    return OperatingPoint(threshold=float(roc.thresholds[i]), far=rate, tar=1.0 - rate)


def tar_at_far(scores: npt.ArrayLike, labels: npt.ArrayLike, target: float) -> OperatingPoint:
    """The best TAR whose FAR does not exceed ``target``.

    That is the point at the lowest threshold (the most permissive one) whose FAR ≤ ``target``;
    ``threshold`` is that score. If even the top score is a mismatched pair that would exceed
    the target, TAR is 0 and the threshold is just above the highest score.
    """
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"FAR target must be in [0, 1], got {target}")
    roc = roc_curve(scores, labels)
    i = int(np.flatnonzero(roc.far <= target + 1e-12)[-1])
    threshold = float(roc.thresholds[i])
    if i == 0:
        threshold = float(np.nextafter(roc.thresholds[1], np.inf))
    return OperatingPoint(threshold=threshold, far=float(roc.far[i]), tar=float(roc.tar[i]))


def rates_at(scores: npt.ArrayLike, labels: npt.ArrayLike, threshold: float) -> OperatingPoint:
    """FAR and TAR of the scored pairs at a fixed threshold."""
    s, y = scored(scores, labels)
    accepted = s >= threshold
    far = float(accepted[~y].mean()) if (~y).any() else float("nan")
    tar = float(accepted[y].mean()) if y.any() else float("nan")
    return OperatingPoint(threshold=float(threshold), far=far, tar=tar)


def accuracy(scores: npt.ArrayLike, labels: npt.ArrayLike, threshold: float) -> float:
    """Fraction of all pairs decided correctly at ``threshold``; failed pairs are wrong."""
    s, y = as_arrays(scores, labels)
    if s.size == 0:
        raise ValueError("no pairs")
    ok = ~np.isnan(s)
    correct = ok & ((s >= threshold) == y)
    return float(correct.sum() / s.size)


def best_threshold(scores: npt.ArrayLike, labels: npt.ArrayLike) -> ThresholdChoice:
    """The threshold with the highest accuracy on this set.

    Every way of splitting the sorted distinct scores is tried. When several adjacent splits
    tie, the threshold is the middle of the tied range (the widest margin); between separate
    tied ranges the lowest one wins. Failed pairs count as errors but cannot change the choice.
    """
    s, y = as_arrays(scores, labels)
    ok = ~np.isnan(s)
    sv, yv = s[ok], y[ok]
    if sv.size == 0:
        raise ValueError("no scored pairs to choose a threshold on")
    u = np.unique(sv)
    margin = 1.0
    edges = np.r_[u[0] - margin, u, u[-1] + margin]  # split k lies between edges[k], edges[k+1]
    candidates = (edges[:-1] + edges[1:]) / 2.0
    pos = np.sort(sv[yv])
    neg = np.sort(sv[~yv])
    correct = (pos.size - np.searchsorted(pos, candidates, side="left")) + np.searchsorted(
        neg, candidates, side="left"
    )
    best = int(correct.max())
    a = int(np.argmax(correct == best))
    b = a
    while b + 1 < correct.size and correct[b + 1] == best:
        b += 1
    threshold = float((edges[a] + edges[b + 1]) / 2.0)
    return ThresholdChoice(threshold=threshold, accuracy=best / s.size)


def kfold_accuracy(
    scores: npt.ArrayLike, labels: npt.ArrayLike, folds: npt.ArrayLike
) -> KFoldResult:
    """LFW protocol: for each fold, choose the threshold on the other folds (best accuracy),
    then measure the accuracy on the fold (failed pairs wrong)."""
    s, y = as_arrays(scores, labels)
    f = np.asarray(folds).reshape(-1)
    if f.shape != s.shape:
        raise ValueError(f"folds and scores differ in length: {f.size} vs {s.size}")
    ids = [int(v) for v in np.unique(f)]
    if len(ids) < 2:
        raise ValueError(f"k-fold accuracy needs at least 2 folds, got {len(ids)}")
    accs: list[float] = []
    thrs: list[float] = []
    for fold in ids:
        test = f == fold
        try:
            choice = best_threshold(s[~test], y[~test])
        except ValueError as exc:
            raise ValueError(f"fold {fold}: the other folds have no scored pairs") from exc
        thrs.append(choice.threshold)
        accs.append(accuracy(s[test], y[test], choice.threshold))
    return KFoldResult(folds=tuple(ids), accuracies=tuple(accs), thresholds=tuple(thrs))


def fold_tar_at_far(
    scores: npt.ArrayLike, labels: npt.ArrayLike, folds: npt.ArrayLike, target: float
) -> list[OperatingPoint | None]:
    """:func:`tar_at_far` on each fold's own scored pairs, in fold order; ``None`` for a fold
    without both matched and mismatched scored pairs."""
    s, y = as_arrays(scores, labels)
    f = np.asarray(folds).reshape(-1)
    out: list[OperatingPoint | None] = []
    for fold in np.unique(f):
        sel = (f == fold) & ~np.isnan(s)
        out.append(tar_at_far(s[sel], y[sel], target) if y[sel].any() and not y[sel].all()
                   else None)
    return out


def summarise_points(points: Sequence[OperatingPoint | None]) -> dict[str, float | None]:
    """Mean and standard deviation of thresholds and TARs over the folds that have a point
    (all ``None`` if none has)."""
    have = [p for p in points if p is not None]
    if not have:
        return {"threshold_mean": None, "threshold_std": None, "tar_mean": None,
                "tar_std": None, "folds": 0}
    thr = np.array([p.threshold for p in have], dtype=np.float64)
    tar = np.array([p.tar for p in have], dtype=np.float64)
    return {
        "threshold_mean": float(thr.mean()),
        "threshold_std": float(thr.std()),
        "tar_mean": float(tar.mean()),
        "tar_std": float(tar.std()),
        "folds": len(have),
    }
