"""The aggregation rules are defined once (replay/aggregation.py): collection's expansion and the
replay reference (the kernels' oracle) agree on the same samples.

Collection decides which upstream answers get a pool of their own at the next stage by
aggregating subsets of the upstream pools on answer *strings* (collect/run/expansion.py);
replay aggregates the same samples as interned *ids* (replay/reference.py, which the kernels
equal exactly: tests/test_kernels.py) and looks the next stage's pool up by that answer. These
tests draw the reference's own subsets on random stores and check that both give the same
answer, that the answer collection would collect under is the key replay looks up, and that
the expanded answers are the most frequent answers of the reference.
"""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

import replay
from collect.run import aggregate, expand, fused_distribution, size_grid, upstream_distribution
from collect.tasks.scoring import join_items, split_items
from replay import aggregation as rules
from replay import reference as ref
from replay import schema as S
from replay.controllers.builtin import vote
from storekit import RandomStoreSpec, make_random_store

AGGS = ("majority_vote", "set_vote", "best_score")


def test_the_rules():
    assert rules.majority(["b", "a", "a", "b"]) == "b"  # a tie goes to the answer drawn first
    assert rules.majority_index([3, 1, 1]) == 1
    assert rules.set_vote([["A", "B"], ["A"], ["C"]]) == ["A"]  # in more than half of the outputs
    assert rules.set_vote([["B"], ["A"]]) == ["A", "B"]  # no majority: the items with the top count
    assert rules.set_vote([["A", "A"], ["B"], ["B"]]) == ["B"]  # an item counts once per output
    assert rules.set_vote([[], []]) == []
    assert rules.best_index([0.1, 0.9, 0.9]) == 1  # a tie goes to the one drawn first
    assert rules.fusion_size([1, 2, 4], 4) == 4 and rules.fusion_size([1, 2, 4], 3) == 2
    assert rules.fusion_size([2, 4], 1) == 0  # none small enough: majority vote instead
    assert vote is rules.majority  # the controllers' vote is replay's


def _item_names(a) -> dict[int, str]:
    """Item id -> item string: an answer's item ids and its split, sorted items line up."""
    names = {}
    for i, text in enumerate(a.answers):
        items = sorted(set(split_items(text)))
        ids = a.ans_items[a.ans_item_off[i]:a.ans_item_off[i + 1]]
        assert len(items) == len(ids)
        names.update(zip(ids.tolist(), items))
    return names


def _as_text(a, out: ref.Outcome, names: dict[int, str]) -> str:
    if out.items is not None:
        return join_items(names[i] for i in out.items)
    return str(a.answers[out.answer])


def _tie_store(path, agg: str):
    """One question whose first-stage pool is full of ties (equal counts, equal scores), with a
    second-stage pool for some of its answers."""
    answers = {"majority_vote": ["x", "y", "z", "y", "x", "w"], "best_score": ["x", "y", "z", "w", "x", "v"],
               "set_vote": ["a|b", "b", "a", "c", "a|c", "b|c"]}[agg]
    scores = [0.5, 0.5, 0.9, 0.9, 0.1, 0.9]
    later = sorted(set(answers))[:3] + ["a|b|c"]
    manifest = S.Manifest(name="test-ties", synthetic=True, stages=(S.Stage("up", agg), S.Stage("down")),
                          models=(S.Model("m", 1e9),), split={"train": ("q0",), "test": ()})
    rows = [("up", "", x, sc, j) for j, (x, sc) in enumerate(zip(answers, scores))]
    rows += [("down", c, "yes", 1.0, j) for c in later for j in range(2)]
    samples = {"question_id": ["q0"] * len(rows), "stage": [r[0] for r in rows], "model": ["m"] * len(rows),
               "context": [r[1] for r in rows], "sample_index": [r[4] for r in rows],
               "answer": [r[2] for r in rows], "score": [r[3] for r in rows],
               "prompt_tokens": [3] * len(rows), "completion_tokens": [2] * len(rows)}
    questions = {"question_id": ["q0"], "split": ["train"], "gold": ["yes"], "metadata": ["{}"]}
    stage_golds = {"question_id": ["q0"], "stage": ["up"], "gold": [answers[0]]}
    return replay.write_store(path, manifest, questions, samples, stage_golds=stage_golds)


@pytest.mark.parametrize("agg", AGGS)
def test_collection_aggregates_what_replay_aggregates(tmp_path, agg):
    """Same drawn samples: collection's answer string is replay's answer, and it is the
    context key under which replay looks up the next stage's pool."""
    checked = 0
    stores = [(_tie_store(tmp_path / f"{agg}-ties", agg), 0)]
    for seed in range(4):
        spec = RandomStoreSpec(seed=seed, aggregations=(agg, "majority_vote"), n_questions=3, max_pool=7,
                               n_answers=3, context_keep=0.8, float_scores=seed % 2 == 1)
        stores.append((make_random_store(tmp_path / f"{agg}-{seed}", spec), seed))
    for path, seed in stores:
        st = replay.open(path)
        a = st.arrays
        names = _item_names(a) if agg == "set_vote" else {}
        for q, m in itertools.product(range(a.n_questions), range(a.n_models)):
            p = a.qsm_pool_off[q * a.n_stages * a.n_models + m]
            base, size = int(a.pool_off[p]), int(a.pool_off[p + 1] - a.pool_off[p])
            downstream = {str(a.answers[a.pool_ctx[p1]]): p1 for p1 in a.pools_of(q, 1, 0)}
            for n, r in itertools.product(range(1, size + 1), range(12 if st.name == "test-ties" else 6)):
                out = ref.aggregate_pool(a, q, 0, p, n, r, seed)
                rows = [base + j for j in out.drawn]
                collected = aggregate(agg, [str(a.answers[a.s_answer[i]]) for i in rows],
                                      [float(a.s_score[i]) for i in rows])
                assert collected == _as_text(a, out, names), (agg, seed, q, m, n, r)
                # the key collection would collect under is the one replay looks up
                p1, fell_back = ref.find_pool(a, q, 1, 0, out.answer, out.items)
                assert fell_back == (collected not in downstream)
                if not fell_back:
                    assert p1 == downstream[collected]
                checked += 1
    assert checked > 200


@pytest.mark.parametrize("agg", AGGS)
def test_expanded_answers_are_replays_most_frequent(tmp_path, agg):
    """upstream_distribution, fed the reference's draws, gives the mass of the reference's
    aggregated answers, and so expands the answers replay meets most often."""
    spec = RandomStoreSpec(seed=11, aggregations=(agg, "majority_vote"), n_questions=3, max_pool=8, n_answers=4)
    st = replay.open(make_random_store(tmp_path / "s", spec))
    a = st.arrays
    names = _item_names(a) if agg == "set_vote" else {}
    draws, seed = 5, 3
    for q in range(a.n_questions):
        qh = int(a.question_hash[q])
        pools = [int(a.qsm_pool_off[q * a.n_stages * a.n_models + m]) for m in range(a.n_models)]
        texts = [[str(a.answers[a.s_answer[i]]) for i in range(a.pool_off[p], a.pool_off[p + 1])] for p in pools]
        scores = [a.s_score[a.pool_off[p]:a.pool_off[p + 1]].tolist() for p in pools]
        # the expected mass: the reference's aggregate of replicate r, in the order collection draws
        want: Counter = Counter()
        r = itertools.count()
        for p, answers in zip(pools, texts):
            grid = size_grid(len(answers))
            for n in grid:
                k = draws if n < len(answers) or agg == "majority_vote" else 1
                for _ in range(k):
                    out = ref.aggregate_pool(a, q, 0, p, n, next(r), seed)
                    want[_as_text(a, out, names)] += 1 / len(pools) / (len(grid) * k)
        r = itertools.count()

        def reference_draw(size, n):
            return ref.draw(ref.Stream(ref.stream_start(seed, qh, next(r), 0)), size, n)

        got = upstream_distribution([(1 / len(pools), t, s) for t, s in zip(texts, scores)], agg, draws=draws,
                                    draw=reference_draw)
        total = sum(want.values())
        assert set(got) == set(want)
        for ans in want:
            assert got[ans] == pytest.approx(want[ans] / total, abs=1e-12)
        assert list(expand(got, 2, 0.0)) == list(expand({k: v / total for k, v in want.items()}, 2, 0.0))


def test_fused_mass_follows_replays_choice_of_stored_fusion():
    """After an llm_fuse stage, the mass of each fused answer is that of replay picking, at each
    count of the collection grid, uniformly among the stored fusions of `fusion_size(n)`."""
    by_size = {1: ["a"], 2: ["b"], 4: ["c", "d"]}
    got = fused_distribution([(1.0, by_size)])
    want: Counter = Counter()
    grid = size_grid(4)
    for n in grid:
        used = by_size[rules.fusion_size(by_size, n)]
        for x in used:
            want[x] += 1 / (len(grid) * len(used))
    assert got == pytest.approx(dict(want))
    assert np.isclose(sum(got.values()), 1.0)
