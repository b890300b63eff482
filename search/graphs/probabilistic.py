"""A probabilistic collaboration graph: a distribution over graphs that a search samples and updates.

Agent-REINFORCE (arXiv 2511.00086) treats the graph as probabilistic and mirrors REINFORCE:
sample graphs from the distribution, score them, update the distribution. Here the
distribution is over `max_nodes` node slots, in order:

    use[i]        P(slot i is a node)            (slot 0 always is: a graph has a node)
    role[i, r]    P(role r | slot i used)        (solve / refine / aggregate on graph stores)
    model[i, m]   P(model m | slot i used)
    count[i, c]   P(sample count counts[c] | slot i used)
    edge[j, i]    P(slot j feeds slot i), j < i  (read only by nodes whose role reads others)

Sampling (`sample`) draws the slots in order and makes the graph valid by construction: the
first node reads nothing (its role is masked to the roles that read nothing); a model is masked
to the role's candidates and a count to what the role's pools hold; a node whose role reads
others reads the earlier nodes its edges draw, at least one (the most probable edge when none
is drawn), at most the role's input limit (the most probable ones). The graph's output is the
last node; nodes that do not reach it are dropped. A graph the caller refuses (over budget by
the expected cost, outside the space, tried already) is drawn again, a bounded number of times,
then repaired by lowering the costliest node's count; what it took is counted.

Every update, whether an LLM proposed it or the REINFORCE gradient gave it, goes through
`bounded`: each probability moves by at most `max_step` (a categorical row moves along the
straight line to the proposal, so it stays normalised), no probability falls below `floor`
(nothing becomes impossible: REINFORCE could never learn it back), and every row sums to one.

The score-function gradient (`score_gradient`) is the plain REINFORCE one: for a categorical
with probabilities p and the choice c, d log p_c / d logits = onehot(c) - p; for a Bernoulli
with probability q and outcome x, x - q. `reinforce` takes a step of lr * mean(advantage * that)
in logit space, then `bounded`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

from replay.graph.config import Graph, Node

SLOT = "n{}"  # slot i's node is named n{i+1} in every sampled graph, so feedback maps to slots
FIELDS = ("use", "role", "model", "samples", "inputs")


def slot_name(i: int) -> str:
    return SLOT.format(i + 1)


def model_family(name: str) -> str:
    """The family a model name starts with ('Qwen2.5-7B' -> 'Qwen', 'Llama-3.1-8B' -> 'Llama')."""
    out = ""
    for ch in name:
        if not ch.isalpha():
            break
        out += ch
    return out or name


@dataclass(frozen=True)
class Vocabulary:
    """What a node may be: roles (and which read nothing), models (candidates per role, the
    largest count per role and model), the count ladder, the input limit per role, the most
    nodes a graph may have."""

    roles: tuple[str, ...]
    source_roles: frozenset[str]  # roles that read the question alone
    models: tuple[str, ...]
    counts: tuple[int, ...]  # increasing sample counts a node may use
    allowed: np.ndarray = field(repr=False)  # [roles, models] bool: the model is a candidate of the role
    largest: np.ndarray = field(repr=False)  # [roles, models] int: the largest count allowed
    max_inputs: tuple[int, ...] = ()  # per role: most nodes read (0: no limit)
    min_inputs: tuple[int, ...] = ()  # per role: fewest nodes read (roles that read: at least 1)
    max_nodes: int = 6
    params: tuple[float, ...] = ()  # per model, parameters (for the prompts and the repair)

    @classmethod
    def from_store(cls, store, *, max_nodes: int = 6, models: Sequence[str] | None = None,
                   max_samples: int | None = None, max_inputs: dict[str, int] | None = None) -> "Vocabulary":
        """The vocabulary of a graph store.

        Parameters:
            store: an open graph store.
            max_nodes: node slots (the most nodes a sampled graph has).
            models: keep only these models (default: every model).
            max_samples: the largest sample count (default: the largest pool).
            max_inputs: role -> most inputs (default: the store's `refine_max_inputs` /
                `aggregate_max_inputs` from its simulation spec where it has one, else none).
        """
        from replay import schema as S

        roles = tuple(store.manifest.stage_names)
        names = tuple(store.manifest.model_names)
        keep = [i for i, m in enumerate(names) if models is None or m in models]
        allowed = np.asarray(store.arrays.stage_model_ok, dtype=bool)[:, keep]
        largest = np.asarray(store.derived.largest_pool, dtype=np.int64)[:, keep]
        if max_samples is not None:
            largest = np.minimum(largest, int(max_samples))
        top = int(largest.max()) if largest.size else 1
        counts = tuple(sorted({2 ** k for k in range(0, 31) if 2 ** k <= top} | {top}))
        if max_inputs is None:
            spec = ((store.manifest.provenance or {}).get("spec") or {}) if hasattr(store.manifest, "provenance") else {}
            max_inputs = {r: int(spec[f"{r}_max_inputs"]) for r in roles if f"{r}_max_inputs" in spec}
        sources = frozenset(r for r in roles if r in S.GRAPH_ROLES and r == S.GRAPH_ROLES[0]) or frozenset(roles[:1])
        params = tuple(float(store.arrays.model_params[i]) for i in keep)
        return cls(roles=roles, source_roles=sources, models=tuple(names[i] for i in keep), counts=counts,
                   allowed=allowed, largest=largest, max_inputs=tuple(int((max_inputs or {}).get(r, 0)) for r in roles),
                   max_nodes=int(max_nodes), params=params)

    @classmethod
    def from_space(cls, space, *, max_nodes: int | None = None) -> "Vocabulary":
        """The vocabulary of a graph space (search/spaces/graph.py): its roles, candidate models
        per role, largest count per role and model, in-degree range per role and node limit.

        Parameters:
            space: a `GraphSpace`.
            max_nodes: node slots (default and most: the space's node limit).
        """
        roles = tuple(space.roles)
        names = tuple(m for m in space.store.manifest.model_names if any(m in space.models[r] for r in roles))
        allowed = np.array([[m in space.models[r] for m in names] for r in roles], dtype=bool)
        largest = np.array([[max(space.counts[(r, m)]) if m in space.models[r] else 0 for m in names] for r in roles],
                           dtype=np.int64)
        top = int(largest.max())
        counts = tuple(sorted({2 ** k for k in range(0, 31) if 2 ** k <= top} | {top}))
        n = space.max_nodes if max_nodes is None else min(int(max_nodes), space.max_nodes)
        return cls(roles=roles, source_roles=frozenset(r for r in roles if space.in_degree[r][1] == 0), models=names,
                   counts=counts, allowed=allowed, largest=largest,
                   max_inputs=tuple(int(space.in_degree[r][1]) for r in roles),
                   min_inputs=tuple(int(space.in_degree[r][0]) for r in roles), max_nodes=int(n),
                   params=tuple(float(space.params.get(m, math.nan)) for m in names))

    def describe_models(self) -> list[str]:
        """One line per model: family and size (what insight 1 reasons about)."""
        out = []
        for m, p in zip(self.models, self.params or (math.nan,) * len(self.models)):
            size = f"{p / 1e9:.2f}B parameters" if math.isfinite(p) and p > 0 else "size unknown"
            out.append(f"{m}: family {model_family(m)}, {size}")
        return out


@dataclass(frozen=True)
class Decisions:
    """What one draw decided, slot by slot (the REINFORCE gradient needs every decision, also
    those of nodes the output did not reach). -1: the slot was not used."""

    active: tuple[bool, ...]
    role: tuple[int, ...]
    model: tuple[int, ...]
    count: tuple[int, ...]  # index into the count ladder
    candidates: tuple[tuple[int, ...], ...]  # per slot, the earlier slots its edges were drawn over
    inputs: tuple[tuple[int, ...], ...]  # per slot, the slots it reads

    def to_json(self) -> dict[str, Any]:
        return {"active": [int(a) for a in self.active], "role": list(self.role), "model": list(self.model),
                "count": list(self.count), "candidates": [list(c) for c in self.candidates],
                "inputs": [list(c) for c in self.inputs]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Decisions":
        return cls(active=tuple(bool(a) for a in d["active"]), role=tuple(int(x) for x in d["role"]),
                   model=tuple(int(x) for x in d["model"]), count=tuple(int(x) for x in d["count"]),
                   candidates=tuple(tuple(int(y) for y in c) for c in d["candidates"]),
                   inputs=tuple(tuple(int(y) for y in c) for c in d["inputs"]))


@dataclass(frozen=True)
class UpdateReport:
    """What `bounded` changed in a proposal: rows whose step was cut to max_step, rows that did
    not sum to one, probabilities raised to the floor, and the largest step asked for."""

    clipped: int = 0
    renormalised: int = 0
    floored: int = 0
    largest_step: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"clipped": self.clipped, "renormalised": self.renormalised, "floored": self.floored,
                "largest_step": round(self.largest_step, 4)}


@dataclass(frozen=True, eq=False)
class GraphDistribution:
    """The probabilistic graph (module docstring). Arrays: use [N], role [N, R], model [N, M],
    count [N, C], edge [N, N] (edge[j, i] for j < i; the rest is 0)."""

    vocab: Vocabulary
    use: np.ndarray
    role: np.ndarray
    model: np.ndarray
    count: np.ndarray
    edge: np.ndarray

    # ---- construction

    @classmethod
    def uniform(cls, vocab: Vocabulary, *, use: float = 0.5, edge: float = 0.5) -> "GraphDistribution":
        """Every role, model and count equally likely, each later slot used with probability
        `use`, each edge drawn with probability `edge`."""
        n, r, m, c = vocab.max_nodes, len(vocab.roles), len(vocab.models), len(vocab.counts)
        u = np.full(n, float(use))
        u[0] = 1.0
        e = np.triu(np.full((n, n), float(edge)), k=1)
        role = np.full((n, r), 1.0 / r)
        src = np.array([x in vocab.source_roles for x in vocab.roles], dtype=float)
        role[0] = src / src.sum()  # the first node reads nothing: only those roles are ever drawn there
        return cls(vocab, u, role, np.full((n, m), 1.0 / m), np.full((n, c), 1.0 / c), e)

    def copy_with(self, **arrays: np.ndarray) -> "GraphDistribution":
        return replace(self, **{k: np.array(v, dtype=float) for k, v in arrays.items()})

    def arrays(self) -> dict[str, np.ndarray]:
        return {"use": self.use, "role": self.role, "model": self.model, "count": self.count, "edge": self.edge}

    def equals(self, other: "GraphDistribution", tol: float = 0.0) -> bool:
        return all(np.allclose(a, other.arrays()[k], atol=tol, rtol=0) for k, a in self.arrays().items())

    # ---- JSON (the archive and the LLM's answer)

    def to_json(self, digits: int = 4) -> dict[str, Any]:
        """{"n1": {"use", "role": {name: p}, "model": {...}, "samples": {"1": p, ...}, "inputs": {"n0": p}}, ...}"""
        v = self.vocab
        rnd = lambda x: round(float(x), digits)  # noqa: E731
        out = {}
        for i in range(v.max_nodes):
            out[slot_name(i)] = {
                "use": rnd(self.use[i]),
                "role": {r: rnd(p) for r, p in zip(v.roles, self.role[i])},
                "model": {m: rnd(p) for m, p in zip(v.models, self.model[i])},
                "samples": {str(c): rnd(p) for c, p in zip(v.counts, self.count[i])},
                "inputs": {slot_name(j): rnd(self.edge[j, i]) for j in range(i)},
            }
        return out

    @classmethod
    def from_archive(cls, vocab: Vocabulary, obj: dict[str, Any]) -> "GraphDistribution":
        """The inverse of `to_json(digits=17)` (what the archive stores)."""
        d, problems, _ = cls.uniform(vocab).proposal_from_json(obj)
        if problems:
            raise ValueError("; ".join(problems))
        return d

    def proposal_from_json(self, obj: Any) -> tuple["GraphDistribution", list[str], int]:
        """A proposed distribution in the JSON form, strictly checked: (proposal, problems,
        rows that did not sum to one). A slot or field left out keeps its current value; an
        unknown slot or field, a value that is not a probability, a categorical that names
        other choices or sums to zero is a problem (one line each, for the agent). The
        proposal is not yet bounded (`bounded`)."""
        v = self.vocab
        problems: list[str] = []
        off = 0
        arr = {k: np.array(a, dtype=float) for k, a in self.arrays().items()}
        if not isinstance(obj, dict):
            return self, [f"the distribution must be a JSON object of slots ({', '.join(slot_name(i) for i in range(v.max_nodes))})"], 0
        slots = {slot_name(i): i for i in range(v.max_nodes)}
        for name in obj:
            if name not in slots:
                problems.append(f"unknown slot {name!r} (slots: {', '.join(slots)})")
        for name, i in slots.items():
            s = obj.get(name)
            if s is None:
                continue
            if not isinstance(s, dict):
                problems.append(f"{name} must be an object with fields {', '.join(FIELDS)}")
                continue
            for k in s:
                if k not in FIELDS:
                    problems.append(f"{name}: unknown field {k!r} (fields: {', '.join(FIELDS)})")
            if "use" in s:
                x = _prob(s["use"])
                if x is None:
                    problems.append(f"{name}.use must be a probability (a number from 0 to 1), got {s['use']!r}")
                elif i > 0:
                    arr["use"][i] = x
            for key, target, names in (("role", "role", v.roles), ("model", "model", v.models),
                                       ("samples", "count", tuple(str(c) for c in v.counts))):
                if key not in s:
                    continue
                row, problem, renorm = _categorical(s[key], names, f"{name}.{key}")
                if problem:
                    problems.append(problem)
                else:
                    arr[target][i] = row
                    off += renorm
            if "inputs" in s:
                ins = s["inputs"]
                earlier = {slot_name(j): j for j in range(i)}
                if not isinstance(ins, dict):
                    problems.append(f"{name}.inputs must be an object of earlier slots -> probability")
                    continue
                for k, x in ins.items():
                    if k not in earlier:
                        problems.append(f"{name}.inputs: {k!r} is not an earlier slot "
                                        f"({', '.join(earlier) or 'slot ' + name + ' reads no earlier slot'})")
                        continue
                    p = _prob(x)
                    if p is None:
                        problems.append(f"{name}.inputs.{k} must be a probability (a number from 0 to 1), got {x!r}")
                    else:
                        arr["edge"][earlier[k], i] = p
        return self.copy_with(**arr), problems, off

    # ---- the bounded update

    def bounded(self, proposal: "GraphDistribution", *, max_step: float, floor: float) -> tuple["GraphDistribution", UpdateReport]:
        """`proposal`, moved at most `max_step` from this distribution per probability, every
        probability at least `floor` (at most 1 - floor for Bernoulli ones), every row summing
        to one (module docstring)."""
        clipped = renorm = floored = 0
        largest = 0.0
        out: dict[str, np.ndarray] = {}
        for key in ("role", "model", "count"):
            old, new = getattr(self, key), np.array(getattr(proposal, key), dtype=float)
            res = np.empty_like(old)
            for i in range(len(old)):
                row = np.clip(np.nan_to_num(new[i], nan=0.0), 0.0, None)
                s = row.sum()
                if s <= 0:
                    row = old[i].copy()
                elif abs(s - 1.0) > 1e-6:
                    row = row / s
                    renorm += 1
                step = float(np.max(np.abs(row - old[i])))
                largest = max(largest, step)
                if step > max_step + 1e-12:
                    row = old[i] + (max_step / step) * (row - old[i])  # along the line: stays normalised
                    clipped += 1
                low = row < floor
                if low.any():
                    floored += int(low.sum())
                    row = _floor_row(row, floor)
                res[i] = row
            out[key] = res
        for key in ("use", "edge"):
            old, new = getattr(self, key), np.array(getattr(proposal, key), dtype=float)
            mask = np.ones_like(old, dtype=bool) if key == "use" else np.triu(np.ones_like(old, dtype=bool), k=1)
            if key == "use":
                mask[0] = False
            step = np.abs(np.nan_to_num(new, nan=0.0) - old)
            largest = max(largest, float(step[mask].max()) if mask.any() else 0.0)
            clipped += int(np.sum(step[mask] > max_step + 1e-12))
            res = np.clip(np.nan_to_num(new, nan=0.0), old - max_step, old + max_step)
            below = mask & ((res < floor) | (res > 1 - floor))
            floored += int(below.sum())
            res = np.where(mask, np.clip(res, floor, 1 - floor), old)
            out[key] = res
        out["use"][0] = 1.0
        return self.copy_with(**out), UpdateReport(clipped, renorm, floored, largest)

    # ---- sampling

    def sample(self, rng: np.random.Generator, *, accept: Callable[[Graph], bool] | None = None,
               max_tries: int = 64, cost: Callable[[Graph], float] | None = None) -> tuple[Graph | None, Decisions | None, dict[str, int]]:
        """A valid graph (module docstring) that `accept` takes, its decisions, and what it
        took: {"draws", "repaired"}. None when neither `max_tries` draws nor the repair of the
        last one gave an accepted graph."""
        accept = accept or (lambda g: True)
        last = None
        for k in range(1, max_tries + 1):
            g, d = self._draw(rng)
            if accept(g):
                return g, d, {"draws": k, "repaired": 0}
            last = (g, d)
        if last is not None:
            g, d = self._repair(*last, accept, cost)
            if g is not None:
                return g, d, {"draws": max_tries, "repaired": 1}
        return None, None, {"draws": max_tries, "repaired": 0}

    def _draw(self, rng: np.random.Generator) -> tuple[Graph, Decisions]:
        v = self.vocab
        n = v.max_nodes
        active = [True] + [bool(rng.random() < self.use[i]) for i in range(1, n)]
        role = [-1] * n
        model = [-1] * n
        count = [-1] * n
        cands: list[tuple[int, ...]] = [()] * n
        inputs: list[tuple[int, ...]] = [()] * n
        placed: list[int] = []
        src = np.array([r in v.source_roles for r in v.roles])
        has_model = v.allowed.any(axis=1)
        counts = np.array(v.counts)
        for i in range(n):
            if not active[i]:
                continue
            lo_in = np.array(v.min_inputs) if v.min_inputs else np.zeros(len(v.roles), dtype=int)
            rmask = has_model & (src | (~src & (np.maximum(lo_in, 1) <= len(placed))))
            r = _choice(rng, self.role[i], rmask)
            m = _choice(rng, self.model[i], v.allowed[r])
            c = _choice(rng, self.count[i], counts <= v.largest[r, m])
            role[i], model[i], count[i] = r, m, c
            if not src[r]:
                cands[i] = tuple(placed)
                chosen = [j for j in placed if rng.random() < self.edge[j, i]]
                if not chosen:
                    chosen = [max(placed, key=lambda j: (self.edge[j, i], j))]
                lim = v.max_inputs[r] if v.max_inputs else 0
                if lim and len(chosen) > lim:
                    chosen = sorted(sorted(chosen, key=lambda j: (-self.edge[j, i], -j))[:lim])
                lo = v.min_inputs[r] if v.min_inputs else 1
                if len(chosen) < lo:  # the most probable of the others, up to the role's least
                    rest = sorted((j for j in placed if j not in chosen), key=lambda j: (-self.edge[j, i], -j))
                    chosen = sorted(chosen + rest[: lo - len(chosen)])
                inputs[i] = tuple(chosen)
            placed.append(i)
        d = Decisions(tuple(active), tuple(role), tuple(model), tuple(count), tuple(cands), tuple(inputs))
        return self.graph_of(d), d

    def graph_of(self, d: Decisions) -> Graph:
        """The graph the decisions make: the last used slot is the output; slots that do not
        reach it are dropped."""
        v = self.vocab
        used = [i for i, a in enumerate(d.active) if a]
        out = used[-1]
        useful = {out}
        for i in reversed(used):
            if i in useful:
                useful.update(d.inputs[i])
        nodes = [Node(slot_name(i), v.roles[d.role[i]], v.models[d.model[i]], int(v.counts[d.count[i]]),
                      tuple(slot_name(j) for j in d.inputs[i])) for i in used if i in useful]
        return Graph.of(nodes, output=slot_name(out), roles=v.roles)

    def _repair(self, g: Graph, d: Decisions, accept, cost) -> tuple[Graph | None, Decisions | None]:
        """Lower the costliest node's count one rung at a time until `accept` takes the graph
        (the cost by `cost`, else count x parameters)."""
        v = self.vocab
        counts = list(d.count)
        for _ in range(sum(c for c in counts if c > 0) + 1):
            live = [i for i in range(v.max_nodes) if d.active[i] and counts[i] > 0 and slot_name(i) in g.names]
            if not live:
                return None, None
            weight = {i: v.counts[counts[i]] * (v.params[d.model[i]] if v.params else 1.0) for i in live}
            i = max(live, key=lambda j: (weight[j], j))
            counts[i] -= 1
            nd = replace(d, count=tuple(counts))
            ng = self.graph_of(nd)
            if accept(ng):
                return ng, nd
            g, d = ng, nd
        return None, None

    # ---- REINFORCE

    def score_gradient(self, d: Decisions) -> dict[str, np.ndarray]:
        """d log P(decisions) / d logits, per parameter array (module docstring)."""
        g = {k: np.zeros_like(a) for k, a in self.arrays().items()}
        for i in range(1, self.vocab.max_nodes):
            g["use"][i] = float(d.active[i]) - self.use[i]
        for i in range(self.vocab.max_nodes):
            if not d.active[i]:
                continue
            for key, c in (("role", d.role[i]), ("model", d.model[i]), ("count", d.count[i])):
                row = -getattr(self, key)[i].copy()
                row[c] += 1.0
                g[key][i] = row
            for j in d.candidates[i]:
                g["edge"][j, i] = float(j in d.inputs[i]) - self.edge[j, i]
        return g

    def reinforce(self, decisions: Sequence[Decisions], advantages: Sequence[float], *, lr: float,
                  max_step: float, floor: float) -> tuple["GraphDistribution", UpdateReport]:
        """One REINFORCE step: logits += lr * mean_k(advantage_k * score_gradient_k), then
        `bounded`."""
        if not decisions:
            return self, UpdateReport()
        total = {k: np.zeros_like(a) for k, a in self.arrays().items()}
        for d, a in zip(decisions, advantages):
            for k, g in self.score_gradient(d).items():
                total[k] += float(a) * g
        step = {k: lr * t / len(decisions) for k, t in total.items()}
        prop: dict[str, np.ndarray] = {}
        for key in ("role", "model", "count"):
            logits = np.log(np.maximum(getattr(self, key), 1e-12)) + step[key]
            logits -= logits.max(axis=1, keepdims=True)
            e = np.exp(logits)
            prop[key] = e / e.sum(axis=1, keepdims=True)
        for key in ("use", "edge"):
            p = np.clip(getattr(self, key), 1e-12, 1 - 1e-12)
            prop[key] = 1.0 / (1.0 + np.exp(-(np.log(p / (1 - p)) + step[key])))
        return self.bounded(self.copy_with(**prop), max_step=max_step, floor=floor)

    # ---- summaries

    def mode(self) -> Graph:
        """The most probable single choices: slots with use >= 0.5, each row's most probable
        choice, edges with probability >= 0.5 (validity repaired as in sampling)."""
        v = self.vocab
        n = v.max_nodes

        class _Greedy:  # a generator stand-in: argmax choices, threshold 0.5 coins
            def random(self_inner):
                return 0.5 - 1e-9

            def choice(self_inner, k, p):
                return int(np.argmax(p))

        return self._draw(_Greedy())[0]  # type: ignore[arg-type]

    def expected_nodes(self) -> float:
        return float(self.use.sum())


def _prob(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) and 0.0 <= x <= 1.0 else None


def _categorical(obj: Any, names: tuple[str, ...], where: str) -> tuple[np.ndarray | None, str | None, int]:
    if not isinstance(obj, dict):
        return None, f"{where} must be an object of {', '.join(names)} -> probability", 0
    missing = [n for n in names if n not in obj]
    extra = [k for k in obj if k not in names]
    if extra:
        return None, f"{where}: unknown choice(s) {', '.join(map(repr, extra))} (choices: {', '.join(names)})", 0
    if missing:
        return None, f"{where}: give every choice ({', '.join(names)}); missing {', '.join(map(repr, missing))}", 0
    row = []
    for n in names:
        p = _prob(obj[n])
        if p is None:
            return None, f"{where}.{n} must be a probability (a number from 0 to 1), got {obj[n]!r}", 0
        row.append(p)
    arr = np.array(row)
    s = arr.sum()
    if s <= 0:
        return None, f"{where}: the probabilities sum to 0", 0
    return arr / s, None, int(abs(s - 1.0) > 1e-3)


def _floor_row(row: np.ndarray, floor: float) -> np.ndarray:
    """Every entry at least `floor`, the row still summing to one (mass taken from the others
    in proportion to what they hold above the floor)."""
    floor = min(floor, 1.0 / len(row))
    out = np.maximum(row, floor)
    excess = out.sum() - 1.0
    if excess > 0:
        room = out - floor
        out = out - excess * room / room.sum()
    return out / out.sum()


def _choice(rng, probs: np.ndarray, mask) -> int:
    p = np.where(mask, probs, 0.0)
    s = p.sum()
    if s <= 0:
        p = np.asarray(mask, dtype=float) * np.ones(len(probs))
        s = p.sum()
    return int(rng.choice(len(p), p=p / s))
