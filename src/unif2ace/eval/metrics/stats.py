"""Welch's two-sample t-test for the ablation tables (a few seeds per variant), without scipy,
and percentile-bootstrap intervals for one evaluation's metrics (resampling its faces).

``welch_test(a, b)`` gives the difference of means, its standard error, the Welch-Satterthwaite
degrees of freedom and the two-sided p-value from Student's t distribution:
``p = I_{ν/(ν+t²)}(ν/2, 1/2)`` with ``I`` the regularised incomplete beta function
(continued fraction, modified Lentz; Numerical Recipes §6.4). Tests compare it with scipy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "WelchResult",
    "betainc",
    "bootstrap_ci",
    "student_t_two_sided_p",
    "welch_test",
]


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta ``I_x(a, b)`` for a, b > 0 and 0 <= x <= 1."""
    if not (a > 0 and b > 0 and 0.0 <= x <= 1.0):
        raise ValueError(f"betainc needs a, b > 0 and 0 <= x <= 1, got {a}, {b}, {x}")
    if x in (0.0, 1.0):
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast on this side only
        return 1.0 - betainc(b, a, 1.0 - x)
    return math.exp(log_front) * _beta_fraction(a, b, x) / a


def _beta_fraction(a: float, b: float, x: float, iters: int = 300, eps: float = 1e-15) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, iters + 1):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def student_t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if math.isnan(t) or math.isnan(df) or df <= 0:
        return math.nan
    if math.isinf(t):
        return 0.0
    return betainc(df / 2, 0.5, df / (df + t * t))


@dataclass
class WelchResult:
    delta: float  # mean(a) - mean(b)
    se: float  # standard error of delta
    df: float  # Welch-Satterthwaite degrees of freedom
    p: float  # two-sided p-value (nan when either sample has fewer than 2 values)


def welch_test(a: Sequence[float], b: Sequence[float]) -> WelchResult:
    """Welch's t-test of mean(a) = mean(b); nan values are dropped."""
    a = [x for x in a if x is not None and not math.isnan(x)]
    b = [x for x in b if x is not None and not math.isnan(x)]
    if not a or not b:
        return WelchResult(math.nan, math.nan, math.nan, math.nan)
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    if len(a) < 2 or len(b) < 2:
        return WelchResult(ma - mb, math.nan, math.nan, math.nan)
    va = sum((x - ma) ** 2 for x in a) / (len(a) - 1) / len(a)
    vb = sum((x - mb) ** 2 for x in b) / (len(b) - 1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0.0:
        return WelchResult(ma - mb, 0.0, math.nan, 1.0 if ma == mb else 0.0)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return WelchResult(ma - mb, se, df, student_t_two_sided_p((ma - mb) / se, df))


def bootstrap_ci(
    stat, n: int, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> list[float]:
    """Percentile-bootstrap interval ``[lo, hi]`` of a metric over ``n`` independent units.

    The units are what an evaluation samples — faces or prompts — and every number measured
    on one unit (its 8 questions, its attributes) stays with it, so the interval accounts for
    their correlation (a cluster bootstrap). ``stat(idx_RN)`` gets ``n_boot`` resamples as a
    ``(n_boot, n)`` index array (rows drawn with replacement) and returns the metric of each
    resample, shape ``(n_boot,)``; resamples whose metric is undefined (nan) are dropped.
    [nan, nan] when ``n < 2`` or nothing is defined. Seeded: the same inputs give the same
    interval."""
    if n < 2:
        return [math.nan, math.nan]
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    vals = np.asarray(stat(idx), dtype=np.float64)
    vals = vals[~np.isnan(vals)]
    if not len(vals):
        return [math.nan, math.nan]
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(vals, [tail, 100 - tail])
    return [float(lo), float(hi)]
