"""Graph replay: collaboration graphs in, scores, token costs and latencies out.

    import replay
    from replay.graph import evaluate_graph, evaluate_graphs
    store = replay.open("traces/sim-math")
    r = evaluate_graph(store, "s1=solve(Qwen2.5-7B,4); s2=solve(Llama-3.1-8B,4); a=aggregate(Qwen2.5-7B,1|s1,s2)")
    print(r.score, r.stderr, r.tokens, r.units, r.latency)
    rs = evaluate_graphs(store, [g1, g2, g3], questions="train", replicates=16)   # one compiled call

Semantics: replay/graph/reference.py (the oracle) and docs/store-format.md. Every result
carries both costs per question: tokens (with FLOPs and budget units, as chains) and latency
(seconds, the longest path, from the models' throughputs). A batch of graphs is one kernel
call, parallel over questions: a searcher scores its candidates together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from ..engine import made, plain_numbers, within_budget
from ..errors import ConfigError
from ..stats import LEVEL, Interval, intervals, paired_interval, question_interval
from .config import Graph, as_graph
from .inputs import graph_inputs, seconds_per_token

__all__ = ["NodeResult", "GraphResult", "GraphBatch", "evaluate_graph", "evaluate_graphs", "graph_sums",
           "estimate_graph"]

MAX_CELLS = 4_000_000  # graphs x questions per kernel call (bounds the result arrays' memory)


@dataclass(frozen=True)
class NodeResult:
    """One node of an evaluated graph: means per question over questions and replicates."""

    name: str
    role: str
    model: str
    samples: int
    score: float  # mean score of the node's aggregated answer
    tokens: float  # mean tokens drawn by the node per question
    flops: float
    latency: float  # mean seconds the node itself takes (NaN: a throughput is unknown)
    fallback_rate: float  # share of (question, replicate) whose input key was not collected

    def __post_init__(self):
        plain_numbers(self)


@dataclass(frozen=True)
class GraphResult:
    """An evaluated graph.

    Attributes:
        graph: the graph.
        score: mean score of the graph's answer over questions and replicates (NaN: infeasible).
        stderr: the replicate error: standard error of that mean over replicates, the questions
            fixed (NaN: infeasible or one replicate).
        ci_lo, ci_hi: the 95% interval over questions (`replay.stats.question_interval` of
            per_question, as for chains): what the score may be on new questions; NaN when
            infeasible.
        feasible: within the budget and the latency limit (always, without them), judged by the
            budget rule: the expected cost and latency over the store's questions
            (`estimate_graph`), not these draws' (docs/store-format.md).
        expected_units, expected_latency: that expected cost and latency per question (NaN
            when neither a budget nor a latency limit was given: not computed).
        tokens, flops, units: mean cost per question (tokens drawn on every node; FLOPs = 2 x
            params x tokens; normalised budget units as for chains).
        latency: mean seconds per question until the output is ready (the longest path).
        budget, latency_limit: what it was held to, or None.
        nodes: per-node figures.
        n_questions, replicates, seed: what it was evaluated on.
        per_question, per_question_tokens, per_question_latency: means per question over
            replicates (score is None when infeasible).
    """

    graph: Graph
    score: float
    stderr: float
    feasible: bool
    tokens: float
    flops: float
    units: float
    latency: float
    budget: float | None
    latency_limit: float | None
    nodes: tuple[NodeResult, ...]
    n_questions: int
    replicates: int
    seed: int
    per_question: np.ndarray | None = field(repr=False, compare=False, default=None)
    per_question_tokens: np.ndarray = field(repr=False, compare=False, default=None)
    per_question_latency: np.ndarray = field(repr=False, compare=False, default=None)
    ci_lo: float = math.nan
    ci_hi: float = math.nan
    score_bounds: tuple[float, float] | None = field(default=(0.0, 1.0), compare=False)
    expected_units: float = math.nan
    expected_latency: float = math.nan

    def __post_init__(self):
        plain_numbers(self)

    def interval(self, level: float = LEVEL) -> Interval:
        """The interval over questions at `level` (the 95% one is (ci_lo, ci_hi)).

        Args:
            level: nominal coverage, in (0, 1).

        Raises:
            ValueError: an infeasible result (not scored).
        """
        if self.per_question is None:
            raise ValueError(f"{self.graph}: infeasible, not scored: no interval")
        return question_interval(self.per_question, level=level, bounds=self.score_bounds)

    def difference(self, other: "GraphResult", *, level: float = LEVEL) -> Interval:
        """The paired difference self - other over questions, with its interval (common random
        numbers: per seed, question, replicate and node position).

        Args:
            other: a result on the same questions, seed and replicates.
            level: nominal coverage, in (0, 1).

        Raises:
            ValueError: either result infeasible, or not on the same questions, seed and replicates.
        """
        if self.per_question is None or other.per_question is None:
            raise ValueError("an infeasible graph is not scored: no paired difference")
        if (self.n_questions, self.replicates, self.seed) != (other.n_questions, other.replicates, other.seed):
            raise ValueError("a paired difference needs the same questions, replicates and seed")
        if self.score_bounds is None or other.score_bounds is None:
            return question_interval(np.asarray(self.per_question) - np.asarray(other.per_question), level=level,
                                     bounds=None)
        return paired_interval(self.per_question, other.per_question, level=level)

    @property
    def config(self) -> Graph:  # the name chain results use
        return self.graph

    @property
    def fallback_rate(self) -> float:
        """Mean fallback rate over the nodes that read other nodes."""
        rates = [n.fallback_rate for n, node in zip(self.nodes, self.graph.nodes) if node.inputs]
        return float(np.mean(rates)) if rates else 0.0

    def as_row(self) -> dict:
        row = {"graph": str(self.graph), "score": self.score, "stderr": self.stderr, "ci_lo": self.ci_lo,
               "ci_hi": self.ci_hi, "feasible": self.feasible,
               "tokens": self.tokens, "flops": self.flops, "units": self.units, "latency": self.latency,
               "expected_units": self.expected_units, "expected_latency": self.expected_latency,
               "fallback_rate": self.fallback_rate, "nodes": len(self.graph.nodes),
               "depth": self.graph.depth(), "width": self.graph.width()}
        return row


@dataclass(frozen=True)
class GraphBatch:
    """Graphs as the kernel takes them: per graph a CSR of its nodes, per node of its parents
    (indices within the graph), per graph of its output nodes."""

    g_node_off: np.ndarray
    node_role: np.ndarray
    node_model: np.ndarray
    node_count: np.ndarray
    node_par_off: np.ndarray
    node_par: np.ndarray
    g_out_off: np.ndarray
    g_out: np.ndarray

    @classmethod
    def of(cls, store, graphs: Sequence[Graph]) -> "GraphBatch":
        roles = {n: i for i, n in enumerate(store.manifest.stage_names)}
        models = {n: i for i, n in enumerate(store.manifest.model_names)}
        n_nodes = [len(g.nodes) for g in graphs]
        role, model, count, par_len, par, out_len, out = [], [], [], [], [], [], []
        for g in graphs:
            idx = {n.name: i for i, n in enumerate(g.nodes)}
            for n in g.nodes:
                role.append(roles[n.role])
                model.append(models[n.model])
                count.append(n.samples)
                par_len.append(len(n.inputs))
                par.extend(idx[p] for p in n.inputs)
            out_len.append(len(g.output))
            out.extend(idx[o] for o in g.output)

        def csr(lens):
            return np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)

        i64 = lambda x: np.array(x, dtype=np.int64)  # noqa: E731
        return cls(csr(n_nodes), i64(role), i64(model), i64(count), csr(par_len), i64(par), csr(out_len), i64(out))

    def slice(self, b0: int, b1: int) -> "GraphBatch":
        n0, n1 = int(self.g_node_off[b0]), int(self.g_node_off[b1])
        e0, e1 = int(self.node_par_off[n0]), int(self.node_par_off[n1])
        o0, o1 = int(self.g_out_off[b0]), int(self.g_out_off[b1])
        return GraphBatch(self.g_node_off[b0:b1 + 1] - n0, self.node_role[n0:n1], self.node_model[n0:n1],
                          self.node_count[n0:n1], self.node_par_off[n0:n1 + 1] - e0, self.node_par[e0:e1],
                          self.g_out_off[b0:b1 + 1] - o0, self.g_out[o0:o1])

    def distinct(self) -> "DistinctNodes":
        """The batch's distinct nodes (DistinctNodes), found place by place with NumPy: a node's
        parents have smaller places, so their distinct ids are known when its place is reached.
        Within a place, distinct nodes are numbered by role, model and the first graph that has
        them (what numbering by first appearance, then sorting by place, role and model gives)."""
        i64 = lambda v: np.array(v, dtype=np.int64)  # noqa: E731
        U = len(self.node_role)
        if len(self.g_node_off) == 2:
            # one graph (a searcher asking one at a time): each node is its own distinct node, in
            # place order, and what follows would find just that (np.unique per place costs ~1 ms)
            par = np.concatenate([np.sort(self.node_par[self.node_par_off[u]:self.node_par_off[u + 1]])
                                  for u in range(U)]) if U else i64([])
            return DistinctNodes(np.arange(U, dtype=np.int64), np.arange(U, dtype=np.int64), self.node_role.copy(),
                                 self.node_model.copy(), self.node_count.copy(), self.node_par_off.copy(),
                                 par.astype(np.int64))
        sizes = np.diff(self.g_node_off)
        start = np.repeat(self.g_node_off[:-1], sizes)  # each node's graph's first node
        place = np.arange(U, dtype=np.int64) - start
        n_par = np.diff(self.node_par_off)
        width = max(int(n_par.max(initial=0)), 1)
        par_node = self.node_par + np.repeat(start, n_par)  # parents as positions in the batch
        uid = np.full(U, -1, dtype=np.int64)
        index, role, model, count, n_parents, par = [], [], [], [], [], []
        next_id = 0
        for i in range(int(place.max(initial=-1)) + 1):
            us = np.flatnonzero(place == i)  # in graph order
            k = n_par[us]
            # the parents' distinct ids, sorted (a multiset), padded with -1 in front
            ps = np.full((len(us), width), -1, dtype=np.int64)
            rows = np.repeat(np.arange(len(us)), k)
            cols = np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k)
            ps[rows, cols] = uid[par_node[np.repeat(self.node_par_off[us], k) + cols]]
            ps.sort(axis=1)
            sig = np.column_stack([self.node_role[us], self.node_model[us], self.node_count[us], ps])
            _, first, inverse = np.unique(sig, axis=0, return_index=True, return_inverse=True)
            order = np.lexsort((first, sig[first, 1], sig[first, 0]))
            rank = np.empty(len(order), dtype=np.int64)
            rank[order] = np.arange(len(order))
            uid[us] = next_id + rank[inverse.reshape(-1)]
            f = us[first[order]]  # each distinct node's first node, in id order
            index.append(np.full(len(f), i, dtype=np.int64))
            role.append(self.node_role[f])
            model.append(self.node_model[f])
            count.append(self.node_count[f])
            pr = ps[first[order]]
            kept = pr >= 0
            par.append(pr[kept])
            n_parents.append(kept.sum(axis=1))
            next_id += len(order)
        cat = lambda parts: np.concatenate(parts).astype(np.int64) if parts else i64([])  # noqa: E731
        return DistinctNodes(uid, cat(index), cat(role), cat(model), cat(count),
                             np.concatenate([[0], np.cumsum(cat(n_parents))]).astype(np.int64), cat(par))


@dataclass(frozen=True)
class DistinctNodes:
    """The distinct nodes of a batch of graphs: two nodes are the same when they have the same
    place in their graphs (their random stream), role, model and count, and the same distinct
    parents (as a multiset). Common random numbers make such nodes give the same answers,
    scores, tokens and finish times on every (question, replicate), so the kernel runs each
    once per question for the whole batch. Ordered by place, role and model (parents first)."""

    node_uid: np.ndarray  # int64 [U]: each node's distinct node
    index: np.ndarray  # int64 [X]: its place in its graphs
    role: np.ndarray
    model: np.ndarray
    count: np.ndarray
    par_off: np.ndarray  # CSR of its parents (distinct ids, ascending)
    par: np.ndarray


@dataclass
class GraphSums:
    """What results are made of, summed, in the order of the graphs: score/tokens/flops/latency
    [B, Q] (over replicates), score_r [B, R] (over questions), node [U, 4] (score, tokens,
    latency, fallbacks, over both; U = all nodes in graph order); detail [B, Q, R] arrays when
    asked."""

    score_q: np.ndarray
    tokens_q: np.ndarray
    flops_q: np.ndarray
    latency_q: np.ndarray
    score_r: np.ndarray
    node: np.ndarray
    detail: tuple[np.ndarray, ...] | None = None


# below this many draws (estimated), one thread: a parallel region costs ~3 ms of CPU (threads
# spin after it), which a small call does not win back. Measured (6-node graph, 16 replicates,
# 2 threads): 15 questions (9k) 2.3 ms serial / 2.1 ms parallel wall but 2.3x the CPU; 100
# questions (59k) 4.2 / 2.9 ms; 500 questions (296k) 12.2 / 8.8 ms
SERIAL_WORK = 100_000
MEMO_ENTRIES = 2_000_000  # memo entries of one question per chunk at most (64 MB; a few chunks run at once)


def _memo_plan(store, nodes: DistinctNodes, R: int, always: bool = False):
    """Which distinct nodes read the memo: every (node index, role, model) of majority or
    best-score aggregation that more than one distinct node of the batch has (all of them with
    `always`), while the memo of one question fits MEMO_ENTRIES. The memo is filled lazily in
    the kernel, one question at a time (only the pools the nodes reach are drawn, each once for
    every node of the slot), so sharing is all it needs to pay. Returns (slot per distinct node,
    slot_nmax, slot_row_off, slot_ent_off): rows (pool of the question's role and model,
    replicate) and entries (a row holds the result at every count 1..nmax) per slot, as CSR
    offsets."""
    a, d = store.arrays, store.derived
    groups: dict[tuple[int, int, int], list[int]] = {}
    for x in range(len(nodes.role)):
        role = int(nodes.role[x])
        if a.stage_agg[role] in (0, 2):  # majority_vote, best_score
            groups.setdefault((int(nodes.index[x]), role, int(nodes.model[x])), []).append(x)
    pools_max = np.diff(a.qsm_pool_off).reshape(a.n_questions, a.n_stages, a.n_models).max(axis=0)
    slot = np.full(len(nodes.role), -1, dtype=np.int64)
    nmaxs, rows, ents = [], [0], [0]
    for (i, role, m), xs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        nmax = int(min(nodes.count[xs].max(), d.largest_pool[role, m]))
        n_rows = int(pools_max[role, m]) * R
        if (always or len(xs) > 1) and ents[-1] + n_rows * nmax <= MEMO_ENTRIES:
            slot[xs] = len(nmaxs)
            nmaxs.append(nmax)
            rows.append(rows[-1] + n_rows)
            ents.append(ents[-1] + n_rows * nmax)
    i64 = lambda x: np.array(x, dtype=np.int64)  # noqa: E731
    return slot, i64(nmaxs), i64(rows), i64(ents)


def graph_sums(store, graphs: Sequence[Graph], qidx: np.ndarray, *, replicates: int, seed: int,
               throughput: dict | None = None, detail: bool = False, progress=None, memo: str = "auto",
               device: str | None = None) -> GraphSums:
    """Replay checked graphs on question indices `qidx`: the sums results are made of.

    A node that several graphs of the batch have (the same node index, role, model, count and
    distinct parents: `GraphBatch.distinct`) is run once per question for all of them. Distinct
    nodes of majority or best-score roles that share a node index, role and model read a memo
    filled once per question for the batch (`_memo_plan`, `kernels.memo_fill`); the others
    draw directly. Both give the same numbers.

    Args:
        store: the store.
        graphs: checked graphs (`as_graph`).
        qidx: question indices (`store.question_indices`).
        replicates: random draws per question.
        seed: the seed of every draw.
        throughput: {model: (prefill tokens/s, decode tokens/s)} over the manifest's.
        detail: also return score, tokens, FLOPs and latency per (graph, question, replicate).
        progress: called with the number of graphs done.
        memo: "auto" (where cheaper), "always" (every eligible node; for tests) or "never"
            (every node draws directly); all give the same numbers.
        device: 'cpu', 'cuda' (replay/gpu/graph_kernels.py: every node drawn directly, the
            same sums), 'auto' (the GPU when present and the batch's draws, nodes x questions x
            replicates x samples before sharing, are at least replay.gpu.AUTO_MIN_DRAWS) or
            None ($TTS_REPLAY_DEVICE, else 'cpu'). The chunking of questions below is the same
            on both devices, so every array is identical.

    Raises:
        ConfigError: an unknown device, or 'cuda' where no GPU can be used.
    """
    import functools

    import numba

    from ..gpu import resolve_device
    from . import kernels

    d = store.derived
    A, G = d.kernel_inputs, graph_inputs(store)
    a = store.arrays
    pre, dec = seconds_per_token(store, throughput)
    batch = GraphBatch.of(store, graphs)
    B, Q, R = len(graphs), len(qidx), replicates
    U = len(batch.node_role)
    dev = resolve_device(device, work=float(Q) * R * float(batch.node_count.sum()))
    out = GraphSums(np.zeros((B, Q)), np.zeros((B, Q)), np.zeros((B, Q)), np.zeros((B, Q)), np.zeros((B, R)),
                    np.zeros((U, 4)), tuple(np.zeros((B, Q, R)) for _ in range(4)) if detail else None)
    qidx = np.ascontiguousarray(qidx, dtype=np.int64)
    n_threads = numba.get_num_threads()
    step = max(1, MAX_CELLS // max(Q, 1))
    empty = np.zeros((0, 0, 0))
    for b0 in range(0, B, step):
        b1 = min(B, b0 + step)
        part = batch.slice(b0, b1)
        n0, n1 = int(batch.g_node_off[b0]), int(batch.g_node_off[b1])
        nodes = part.distinct()
        X = len(nodes.role)
        if memo == "never":
            z = np.zeros(1, np.int64)
            mem = (np.full(X, -1, np.int64), z[:0], z, z)
        else:
            mem = _memo_plan(store, nodes, R, always=memo == "always")
        work = Q * R * float(np.sum(np.where(mem[0] < 0, nodes.count + 4, 1)) + 0.1 * (n1 - n0))
        parallel = n_threads > 1 and work > SERIAL_WORK
        n_chunks = max(1, min(Q, 4 * n_threads)) if parallel else 1
        score_r = np.zeros((n_chunks, b1 - b0, R))
        node = np.zeros((n_chunks, X, 4))
        det = tuple(x[b0:b1] for x in out.detail) if detail else (empty, empty, empty, empty)
        run = kernels.graph_replay if parallel else kernels.graph_replay_serial
        if dev == "cuda":  # the same arguments, the same sums (n_chunks included)
            from ..gpu.graph_host import graph_replay as gpu_replay

            run = functools.partial(gpu_replay, store)
        per_q = [np.zeros((Q, b1 - b0)) for _ in range(4)]  # [question, graph]: the kernel's layout
        run(A, G, a.n_stages, a.n_models, d.max_pool, d.n_items, pre, dec, qidx, R, np.uint64(seed), n_chunks,
            part.g_node_off, nodes.node_uid, part.g_out_off,
            nodes.node_uid[np.repeat(part.g_node_off[:-1], np.diff(part.g_out_off)) + part.g_out],
            nodes.index, nodes.role, nodes.model, nodes.count, nodes.par_off, nodes.par, *mem,
            *per_q, score_r, node, *det)
        for dst, src in zip((out.score_q, out.tokens_q, out.flops_q, out.latency_q), per_q):
            dst[b0:b1] = src.T
        out.score_r[b0:b1] = score_r.sum(axis=0)
        out.node[n0:n1] = node.sum(axis=0)[nodes.node_uid]
        if progress is not None:
            progress(b1 - b0)
    return out


def evaluate_graph(store, graph, *, questions=None, replicates: int = 100, seed: int = 0,
                   budget: float | None = None, latency_limit: float | None = None,
                   throughput: dict | None = None, device: str | None = None) -> GraphResult:
    """Replay one graph: its mean score, standard error, token cost and latency.

    Args:
        store: the store to replay (`replay.open(path)`): a graph store, or a chain store whose
            stages serve as roles.
        graph: a `Graph`, or its text or JSON form (replay/graph/config.py).
        questions: None or 'all', a split name ('train', 'test'), or question ids/indices.
        replicates: random draws per question (common random numbers per seed, question,
            replicate and node).
        seed: the seed of every draw.
        budget: a budget in normalised units per question; a graph whose expected cost
            (`estimate_graph`, over the store's questions) exceeds it is infeasible and not scored.
        latency_limit: seconds per question; a graph whose expected latency exceeds it is
            infeasible and not scored (ConfigError if a model of the graph has no throughput).
        throughput: {model: (prefill tokens/s, decode tokens/s)}, over the manifest's.
        device: 'cpu', 'cuda' (a GPU: replay/gpu, the same numbers), 'auto' (the GPU when
            present and the work is large) or None ($TTS_REPLAY_DEVICE, else 'cpu').

    Raises:
        ConfigError: a graph the store cannot replay, replicates < 1, or device 'cuda' without
            a usable GPU.
        StoreError: an unknown split or question.
    """
    return evaluate_graphs(store, [graph], questions=questions, replicates=replicates, seed=seed, budget=budget,
                           latency_limit=latency_limit, throughput=throughput, device=device)[0]


def evaluate_graphs(store, graphs: Iterable, *, questions=None, replicates: int = 100, seed: int = 0,
                    budget: float | None = None, latency_limit: float | None = None,
                    throughput: dict | None = None, progress: Callable[[int], None] | None = None,
                    device: str | None = None) -> list[GraphResult]:
    """Replay many graphs in one compiled call (per MAX_CELLS graphs x questions), with the
    numbers `evaluate_graph` gives each. Arguments as `evaluate_graph`; `progress` is called
    with the number of graphs done.

    Returns:
        One `GraphResult` per graph, in order.
    """
    gs = [as_graph(store, g) for g in graphs]
    if not gs:
        return []
    if replicates < 1:
        raise ConfigError("replicates", "must be at least 1")
    qidx = store.question_indices(questions)
    if len(qidx) == 0:
        raise ConfigError("questions", "no questions selected")
    # the budget rule (docs/store-format.md): feasibility by the expected cost (and latency) over
    # the store's questions, not by what these draws on these questions cost
    judged = budget is not None or latency_limit is not None
    expected = [estimate_graph(store, g, throughput=throughput) if judged else (math.nan, math.nan) for g in gs]
    if latency_limit is not None:
        pre, dec = seconds_per_token(store, throughput)
        for g in gs:
            unknown = [n.model for n in g.nodes if np.isnan(pre[store.model_index(n.model)] + dec[store.model_index(n.model)])]
            if unknown:
                raise ConfigError("latency limit", f"graph {str(g)!r}: model {unknown[0]!r} has no throughput, so its "
                                                   "latency is unknown (give one: --throughput MODEL=PREFILL/DECODE)")
    sums = graph_sums(store, gs, qidx, replicates=replicates, seed=seed, throughput=throughput, progress=progress,
                      device=device)
    budget = None if budget is None else float(budget)
    latency_limit = None if latency_limit is None else float(latency_limit)
    seed = int(seed)
    unit = store.derived.budget_unit
    params = store.arrays.model_params
    models = {n: i for i, n in enumerate(store.manifest.model_names)}
    out = []
    u = 0
    Q, R = len(qidx), replicates
    n = Q * R
    # the interval over questions of every graph at once, as the chain engine does
    from ..engine import score_bounds

    bounds = score_bounds(store)
    per_q = sums.score_q / R
    sd = per_q.std(axis=1, ddof=1) if Q > 1 else np.zeros(len(gs))
    ends = ((per_q <= 0.0) | (per_q >= 1.0)).mean(axis=1)
    ci_lo, ci_hi = intervals(per_q.mean(axis=1), sd, Q, bounds=bounds, at_ends=ends)
    # every graph's figures at once (row sums and row std: the same numbers as row by row, in
    # a fraction of the time of 256 small NumPy calls per figure), then plain floats per graph
    score = (sums.score_q.sum(axis=1) / n).tolist()
    tokens = (sums.tokens_q.sum(axis=1) / n).tolist()
    flops_sum = sums.flops_q.sum(axis=1)
    flops = (flops_sum / n).tolist()
    units_all = (flops_sum / n / float(unit)).tolist()
    latency_all = (sums.latency_q.sum(axis=1) / n).tolist()
    stderr_all = ((sums.score_r / Q).std(axis=1, ddof=1) / math.sqrt(R)).tolist() if R > 1 else [math.nan] * len(gs)
    per_tok = sums.tokens_q / R
    per_lat = sums.latency_q / R
    node_means = (sums.node / n).tolist()
    two_params = [2.0 * float(p) for p in params]
    ci_lo, ci_hi = ci_lo.tolist(), ci_hi.tolist()
    for b, g in enumerate(gs):
        exp_units, exp_latency = expected[b]
        feasible = bool(within_budget(exp_units, budget) and (
            latency_limit is None or exp_latency <= latency_limit * (1 + 1e-9)))
        nodes = []
        for node in g.nodes:
            s_score, tk, s_lat, s_fell = node_means[u]
            nodes.append(made(NodeResult, name=node.name, role=node.role, model=node.model, samples=node.samples,
                              score=s_score if feasible else math.nan, tokens=tk,
                              flops=two_params[models[node.model]] * tk, latency=s_lat, fallback_rate=s_fell))
            u += 1
        # made(): the figures are Python numbers already (lists from .tolist(), and the
        # arguments made plain above), so the checks of __post_init__ are skipped
        out.append(made(
            GraphResult, graph=g, score=score[b] if feasible else math.nan,
            stderr=stderr_all[b] if feasible else math.nan, feasible=feasible, tokens=tokens[b],
            flops=flops[b], units=units_all[b], latency=latency_all[b], budget=budget,
            latency_limit=latency_limit, nodes=tuple(nodes), n_questions=Q, replicates=R, seed=seed,
            per_question=per_q[b] if feasible else None, per_question_tokens=per_tok[b],
            per_question_latency=per_lat[b],
            ci_lo=ci_lo[b] if feasible else math.nan, ci_hi=ci_hi[b] if feasible else math.nan,
            score_bounds=bounds, expected_units=float(exp_units), expected_latency=float(exp_latency)))
    return out


def estimate_graph(store, graph, *, questions=None, throughput: dict | None = None) -> tuple[float, float]:
    """Expected cost of a graph without replay: (budget units, latency seconds) per question.
    `evaluate_graphs` judges feasibility by it. One implementation with the graph search
    space's: `replay.graph.expected.expected_graph_cost` (its docstring and module say what
    is counted); this is that function under the engine's name.

    Args:
        store: the store.
        graph: a graph (as `evaluate_graph` takes it).
        questions: the questions the latency is averaged over (None: all); the units are the
            budget rule's, over the store's questions.
        throughput: as in `evaluate_graph`.
    """
    from .expected import expected_graph_cost

    return expected_graph_cost(store, graph, questions=questions, throughput=throughput)
