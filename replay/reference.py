"""Pure-Python reference of the replay semantics: the tests' oracle for `replay/kernels.py`.

Written for clarity, one configuration, question and replicate at a time, with no sharing
across sample counts. It uses the same random streams (same integers, computed with Python
ints) so that its results equal the kernels' exactly. The semantics are documented at the
top of kernels.py and in docs/store-format.md; the aggregation rules are those of
replay/aggregation.py (the ones collection applies too), called here, not rewritten.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from . import aggregation as rules

if TYPE_CHECKING:  # annotations only: this oracle needs NumPy and the rules, not polars
    from .arrays import StoreArrays

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
SALT_R = 0xD1B54A32D192ED03
SALT_S = 0x8CB92BA72F3D8DD7
SALT_N = 0xA0761D6478BD642F

MAJORITY, SET, BEST, FUSE = 0, 1, 2, 3
LAST, ALL, PRODUCT, MEAN = 0, 1, 2, 3  # replay.schema.SCORE_RULES


def end_to_end(rule: int, stage_scores: list[float]) -> float:
    """A pass's end-to-end score from its stage scores, in stage order, by the store's rule:
    the last stage's score; 1 if every stage scored 1 (full marks) else 0; their product; their
    mean (summed in stage order, then divided, as the kernels do)."""
    if rule == LAST:
        return stage_scores[-1]
    if rule == ALL:
        return 1.0 if all(x >= 1.0 for x in stage_scores) else 0.0
    if rule == PRODUCT:
        out = 1.0
        for x in stage_scores:
            out *= x
        return out
    total = 0.0
    for x in stage_scores:
        total += x
    return total / len(stage_scores)


def mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * MIX1) & MASK
    z = ((z ^ (z >> 27)) * MIX2) & MASK
    return z ^ (z >> 31)


def stream_start(seed: int, qhash: int, r: int, s: int) -> int:
    x = mix64(((seed * GOLDEN) & MASK) ^ qhash)
    x = mix64(x ^ ((r * SALT_R + GOLDEN) & MASK))
    return mix64(x ^ ((s * SALT_S + MIX1) & MASK))


class Stream:
    def __init__(self, state: int):
        self.state = state

    def next(self) -> int:
        self.state = (self.state + GOLDEN) & MASK
        return mix64(self.state)

    def below(self, bound: int) -> int:
        return ((self.next() >> 32) * bound) >> 32


def draw(stream: Stream, size: int, n: int) -> list[int]:
    """n positions of a pool of `size`, without replacement: a partial Fisher-Yates shuffle.

    Each 64-bit output feeds two steps: its high half at even steps, its low half at odd ones."""
    perm = list(range(size))
    x = 0
    for j in range(n):
        if j % 2 == 0:
            x = stream.next()
            u = x >> 32
        else:
            u = x & 0xFFFFFFFF
        k = j + ((u * (size - j)) >> 32)
        perm[j], perm[k] = perm[k], perm[j]
    return perm[:n]


def majority(answers: list[int]) -> int:
    """Index (into `answers`) of the majority answer's first occurrence; ties to the first drawn."""
    return rules.majority_index(answers)


def items_of(A: StoreArrays, a: int) -> list[int]:
    return [int(x) for x in A.ans_items[A.ans_item_off[a]:A.ans_item_off[a + 1]]]


def set_vote(item_lists: list[list[int]]) -> list[int]:
    """The kept items of a set vote, sorted (replay.aggregation.set_vote)."""
    return rules.set_vote(item_lists)


def item_f1(kept: list[int], gold_items: list[int] | None) -> float:
    if gold_items is None:
        return math.nan
    if not gold_items and not kept:
        return 1.0
    hit = len(set(kept) & set(gold_items))
    if hit == 0:
        return 0.0
    p, r = hit / len(kept), hit / len(gold_items)
    return 2 * p * r / (p + r)


def pools_of(A: StoreArrays, q: int, s: int, m: int) -> list[int]:
    k = (q * A.n_stages + s) * A.n_models + m
    return list(range(int(A.qsm_pool_off[k]), int(A.qsm_pool_off[k + 1])))


def largest(A: StoreArrays, pools: list[int]) -> int:
    sizes = [int(A.pool_off[p + 1] - A.pool_off[p]) for p in pools]
    return pools[sizes.index(max(sizes))]


class Outcome(NamedTuple):
    """One stage's aggregate on one pool, question and replicate."""

    answer: int  # aggregated answer id; -1 after a set vote (see items)
    items: list[int] | None  # the kept item ids after a set vote, else None
    score: float
    tokens: int  # the pool's prompt once + the drawn completions (or the fusion's tokens)
    fell_back: bool  # an llm_fuse stage used a smaller stored fusion or majority vote
    drawn: list[int]  # positions in the pool drawn, in draw order (empty for a stored fusion)


def aggregate_pool(A: StoreArrays, q: int, s: int, p: int, n: int, r: int, seed: int) -> Outcome:
    """Stage s of question q, replicate r: draw n outputs of pool p (all, if it holds fewer)
    and aggregate them by the stage's rule."""
    qh = int(A.question_hash[q])
    base, size = int(A.pool_off[p]), int(A.pool_off[p + 1] - A.pool_off[p])
    n = min(n, size)
    agg = int(A.stage_agg[s])
    prompt = int(A.pool_prompt[p])
    stream = Stream(stream_start(seed, qh, r, s))
    if agg == FUSE:
        f0, f1 = int(A.pool_fus_off[p]), int(A.pool_fus_off[p + 1])
        use = rules.fusion_size((int(A.fus_size[f]) for f in range(f0, f1)), n)
        if use > 0:
            fstream = Stream(stream_start(seed, qh, r, s) ^ ((n * SALT_N) & MASK))
            cands = [f for f in range(f0, f1) if int(A.fus_size[f]) == use]
            f = cands[fstream.below(len(cands))]
            tk = prompt + int(A.fus_subset_completion[f]) + int(A.fus_tokens[f])
            return Outcome(int(A.fus_answer[f]), None, float(A.fus_score[f]), tk, use != n, [])
    drawn = draw(stream, size, n)
    rows = [base + j for j in drawn]
    tk = prompt + sum(int(A.s_completion[i]) for i in rows)
    if agg == MAJORITY or agg == FUSE:  # llm_fuse without a small enough fusion: a fallback
        j = majority([int(A.s_local[i]) for i in rows])
        return Outcome(int(A.s_answer[rows[j]]), None, float(A.s_score[rows[j]]), tk, agg == FUSE, drawn)
    if agg == BEST:
        scores = [float(A.s_score[i]) for i in rows]
        j = rules.best_index(scores)
        return Outcome(int(A.s_answer[rows[j]]), None, scores[j], tk, False, drawn)
    kept = set_vote([items_of(A, int(A.s_answer[i])) for i in rows])
    g = int(A.gold[q, s])
    return Outcome(-1, kept, item_f1(kept, items_of(A, g) if g >= 0 else None), tk, False, drawn)


def find_pool(A: StoreArrays, q: int, s: int, m: int, ctx: int, ctx_items: list[int] | None) -> tuple[int, bool]:
    """Stage s's pool for (q, m) after an upstream aggregate (answer id ctx, or the kept items
    of a set vote): (pool, fell_back). The first stage and independent stages have one pool per
    (q, m), whatever the upstream answer."""
    pools = pools_of(A, q, s, m)
    if s == 0 or bool(A.stage_indep[s]):
        return pools[0], False
    if ctx_items is not None:
        # a kept item set names the first context of this stage (any model) with those items
        k0 = (q * A.n_stages + s) * A.n_models
        all_ctx = [int(A.pool_ctx[p]) for p in range(int(A.qsm_pool_off[k0]), int(A.qsm_pool_off[k0 + A.n_models]))]
        ctx = next((c for c in all_ctx if items_of(A, c) == ctx_items), -1)
    match = [p for p in pools if int(A.pool_ctx[p]) == ctx]
    if match:
        return match[0], False
    return largest(A, pools), True


def run_one(A: StoreArrays, models: list[int], counts: list[int], q: int, r: int, seed: int):
    """One configuration on one question and replicate.

    Returns (end-to-end score by the store's rule, total tokens, total FLOPs, per-stage list of
    (score, tokens, fell_back)).
    """
    ctx, ctx_items = -1, None
    tokens = 0.0
    flops = 0.0
    stages = []
    for s, (m, n) in enumerate(zip(models, counts)):
        p, missed = find_pool(A, q, s, m, ctx, ctx_items)
        out = aggregate_pool(A, q, s, p, n, r, seed)
        ctx, ctx_items = out.answer, out.items
        tokens += out.tokens
        flops += 2.0 * float(A.model_params[m]) * out.tokens
        stages.append((out.score, float(out.tokens), missed or out.fell_back))
    score = end_to_end(int(A.score_rule), [st[0] for st in stages])
    return score, tokens, flops, stages


def evaluate_reference(A: StoreArrays, models: list[int], counts: list[int], questions, replicates: int, seed: int):
    """Arrays [Q, R] of score, tokens, FLOPs, and per-stage [S, Q] sums over replicates."""
    questions = list(questions)
    n_s = len(models)
    score = np.zeros((len(questions), replicates))
    tokens = np.zeros_like(score)
    flops = np.zeros_like(score)
    st_score = np.zeros((n_s, len(questions)))
    st_tokens = np.zeros_like(st_score)
    st_fb = np.zeros_like(st_score)
    for qi, q in enumerate(questions):
        for r in range(replicates):
            sc, tk, fl, stages = run_one(A, models, counts, int(q), r, seed)
            score[qi, r], tokens[qi, r], flops[qi, r] = sc, tk, fl
            for s, (ssc, stk, sfb) in enumerate(stages):
                st_score[s, qi] += ssc
                st_tokens[s, qi] += stk
                st_fb[s, qi] += sfb
    return score, tokens, flops, st_score, st_tokens, st_fb
