"""replay.stats: the t quantiles, the question interval and paired differences."""

from __future__ import annotations

import numpy as np
import pytest

from replay.stats import paired_interval, question_interval, t_quantile


@pytest.mark.parametrize("df,p,ref", [  # published tables (9 decimals)
    (1, 0.975, 12.706204736), (2, 0.975, 4.302652730), (3, 0.975, 3.182446305), (4, 0.975, 2.776445105),
    (14, 0.975, 2.144786688), (29, 0.975, 2.045229642), (49, 0.975, 2.009575237), (10, 0.95, 1.812461123),
])
def test_t_quantiles_match_the_tables(df, p, ref):
    assert t_quantile(p, df) == pytest.approx(ref, abs=1e-8)


def test_question_interval_is_the_t_interval_clipped_to_the_score_range():
    x = np.array([0.2, 0.4, 0.6, 0.9, 0.5, 0.3])
    ci = question_interval(x)
    half = t_quantile(0.975, 5) * x.std(ddof=1) / np.sqrt(6)
    assert ci.mean == pytest.approx(x.mean()) and ci.n == 6 and ci.level == 0.95
    assert ci.lo == pytest.approx(x.mean() - half) and ci.hi == pytest.approx(x.mean() + half)
    wide = question_interval([0.0, 1.0, 1.0])
    assert wide.lo == 0.0 and wide.hi == 1.0  # clipped, not beyond the range
    same = question_interval([0.5] * 10)
    assert same.lo == same.hi == 0.5  # no spread observed
    assert np.isinf(question_interval([0.3], bounds=None).hi)  # one question: no interval


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
