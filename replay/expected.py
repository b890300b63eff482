"""The expected cost of a configuration per question, over the store's pools: the budget rule.

A configuration is within a budget when its *expected* cost per question is, not when the cost
of the outputs one replay happened to draw on one set of questions is. The expected cost is a
property of the configuration and the store alone, the same on the training and the test
questions, so feasibility cannot depend on which questions were drawn (replay.engine uses it
for every budget decision; the measured cost is still reported).

Definition. For one pool p of (question q, stage s, model m) and a sample count n, the replay
draws n_p = min(n, size of p) outputs and charges the prompt once plus their completions, or,
for an `llm_fuse` stage, the prompt, the fused subset's completions and the fusion call of the
stored fusion it uses (one drawn uniformly among those of the largest stored size <= n_p; none
that small: the majority vote over n_p draws). The expected tokens of p at n are the mean of
that over the draws: prompt + n_p x (mean completion of p), or the mean over the usable
fusions. A (question, stage, model) may hold several pools, one per upstream answer; each
counts equally (which one a replay reaches depends on upstream luck). The expected tokens of
(s, m, n) are the mean over questions of the mean over that question's pools; the cost of a
configuration is the sum over its stages of 2 x parameters x expected tokens, in budget units.
For stage 1 it is the exact expectation of the measured cost on every question; for later
stages it weights every collected upstream answer equally.
"""

from __future__ import annotations

import numpy as np

from .schema import AGG_CODES

_FUSE = AGG_CODES["llm_fuse"]


def expected_tokens_table(store) -> np.ndarray:
    """float64 [S, M, N + 1]: expected tokens per question of (stage, model) at n samples
    (index n, 1..N with N the largest pool; index 0 unused), averaged over all of the store's
    questions (module docstring); NaN where the model is not a candidate of the stage.
    Computed once per store (kept in `store.derived`)."""
    return store.derived.memo("replay.expected.tokens", lambda: _build(store))


def expected_units_table(store, unit: float) -> np.ndarray:
    """The table above in budget units (2 x parameters x tokens / `unit` FLOPs)."""
    tok = expected_tokens_table(store)
    params = store.arrays.model_params.astype(np.float64)
    return 2.0 * params[None, :, None] * tok / unit


def _build(store) -> np.ndarray:
    a, d = store.arrays, store.derived
    S, M, Q = a.n_stages, a.n_models, a.n_questions
    N = int(d.max_pool)
    sizes = d.pool_sizes.astype(np.int64)
    prompt = a.pool_prompt.astype(np.float64)
    comp = d.pool_mean_completion.astype(np.float64)
    qsm = d.pool_qsm
    q_of = qsm // (S * M)
    s_of, m_of = d.pool_stage, d.pool_model
    # each pool's weight: 1 / (pools of its (question, stage, model) x questions that have any)
    n_pools = np.bincount(qsm, minlength=Q * S * M).astype(np.float64)
    has = (n_pools.reshape(Q, S, M) > 0).sum(axis=0).astype(np.float64)  # [S, M] questions with pools
    w = 1.0 / (n_pools[qsm] * np.maximum(has[s_of, m_of], 1.0))
    out = np.full((S, M, N + 1), np.nan)
    ns = np.arange(N + 1, dtype=np.float64)
    for s in range(S):
        for m in range(M):
            sel = (s_of == s) & (m_of == m)
            if not sel.any():
                continue
            if a.stage_agg[s] == _FUSE:
                out[s, m] = _fuse_tokens(a, np.flatnonzero(sel), w, sizes, prompt, comp, N)
                continue
            # sum_p w (prompt + min(n, size) x comp): by pool size, with cumulative sums
            by_size = np.bincount(sizes[sel], weights=w[sel] * comp[sel], minlength=N + 1)[: N + 1]
            below = np.cumsum(by_size * ns)  # sum over sizes <= n of size x w x comp
            at_least = by_size[::-1].cumsum()[::-1]  # sum over sizes >= n of w x comp
            tail = np.append(at_least[1:], 0.0)  # sizes > n
            out[s, m] = float((w[sel] * prompt[sel]).sum()) + below + ns * tail
            out[s, m, 0] = np.nan
    return out


def _fuse_tokens(a, pools, w, sizes, prompt, comp, N) -> np.ndarray:
    """Expected tokens of an llm_fuse (stage, model) at every n, pool by pool (few pools)."""
    row = np.zeros(N + 1)
    off, fsize = a.pool_fus_off, a.fus_size.astype(np.int64)
    ftok = a.fus_tokens.astype(np.float64) + a.fus_subset_completion.astype(np.float64)
    n = np.arange(1, N + 1)
    for p in pools:
        f0, f1 = int(off[p]), int(off[p + 1])
        k = np.minimum(n, int(sizes[p]))  # outputs drawn at each n
        vote = prompt[p] + k * comp[p]  # no fusion that small: the majority vote over k outputs
        if f1 > f0:
            fs, ft = fsize[f0:f1], ftok[f0:f1]
            u = np.unique(fs)  # the stored sizes, ascending, and the mean cost of each
            mean_u = np.array([ft[fs == x].mean() for x in u])
            j = np.searchsorted(u, k, side="right") - 1  # the largest stored size <= k
            cost = np.where(j >= 0, prompt[p] + mean_u[np.maximum(j, 0)], vote)
        else:
            cost = vote
        row[1:] += w[p] * cost
    row[0] = np.nan
    return row
