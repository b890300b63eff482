"""Collaboration graphs as a search space (Agent-REINFORCE, arXiv 2511.00086; docs/graphs.md).

    search --replay traces/sim-math --space graph --max-nodes 4 --searcher random --trials 100
    search --replay traces/sim-math --space graph --latency-limit 12 --searcher bo
    search --replay traces/sim-math --space graph --objective 'accuracy - 0.01 * latency' --searcher bo

A point is a `replay.graph.Graph`: up to `max_nodes` nodes, each a role (solve, refine,
aggregate), a model and a sample count, reading earlier nodes (edges); the graph's answer is its
one sink, or a majority vote over its sinks. Its cost is the graph budget rule: the EXPECTED
cost in budget units per question over the store's pools (replay/graph/expected.py), the same
on every question set, so `estimate_cost` is exact and feasibility is known before a replay.
With a latency limit, a graph is also infeasible when its mean replayed latency on the scored
questions exceeds it (the graph engine's rule; latency is known only once replayed; a
closed-form lower bound, `estimate_latency`, skips graphs that cannot meet it).

Interface (stable; the Agent-REINFORCE searcher builds on it):

    sp = GraphSpace.from_store(store, max_nodes=4, budget=30.0, latency_limit=None, objective="accuracy")
    sp.roles                  ("solve", "refine", "aggregate"): the store's roles
    sp.models[role]           candidate models of a role (tuple of names)
    sp.counts[(role, model)]  allowed sample counts (tuple of ints, ascending)
    sp.in_degree[role]        (fewest, most) parents a node of the role reads ((0, 0) for solve)
    sp.max_nodes, sp.budget, sp.latency_limit, sp.objective (GraphObjective: .lam, .text)
    sp.make(spec)             a canonical Graph from index form: [(role, model, samples, (parent indices))]
    sp.spec(graph)            the index form of a graph (nodes in topological order)
    sp.canonical(graph)       nodes renamed n0.., output = the sinks (one, or a vote)
    sp.valid(graph)           in the space (roles, models, counts, in-degrees, size); = contains
    sp.feasible(graph)        valid and expected cost within the budget (and the latency lower
                              bound within the limit); the replay decides the measured latency
    sp.estimate_cost(graph)   expected budget units per question; sp.node_cost(role, model, k, n)
    sp.sample(rng)            a random valid graph (may be over budget); sp.random_points(rng, seen)
    sp.mutate(graph, rng)     a random feasible one-move neighbour (MOVES); sp.moves(graph) all of them
    sp.evaluate(graphs, objective)   one replay call -> Evaluation per graph (score = the
                              objective; metrics: accuracy, latency, measured_units, ...)
    sp.describe()             the task in text, for prompts
    sp.references(objective)  the best pure-parallel and pure-sequential graphs (fixed architectures)
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Hashable, Iterator, Sequence

import numpy as np

from replay.errors import ConfigError
from replay.graph import Graph, Node
from replay.graph.expected import expected_graph_tokens_table, latency_estimate
from replay.store import Store

from ..llm.answer import AnswerProblem
from ..trial import Evaluation, Objective, Trial
from .base import AgentBrief, Dim, GridWalk, Parametrisation, Space

from ..settings import GraphObjective, GraphSpaceSettings  # noqa: F401  (GraphObjective: part of this module's interface)

DEFAULT_MAX_NODES = 4
BUDGET_RULE = "expected graph cost over the store's pools"
MOVES = ("count", "model", "role", "add_node", "remove_node", "add_edge", "remove_edge")
GRID_BATCH = 256  # graphs per replay call of the grid walk
OPTIMUM_LIMIT = 20_000  # the summary's exhaustive optimum replays at most this many feasible graphs
MUTATE_TRIES = 64
LATENCY_SLACK = 0.10  # graphs whose latency estimate exceeds the limit by more are not tried

Spec = Sequence[tuple[str, str, int, tuple[int, ...]]]

@dataclass(frozen=True)
class GraphSpace(Space):
    """Collaboration graphs of a graph store (module docstring)."""

    kind: ClassVar[str] = "graph"
    cost_unit: ClassVar[str] = "units"
    supports: ClassVar[frozenset[str]] = frozenset({"grid", "parametrisation", "graphs"})
    answer_problem_kinds: ClassVar[tuple[str, ...]] = ("invalid_graph",)
    estimate_slack: ClassVar[float] = 0.0  # the estimate is the budget rule itself

    store: Store = field(repr=False, compare=False)
    roles: tuple[str, ...]
    models: dict[str, tuple[str, ...]]
    counts: dict[tuple[str, str], tuple[int, ...]]
    in_degree: dict[str, tuple[int, int]]
    params: dict[str, float]
    max_nodes: int
    budget: float
    latency_limit: float | None = None
    objective: GraphObjective = GraphObjective()

    # ---- construction

    @classmethod
    def from_store(cls, store: Store, *, max_nodes: int = DEFAULT_MAX_NODES, models: Sequence[str] | None = None,
                   max_samples: int | None = None, budget: float | None = None, latency_limit: float | None = None,
                   objective: str | GraphObjective | None = None) -> "GraphSpace":
        """The graph space of a graph store.

        Parameters:
            store: a graph store (`kind: graph`).
            max_nodes: the most nodes a graph has (1..replay.graph.MAX_NODES).
            models: candidate models to keep (default: every candidate of every role).
            max_samples: the largest sample count of a node.
            budget: budget units per question (default: `default_graph_budget`).
            latency_limit: seconds per question (mean replayed latency); None: no limit.
            objective: 'accuracy' (default) or 'accuracy - LAMBDA * latency'.
        """
        from replay.graph import MAX_NODES
        from replay.graph.expected import max_key_lengths, min_key_lengths

        if store.manifest.kind != "graph":
            raise ConfigError("--space", f"store {store.name!r} is a chain store; --space graph needs a graph store "
                              "(collect simulate --preset math, or collect run --graph); use --space config")
        if not 1 <= int(max_nodes) <= MAX_NODES:
            raise ConfigError("--max-nodes", f"must be from 1 to {MAX_NODES}, got {max_nodes}")
        obj = objective if isinstance(objective, GraphObjective) else GraphObjective.parse(objective)
        names = store.manifest.model_names
        if models:
            unknown = [m for m in models if m not in names]
            if unknown:
                raise ConfigError("--models", f"unknown model {unknown[0]!r} (models: {', '.join(names)})")
        if max_samples is not None and max_samples < 1:
            raise ConfigError("--max-samples", f"must be at least 1, got {max_samples}")
        roles = tuple(store.manifest.stage_names)
        largest = store.derived.largest_pool
        kmax, kmin = max_key_lengths(store), min_key_lengths(store)
        role_models, counts, degree = {}, {}, {}
        for ri, r in enumerate(roles):
            cands = tuple(m for m in store.candidate_models(ri) if not models or m in models)
            if not cands:
                raise ConfigError("--models", f"no candidate model left for role {r!r}")
            role_models[r] = cands
            for m in cands:
                top = int(largest[ri, store.model_index(m)])
                counts[(r, m)] = tuple(range(1, (top if max_samples is None else min(top, max_samples)) + 1))
            degree[r] = (0, 0) if r == "solve" else (max(1, int(kmin[ri])), max(1, int(kmax[ri])))
        if latency_limit is not None:
            if not (math.isfinite(latency_limit) and latency_limit > 0):
                raise ConfigError("--latency-limit", f"must be a positive number of seconds, got {latency_limit}")
        if latency_limit is not None or obj.uses_latency:
            missing = [m.name for m in store.models if not (m.prefill_tokens_per_s and m.decode_tokens_per_s)]
            if missing:
                raise ConfigError("--latency-limit" if latency_limit is not None else "--objective",
                                  f"store {store.name!r} has no throughput for {missing[0]!r}: latency is unknown")
        sp = cls(store=store, roles=roles, models=role_models, counts=counts, in_degree=degree,
                 params={m.name: m.params for m in store.models}, max_nodes=int(max_nodes), budget=0.0,
                 latency_limit=None if latency_limit is None else float(latency_limit), objective=obj)
        object.__setattr__(sp, "budget", float(budget) if budget is not None else default_graph_budget(sp))
        if not math.isfinite(sp.budget) or sp.budget <= 0:
            raise ConfigError("--budget", f"must be a positive number of units, got {sp.budget}")
        cheapest = min(sp.node_cost("solve", m, 0, sp.counts[("solve", m)][0]) for m in sp.models["solve"])
        if cheapest > sp.budget * (1 + 1e-9):
            raise ConfigError("--budget", f"{sp.budget:.4g} units is below the cheapest graph of the space "
                              f"(about {cheapest:.4g} units)")
        return sp

    @classmethod
    def from_settings(cls, store, settings: "GraphSpaceSettings", objective: Objective) -> "GraphSpace":
        return cls.from_store(store, max_nodes=settings.max_nodes, models=settings.models,
                              max_samples=settings.max_samples, budget=settings.budget,
                              latency_limit=settings.latency_limit, objective=settings.objective)

    # ---- index form and canonical graphs

    def make(self, spec: Spec, *, output: Sequence[int] | None = None) -> Graph:
        """A graph from index form: per node (role, model, samples, parent indices), parents
        earlier in the list; nodes named n0, n1, ...; the output is the one sink, or a vote
        over the sinks (`output`: node indices instead).

        Raises:
            ConfigError: not a graph (a parent index not earlier, a solve with parents, ...).
        """
        nodes = [Node(f"n{i}", r, m, int(n), tuple(f"n{j}" for j in ps)) for i, (r, m, n, ps) in enumerate(spec)]
        for i, (_, _, _, ps) in enumerate(spec):
            if any(not 0 <= j < i for j in ps):
                raise ConfigError(f"graph {'; '.join(map(str, nodes))!r}", f"node n{i} reads a node not before it")
        if output is None:
            read = {j for _, _, _, ps in spec for j in ps}
            output = [i for i in range(len(spec)) if i not in read]
        return Graph.of(nodes, output=[f"n{i}" for i in output], roles=self.roles)

    def spec(self, graph: Graph) -> list[tuple[str, str, int, tuple[int, ...]]]:
        """The index form of a graph (its nodes are in topological order)."""
        idx = {n.name: i for i, n in enumerate(graph.nodes)}
        return [(n.role, n.model, n.samples, tuple(sorted(idx[p] for p in n.inputs))) for n in graph.nodes]

    def canonical(self, graph: Graph) -> Graph:
        """The same graph, nodes renamed n0.. in order; the output kept (by position)."""
        idx = {n.name: i for i, n in enumerate(graph.nodes)}
        return self.make(self.spec(graph), output=[idx[o] for o in graph.output])

    # ---- identity and the archive

    def valid(self, graph: Any) -> bool:
        """In the space: at most max_nodes nodes, known roles and models, allowed counts,
        in-degrees within the role's range."""
        if not isinstance(graph, Graph) or not 1 <= len(graph.nodes) <= self.max_nodes:
            return False
        for n in graph.nodes:
            if n.role not in self.models or n.model not in self.models[n.role]:
                return False
            if n.samples not in self.counts[(n.role, n.model)]:
                return False
            lo, hi = self.in_degree[n.role]
            if not lo <= len(n.inputs) <= hi:
                return False
        return True

    def contains(self, point: Any) -> bool:
        return self.valid(point)

    def key(self, point: Graph) -> Hashable:
        return str(self.canonical(point))

    def encode(self, point: Graph) -> str:
        return str(self.canonical(point))

    def decode(self, value: Any) -> Graph:
        return Graph.parse(value)

    def label(self, point: Graph) -> str:
        return str(point)

    def size(self) -> int:
        """Graphs in index form (labelled by node order) with 1..max_nodes nodes."""
        per_role = {r: sum(len(self.counts[(r, m)]) for m in self.models[r]) for r in self.roles}
        total, prefix = 0, 1
        for i in range(self.max_nodes):
            choices = per_role.get("solve", 0)
            for r in self.roles:
                if r == "solve":
                    continue
                lo, hi = self.in_degree[r]
                choices += per_role[r] * sum(math.comb(i, k) for k in range(lo, min(hi, i) + 1))
            prefix *= choices
            total += prefix
        return total

    def to_json(self) -> dict[str, Any]:
        out = {"roles": list(self.roles), "models": {r: list(v) for r, v in self.models.items()},
               "counts": {f"{r}/{m}": f"{c[0]}..{c[-1]}" for (r, m), c in self.counts.items()},
               "in_degree": {r: list(v) for r, v in self.in_degree.items()}, "max_nodes": self.max_nodes,
               "budget": self.budget, "budget_rule": BUDGET_RULE, "objective": self.objective.text,
               "size": self.size()}
        if self.latency_limit is not None:
            out["latency_limit"] = self.latency_limit
        return out

    # ---- cost

    def node_cost(self, role: str, model: str, k: int, n: int) -> float:
        """Expected budget units per question of one node reading k parents, drawing n samples."""
        t = expected_graph_tokens_table(self.store)
        ri, mi = self.roles.index(role), self.store.model_index(model)
        tk = float(t[ri, mi, min(int(k), t.shape[2] - 1), min(int(n), t.shape[3] - 1)])
        return 2.0 * float(self.store.arrays.model_params[mi]) * tk / float(self.store.derived.budget_unit)

    def estimate_cost(self, point: Graph) -> float:
        """The expected cost in budget units per question: the budget rule
        (replay.graph.expected.expected_graph_units)."""
        return sum(self.node_cost(n.role, n.model, len(n.inputs), n.samples) for n in point.nodes)

    def estimate_latency(self, point: Graph) -> float:
        """The expected latency in closed form, seconds per question
        (replay.graph.expected.latency_estimate): a pre-filter only, the replay decides."""
        return latency_estimate(self.store, point)

    def maybe_feasible(self, point: Any, slack: float | None = None) -> bool:
        slack = self.estimate_slack if slack is None else slack
        if self.estimate_cost(point) > self.budget * (1 + slack) * (1 + 1e-9):
            return False
        # the latency estimate only skips graphs clearly over the limit; the replay decides
        return self.latency_limit is None or self.estimate_latency(point) <= self.latency_limit * (1 + LATENCY_SLACK)

    def feasible(self, graph: Any) -> bool:
        """Valid, within the budget by the budget rule, and not provably over the latency limit."""
        return self.valid(graph) and self.maybe_feasible(graph)

    # ---- sampling and moves

    def _count(self, role: str, model: str, rng: np.random.Generator) -> int:
        """A sample count, log-uniform over the allowed ones (small counts as likely as large
        ones per doubling: uniform counts would put most multi-node graphs over budget)."""
        c = self.counts[(role, model)]
        x = math.exp(rng.uniform(0.0, math.log(c[-1] + 1)))
        return int(min(c, key=lambda v: abs(v - x)))

    def _node(self, i: int, rng: np.random.Generator) -> tuple[str, str, int, tuple[int, ...]]:
        roles = [r for r in self.roles if self.in_degree[r][0] <= i]
        r = roles[int(rng.integers(len(roles)))]
        m = self.models[r][int(rng.integers(len(self.models[r])))]
        lo, hi = self.in_degree[r]
        k = int(rng.integers(lo, min(hi, i) + 1)) if r != "solve" else 0
        parents = tuple(sorted(int(x) for x in rng.choice(i, size=k, replace=False))) if k else ()
        return (r, m, self._count(r, m, rng), parents)

    def sample(self, rng: np.random.Generator) -> Graph:
        """A random valid graph: a node count uniform in 1..max_nodes, then per node a role
        (solve first), a model, parents among the earlier nodes (in-degree uniform in the role's
        range) and a log-uniform sample count; the output is the sinks. It may be over budget
        (`random_points` keeps the feasible ones)."""
        k = int(rng.integers(1, self.max_nodes + 1))
        spec = [self._node(i, rng) for i in range(k)]
        return self.make(spec)

    def moves(self, graph: Graph) -> Iterator[tuple[str, Graph]]:
        """Every valid one-move neighbour, as (move, graph), move one of MOVES (may be over budget)."""
        spec = self.spec(graph)
        seen = {self.key(graph)}
        for kind, s in self._raw_moves(spec):
            try:
                g = self.make(s)
            except ConfigError:
                continue
            if self.valid(g) and self.key(g) not in seen:
                seen.add(self.key(g))
                yield kind, g

    def neighbours(self, point: Graph) -> Iterator[Graph]:
        for _, g in self.moves(point):
            if self.maybe_feasible(g):
                yield g

    def mutate(self, point: Graph, rng: np.random.Generator, *, kinds: Sequence[str] = MOVES) -> Graph:
        """A random feasible neighbour: a move kind uniform among those that apply, then one
        of its neighbours uniformly; a random feasible graph when none is feasible."""
        by_kind: dict[str, list[Graph]] = {}
        for kind, g in self.moves(point):
            if kind in kinds and self.maybe_feasible(g):
                by_kind.setdefault(kind, []).append(g)
        if not by_kind:
            for _ in range(MUTATE_TRIES * 16):
                g = self.sample(rng)
                if self.maybe_feasible(g):
                    return g
            return point
        ks = sorted(by_kind)
        opts = by_kind[ks[int(rng.integers(len(ks)))]]
        return opts[int(rng.integers(len(opts)))]

    def _raw_moves(self, spec: list) -> Iterator[tuple[str, list]]:
        K = len(spec)
        for i, (r, m, n, ps) in enumerate(spec):
            c = self.counts[(r, m)]
            for v in sorted({n - 1, n + 1, n * 2, n // 2} & set(c) - {n}):
                yield "count", _with(spec, i, (r, m, v, ps))
            for m2 in self.models[r]:
                if m2 != m:
                    c2 = self.counts[(r, m2)]
                    yield "model", _with(spec, i, (r, m2, min(c2, key=lambda v: abs(v - n)), ps))
            for r2 in self.roles:
                if r2 == r:
                    continue
                m2 = m if m in self.models[r2] else self.models[r2][0]
                n2 = min(self.counts[(r2, m2)], key=lambda v: abs(v - n))
                lo, hi = self.in_degree[r2]
                if r2 == "solve":
                    yield "role", _with(spec, i, (r2, m2, n2, ()))
                elif i >= lo:
                    # keep the parents (the nearest ones when too many); too few: add the nearest earlier nodes
                    near = [j for j in range(i - 1, -1, -1) if j not in ps][:max(0, lo - len(ps))]
                    ps2 = tuple(sorted(set(ps) | set(near)))[-hi:]
                    yield "role", _with(spec, i, (r2, m2, n2, ps2))
            lo, hi = self.in_degree[r]
            if r != "solve" and len(ps) < hi:
                for j in range(i):
                    if j not in ps:
                        yield "add_edge", _with(spec, i, (r, m, n, tuple(sorted(ps + (j,)))))
            if r != "solve" and len(ps) > lo:
                for j in ps:
                    yield "remove_edge", _with(spec, i, (r, m, n, tuple(x for x in ps if x != j)))
        if K > 1:
            for j in range(K):
                yield "remove_node", _without(spec, j, self.in_degree)
        if K < self.max_nodes:
            m = min(self.models["solve"], key=lambda x: self.params.get(x, 0.0))
            new_solve = ("solve", m, 1, ())
            yield "add_node", [new_solve] + [(r, mm, n, tuple(p + 1 for p in ps)) for r, mm, n, ps in spec]
            for r in self.roles:
                if r == "solve":
                    continue
                lo, hi = self.in_degree[r]
                sinks = [i for i in range(K) if all(i not in ps for *_, ps in spec)]
                for m in self.models[r]:
                    n1 = self.counts[(r, m)][0]
                    if lo <= len(sinks) <= hi:  # a new output reading every old output
                        yield "add_node", spec + [(r, m, n1, tuple(sinks))]
                    elif lo <= 1 <= hi:
                        yield "add_node", spec + [(r, m, n1, (K - 1,))]

    def initial_points(self) -> list[Graph]:
        """One single-sample solve node per candidate model (the models compared first)."""
        return [g for g in (self.make([("solve", m, 1, ())]) for m in self.models["solve"]) if self.maybe_feasible(g)]

    # ---- scoring

    def evaluate(self, points: Sequence[Graph], objective: Objective, *, enforce_budget: bool = True) -> list[Evaluation]:
        """One replay call (every graph on the objective's questions, replicates and seed:
        common random numbers). Score: the objective per question (accuracy, or accuracy -
        lambda x latency), its mean and replicate error. Cost: the expected units (the budget
        rule). With `enforce_budget`, a graph over the budget, or whose mean replayed latency
        exceeds the limit, is infeasible (no score); `metrics["infeasible"]` says why."""
        from replay.graph.engine import evaluate_graphs

        results = evaluate_graphs(self.store, list(points), questions=objective.questions,
                                  replicates=objective.replicates, seed=objective.seed)
        lam = self.objective.lam
        out = []
        for g, r in zip(points, results):
            expected = self.estimate_cost(g)
            acc_q = r.per_question
            metrics: dict[str, Any] = {
                "accuracy": r.score, "latency": r.latency, "measured_units": r.units,
                "fallback_rate": r.fallback_rate, "nodes": len(g.nodes), "depth": g.depth(), "width": g.width(),
                "node_scores": [n.score for n in r.nodes]}
            feasible = True
            if enforce_budget and expected > self.budget * (1 + 1e-9):
                feasible = False
                metrics["infeasible"] = f"over budget: expected cost {expected:.4g} units > {self.budget:.4g}"
            elif enforce_budget and self.latency_limit is not None and not r.latency <= self.latency_limit * (1 + 1e-9):
                feasible = False
                metrics["infeasible"] = f"over the latency limit: {r.latency:.4g} s > {self.latency_limit:.4g} s"
            if lam:
                per_q = acc_q - lam * r.per_question_latency
                score = float(per_q.mean())
                stderr = r.stderr  # accuracy's replicate error; latency's adds little and is not split out
            else:
                per_q, score, stderr = acc_q, r.score, r.stderr
            out.append(Evaluation(feasible=feasible, score=score if feasible else None,
                                  stderr=stderr if feasible else None, cost=expected, tokens=r.tokens, metrics=metrics,
                                  per_question=per_q if feasible else None))
        return out

    # ---- optional capabilities

    def grid(self, *, cap: int | None, max_points: int, prune: bool = True) -> GridWalk:
        size = self.size()
        if size > max_points:
            raise ConfigError("--searcher", f"grid: the graph space has {size:,} graphs, more than the {max_points:,} "
                              "a grid walks; narrow it (--max-nodes, --models, --max-samples) or use random or bo")
        return GraphGrid(self)

    def all_specs(self) -> Iterator[list]:
        """Every graph of the space in index form (size() of them), smallest first."""
        per_node: list[list] = []
        for i in range(self.max_nodes):
            opts = []
            for r in self.roles:
                lo, hi = self.in_degree[r]
                parent_sets = [()] if r == "solve" else [ps for k in range(lo, min(hi, i) + 1)
                                                         for ps in itertools.combinations(range(i), k)]
                for m in self.models[r]:
                    for n in self.counts[(r, m)]:
                        for ps in parent_sets:
                            opts.append((r, m, n, ps))
            per_node.append(opts)
            for combo in itertools.product(*per_node):
                yield list(combo)

    def parametrisation(self, *, within_budget: bool = False) -> Parametrisation:
        return GraphParametrisation(self)

    def optimum(self, objective: Objective, limit: int) -> dict[str, Any] | None:
        """The best feasible graph of the whole space when it has at most min(limit,
        OPTIMUM_LIMIT) graphs within the budget (every one replayed), else None."""
        if self.size() > limit:
            return None
        feas = []
        for s in self.all_specs():
            g = self.make(s)
            if self.maybe_feasible(g):
                feas.append(g)
                if len(feas) > OPTIMUM_LIMIT:
                    return None
        best = None
        for i in range(0, len(feas), 2048):
            part = feas[i:i + 2048]
            for g, ev in zip(part, self.evaluate(part, objective)):
                if ev.feasible and (best is None or (ev.score, -ev.cost) > (best[1], -best[2])):
                    best = (g, ev.score, ev.cost)
        return {"config": None if best is None else str(best[0]), "score": None if best is None else best[1],
                "units": None if best is None else best[2], "evaluated": len(feas), "feasible": len(feas),
                "space_size": self.size()}

    # ---- text

    def title(self) -> str:
        lat = f"; latency <= {self.latency_limit:g} s" if self.latency_limit is not None else ""
        return f"graphs of up to {self.max_nodes} nodes; {self.budget:.4g} units/question{lat}; {self.objective.text}"

    def cost_text(self, cost: float) -> str:
        return f"{cost:.4g} units"

    def headline(self) -> str:
        lat = f", latency limit {self.latency_limit:g} s/question" if self.latency_limit is not None else ""
        return (f"graphs of up to {self.max_nodes} nodes ({self.size():,} in index form); budget {self.budget:.4g} "
                f"units/question{lat}; objective {self.objective.text}")

    def slug(self) -> str:
        return "graph"

    def summary_rows(self) -> list[tuple[str, str]]:
        rows = [("space", f"graphs of up to {self.max_nodes} nodes, {self.size():,} in index form"),
                ("budget", f"{self.budget:.4g} units/question (expected cost)")]
        if self.latency_limit is not None:
            rows.append(("latency limit", f"{self.latency_limit:g} s/question (mean replayed latency)"))
        rows.append(("objective", self.objective.text))
        return rows

    def describe(self) -> str:
        lines = [
            "Design a collaboration graph of LLM calls that answers each question.",
            f"A graph has 1 to {self.max_nodes} nodes. A node is one LLM call: a role, a model and a sample count; "
            "it draws that many samples and keeps their majority answer.",
            "Roles: solve reads the question alone; refine reads its parents' answers and writes a new one; "
            "aggregate reads several parents' answers and picks one.",
            "Edges: a node reads earlier nodes' answers. The graph's answer is its one sink (the node no other "
            "node reads), or a majority vote over its sinks.",
            f"Budget: {self.budget:.4g} cost units per question, the expected cost of the graph (about parameters x "
            "tokens, summed over nodes). Latency: a node starts when its parents finish; its samples run in "
            "parallel; the graph's latency is its longest path.",
        ]
        if self.latency_limit is not None:
            lines.append(f"Latency limit: {self.latency_limit:g} seconds per question (mean).")
        lines.append(f"Objective: {self.objective.text} (accuracy in [0, 1], latency in seconds per question).")
        for r in self.roles:
            lo, hi = self.in_degree[r]
            reads = "the question" if r == "solve" else f"{lo} to {hi} parents"
            lines.append(f"Role {r!r} (reads {reads}), models:")
            for m in self.models[r]:
                c = self.counts[(r, m)]
                k = lo if r != "solve" else 0
                one = self.node_cost(r, m, k, c[0])
                extra = (self.node_cost(r, m, k, c[1]) - one) if len(c) > 1 else float("nan")
                tail = f", about {extra:.3g} per extra sample" if math.isfinite(extra) else ""
                lines.append(f"  - {m} ({_params(self.params.get(m, math.nan))} parameters), samples {c[0]}..{c[-1]}; "
                             f"one sample costs about {one:.3g} units{tail}")
        return "\n".join(lines)

    def point_columns(self) -> list[str]:
        return ["graph"]

    def point_cells(self, point: Graph) -> list[str]:
        return [str(self.canonical(point))]

    def cost_columns(self) -> list[str]:
        return ["cost", "accuracy", "latency s"]

    def cost_cells(self, trial: Trial) -> list[str]:
        acc, lat = trial.metrics.get("accuracy"), trial.metrics.get("latency")
        return [f"{trial.cost:.3g}", "-" if acc is None or not trial.feasible else f"{acc:.3f}",
                "-" if lat is None else f"{lat:.3g}"]

    # ---- LLM answers: the graph's JSON form

    def answer_shape(self) -> str:
        return ('{"nodes": [{"name": <string>, "role": <role>, "model": <candidate model of the role>, '
                '"samples": <integer>, "inputs": [<names of earlier nodes>]}, ...], "output": <node name or list of names (a vote)>}')

    def answer_rule(self) -> str:
        return (f"At most {self.max_nodes} nodes; a solve node has no inputs, refine and aggregate nodes read "
                "earlier nodes; every node must reach the output.")

    def answer_example(self) -> Any:
        m = self.models["solve"][-1]
        return self.make([("solve", m, 1, ())]).to_json()

    def point_from_answer(self, value: Any, where: str) -> Graph:
        if isinstance(value, str):
            value = value.strip()
        try:
            return Graph.parse(value, store=self.store)
        except ConfigError as e:
            raise AnswerProblem("schema_errors", f"{where}: {e.message if hasattr(e, 'message') else e}") from None

    def answer_problems(self, point: Graph, where: str) -> list:
        if len(point.nodes) > self.max_nodes:
            return [AnswerProblem("invalid_graph", f"{where}: {len(point.nodes)} nodes, more than {self.max_nodes}")]
        for n in point.nodes:
            if n.model not in self.models.get(n.role, ()):
                return [AnswerProblem("invalid_graph", f"{where}: node {n.name!r}: {n.model!r} is not a candidate of {n.role}")]
            c = self.counts[(n.role, n.model)]
            if n.samples not in c:
                return [AnswerProblem("invalid_graph", f"{where}: node {n.name!r}: samples must be {c[0]}..{c[-1]}")]
            lo, hi = self.in_degree[n.role]
            if not lo <= len(n.inputs) <= hi:
                return [AnswerProblem("invalid_graph", f"{where}: node {n.name!r}: a {n.role} node reads {lo} to {hi} nodes")]
        return []

    def agent_brief(self) -> AgentBrief:
        return AgentBrief(
            role=("designs collaboration graphs of LLM calls (roles solve, refine, aggregate; a model and a sample "
                  "count per node; edges between nodes) that maximise the objective within the budget"),
            guideline_hint="per role and model (which helps, which hurts), and on width against depth")

    # ---- fixed-architecture references

    def references(self, objective: Objective, *, test: Objective | None = None) -> dict[str, Any]:
        """The best pure-parallel and pure-sequential graphs within the budget (and latency
        limit), by replay on `objective` (search/spaces/graph_report.py); scored on `test` too
        when given."""
        from .graph_report import references

        return references(self, objective, test=test)

    def report(self, setup, trials: Sequence[Trial], best: Trial | None, *, out) -> dict[str, Any]:
        from .graph_report import graph_report

        return graph_report(self, setup, trials, best, out=out)

    def report_rows(self, summary: dict[str, Any]) -> list[tuple[str, str]]:
        from .graph_report import report_rows

        return report_rows(summary)


def _with(spec: list, i: int, node: tuple) -> list:
    out = list(spec)
    out[i] = node
    return out


def _without(spec: list, j: int, degree: dict) -> list:
    """The spec without node j: a node that read j reads j's parents instead (spliced), within
    its role's in-degree (the nearest parents kept); one left with none becomes a solve."""
    out = []
    for i, (r, m, n, ps) in enumerate(spec):
        if i == j:
            continue
        if j in ps:
            new = sorted((set(ps) - {j}) | set(spec[j][3]))
            hi = degree[r][1]
            ps = tuple(new[-hi:]) if new else ()
            if not ps:
                r, ps = "solve", ()
        out.append((r, m, n, tuple(p - (p > j) for p in ps)))
    return out


def _params(p: float) -> str:
    if not math.isfinite(p) or p <= 0:
        return "unknown"
    return f"{p / 1e9:.3g}B" if p >= 1e8 else f"{p / 1e6:.3g}M"


def default_graph_budget(space: GraphSpace) -> float:
    """The default budget: four single-sample solves by the largest solve model, at its
    expected cost (room for width, depth or both)."""
    big = max(space.models["solve"], key=lambda m: space.params.get(m, 0.0))
    return 4.0 * space.node_cost("solve", big, 0, 1)


class GraphGrid:
    """Every graph of a small space within the budget (by the budget rule), in batches."""

    def __init__(self, space: GraphSpace):
        self.space = space
        self._it = space.all_specs()
        self._walked = 0
        self._skipped = 0

    def next_batch(self, results: dict[Hashable, Trial]) -> list[Graph]:
        out = []
        for s in self._it:
            self._walked += 1
            try:
                g = self.space.make(s)
            except ConfigError:
                self._skipped += 1
                continue
            if not self.space.maybe_feasible(g):
                self._skipped += 1
                continue
            out.append(g)
            if len(out) >= GRID_BATCH:
                break
        return out

    def advance(self, results: dict[Hashable, Trial]) -> None:
        pass

    def level_source(self) -> str:
        return "grid"

    def state(self) -> dict[str, Any]:
        return {"walked": self._walked, "skipped_over_budget": self._skipped}


class GraphParametrisation:
    """A fixed-length encoding of graphs for Optuna: the node count, then per node slot i a
    role, a model, a sample count (as a share of the role-model's largest, log scale) and one
    0/1 edge from every earlier slot. Decoding repairs to the nearest valid graph: a role that
    needs more parents than the slot has becomes solve; too few chosen parents take the nearest
    earlier ones, too many keep the nearest; a model not a candidate of the role is replaced by
    the role's first; the output is the sinks."""

    def __init__(self, space: GraphSpace):
        self.space = space
        all_models = tuple(dict.fromkeys(m for r in space.roles for m in space.models[r]))
        top = max(c[-1] for c in space.counts.values())
        dims = [Dim("nodes", "int", low=1, high=space.max_nodes)]
        for i in range(space.max_nodes):
            dims.append(Dim(f"n{i}_role", "categorical", choices=space.roles))
            dims.append(Dim(f"n{i}_model", "categorical", choices=all_models))
            dims.append(Dim(f"n{i}_samples", "int", low=1, high=top, log=top >= 8))
            for j in range(i):
                dims.append(Dim(f"n{i}_from{j}", "categorical", choices=(0, 1)))
        self.dims = tuple(dims)
        self._top = top

    def point(self, values: dict[str, Any]) -> Graph:
        sp = self.space
        K = int(values["nodes"])
        spec = []
        for i in range(K):
            r = values[f"n{i}_role"]
            lo, hi = sp.in_degree[r]
            if i < lo:
                r = "solve"
                lo, hi = 0, 0
            m = values[f"n{i}_model"]
            if m not in sp.models[r]:
                m = sp.models[r][0]
            c = sp.counts[(r, m)]
            n = min(c, key=lambda v: abs(v - int(values[f"n{i}_samples"])))
            ps: tuple[int, ...] = ()
            if r != "solve":
                chosen = [j for j in range(i) if int(values[f"n{i}_from{j}"])]
                if len(chosen) < lo:
                    extra = [j for j in range(i - 1, -1, -1) if j not in chosen][:lo - len(chosen)]
                    chosen = sorted(set(chosen) | set(extra))
                ps = tuple(sorted(chosen)[-hi:])
            spec.append((r, m, n, ps))
        return sp.make(spec)

    def values(self, point: Graph) -> dict[str, Any]:
        sp = self.space
        spec = sp.spec(point)
        out: dict[str, Any] = {"nodes": len(spec)}
        for i in range(sp.max_nodes):
            r, m, n, ps = spec[i] if i < len(spec) else ("solve", sp.models["solve"][0], 1, ())
            out[f"n{i}_role"], out[f"n{i}_model"], out[f"n{i}_samples"] = r, m, int(n)
            for j in range(i):
                out[f"n{i}_from{j}"] = int(j in ps)
        return out
