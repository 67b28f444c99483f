"""Confidence intervals and tests for error rates: Clopper–Pearson, rate ratios, homogeneity.

An error rate here is ``k`` errors out of ``n`` comparisons (false matches over impostor pairs,
false non-matches over genuine pairs). Nothing is estimated from ``n == 0``: such a rate is
``None`` and its interval is ``None`` too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Confidence level of every interval, and the significance level of every test.
CONFIDENCE = 0.95
ALPHA = 0.05
#: Below this smallest expected count a 2x2 table is tested with Fisher's exact test.
MIN_EXPECTED = 5.0


def rate(k: int, n: int) -> float | None:
    """``k / n``, or ``None`` when there were no trials."""
    _check_counts(k, n)
    return None if n == 0 else k / n


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Exact (Clopper–Pearson) two-sided interval for a binomial proportion ``k / n``.

    ``lower = Beta(alpha/2; k, n-k+1)`` (0 when ``k == 0``), ``upper = Beta(1-alpha/2; k+1, n-k)``
    (1 when ``k == n``). ``None`` when ``n == 0``.
    """
    _check_counts(k, n)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n == 0:
        return None
    from scipy import stats as sps  # (on first use: it takes a command's start 0.6 s)

    alpha = 1.0 - confidence
    lower = 0.0 if k == 0 else float(sps.beta.ppf(alpha / 2.0, k, n - k + 1))
    upper = 1.0 if k == n else float(sps.beta.ppf(1.0 - alpha / 2.0, k + 1, n - k))
    return lower, upper


def _check_counts(k: int, n: int) -> None:
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"counts must satisfy 0 <= k <= n, got k={k}, n={n}")


@dataclass(frozen=True)
class RateRatio:
    """Highest over lowest group rate, honest about zeros.

    ``value`` is the point ratio; ``None`` when it is undefined (the lowest rate is 0, or fewer
    than two groups have a rate), with ``note`` saying why. ``upper_bounds_ratio`` is the ratio of
    the two groups' upper 95 % bounds — always finite when both have trials — and ``at_least``
    is the highest rate over the lowest group's upper bound: a conservative lower estimate of
    the ratio that stays meaningful when the lowest group has no errors.
    """

    value: float | None
    highest: str | None
    lowest: str | None
    upper_bounds_ratio: float | None
    at_least: float | None
    note: str

    def to_dict(self) -> dict[str, object]:
        return {"value": self.value, "highest": self.highest, "lowest": self.lowest,
                "upper_bounds_ratio": self.upper_bounds_ratio, "at_least": self.at_least,
                "note": self.note}


def rate_ratio(counts: dict[str, tuple[int, int]], confidence: float = CONFIDENCE) -> RateRatio:
    """:class:`RateRatio` of groups given as ``{name: (errors, trials)}``; groups without
    trials are left out."""
    have = {g: (k, n) for g, (k, n) in counts.items() if n > 0}
    if len(have) < 2:
        return RateRatio(None, None, None, None, None,
                         f"needs at least two groups with comparisons, got {len(have)}")
    rates = {g: k / n for g, (k, n) in have.items()}
    order = sorted(rates, key=lambda g: (rates[g], g))
    lowest, highest = order[0], order[-1]
    ci_hi = {g: clopper_pearson(k, n, confidence) for g, (k, n) in have.items()}
    hi_low = ci_hi[lowest]
    hi_high = ci_hi[highest]
    assert hi_low is not None and hi_high is not None
    upper_ratio = hi_high[1] / hi_low[1] if hi_low[1] > 0 else None
    at_least = rates[highest] / hi_low[1] if hi_low[1] > 0 else None
    if rates[highest] == 0.0:
        return RateRatio(None, highest, lowest, upper_ratio, at_least,
                         "no errors in any group: the ratio is undefined (0/0); "
                         "compare the upper bounds instead")
    if rates[lowest] == 0.0:
        return RateRatio(None, highest, lowest, upper_ratio, at_least,
                         f"group {lowest!r} has no errors: the point ratio is infinite; "
                         f"'at_least' divides by its upper {confidence:.0%} bound")
    return RateRatio(rates[highest] / rates[lowest], highest, lowest, upper_ratio, at_least, "")


@dataclass(frozen=True)
class HomogeneityTest:
    """Do the groups' error rates differ? ``test`` is ``"chi2"``, ``"fisher"`` or ``"none"``
    (nothing to test: fewer than two groups, or no errors / no successes at all)."""

    test: str
    statistic: float | None
    p_value: float | None
    significant: bool | None
    groups: int
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"test": self.test, "statistic": self.statistic, "p_value": self.p_value,
                "significant": self.significant, "groups": self.groups, "note": self.note}


def homogeneity_test(counts: Sequence[tuple[int, int]], alpha: float = ALPHA) -> HomogeneityTest:
    """Chi-square test of homogeneity of ``errors / trials`` across groups; Fisher's exact test
    for two groups when an expected count is below :data:`MIN_EXPECTED`. Groups without trials
    are left out."""
    rows = [(k, n - k) for k, n in counts if n > 0]
    for k, n in counts:
        _check_counts(k, n)
    if len(rows) < 2:
        return HomogeneityTest("none", None, None, None, len(rows),
                               "fewer than two groups with comparisons")
    table = np.array(rows, dtype=np.float64)
    col = table.sum(axis=0)
    if (col == 0).any():
        what = "errors" if col[0] == 0 else "correct decisions"
        return HomogeneityTest("none", None, 1.0, False, len(rows),
                               f"no {what} in any group: the rates cannot differ")
    from scipy import stats as sps  # (on first use: it takes a command's start 0.6 s)

    expected = table.sum(axis=1)[:, None] * col[None, :] / table.sum()
    if len(rows) == 2 and expected.min() < MIN_EXPECTED:
        res = sps.fisher_exact(table.astype(np.int64))
        p = float(res[1])
        return HomogeneityTest("fisher", float(res[0]) if math.isfinite(res[0]) else None, p,
                               p < alpha, 2, "Fisher's exact test (small expected counts)")
    chi2, p, _dof, _exp = sps.chi2_contingency(table, correction=len(rows) == 2)
    note = "" if expected.min() >= MIN_EXPECTED else (
        "some expected counts are below 5: the chi-square p-value is approximate")
    return HomogeneityTest("chi2", float(chi2), float(p), float(p) < alpha, len(rows), note)
