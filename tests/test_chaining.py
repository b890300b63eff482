"""Multi-stage chaining and its fallback, on hand-made stores whose answers are known."""

from __future__ import annotations

import math

import pytest

import replay
from replay import schema as S


def _store(path, retrieved: str):
    manifest = S.Manifest(
        name="test-chain", synthetic=True,
        stages=(S.Stage("retrieve"), S.Stage("answer")),
        models=(S.Model("m", 1e9),),
        split={"train": ("q0",), "test": ()},
    )
    questions = {"question_id": ["q0"], "split": ["train"], "gold": ["yes"], "metadata": ["{}"]}
    rows = [  # (stage, context, answer, score, prompt, completion)
        ("retrieve", "", retrieved, 1.0, 10, 5),
        ("retrieve", "", retrieved, 1.0, 10, 5),
        ("retrieve", "", retrieved, 1.0, 10, 5),
        ("answer", "docA", "yes", 1.0, 7, 3),
        ("answer", "docA", "yes", 1.0, 7, 3),
        ("answer", "docB", "no", 0.0, 7, 3),
    ]
    samples = {
        "question_id": ["q0"] * len(rows), "stage": [r[0] for r in rows], "model": ["m"] * len(rows),
        "context": [r[1] for r in rows], "sample_index": [0, 1, 2, 0, 1, 0], "answer": [r[2] for r in rows],
        "score": [r[3] for r in rows], "prompt_tokens": [r[4] for r in rows], "completion_tokens": [r[5] for r in rows],
    }
    return replay.open(replay.write_store(path, manifest, questions, samples))


def test_downstream_pool_follows_upstream_answer(tmp_path):
    st = _store(tmp_path / "a", "docA")
    r = st.evaluate("m:2,m:1", replicates=20)
    assert r.score == 1.0 and r.stages[0].score == 1.0 and r.fallback_rate == 0.0
    # prompt once per stage (10 + 7) plus drawn completions (2 x 5 + 1 x 3)
    assert r.tokens == 30 and r.flops == 2 * 1e9 * 30 and r.stages[0].tokens == 20 and r.stages[1].tokens == 10

    st = _store(tmp_path / "b", "docB")
    assert st.evaluate("m:1,m:1", replicates=5).score == 0.0


def test_missing_context_falls_back_to_largest_pool_and_is_counted(tmp_path):
    st = _store(tmp_path / "c", "docC")  # no answer pool was collected for docC
    r = st.evaluate("m:3,m:1", replicates=10)
    assert r.stages[1].fallback_rate == 1.0 and r.fallback_rate == 1.0
    assert r.score == 1.0  # the largest pool is docA's


def test_budget_makes_infeasible(tmp_path):
    st = _store(tmp_path / "d", "docA")
    from replay.engine import budget_unit

    unit = budget_unit(st)
    # one unit = one single-sample pass of the smallest model on the cheapest stage:
    # answer stage, prompt 7 + mean completion 3 = 10 tokens
    assert unit == pytest.approx(2 * 1e9 * 10)
    r = st.evaluate("m:3,m:2", replicates=3, budget=2.0)
    assert not r.feasible and math.isnan(r.score) and r.units == pytest.approx((10 + 15 + 7 + 6) / 10)
    assert st.evaluate("m:1,m:1", replicates=3, budget=2.5).feasible is True  # 15 + 10 tokens


def test_majority_tie_goes_to_first_drawn(tmp_path):
    manifest = S.Manifest(name="test-tie", synthetic=True, stages=(S.Stage("s"),), models=(S.Model("m", 1e9),))
    questions = {"question_id": ["q"], "split": ["train"], "gold": ["x"], "metadata": ["{}"]}
    samples = {"question_id": ["q", "q"], "stage": ["s", "s"], "model": ["m", "m"], "context": ["", ""],
               "sample_index": [0, 1], "answer": ["x", "y"], "score": [1.0, 0.0], "prompt_tokens": [0, 0],
               "completion_tokens": [1, 1]}
    st = replay.open(replay.write_store(tmp_path / "t", manifest, questions, samples))
    from replay import reference as ref

    r = st.evaluate("m:2", replicates=400, seed=3)
    firsts = [ref.draw(ref.Stream(ref.stream_start(3, int(st.arrays.question_hash[0]), k, 0)), 2, 2)[0] for k in range(400)]
    expect = sum(1.0 for f in firsts if f == 0) / 400  # sample 0 is 'x', the correct one
    assert r.score == pytest.approx(expect) and 0.4 < expect < 0.6
