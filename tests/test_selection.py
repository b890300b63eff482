"""The rules that pick a search's final point among its trials (search/selection.py), and the
paired comparison of searchers (search/report.py)."""

from __future__ import annotations

import numpy as np
import pytest

from replay.errors import ConfigError
from search.report import paired_difference
from search.selection import DEFAULT_RULE, RULES, select
from search.trial import Trial


def trial(n, per_question, cost, feasible=True):
    pq = tuple(float(x) for x in per_question)
    return Trial(number=n, point=f"p{n}", feasible=feasible, score=float(np.mean(pq)) if feasible else None,
                 stderr=0.0 if feasible else None, cost=float(cost), tokens=0.0, wall_s=0.0, label=f"p{n}",
                 per_question=pq if feasible else None)


def test_each_rule_picks_what_it_says():
    rng = np.random.default_rng(0)
    q = 20
    steady = np.full(q, 0.7)  # 0.70 on every question
    lucky = np.where(rng.random(q) < 0.5, 1.0, 0.45)  # higher mean, much more spread
    lucky = lucky - lucky.mean() + 0.74
    cheap_tie = steady - 0.01  # a shade below the best, within noise of it, and cheap
    costly_tie = lucky + rng.normal(0, 0.05, q)
    costly_tie += 0.735 - costly_tie.mean()  # a shade below the best, within noise, and costly
    far = np.full(q, 0.2)  # clearly worse, cheapest of all
    trials = [trial(0, steady, 50), trial(1, lucky, 60), trial(2, cheap_tie, 10), trial(3, costly_tie, 99),
              trial(4, far, 1), trial(5, lucky, 0, feasible=False)]
    picks = {r: select(trials, r) for r in RULES}
    assert picks["mean"].trial.number == 1  # the highest mean (the infeasible copy never counts)
    assert picks["lcb"].trial.number == 0  # the steady one has the best lower bound
    assert picks["tied-cheapest"].trial.number == 2  # not the far one: it is worse beyond noise
    assert picks["tied-costliest"].trial.number == 3
    assert picks["mean"].best_mean.number == 1 and picks["tied-cheapest"].tied == 4  # 0, 1, 2, 3
    assert all(p.rule == p.asked == r and not p.note for r, p in picks.items())
    # exact ties on the mean: `mean` takes the cheaper, `mean-costliest` the costlier
    twins = [trial(0, steady, 50), trial(1, steady, 80), trial(2, steady, 20)]
    assert select(twins, "mean").trial.number == 2 and select(twins, "mean-costliest").trial.number == 1


def test_trials_without_per_question_scores_are_ranked_by_mean_and_say_so():
    a = trial(0, [0.5, 0.7], 10)
    b = Trial(number=1, point="p1", feasible=True, score=0.9, stderr=0.0, cost=5.0, tokens=0.0, wall_s=0.0, label="p1")
    s = select([a, b], "lcb")
    assert s.trial.number == 1 and s.rule == "mean" and s.asked == "lcb" and "per-question" in s.note
    assert s.as_dict()["note"] and select([], "lcb").trial is None
    with pytest.raises(ConfigError, match="--select"):
        select([a], "bogus")
    assert DEFAULT_RULE in RULES


def test_paired_difference_over_seeds_and_questions():
    rng = np.random.default_rng(1)
    base = rng.random(60)
    a = {s: np.clip(base + 0.10 + rng.normal(0, 0.02, 60), 0, 1) for s in range(5)}
    b = {s: np.clip(base + rng.normal(0, 0.02, 60), 0, 1) for s in range(5)}
    d = paired_difference(a, b)
    assert d["beyond_noise"] and d["questions_lo"] > 0 and d["seeds_lo"] > 0 and d["seeds"] == 5
    same = paired_difference(b, {s: v + rng.normal(0, 0.001, 60) for s, v in b.items()})
    assert not same["beyond_noise"]
    # one seed each: the question interval alone decides
    one = paired_difference({0: a[0]}, {0: b[0]})
    assert one["seeds_lo"] is None and one["beyond_noise"]
    # searches that differ a lot from seed to seed are not "beyond noise" on two seeds
    wild = {0: np.clip(base + 0.3, 0, 1), 1: np.clip(base - 0.2, 0, 1)}
    assert not paired_difference(wild, {0: base, 1: base})["beyond_noise"]
