"""Pure-Python reference of graph replay: the tests' oracle for replay/graph/kernels.py.

One graph, question and replicate at a time, written for clarity. It uses the chain
reference's random streams and the aggregation rules of replay/aggregation.py, so that its
numbers equal the kernels' exactly. Semantics (docs/store-format.md, "Graph replay"):

- Nodes run in topological order. Node k (its place in that order) draws from the stream of
  (seed, question, replicate, k): a chain configuration as a graph (node k = stage k) draws
  exactly what the chain engine draws.
- A node's pool is the one of (question, role, model) whose input key equals the multiset of
  its parents' aggregated answers (compared by class, replay/graph/inputs.py); a solve node's
  key is empty. A key that was not collected falls back to the largest pool of that
  (question, role, model), ties to the first in context order, and counts as a fallback.
- The node draws min(S, pool size) outputs without replacement and aggregates them by its
  role's rule (majority vote, set vote, best score, stored fusion), as a chain stage does.
- Cost: tokens = the pool's prompt once + the drawn completions (a fusion: + the fused
  samples' completions and the fusion call's tokens); FLOPs = 2 x params x tokens.
- Latency: a node starts when its last parent finishes; it takes prompt / prefill throughput +
  the longest drawn completion / decode throughput (its samples run in parallel; a fusion
  adds its own call after them). The graph's latency is when its last output node finishes
  (the longest path).
- Output: the output node's answer and score, or a majority vote over several output nodes'
  answers (by class), ties to the first listed, with the score of the first node giving the
  winning answer.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import aggregation as rules
from ..reference import FUSE, MAJORITY, SALT_N, SET, BEST, MASK, Stream, draw, item_f1, items_of, stream_start
from .inputs import items_hash


class NodeOutcome(NamedTuple):
    answer: int  # class id of the aggregated answer (-1: a set vote no answer carries)
    score: float
    tokens: float
    latency: float  # the node's own time
    fell_back: bool


def pool_key(G, p: int) -> list[int]:
    return [int(x) for x in G.pool_key[G.pool_key_off[p]:G.pool_key_off[p + 1]]]


def find_pool(A, G, q: int, role: int, m: int, key: list[int]) -> tuple[int, bool]:
    k = (q * A.n_stages + role) * A.n_models + m
    pools = list(range(int(A.qsm_pool_off[k]), int(A.qsm_pool_off[k + 1])))
    for p in pools:
        if pool_key(G, p) == key:
            return p, False
    sizes = [int(A.pool_off[p + 1] - A.pool_off[p]) for p in pools]
    return pools[sizes.index(max(sizes))], True


def set_class(A, G, kept: list[int]) -> int:
    """The class of a kept item set: the (smallest) answer whose items they are, or -1."""
    h = items_hash(kept)
    for i in range(len(G.set_hash)):
        c = int(G.set_class[i])
        if int(G.set_hash[i]) == h and items_of(A, c) == kept:
            return c
    return -1


def run_node(A, G, pre, dec, q: int, role: int, m: int, n: int, key: list[int], k: int, r: int,
             seed: int) -> NodeOutcome:
    """Node k (role, model m, n samples) of question q, replicate r, after parents whose
    answers (classes) form `key` (sorted)."""
    p, missed = find_pool(A, G, q, role, m, key)
    qh = int(A.question_hash[q])
    base, size = int(A.pool_off[p]), int(A.pool_off[p + 1] - A.pool_off[p])
    n = min(n, size)
    agg = int(A.stage_agg[role])
    prompt = int(A.pool_prompt[p])
    t_pre, t_dec = float(pre[m]), float(dec[m])
    if agg == FUSE:
        f0, f1 = int(A.pool_fus_off[p]), int(A.pool_fus_off[p + 1])
        use = rules.fusion_size((int(A.fus_size[f]) for f in range(f0, f1)), n)
        if use > 0:
            fstream = Stream(stream_start(seed, qh, r, k) ^ ((n * SALT_N) & MASK))
            cands = [f for f in range(f0, f1) if int(A.fus_size[f]) == use]
            f = cands[fstream.below(len(cands))]
            tk = prompt + int(A.fus_subset_completion[f]) + int(A.fus_tokens[f])
            lat = (prompt * t_pre + int(G.fus_subset_max[f]) * t_dec + int(G.fus_prompt[f]) * t_pre
                   + int(G.fus_completion[f]) * t_dec)
            return NodeOutcome(int(G.ans_class[int(A.fus_answer[f])]), float(A.fus_score[f]), float(tk), lat,
                               missed or use != n)
    drawn = draw(Stream(stream_start(seed, qh, r, k)), size, n)
    rows = [base + j for j in drawn]
    tk = prompt + sum(int(A.s_completion[i]) for i in rows)
    lat = prompt * t_pre + max(int(A.s_completion[i]) for i in rows) * t_dec
    if agg == MAJORITY or agg == FUSE:
        j = rules.majority_index([int(A.s_local[i]) for i in rows])
        ans = int(G.ans_class[int(A.s_answer[rows[j]])])
        return NodeOutcome(ans, float(A.s_score[rows[j]]), float(tk), lat, missed or agg == FUSE)
    if agg == BEST:
        j = rules.best_index([float(A.s_score[i]) for i in rows])
        return NodeOutcome(int(G.ans_class[int(A.s_answer[rows[j]])]), float(A.s_score[rows[j]]), float(tk), lat,
                           missed)
    assert agg == SET
    kept = rules.set_vote([items_of(A, int(A.s_answer[i])) for i in rows])
    g = int(G.role_gold[q, role])
    score = item_f1(kept, items_of(A, g) if g >= 0 else None)
    return NodeOutcome(set_class(A, G, kept), score, float(tk), lat, missed)


def run_graph(A, G, pre, dec, graph, q: int, r: int, seed: int):
    """One graph (a `GraphArrays` row: roles, models, counts, parents, outputs as lists) on
    question q, replicate r: (score, tokens, FLOPs, latency, [NodeOutcome per node])."""
    roles, models, counts, parents, outputs = graph
    outs: list[NodeOutcome] = []
    finish: list[float] = []
    tokens = flops = 0.0
    for k in range(len(roles)):
        key = sorted(outs[j].answer for j in parents[k])
        o = run_node(A, G, pre, dec, q, roles[k], models[k], counts[k], key, k, r, seed)
        outs.append(o)
        start = max((finish[j] for j in parents[k]), default=0.0)
        finish.append(start + o.latency)
        tokens += o.tokens
        flops += 2.0 * float(A.model_params[models[k]]) * o.tokens
    answers = [outs[j].answer for j in outputs]
    w = rules.majority_index(answers)
    score = outs[outputs[w]].score
    latency = max(finish[j] for j in outputs)
    return score, tokens, flops, latency, outs


def evaluate_graph_reference(A, G, pre, dec, graph, questions, replicates: int, seed: int):
    """Arrays [Q, R] of score, tokens, FLOPs, latency, and per node [K] sums of score, tokens,
    latency and fallbacks over questions and replicates."""
    questions = list(questions)
    K = len(graph[0])
    out = [np.zeros((len(questions), replicates)) for _ in range(4)]
    node = [np.zeros(K) for _ in range(4)]
    for qi, q in enumerate(questions):
        for r in range(replicates):
            sc, tk, fl, lat, outs = run_graph(A, G, pre, dec, graph, int(q), r, seed)
            for arr, v in zip(out, (sc, tk, fl, lat)):
                arr[qi, r] = v
            for k, o in enumerate(outs):
                node[0][k] += o.score
                node[1][k] += o.tokens
                node[2][k] += o.latency
                node[3][k] += o.fell_back
    return (*out, *node)

