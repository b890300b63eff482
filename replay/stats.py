"""Uncertainty over questions: intervals for a score and for paired differences of scores.

A replayed score has two sources of noise, and they are reported apart:

- the *replicate error*: the standard error over replay replicates with the questions fixed
  (`EvalResult.stderr`). It shrinks with more replicates and says how well the replay has pinned
  down the score on *these* questions;
- the *question interval*: a 95% interval for the score on the population the questions were
  drawn from, computed from the per-question mean scores (`EvalResult.per_question`). On 15-50
  questions it is one to two orders of magnitude wider, and it is the one that says whether a
  result carries over to new questions.

Method: the Student-t interval on the per-question means, mean +- t(n-1) * sd / sqrt(n). Each
question's mean over replicates is one bounded, independent draw from the question population,
so the t interval is the textbook interval for their mean; it needs no resampling (the same
numbers on every machine, microseconds) and its coverage at n = 15-50 is checked against a
simulated store whose true mean is known (tests/test_stats.py). It is clipped to the score's
range [0, 1], and it has zero width when every question scored the same: a reader should then
read it as "no spread observed", not as certainty.

Paired comparisons use the same interval on per-question differences. Common random numbers
make configurations share their draws per (question, replicate), so the replicate noise largely
cancels in a difference and the interval is much tighter than either score's.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A confidence interval for a mean over questions.

    Attributes:
        mean: the mean of the per-question values.
        lo, hi: the interval's ends.
        level: its nominal coverage (0.95).
        n: the number of questions it rests on.
        method: how it was computed ("t": Student-t on per-question values).
    """

    mean: float
    lo: float
    hi: float
    level: float
    n: int
    method: str = "t"

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2

    def excludes(self, value: float = 0.0) -> bool:
        """True when `value` lies outside the interval (a difference "beyond noise")."""
        return not (self.lo <= value <= self.hi)

    def text(self, digits: int = 3) -> str:
        return f"[{self.lo:.{digits}f}, {self.hi:.{digits}f}]"

    def as_dict(self, prefix: str = "ci") -> dict:
        return {f"{prefix}_lo": self.lo, f"{prefix}_hi": self.hi, f"{prefix}_level": self.level}


@functools.lru_cache(maxsize=1024)
def t_quantile(p: float, df: int) -> float:
    """The p-quantile (p > 0.5) of Student's t with an integer number of degrees of freedom.

    SciPy-free and exact to machine precision: bisection on the closed-form distribution of
    |T| for integer df (Abramowitz & Stegun 26.7.3-4)."""
    if df < 1 or int(df) != df:
        raise ValueError(f"df must be a positive integer, got {df}")
    if not 0.5 < p < 1.0:
        raise ValueError(f"p must be in (0.5, 1), got {p}")
    target = 2 * p - 1  # P(|T| <= t)
    lo, hi = 0.0, 1.0
    while _abs_t_cdf(hi, int(df)) < target:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if _abs_t_cdf(mid, int(df)) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * hi:
            break
    return (lo + hi) / 2


def _abs_t_cdf(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer df (A&S 26.7.3 for odd df, 26.7.4 for even)."""
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2 == 1:
        total, term = 0.0, 1.0
        if df > 1:
            total = 1.0
            for k in range(1, (df - 3) // 2 + 1):  # terms (2*4..2k)/(3*5..2k+1) cos^2k
                term *= c2 * (2 * k) / (2 * k + 1)
                total += term
            return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)
        return 2 / math.pi * theta
    total, term = 1.0, 1.0
    for k in range(1, (df - 2) // 2 + 1):  # terms (1*3..2k-1)/(2*4..2k) cos^2k
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return math.sin(theta) * total


def question_interval(per_question, *, level: float = LEVEL, bounds: tuple[float, float] | None = (0.0, 1.0)) -> Interval:
    """The `level` interval for the mean of per-question values (Student-t; module docstring).

    Args:
        per_question: one value per question (a mean over replicates), any sequence of floats.
        level: nominal coverage, in (0, 1).
        bounds: the range the values live in; the interval is clipped to it (None: no clipping,
            e.g. for differences, which live in [-1, 1]).
    """
    x = np.asarray(per_question, dtype=np.float64).ravel()
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    n = int(x.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, level, 0)
    mean = float(x.mean())
    if n == 1:
        lo, hi = -math.inf, math.inf
    else:
        half = t_quantile(0.5 + level / 2, n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
        lo, hi = mean - half, mean + half
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return Interval(mean, lo, hi, level, n)


def paired_interval(a_per_question, b_per_question, *, level: float = LEVEL) -> Interval:
    """The `level` interval for mean(a - b) over questions, paired question by question.

    Both arrays must hold the same questions in the same order, scored with the same seed and
    replicates (common random numbers), so that each difference compares like with like."""
    a = np.asarray(a_per_question, dtype=np.float64).ravel()
    b = np.asarray(b_per_question, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same questions: {a.size} and {b.size} values")
    return question_interval(a - b, level=level, bounds=(-1.0, 1.0))
