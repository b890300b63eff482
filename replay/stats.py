"""Uncertainty over questions: intervals for a score and for paired differences of scores.

A replayed score has two sources of noise, and they are reported apart:

- the *replicate error*: the standard error over replay replicates with the questions fixed
  (`EvalResult.stderr`). It shrinks with more replicates and says how well the replay has pinned
  down the score on *these* questions;
- the *question interval*: a 95% interval for the score on the population the questions were
  drawn from, computed from the per-question mean scores (`EvalResult.per_question`). On 15-50
  questions it is one to two orders of magnitude wider, and it is the one that says whether a
  result carries over to new questions.

Method. Each question's mean over replicates is one bounded, independent draw from the question
population; the interval is for their mean. Scores live in a known range ([0, 1]; differences
in [-1, 1]), and per-question scores are often almost 0/1 (a question a configuration nearly
always or never gets right). On such data the textbook Student-t interval on the per-question
means fails where it matters, for good configurations: when most questions score 1 its width
collapses, and on a simulated store it covered a true mean of 0.976 in 36% of draws of 15
questions, 60% of 30, 75% of 50 (benchmarks/interval_coverage.py). So the interval is the
**Wilson score interval at an effective number of questions** (Korn & Graubard 1998, for a
proportion estimated with a design effect), values rescaled to [0, 1]:

- the design effect d = s2 / (m (1 - m)), with mean m and sample variance s2 (n - 1 in the
  denominator), says how far the values are from a 0/1 sample (d about 1) towards values
  spread inside the range (d small);
- it is shrunk towards 1 by a = 2 t^2 f pseudo-questions, f the share of values at an end of
  the range (0 or 1) and t the t(n-1) quantile: d' = (n d + a) / (n + a). Values piled at an
  end of the range hide a tail (the few questions off that end, rarely drawn, are what the
  score's uncertainty rests on, and their spread is poorly estimated from the few seen); values
  spread inside the range shrink nothing, and keep the t interval's width;
- n_eff = n / d', and the interval is Wilson's for a proportion m out of n_eff, with t(n-1)
  in place of the normal quantile (the small-sample correction). Every value at one end gives
  n_eff = n: 15 right answers out of 15 give [0.77, 1], not [1, 1].

The shrinkage weight 2 t^2 f is a choice, tuned on simulated distributions (0/1, Beta, 0/1 with
a tail, replicate means) so that coverage stays near 95% at 15-50 questions without widening
intervals of values inside the range. Measured on a simulated store whose true mean is known
(benchmarks/interval_coverage.py, 2,000 draws per size, Monte-Carlo sd 0.005): coverage of
scores 0.960-0.990 at 15 questions, 0.959-0.980 at 30, 0.943-0.967 at 50, where the t interval
gave 0.361-0.944, 0.602-0.948, 0.754-0.953; tests/test_stats.py checks it on a smaller one. It
needs no resampling (the same numbers on every machine, microseconds, vectorised over
configurations: `intervals`) and its ends always lie in the range. One question gives the whole
range (no interval); values all equal inside the range give zero width: a reader should then
read it as "no spread observed", not as certainty. Values outside the given range (a graded
scorer beyond [0, 1]) get the Student-t interval, unclipped (method "t").

Paired comparisons use the same interval on per-question differences, in [-1, 1]. Common random
numbers make configurations share their draws per (question, replicate), so the replicate noise
largely cancels in a difference and the interval is much tighter than either score's. Where two
configurations differ on a few questions only, a draw of 15 questions often holds none of them:
the interval is then narrow around 0 ("no difference observed") and misses a small true
difference (coverage 0.71 at 15 questions, 0.85 at 30, 0.90 at 50 for a true difference of
0.014 in the benchmark, 0.95-0.97 for larger ones); it never claimed a difference of the wrong
sign there.
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
        method: how it was computed: "wilson-neff" (the Wilson interval at the effective
            number of questions: module docstring) or "t" (Student-t, for values without a
            known range).
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


_NO_SPREAD = 1e-14  # a sample variance (of values in [0, 1]) below this is rounding: no spread


def _wilson_neff(mean: np.ndarray, var: np.ndarray, n: int, level: float,
                 at_ends: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The Wilson interval at the effective number of questions, for values in [0, 1] (module
    docstring): arrays of means, sample variances (ddof=1) and shares of values at 0 or 1, of
    n >= 2 values each."""
    q = t_quantile(0.5 + level / 2, n - 1)
    m = np.clip(np.asarray(mean, dtype=np.float64), 0.0, 1.0)
    var = np.maximum(np.asarray(var, dtype=np.float64), 0.0)
    v = m * (1.0 - m)
    spread = var > _NO_SPREAD
    with np.errstate(divide="ignore", invalid="ignore"):
        # the design effect s2 / (m (1 - m)), shrunk towards 1 (a 0/1 sample) by 2 q^2 f
        # pseudo-questions, f the share of values at an end of the range (module docstring)
        a = 2.0 * q * q * np.clip(np.asarray(at_ends, dtype=np.float64), 0.0, 1.0)
        deff = (var / np.where(v > 0, v, 1.0) * n + a) / (n + a)
        # every value at one end of the range (m(1-m) = 0): a 0/1 sample, n; no spread at all
        # inside the range: infinite (zero width)
        n_eff = np.where(v <= 0, float(n), np.where(spread, np.maximum(n / np.where(deff > 0, deff, 1.0), 1.0), np.inf))
        k = q * q / n_eff  # 0 where n_eff is infinite
        center = (m + k / 2) / (1 + k)
        half = q / (1 + k) * np.sqrt(v / n_eff + k / (4 * n_eff))
    half = np.where(np.isfinite(n_eff), half, 0.0)
    return np.clip(center - half, 0.0, 1.0), np.clip(center + half, 0.0, 1.0)


def intervals(mean, sd, n: int, *, level: float = LEVEL, bounds: tuple[float, float] | None = (0.0, 1.0),
              at_ends=0.0) -> tuple[np.ndarray, np.ndarray]:
    """`question_interval`'s ends for many configurations at once, from the mean, the sample
    standard deviation (ddof=1) and the share of values at an end of the range of each one's n
    per-question values (the engine and the scan use it; the values must lie within `bounds`,
    which the caller knows, e.g. from the store).

    Args:
        mean: per configuration, the mean of its per-question values (any shape).
        sd: the same shape: the standard deviation of those values, ddof=1.
        n: the number of questions (the same for every configuration).
        level: nominal coverage, in (0, 1).
        bounds: the range the values live in; None: the Student-t interval, unclipped.
        at_ends: the same shape as `mean` (or a number): the share of the values equal to either
            end of `bounds`.

    Returns:
        (lo, hi), arrays of the shape of `mean`.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    mean = np.asarray(mean, dtype=np.float64)
    sd = np.asarray(sd, dtype=np.float64)
    if n < 1:
        return np.full(mean.shape, math.nan), np.full(mean.shape, math.nan)
    if n == 1:
        lo, hi = (bounds if bounds is not None else (-math.inf, math.inf))
        return np.full(mean.shape, float(lo)), np.full(mean.shape, float(hi))
    if bounds is None:
        half = t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
        return mean - half, mean + half
    a, b = float(bounds[0]), float(bounds[1])
    w = b - a
    lo, hi = _wilson_neff((mean - a) / w, (sd / w) ** 2, n, level, at_ends)
    return a + w * lo, a + w * hi


def question_interval(per_question, *, level: float = LEVEL, bounds: tuple[float, float] | None = (0.0, 1.0)) -> Interval:
    """The `level` interval for the mean of per-question values (module docstring): the Wilson
    interval at the effective number of questions when the values lie within `bounds`, else the
    Student-t interval.

    Args:
        per_question: one value per question (a mean over replicates), any sequence of floats.
        level: nominal coverage, in (0, 1).
        bounds: the range the values live in (scores: [0, 1]; differences: [-1, 1]); None, or
            values outside it: the Student-t interval, unclipped.
    """
    x = np.asarray(per_question, dtype=np.float64).ravel()
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    n = int(x.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, level, 0)
    mean = float(x.mean())
    sd = float(x.std(ddof=1)) if n > 1 else 0.0
    if bounds is not None and not (x.min() >= bounds[0] and x.max() <= bounds[1]):
        bounds = None
    ends = float(np.mean((x <= bounds[0]) | (x >= bounds[1]))) if bounds is not None else 0.0
    lo, hi = intervals(mean, sd, n, level=level, bounds=bounds, at_ends=ends)
    return Interval(mean, float(lo), float(hi), level, n, "t" if bounds is None else "wilson-neff")


def paired_interval(a_per_question, b_per_question, *, level: float = LEVEL) -> Interval:
    """The `level` interval for mean(a - b) over questions, paired question by question (the
    question interval of the differences, in [-1, 1]).

    Both arrays must hold the same questions in the same order, scored with the same seed and
    replicates (common random numbers), so that each difference compares like with like.

    Args:
        a_per_question, b_per_question: one value per question each, in [0, 1].
        level: nominal coverage, in (0, 1).
    """
    a = np.asarray(a_per_question, dtype=np.float64).ravel()
    b = np.asarray(b_per_question, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same questions: {a.size} and {b.size} values")
    return question_interval(a - b, level=level, bounds=(-1.0, 1.0))
