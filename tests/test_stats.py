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


def _n_eff(x):
    """The documented effective number of questions: n over the design effect s2 / (m (1 - m)),
    shrunk towards 1 by 2 t^2 f pseudo-questions (f: the share of values at 0 or 1)."""
    n, m, v = len(x), x.mean(), x.var(ddof=1)
    a = 2 * t_quantile(0.975, n - 1) ** 2 * np.mean((x <= 0) | (x >= 1))
    return n / ((v / (m * (1 - m)) * n + a) / (n + a))


def test_question_interval_is_wilson_at_the_effective_number_of_questions():
    q = t_quantile(0.975, 14)
    # 0/1 values: the design effect is n / (n - 1), about 1, and the interval Wilson's
    x = np.array([1.0] * 12 + [0.0] * 3)
    ci = question_interval(x)
    assert ci.method == "wilson-neff" and ci.n == 15 and ci.level == 0.95 and ci.mean == pytest.approx(0.8)
    assert 14 < _n_eff(x) < 15
    assert (ci.lo, ci.hi) == pytest.approx(_wilson(0.8, _n_eff(x), q), abs=1e-12)
    # every question right: not [1, 1] but Wilson's [n / (n + q^2), 1]
    full = question_interval([1.0] * 15)
    assert full.hi == 1.0 and full.lo == pytest.approx(15 / (15 + q * q))
    # values spread inside the range (none at an end): n_eff = n m (1 - m) / s2, and close to
    # the t interval
    y = np.array([0.2, 0.4, 0.6, 0.9, 0.5, 0.3])
    ci = question_interval(y)
    m, v = y.mean(), y.var(ddof=1)
    assert _n_eff(y) == pytest.approx(6 * m * (1 - m) / v)
    assert (ci.lo, ci.hi) == pytest.approx(_wilson(m, _n_eff(y), t_quantile(0.975, 5)), abs=1e-12)
    z = np.random.default_rng(0).uniform(0.45, 0.55, 400)
    t_half = t_quantile(0.975, 399) * z.std(ddof=1) / 20
    assert question_interval(z).half_width == pytest.approx(t_half, rel=0.01)
    # mostly right, one question a little short: the few values off the end do not make the
    # interval narrow (the shrinkage; unshrunk, n_eff would be about 330)
    w = np.array([1.0] * 29 + [0.9])
    assert _n_eff(w) < 110 and question_interval(w).lo < 0.96
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
    lo, hi = intervals(np.array([r.mean() for r in rows]), np.array([r.std(ddof=1) for r in rows]), 20,
                       at_ends=np.array([np.mean((r <= 0) | (r >= 1)) for r in rows]))
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


def test_interval_covers_the_true_mean_at_its_nominal_rate_on_a_simulated_store(tmp_path):
    """A SYNTHETIC store (600 questions) is the population; each configuration's true mean is
    known (one sample: the pools' mean score, exactly; nine of nine: the replay at 2,000
    replicates, error under 5e-4). Draws of 15, 30 and 50 questions at 16 replicates, as a
    search's training questions are: the 95% interval covers the truth in 95% of draws, within
    the Monte-Carlo error (400 draws: sd 0.011), where the Student-t interval it replaced falls
    far short on a configuration that is right on almost every question. (A question's result
    depends only on the seed, the question and the replicate, so every question is replayed
    once under each of 24 seeds and a draw takes n questions under one seed.)
    benchmarks/interval_coverage.py runs the same over 2,000 draws with a seed each (README)."""
    import replay
    from collect.simulate import simulate, spec_from_dict

    spec = spec_from_dict({
        "name": "sim-coverage-test", "questions": 600, "samples": 9,
        "models": [{"name": "weak-1B", "params": 1e9, "ability": 0.0},
                   {"name": "strong-8B", "params": 8e9, "ability": 2.5}],
        "stages": [{"name": "solve", "completion_tokens": 50}]})
    store = replay.open(simulate(spec, tmp_path / "sim", seed=1))
    a = store.arrays
    truth = {}
    for name in ("weak-1B", "strong-8B"):
        m = store.model_index(name)
        pools = [a.qsm_pool_off[q * a.n_models + m] for q in range(a.n_questions)]
        truth[f"{name}:1"] = float(np.mean([a.s_score[a.pool_off[p]:a.pool_off[p + 1]].mean() for p in pools]))
    truth["strong-8B:9"] = store.evaluate("strong-8B:9", replicates=2000, seed=99_999).score
    cfgs = list(truth)
    seeds = 24
    table = np.array([[r.per_question for r in store.evaluate_batch(cfgs, replicates=16, seed=1 + s)]
                      for s in range(seeds)])  # [seed, config, question]
    rng = np.random.default_rng(0)
    trials = 400
    for n in (15, 30, 50):
        hit = np.zeros(len(cfgs))
        t_hit = 0
        for _ in range(trials):
            s, qs = rng.integers(seeds), rng.choice(a.n_questions, size=n, replace=False)
            for ci, c in enumerate(cfgs):
                x = table[s, ci, qs]
                iv = question_interval(x)  # what EvalResult.ci_lo/ci_hi hold for these questions
                hit[ci] += iv.lo <= truth[c] <= iv.hi
            half = t_quantile(0.975, n - 1) * x.std(ddof=1) / np.sqrt(n)  # strong-8B:9, right almost always
            t_hit += x.mean() - half <= truth["strong-8B:9"] <= x.mean() + half
        for ci, c in enumerate(cfgs):
            assert hit[ci] / trials >= 0.95 - 3 * 0.011, (n, c, hit[ci] / trials, truth[c])
        if n == 15:
            assert t_hit / trials < 0.8  # the test can tell a wrong interval
    # and the engine's interval is this one
    r = store.evaluate_batch(cfgs, questions=list(range(30)), replicates=16, seed=1)[2]
    assert (r.ci_lo, r.ci_hi) == pytest.approx((question_interval(table[0, 2, :30]).lo,
                                                question_interval(table[0, 2, :30]).hi), abs=1e-12)


def test_eval_result_carries_its_intervals(tmp_path):
    """EvalResult: (ci_lo, ci_hi) is question_interval of per_question; interval(level) and the
    paired difference() need a result on the same questions, seed and replicates."""
    import replay
    from storekit import RandomStoreSpec, make_random_store

    st = replay.open(make_random_store(tmp_path / "s", RandomStoreSpec(seed=8, n_questions=9, max_pool=7, n_answers=3)))
    a, b = st.evaluate_batch(["m0:3", "m1:5"], replicates=25, seed=4)
    ci = question_interval(a.per_question)
    assert (a.ci_lo, a.ci_hi) == pytest.approx((ci.lo, ci.hi), abs=1e-12) and a.interval() == ci
    narrow = a.interval(0.5)
    assert narrow.level == 0.5 and a.ci_lo <= narrow.lo <= narrow.hi <= a.ci_hi
    assert a.as_row()["ci_lo"] == a.ci_lo and a.as_row()["ci_hi"] == a.ci_hi
    d = b.difference(a)
    assert d == paired_interval(b.per_question, a.per_question) and d.mean == pytest.approx(b.score - a.score)
    with pytest.raises(ValueError, match="same questions, replicates and seed"):
        b.difference(st.evaluate("m0:3", replicates=25, seed=5))
    over = st.evaluate("m1:5", replicates=5, budget=1e-9)
    assert not over.feasible and np.isnan(over.ci_lo)
    with pytest.raises(ValueError, match="infeasible"):
        over.interval()
