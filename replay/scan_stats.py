"""Per-question statistics of every configuration of a product space, in one compiled scan.

The selection rules of a search's final pick (search/selection.py) need, for every candidate,
the spread over questions of its per-question mean scores (a question interval) and of its
per-question differences from one reference configuration (a paired interval). For a space of
millions of configurations the per-question scores cannot be kept (configurations x
questions); this scan accumulates, per configuration, the sums those intervals need:

    s1 = sum_q x_q,  s2 = sum_q x_q^2,  d1 = sum_q (x_q - ref_q),  d2 = sum_q (x_q - ref_q)^2

where x_q is the configuration's mean end-to-end score (by the store's score rule: `last`,
`all`, `product` or `mean`) on question q over the replicates and ref_q the reference's. It
reads the same memo tables, walks the product and folds the stage scores by the rule exactly as
`replay.engine.scan_space` (kernels.scan_product) does, so x_q is the number `evaluate_batch`
gives that configuration on that question (common random numbers). The oracles in the tests:
`scan_space` run on one question at a time, and evaluate_batch's per-question means under
every score rule (tests/test_score_rules.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from numba import njit, prange

from .kernels import RULE_LAST, locate, rule_end, rule_start, rule_step
from .kernel_cache import install as _cache_install

_cache_install()  # before the decorators: the cache is keyed on every kernel module


@njit(cache=True, parallel=True)
def scan_question_sums(A, n_stages, n_models, questions, n_rep, ch_model, ch_count, n_ch, prefix_idx,
                       pool_row, row_nmax, row_base, memo_ans, memo_score, ref_q, s1, s2, d1, d2):
    """Like kernels.scan_product, but per configuration (prefix i, last choice k) the sums over
    questions of the per-question mean x_q and of x_q - ref_q, and of their squares. A replicate's
    score is the end-to-end score by the store's rule (A.score_rule[0]; kernels module
    docstring), folded over the stages exactly as scan_product and memo_lookup fold it."""
    pool_off = A.pool_off
    rule = A.score_rule[0]
    last = n_stages - 1
    n_q = questions.shape[0]
    K = n_ch[last]
    for i in prange(prefix_idx.shape[0]):
        acc = np.zeros(K)
        for qi in range(n_q):
            q = questions[qi]
            for k in range(K):
                acc[k] = 0.0
            for r in range(n_rep):
                ctx = np.int64(0)
                pre = rule_start(rule)
                for s in range(last):
                    k = prefix_idx[i, s]
                    m = ch_model[s, k]
                    p, fb = locate(A, n_stages, n_models, q, s, m, ctx)
                    row = pool_row[p]
                    n = min(ch_count[s, k], pool_off[p + 1] - pool_off[p])
                    o = row_base[row] + r * row_nmax[row] + n - 1
                    ctx = memo_ans[o]
                    if rule != RULE_LAST:
                        pre = rule_step(rule, pre, memo_score[o])
                m_prev = np.int64(-1)
                o0 = np.int64(0)
                size = np.int64(0)
                for k in range(K):  # last-stage choices, grouped by model
                    m = ch_model[last, k]
                    if m != m_prev:
                        p, fb = locate(A, n_stages, n_models, q, last, m, ctx)
                        row = pool_row[p]
                        o0 = row_base[row] + r * row_nmax[row] - 1
                        size = pool_off[p + 1] - pool_off[p]
                        m_prev = m
                    acc[k] += rule_end(rule, pre, memo_score[o0 + min(ch_count[last, k], size)], n_stages)
            for k in range(K):
                x = acc[k] / n_rep
                d = x - ref_q[qi]
                s1[i, k] += x
                s2[i, k] += x * x
                d1[i, k] += d
                d2[i, k] += d * d
    return 0


@dataclass(frozen=True)
class QuestionSums:
    """[P, K] sums over the n questions (module docstring), in the layout of a `SpaceScan`."""

    s1: np.ndarray
    s2: np.ndarray
    d1: np.ndarray
    d2: np.ndarray
    n: int

    @staticmethod
    def _sd(a1: np.ndarray, a2: np.ndarray, n: int) -> np.ndarray:
        if n < 2:
            return np.zeros_like(a1)
        return np.sqrt(np.maximum(a2 - a1 * a1 / n, 0.0) / (n - 1))

    @property
    def sd(self) -> np.ndarray:
        """Standard deviation over questions of the per-question means."""
        return self._sd(self.s1, self.s2, self.n)

    @property
    def mean_diff(self) -> np.ndarray:
        return self.d1 / self.n

    @property
    def sd_diff(self) -> np.ndarray:
        """Standard deviation over questions of the differences from the reference."""
        return self._sd(self.d1, self.d2, self.n)


def question_sums(store, scan, *, questions, replicates: int, seed: int, reference: Sequence[float],
                  device: str | None = None) -> QuestionSums:
    """The per-question sums of every configuration of `scan` (a `replay.engine.SpaceScan` of
    the same questions, replicates and seed), against `reference`, one value per question
    (the reference configuration's per-question means, e.g. `EvalResult.per_question`).

    Args:
        store: the store.
        scan: the scan whose configurations (choices, prefixes) are summed.
        questions: the questions the scan was made on.
        replicates: random draws per question.
        seed: the seed of every draw.
        reference: per-question mean scores of the reference, in the order of `questions`.
        device: 'cpu', 'cuda', 'auto' or None ($TTS_REPLAY_DEVICE, else 'cpu';
            `replay.gpu.resolve_device`): the same sums on each.
    """
    from .engine import kernel_inputs, memo_tables
    from .gpu import resolve_device

    a = store.arrays
    S = a.n_stages
    qidx = store.question_indices(questions).astype(np.int64)
    ref = np.asarray(reference, dtype=np.float64)
    if ref.shape != (len(qidx),):
        raise ValueError(f"reference has {ref.size} values for {len(qidx)} questions")
    K = max(len(c) for c in scan.choices)
    ch_model = np.zeros((S, K), dtype=np.int64)
    ch_count = np.ones((S, K), dtype=np.int64)
    for s, cs in enumerate(scan.choices):
        for k, ch in enumerate(cs):
            ch_model[s, k] = store.model_index(ch.model)
            ch_count[s, k] = ch.samples
    n_ch = np.array([len(c) for c in scan.choices], dtype=np.int64)
    nmax = np.zeros((S, a.n_models), dtype=np.int64)
    for s in range(S):
        np.maximum.at(nmax[s], ch_model[s, : n_ch[s]], ch_count[s, : n_ch[s]])
    P, KL = len(scan.prefix_idx), int(n_ch[S - 1])
    if resolve_device(device, work=float(P * KL) * len(qidx) * replicates * S) == "cuda":
        from .gpu.host import question_sums as gpu_question_sums

        from .engine import _pool_layout

        out = gpu_question_sums(store, ch_model, ch_count, n_ch, np.ascontiguousarray(scan.prefix_idx), qidx,
                                _pool_layout(store, nmax), replicates=replicates, seed=seed, reference=ref)
        return QuestionSums(*out, n=len(qidx))
    memo = memo_tables(store, nmax, qidx, replicates=replicates, seed=seed)
    out = [np.zeros((P, KL)) for _ in range(4)]
    scan_question_sums(kernel_inputs(store), S, a.n_models, qidx, replicates, ch_model, ch_count, n_ch,
                       np.ascontiguousarray(scan.prefix_idx), memo.pool_row, memo.row_nmax, memo.row_base, memo.ans,
                       memo.score, ref, *out)
    return QuestionSums(*out, n=len(qidx))
