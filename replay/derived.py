"""What the engine derives from a store's arrays, in one object the store owns.

`store.derived` (built on first use, kept for the store's life) holds every figure that the
engine, the budget accounting, the searchers and the controllers compute from the arrays and
reuse: the kernels' inputs, pool sizes and their extremes per (stage, model), the budget unit,
the pool means behind cost estimates, and views built elsewhere (`derived.memo`, e.g. the
controllers' step arrays). Each is computed once, lazily, here and nowhere else.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any, Callable, NamedTuple

import numpy as np

from .arrays import StoreArrays


class KernelInputs(NamedTuple):
    """The store's arrays as the Numba kernels take them (one argument, fields by name).

    Fields are those of `StoreArrays` (see there), plus the packed samples the draws shuffle:
    s_packed[i] = (pool-local answer id << pack_bits[0]) | position of sample i in its pool."""

    question_hash: np.ndarray
    stage_agg: np.ndarray
    model_params: np.ndarray
    qsm_pool_off: np.ndarray
    pool_ctx: np.ndarray
    pool_off: np.ndarray
    pool_prompt: np.ndarray
    s_answer: np.ndarray
    s_local: np.ndarray
    s_score: np.ndarray
    s_completion: np.ndarray
    gold: np.ndarray
    ans_item_off: np.ndarray
    ans_items: np.ndarray
    pool_fus_off: np.ndarray
    fus_size: np.ndarray
    fus_answer: np.ndarray
    fus_score: np.ndarray
    fus_tokens: np.ndarray
    fus_subset_completion: np.ndarray
    s_packed: np.ndarray
    pack_bits: np.ndarray  # int64 [1]
    stage_indep: np.ndarray  # bool [S]: independent stages (one pool per question, any upstream answer)
    score_rule: np.ndarray  # int64 [1]: schema.SCORE_RULE_CODES


def pack_samples(s_local: np.ndarray, pool_off: np.ndarray, max_pool: int) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's pool-local answer id and its position in its pool in one word:
    (local answer << bits) | position. The kernels shuffle a copy of a pool's packed words, so
    a draw reads its answer straight off the shuffled copy (see kernels.stage_snapshots)."""
    bits = max(1, int(max_pool - 1).bit_length())
    sizes = np.diff(pool_off)
    pos = np.arange(len(s_local), dtype=np.int64) - np.repeat(pool_off[:-1], sizes)
    dtype = np.int16 if 2 * bits <= 15 else np.int32 if 2 * bits <= 31 else np.int64
    packed = ((s_local.astype(np.int64) << bits) | pos).astype(dtype)
    return packed, np.array([bits], dtype=np.int64)


class Derived:
    """Figures derived from one store's arrays, each computed on first use and kept.

    Args:
        arrays: the store's dense arrays (never modified).
    """

    def __init__(self, arrays: StoreArrays):
        self.arrays = arrays
        self._memo: dict[Any, Any] = {}

    # ---- pools
    @cached_property
    def pool_sizes(self) -> np.ndarray:
        """int64 [P]: samples per pool."""
        return np.diff(self.arrays.pool_off)

    @cached_property
    def pool_qsm(self) -> np.ndarray:
        """int64 [P]: each pool's (question, stage, model) key, (q * S + s) * M + m."""
        a = self.arrays
        return np.repeat(np.arange(len(a.qsm_pool_off) - 1), np.diff(a.qsm_pool_off))

    @cached_property
    def pool_stage(self) -> np.ndarray:
        """int64 [P]: each pool's stage."""
        return (self.pool_qsm // self.arrays.n_models) % self.arrays.n_stages

    @cached_property
    def pool_model(self) -> np.ndarray:
        """int64 [P]: each pool's model."""
        return self.pool_qsm % self.arrays.n_models

    @cached_property
    def pool_mean_completion(self) -> np.ndarray:
        """float64 [P]: mean completion tokens of each pool's samples."""
        a = self.arrays
        return np.add.reduceat(a.s_completion.astype(np.float64), a.pool_off[:-1]) / self.pool_sizes

    @cached_property
    def largest_pool(self) -> np.ndarray:
        """int64 [S, M]: the largest pool of each (stage, model) over questions and contexts: the
        largest sample count a configuration may ask of it."""
        a = self.arrays
        out = np.zeros((a.n_stages, a.n_models), dtype=np.int64)
        np.maximum.at(out.reshape(-1), self.pool_qsm % (a.n_stages * a.n_models), self.pool_sizes)
        return out

    @cached_property
    def smallest_pool(self) -> np.ndarray:
        """int64 [S, M]: the smallest pool of each candidate (stage, model) over questions and
        contexts (the largest count every pool holds); 0 for non-candidates."""
        a = self.arrays
        sm = self.pool_qsm % (a.n_stages * a.n_models)
        out = np.full(a.n_stages * a.n_models, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(out, sm, self.pool_sizes)
        out[~a.stage_model_ok.reshape(-1)] = 0
        return out.reshape(a.n_stages, a.n_models)

    @cached_property
    def max_pool(self) -> int:
        """The largest pool of the store (the kernels' scratch size)."""
        return int(self.pool_sizes.max())

    @cached_property
    def n_items(self) -> int:
        """Distinct items of list answers (set-vote scratch size); 0 without set-vote stages."""
        a = self.arrays
        return int(a.ans_items.max()) + 1 if len(a.ans_items) else 0

    # ---- kernels
    @cached_property
    def kernel_inputs(self) -> KernelInputs:
        """The arrays as the kernels take them, with the packed samples."""
        a = self.arrays
        s_packed, pack_bits = pack_samples(a.s_local, a.pool_off, self.max_pool)
        return KernelInputs(
            question_hash=a.question_hash, stage_agg=a.stage_agg, model_params=a.model_params,
            qsm_pool_off=a.qsm_pool_off, pool_ctx=a.pool_ctx, pool_off=a.pool_off, pool_prompt=a.pool_prompt,
            s_answer=a.s_answer, s_local=a.s_local, s_score=a.s_score, s_completion=a.s_completion, gold=a.gold,
            ans_item_off=a.ans_item_off, ans_items=a.ans_items, pool_fus_off=a.pool_fus_off, fus_size=a.fus_size,
            fus_answer=a.fus_answer, fus_score=a.fus_score, fus_tokens=a.fus_tokens,
            fus_subset_completion=a.fus_subset_completion, s_packed=s_packed, pack_bits=pack_bits,
            stage_indep=a.stage_indep, score_rule=np.array([a.score_rule], dtype=np.int64),
        )

    # ---- budget
    @cached_property
    def pool_question(self) -> np.ndarray:
        """int64 [P]: each pool's question."""
        return self.pool_qsm // (self.arrays.n_stages * self.arrays.n_models)

    def per_question_mean(self, values: np.ndarray, select: np.ndarray) -> float:
        """The mean over questions of the mean over each question's selected pools of a
        per-pool value (questions without a selected pool do not count): a figure "averaged
        over questions", whatever number of pools (upstream answers) each question holds."""
        q = self.pool_question[select]
        n_q = self.arrays.n_questions
        n = np.bincount(q, minlength=n_q)
        per_q = np.bincount(q, weights=np.asarray(values, dtype=np.float64)[select], minlength=n_q)
        has = n > 0
        return float((per_q[has] / n[has]).mean())

    @cached_property
    def budget_unit(self) -> float:
        """FLOPs of one normalised budget unit: one single-sample pass of the smallest model on
        the cheapest stage: 2 x params x (prompt + mean completion), averaged over that stage's
        pools of each question, then over questions (so that a question holding many pools, one
        per upstream answer, weighs what a question holding one does)."""
        a = self.arrays
        pass_tokens = a.pool_prompt + self.pool_mean_completion
        best = math.inf
        for s in range(a.n_stages):
            cands = np.flatnonzero(a.stage_model_ok[s])
            m = cands[np.argmin(a.model_params[cands])]
            sel = (self.pool_stage == s) & (self.pool_model == m)
            best = min(best, 2.0 * a.model_params[m] * self.per_question_mean(pass_tokens, sel))
        return best

    @cached_property
    def scores_bounded(self) -> bool:
        """Every stored score (samples and fusions) lies in [0, 1], so every end-to-end and
        per-question score does: question intervals may use the range (replay.stats)."""
        a = self.arrays
        ok = lambda x: len(x) == 0 or (float(x.min()) >= 0.0 and float(x.max()) <= 1.0)  # noqa: E731
        return bool(ok(a.s_score) and ok(a.fus_score))

    @cached_property
    def pool_means(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean prompt tokens, mean completion tokens per sample and mean fusion-call tokens,
        each [Q, S, M], averaged over the pools of a (question, stage, model): what cost
        estimates without replay use."""
        a = self.arrays
        n_f = np.diff(a.pool_fus_off)
        fus_tok = np.zeros(len(self.pool_sizes))
        if len(a.fus_tokens):
            sums = np.add.reduceat(a.fus_tokens.astype(np.float64),
                                   np.minimum(a.pool_fus_off[:-1], len(a.fus_tokens) - 1))
            fus_tok = np.where(n_f > 0, sums / np.maximum(n_f, 1), 0.0)
        key = self.pool_qsm
        n_per = np.bincount(key, minlength=len(a.qsm_pool_off) - 1).astype(np.float64)
        shape = (a.n_questions, a.n_stages, a.n_models)

        def avg(v):
            return (np.bincount(key, weights=v, minlength=len(n_per)) / np.maximum(n_per, 1)).reshape(shape)

        return avg(a.pool_prompt.astype(np.float64)), avg(self.pool_mean_completion), avg(fus_tok)

    # ---- views built elsewhere
    def memo(self, key: Any, build: Callable[[], Any]) -> Any:
        """The value kept under `key`, built by `build()` on first use (views that modules above
        the store derive, e.g. the controllers' step arrays, keyed by their module's name)."""
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]
