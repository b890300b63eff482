"""replay.stats: the t quantiles, the question interval and paired differences."""

from __future__ import annotations

import numpy as np
import pytest

from replay.stats import intervals, paired_interval, question_interval, t_quantile


@pytest.mark.parametrize("df,p,ref", [  # published tables (9 decimals)
    (1, 0.975, 12.706204736), (2, 0.975, 4.302652730), (3, 0.975, 3.182446305), (4, 0.975, 2.776445105),
    (14, 0.975, 2.144786688), (29, 0.975, 2.045229642), (49, 0.975, 2.009575237), (10, 0.95, 1.812461123),
])
def test_t_quantiles_match_the_tables(df, p, ref):
    assert t_quantile(p, df) == pytest.approx(ref, abs=1e-8)


def _wilson(m, n, q):
    """Wilson's score interval for a proportion m of n, with quantile q."""
    k = q * q / n
    c = (m + k / 2) / (1 + k)
    h = q / (1 + k) * np.sqrt(m * (1 - m) / n + k / (4 * n))
    return c - h, c + h


def test_question_interval_is_wilson_at_the_effective_number_of_questions():
    q = t_quantile(0.975, 14)
    # 0/1 values: the effective number is n - 1, and the interval Wilson's
    x = np.array([1.0] * 12 + [0.0] * 3)
    ci = question_interval(x)
    assert ci.method == "wilson-neff" and ci.n == 15 and ci.level == 0.95 and ci.mean == pytest.approx(0.8)
    assert (ci.lo, ci.hi) == pytest.approx(_wilson(0.8, 14, q), abs=1e-12)
    # every question right: not [1, 1] but Wilson's [n / (n + q^2), 1]
    full = question_interval([1.0] * 15)
    assert full.hi == 1.0 and full.lo == pytest.approx(15 / (15 + q * q))
    # values spread inside the range: n_eff = n m (1 - m) / s2, and close to the t interval
    y = np.array([0.2, 0.4, 0.6, 0.9, 0.5, 0.3])
    ci = question_interval(y)
    m, v = y.mean(), y.var(ddof=1)
    assert (ci.lo, ci.hi) == pytest.approx(_wilson(m, 6 * m * (1 - m) / v, t_quantile(0.975, 5)), abs=1e-12)
    z = np.random.default_rng(0).uniform(0.45, 0.55, 400)
    t_half = t_quantile(0.975, 399) * z.std(ddof=1) / 20
    assert question_interval(z).half_width == pytest.approx(t_half, rel=0.01)
    # within the range always; no spread inside it: zero width; one question: the whole range
    assert question_interval([0.0, 1.0, 1.0]).lo >= 0.0
    same = question_interval([0.5] * 10)
    assert same.lo == same.hi == 0.5
    assert question_interval([0.3]).hi == 1.0 and np.isinf(question_interval([0.3], bounds=None).hi)
    # values outside the stated range: the Student-t interval, unclipped
    out = question_interval([1.5, 0.2, 0.4])
    assert out.method == "t" and out.hi > 1.0


def test_intervals_vectorised_equal_one_at_a_time():
    rng = np.random.default_rng(1)
    rows = [rng.uniform(0, 1, 20), (rng.random(20) < 0.9).astype(float), np.ones(20), np.full(20, 0.25)]
    lo, hi = intervals(np.array([r.mean() for r in rows]), np.array([r.std(ddof=1) for r in rows]), 20)
    for r, a, b in zip(rows, lo, hi):
        ci = question_interval(r)
        assert (a, b) == pytest.approx((ci.lo, ci.hi), abs=1e-12)


def test_paired_interval_is_tighter_than_either_score_when_draws_are_shared():
    rng = np.random.default_rng(0)
    difficulty = rng.uniform(0, 1, 40)  # shared question effect, as common random numbers give
    a = np.clip(difficulty + 0.05 + rng.normal(0, 0.01, 40), 0, 1)
    b = np.clip(difficulty + rng.normal(0, 0.01, 40), 0, 1)
    d = paired_interval(a, b)
    assert d.excludes(0.0) and d.lo > 0
    assert d.half_width < 0.2 * question_interval(a).half_width
    with pytest.raises(ValueError, match="same questions"):
        paired_interval(a, b[:-1])
