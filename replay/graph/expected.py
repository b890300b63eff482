"""The expected cost of a collaboration graph per question: the graph budget rule.

As for chains (replay/expected.py), a graph is within a budget when its *expected* cost per
question is, a property of the graph and the store alone, the same on the training and the
test questions, so feasibility cannot depend on which questions were drawn.

Definition. A node of role r and model m that reads k parents and draws n samples reaches, on
question q, one pool of (q, r, m) whose input key holds k answers (which one depends on the
upstream answers: each counts equally); where question q has no pool whose key holds k
answers, every pool of (q, r, m) counts equally (the replay falls back to one of them). For a
pool p the replay draws n_p = min(n, size of p) outputs and charges the prompt once plus
their completions (for an `llm_fuse` role, the stored fusion rule of replay/expected.py):
prompt_p + n_p x (mean completion of p). The expected tokens of (r, m, k, n) are the mean
over the questions that have pools of (r, m) of the mean over that question's pools above; a
graph's expected cost is the sum over its nodes of 2 x parameters x expected tokens, in
budget units. A solve node (k = 0) is a chain's first stage: its figure is the exact
expectation of the measured cost; a node that reads others weights every collected input
equally.

    from replay.graph.expected import expected_graph_units
    units = expected_graph_units(store, "s=solve(Qwen2.5-7B,4); r=refine(Qwen2.5-7B,1|s)")
"""

from __future__ import annotations

import math

import numpy as np

from ..expected import _fuse_tokens
from ..schema import AGG_CODES
from .config import as_graph
from .inputs import graph_inputs

__all__ = ["expected_graph_tokens_table", "expected_graph_units", "expected_node_tokens", "max_key_lengths",
           "min_key_lengths", "latency_estimate", "expected_latency_table", "expected_graph_cost"]

_FUSE = AGG_CODES["llm_fuse"]


def expected_graph_tokens_table(store) -> np.ndarray:
    """float64 [S, M, K + 1, N + 1]: expected tokens per question of a node of (role, model)
    reading k parents (index k, 0..K with K the longest input key of the store) and drawing n
    samples (index n, 1..N; index 0 unused); NaN where the model is not a candidate of the
    role. Computed once per store (kept in `store.derived`)."""
    return store.derived.memo("replay.graph.expected.tokens", lambda: _build(store))


def max_key_lengths(store) -> np.ndarray:
    """int64 [S]: per role, the most answers any of its pools' input keys holds (the most
    parents a node of that role reads whose input was collected)."""

    def build():
        a, d = store.arrays, store.derived
        klen = np.diff(graph_inputs(store).pool_key_off)
        out = np.zeros(a.n_stages, dtype=np.int64)
        np.maximum.at(out, d.pool_stage, klen)
        return out

    return store.derived.memo("replay.graph.expected.max_key", build)


def min_key_lengths(store) -> np.ndarray:
    """int64 [S]: per role, the fewest answers any of its pools' input keys holds, among keys
    that hold any (0 for a role whose keys are all empty: solve)."""

    def build():
        a, d = store.arrays, store.derived
        klen = np.diff(graph_inputs(store).pool_key_off)
        out = np.full(a.n_stages, np.iinfo(np.int64).max, dtype=np.int64)
        pos = klen > 0
        np.minimum.at(out, d.pool_stage[pos], klen[pos])
        return np.where(out == np.iinfo(np.int64).max, 0, out)

    return store.derived.memo("replay.graph.expected.min_key", build)


def expected_node_tokens(store, role: int, model: int, k: int, n: int) -> float:
    """Expected tokens per question of one node (indices into the manifest's roles and
    models; `k` parents, `n` samples): the table's entry, with k beyond the longest key read
    as the fallback (every pool of the question counts)."""
    t = expected_graph_tokens_table(store)
    # the last k slot is one past the longest key: no pool matches, every pool counts (fallback)
    return float(t[role, model, min(int(k), t.shape[2] - 1), min(int(n), t.shape[3] - 1)])


def expected_graph_units(store, graph) -> float:
    """The expected cost of `graph` in budget units per question (module docstring).

    Args:
        store: the store.
        graph: a `Graph`, or its text or JSON form, checked against the store.
    """
    g = as_graph(store, graph)
    roles = {n: i for i, n in enumerate(store.manifest.stage_names)}
    models = {n: i for i, n in enumerate(store.manifest.model_names)}
    params = store.arrays.model_params
    total = 0.0
    for node in g.nodes:
        m = models[node.model]
        tk = expected_node_tokens(store, roles[node.role], m, len(node.inputs), node.samples)
        total += 2.0 * float(params[m]) * tk
    return total / float(store.derived.budget_unit)


def _build(store) -> np.ndarray:
    a, d = store.arrays, store.derived
    S, M, Q = a.n_stages, a.n_models, a.n_questions
    N = int(d.max_pool)
    klen = np.diff(graph_inputs(store).pool_key_off).astype(np.int64)
    # one slot past the longest key: "reads more than any collected key", i.e. the fallback
    K = int(klen.max()) + 1 if len(klen) else 1
    sizes = d.pool_sizes.astype(np.int64)
    prompt = a.pool_prompt.astype(np.float64)
    comp = d.pool_mean_completion.astype(np.float64)
    q_of = d.pool_qsm // (S * M)
    ns = np.arange(N + 1, dtype=np.float64)
    out = np.full((S, M, K + 1, N + 1), np.nan)
    for s in range(S):
        for m in range(M):
            sel = np.flatnonzero((d.pool_stage == s) & (d.pool_model == m))
            if not len(sel):
                continue
            qs = q_of[sel]
            n_q = np.bincount(qs, minlength=Q).astype(np.float64)  # pools per question
            has = float((n_q > 0).sum())
            for k in range(K + 1):
                match = klen[sel] == k
                n_qk = np.bincount(qs[match], minlength=Q).astype(np.float64)
                # a question with pools of k answers: those, equally; else all its pools, equally
                use = np.where(n_qk[qs] > 0, match, True)
                denom = np.where(n_qk[qs] > 0, n_qk[qs], n_q[qs])
                w = np.zeros(a.n_pools)
                w[sel] = np.where(use, 1.0 / (denom * has), 0.0)
                if a.stage_agg[s] == _FUSE:
                    out[s, m, k] = _fuse_tokens(a, sel[use], w, sizes, prompt, comp, N)
                    continue
                ws = w[sel]
                by_size = np.bincount(sizes[sel], weights=ws * comp[sel], minlength=N + 1)[: N + 1]
                below = np.cumsum(by_size * ns)  # sizes <= n: size x w x comp
                at_least = by_size[::-1].cumsum()[::-1]
                tail = np.append(at_least[1:], 0.0)  # sizes > n: n x w x comp
                out[s, m, k] = float((ws * prompt[sel]).sum()) + below + ns * tail
                out[s, m, k, 0] = np.nan
    return out


# --------------------------------------------------------------------------------------------
# Latency without replay (a searcher's pre-filter; the replay measures the latency itself)


def expected_latency_table(store, *, throughput: dict | None = None) -> np.ndarray:
    """float64 [S, M, K + 1, N + 1, Q]: per question, the expected seconds of a node of (role,
    model) reading k parents and drawing n samples: over the pools the cost rule weighs (the
    same weights), prompt / prefill throughput + E[longest of n drawn completions] / decode
    throughput (exact for one pool: draws without replacement). NaN without throughputs; an
    llm_fuse role's fusion call is not counted. Computed once per store and throughput.

    Args:
        store: the store.
        throughput: {model: (prefill tokens/s, decode tokens/s)} over the manifest's.
    """
    key = tuple(sorted((str(m), tuple(map(float, v))) for m, v in (throughput or {}).items()))
    return store.derived.memo(("replay.graph.expected.latency", key), lambda: _build_latency(store, throughput))


def latency_estimate(store, graph, *, questions=None, throughput: dict | None = None) -> float:
    """Mean over the store's questions (or `questions`) of the graph's longest path of expected
    node times (`expected_latency_table`). For a graph of solve nodes it is a lower bound of
    the mean replayed latency (the expectation of a maximum is at least the maximum of
    expectations); for nodes that read others it weighs every collected input equally, as the
    cost rule does, and is an estimate.

    Args:
        store: the store.
        graph: a `Graph`, or its text or JSON form.
        questions: None or 'all', a split name, or question ids/indices (`store.question_indices`).
        throughput: as in `expected_latency_table`.
    """
    g = as_graph(store, graph)
    t = expected_latency_table(store, throughput=throughput)
    roles = {n: i for i, n in enumerate(store.manifest.stage_names)}
    models = {n: i for i, n in enumerate(store.manifest.model_names)}
    finish: dict[str, np.ndarray] = {}
    for node in g.nodes:
        lat = t[roles[node.role], models[node.model], min(len(node.inputs), t.shape[2] - 1),
                min(node.samples, t.shape[3] - 1)]
        start = np.max([finish[p] for p in node.inputs], axis=0) if node.inputs else 0.0
        finish[node.name] = start + lat
    per_q = np.max([finish[o] for o in g.output], axis=0)
    if questions is not None:
        per_q = per_q[store.question_indices(questions)]
    return float(np.mean(per_q))


def expected_graph_cost(store, graph, *, questions=None, throughput: dict | None = None) -> tuple[float, float]:
    """A graph's expected cost without replay: (budget units per question, latency seconds per
    question). The units are `expected_graph_units` (the budget rule: over the store's
    questions, whatever `questions` says), the latency `latency_estimate` over `questions`.
    This is the one implementation: `replay.graph.engine.estimate_graph` (`replay eval
    --budget`) and the graph search space both call it.

    Args:
        store: the store.
        graph: a `Graph`, or its text or JSON form.
        questions: the questions the latency is averaged over (None: all).
        throughput: {model: (prefill tokens/s, decode tokens/s)} over the manifest's.
    """
    g = as_graph(store, graph)
    return expected_graph_units(store, g), latency_estimate(store, g, questions=questions, throughput=throughput)


def _expected_max_rows(sorted_rows: np.ndarray, N: int) -> np.ndarray:
    """[P, N + 1]: E[max of min(n, s) draws without replacement] of each row (s values,
    ascending), n = 0..N: the j-th smallest is the largest drawn with probability
    C(j-1, n-1) / C(s, n)."""
    P, s = sorted_rows.shape
    out = np.zeros((P, N + 1))
    for n in range(1, N + 1):
        k = min(n, s)
        w = np.array([math.comb(j - 1, k - 1) for j in range(1, s + 1)], dtype=np.float64) / math.comb(s, k)
        out[:, n] = sorted_rows @ w
    return out


def _build_latency(store, throughput=None) -> np.ndarray:
    from .inputs import seconds_per_token

    a, d = store.arrays, store.derived
    S, M, Q = a.n_stages, a.n_models, a.n_questions
    N = int(d.max_pool)
    klen = np.diff(graph_inputs(store).pool_key_off).astype(np.int64)
    K = int(klen.max()) + 1 if len(klen) else 1
    pre, dec = seconds_per_token(store, throughput)
    sizes = d.pool_sizes.astype(np.int64)
    q_of = d.pool_qsm // (S * M)
    # per pool, E[longest completion] at every n (pools grouped by size: one matrix product each)
    emax = np.zeros((a.n_pools, N + 1))
    comp = a.s_completion.astype(np.float64)
    for size in np.unique(sizes):
        ps = np.flatnonzero(sizes == size)
        rows = comp[a.pool_off[ps][:, None] + np.arange(size)[None, :]]
        emax[ps] = _expected_max_rows(np.sort(rows, axis=1), N)
    prompt = a.pool_prompt.astype(np.float64)
    out = np.full((S, M, K + 1, N + 1, Q), np.nan)
    for s in range(S):
        for m in range(M):
            sel = np.flatnonzero((d.pool_stage == s) & (d.pool_model == m))
            if not len(sel):
                continue
            lat = prompt[sel, None] * pre[m] + emax[sel] * dec[m]  # [P, N + 1]
            qs = q_of[sel]
            n_q = np.bincount(qs, minlength=Q).astype(np.float64)
            for k in range(K + 1):
                match = klen[sel] == k
                n_qk = np.bincount(qs[match], minlength=Q).astype(np.float64)
                use = np.where(n_qk[qs] > 0, match, True)
                denom = np.where(n_qk[qs] > 0, n_qk[qs], n_q[qs])
                acc = np.zeros((Q, N + 1))
                np.add.at(acc, qs[use], lat[use] / denom[use, None])
                acc[n_q == 0] = np.nan
                out[s, m, k] = acc.T
    return out
