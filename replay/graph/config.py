"""Collaboration graphs: nodes (an LLM call with a role, a model and a sample count) and the
edges that carry one node's aggregated answer to the next, parsed and checked.

    Graph.parse("s1=solve(Llama-8B,4); s2=solve(Qwen-7B,4); r=refine(Llama-70B,1|s1,s2)")
    Graph.parse('{"nodes": [{"name": "s", "role": "solve", "model": "Qwen-7B", "samples": 8}]}')
    Graph.parse("a=solve(M,1); b=solve(N,1); c=solve(M,3); output=vote(a,b,c)")
    Graph.from_chain(Config.parse("Llama-70B:1,Llama-3B:16"), store)   # a chain as a graph

Text form: statements separated by ';'. A node is `NAME=ROLE(MODEL,SAMPLES)` or
`NAME=ROLE(MODEL,SAMPLES|PARENT,PARENT,...)`; the graph's answer is its output node
(`output=NAME`) or a majority vote over several (`output=vote(A,B,C)`, ties to the first
listed). Without an `output` statement the graph's one sink (the node nothing reads) is its
output. JSON form: {"nodes": [{"name", "role", "model", "samples", "inputs": [...]}],
"output": NAME or [NAMES] (a vote)}.

Roles: `solve` reads the question alone; `refine` reads its parents' answers and writes a new
one; `aggregate` reads several parents' answers and chooses or fuses one. Each node draws
`samples` outputs from the pool of (role, model, question, input key) and aggregates them by
the store's rule for that role (majority vote for the graph tasks). On a chain store the roles
are its stages (`Graph.from_chain`). The node order is topological; a node's place in it is
its index in the random streams (common random numbers per seed, question, replicate, node).

Every problem is one `ConfigError` line naming the graph: a syntax error, a duplicate name,
an unknown role or model, an input that names no node, a cycle (not a DAG), a node that
reaches no output, no output node, more than MAX_NODES nodes, or (against a store) a count
the store's pools cannot give.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Sequence

from .. import schema as S
from ..errors import ConfigError

MAX_NODES = 32  # a graph larger than this is refused (the kernels' per-thread scratch is sized by it)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_NODE = re.compile(r"^([^=()\s]+)\s*=\s*([A-Za-z_]+)\s*\((.*)\)$", re.S)


@dataclass(frozen=True)
class Node:
    """One LLM call of a graph: its role, model, sample count and the nodes it reads."""

    name: str
    role: str
    model: str
    samples: int
    inputs: tuple[str, ...] = ()

    def __str__(self) -> str:
        tail = f"|{','.join(self.inputs)}" if self.inputs else ""
        return f"{self.name}={self.role}({self.model},{self.samples}{tail})"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "model": self.model, "samples": self.samples,
                "inputs": list(self.inputs)}


@dataclass(frozen=True)
class Graph:
    """A collaboration graph: nodes in topological order and the output node(s).

    `output` holds one node name, or several whose answers are put to a majority vote (ties
    to the first listed). Use `Graph.parse` (text or JSON) or `Graph.of(nodes, output=...)`,
    which check the structure; `validate_graph(store, graph)` checks it against a store.
    """

    nodes: tuple[Node, ...]
    output: tuple[str, ...]

    # ---- forms
    def __str__(self) -> str:
        body = "; ".join(str(n) for n in self.nodes)
        if len(self.output) == 1 and self.output == self._sinks():
            return body  # the one sink is the output by default
        out = self.output[0] if len(self.output) == 1 else f"vote({','.join(self.output)})"
        return f"{body}; output={out}"

    def to_json(self) -> dict[str, Any]:
        return {"nodes": [n.to_json() for n in self.nodes],
                "output": self.output[0] if len(self.output) == 1 else list(self.output)}

    def _sinks(self) -> tuple[str, ...]:
        read = {p for n in self.nodes for p in n.inputs}
        return tuple(n.name for n in self.nodes if n.name not in read)

    # ---- shape
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def depth(self) -> int:
        """Nodes on the longest path (1 for a single node)."""
        d: dict[str, int] = {}
        for n in self.nodes:
            d[n.name] = 1 + max((d[p] for p in n.inputs), default=0)
        return max(d.values())

    def width(self) -> int:
        """The most nodes at one depth (nodes that can run at the same time)."""
        d: dict[str, int] = {}
        for n in self.nodes:
            d[n.name] = 1 + max((d[p] for p in n.inputs), default=0)
        counts: dict[int, int] = {}
        for v in d.values():
            counts[v] = counts.get(v, 0) + 1
        return max(counts.values())

    # ---- construction
    @classmethod
    def of(cls, nodes: Sequence[Node], *, output: str | Sequence[str] | None = None,
           where: str | None = None, roles: Sequence[str] | None = None) -> "Graph":
        """A graph from its nodes (any order that is a DAG), checked.

        Args:
            nodes: the nodes.
            output: the output node, or several for a vote; None: the graph's one sink.
            where: how errors name the graph (default: its text form).
            roles: the roles allowed (default: schema.GRAPH_ROLES).

        Raises:
            ConfigError: see the module docstring.
        """
        nodes = tuple(nodes)
        where = where or f"graph {'; '.join(str(n) for n in nodes)!r}"
        return _checked(nodes, output, where, tuple(roles) if roles is not None else S.GRAPH_ROLES)

    @classmethod
    def parse(cls, text: str | dict, *, store=None) -> "Graph":
        """A graph from its text or JSON form (a string starting with '{', or a dict).

        Args:
            text: the graph (module docstring).
            store: if given, the graph is checked against it (roles, models, pool sizes).

        Raises:
            ConfigError: one line naming the graph and the problem.
        """
        roles = tuple(store.manifest.stage_names) if store is not None else S.GRAPH_ROLES
        if isinstance(text, dict) or str(text).lstrip().startswith("{"):
            g = _from_json(text, roles)
        else:
            g = _from_text(str(text), roles)
        if store is not None:
            validate_graph(store, g)
        return g

    @classmethod
    def from_chain(cls, config, store) -> "Graph":
        """The chain configuration `config` (a model and a count per stage) as a graph: one node
        per stage, named after it, each reading the one before; on the chain store `store` it
        replays to the chain engine's numbers (same streams: node k is stage k)."""
        from ..config import as_config

        cfg = as_config(store, config)
        names = store.manifest.stage_names
        nodes = [Node(names[s], names[s], ch.model, ch.samples, (names[s - 1],) if s else ())
                 for s, ch in enumerate(cfg.stages)]
        return cls.of(nodes, output=names[-1], roles=names)


def _checked(nodes: tuple[Node, ...], output, where: str, roles: tuple[str, ...]) -> Graph:
    if not nodes:
        raise ConfigError(where, "has no nodes")
    if len(nodes) > MAX_NODES:
        raise ConfigError(where, f"has {len(nodes)} nodes, more than the limit of {MAX_NODES}")
    seen: set[str] = set()
    for n in nodes:
        if not isinstance(n.name, str) or not _NAME.match(n.name) or n.name in ("output", "vote"):
            raise ConfigError(where, f"bad node name {n.name!r} (letters, digits, '_', '-', '.'; not output/vote)")
        if n.name in seen:
            raise ConfigError(where, f"node name {n.name!r} is used twice")
        seen.add(n.name)
        if n.role not in roles:
            raise ConfigError(where, f"node {n.name!r} has unknown role {n.role!r} (roles: {', '.join(roles)})")
        if not isinstance(n.samples, int) or isinstance(n.samples, bool) or n.samples < 1:
            raise ConfigError(where, f"node {n.name!r}: sample count must be an integer of at least 1, got {n.samples!r}")
        if not n.model or any(c in n.model for c in ",|;()"):
            raise ConfigError(where, f"node {n.name!r}: bad model name {n.model!r}")
        if len(set(n.inputs)) != len(n.inputs):
            raise ConfigError(where, f"node {n.name!r} reads the same node twice")
    for n in nodes:
        for p in n.inputs:
            if p not in seen:
                raise ConfigError(where, f"node {n.name!r} reads {p!r}, which is not a node")
            if p == n.name:
                raise ConfigError(where, f"not a DAG: node {n.name!r} reads itself")
    if all(r in S.GRAPH_ROLES for r in roles):  # graph roles: solve reads nothing, the others read
        for n in nodes:
            if n.role == "solve" and n.inputs:
                raise ConfigError(where, f"node {n.name!r}: solve reads the question alone, not {', '.join(n.inputs)}")
            if n.role != "solve" and not n.inputs:
                raise ConfigError(where, f"node {n.name!r}: {n.role} reads other nodes' answers; it names none")
    ordered = _topological(nodes, where)
    read = {p for n in ordered for p in n.inputs}
    if output is None:
        sinks = tuple(n.name for n in ordered if n.name not in read)
        if len(sinks) != 1:
            raise ConfigError(where, f"no output node: {len(sinks)} nodes are read by none ({', '.join(sinks)}); "
                                     "name one with 'output=NODE' or vote with 'output=vote(A,B)'")
        out = sinks
    else:
        out = (output,) if isinstance(output, str) else tuple(output)
        if not out:
            raise ConfigError(where, "no output node")
        for o in out:
            if o not in seen:
                raise ConfigError(where, f"output node {o!r} is not a node")
        if len(set(out)) != len(out):
            raise ConfigError(where, "the output vote names a node twice")
    # every node must reach an output: a node whose answer nobody uses is a mistake
    useful = set(out)
    for n in reversed(ordered):
        if n.name in useful:
            useful.update(n.inputs)
    dead = [n.name for n in ordered if n.name not in useful]
    if dead:
        raise ConfigError(where, f"node {dead[0]!r} reaches no output node")
    return Graph(nodes=ordered, output=out)


def _topological(nodes: tuple[Node, ...], where: str) -> tuple[Node, ...]:
    """The nodes in topological order, keeping the written order where it already is one."""
    by = {n.name: n for n in nodes}
    done: list[Node] = []
    placed: set[str] = set()
    remaining = list(nodes)
    while remaining:
        for i, n in enumerate(remaining):
            if all(p in placed for p in n.inputs):
                done.append(n)
                placed.add(n.name)
                del remaining[i]
                break
        else:
            raise ConfigError(where, f"not a DAG: a cycle through {_cycle(remaining, by)}")
    return tuple(done)


def _cycle(remaining: list[Node], by: dict[str, Node]) -> str:
    """One cycle among nodes that could not be placed, as 'a -> b -> a'."""
    left = {n.name for n in remaining}
    path: list[str] = []
    cur = remaining[0].name
    while cur not in path:
        path.append(cur)
        cur = next(p for p in by[cur].inputs if p in left)
    cyc = path[path.index(cur):] + [cur]
    return " -> ".join(reversed(cyc))


def _from_text(text: str, roles: tuple[str, ...]) -> Graph:
    where = f"graph {text!r}"
    parts = [p.strip() for p in text.split(";") if p.strip()]
    if not parts:
        raise ConfigError(where, "empty; expected e.g. 's1=solve(MODEL,4); r=refine(MODEL,1|s1)'")
    nodes: list[Node] = []
    output: str | tuple[str, ...] | None = None
    for part in parts:
        head = part.split("=", 1)[0].strip()
        if head == "output":
            if output is not None:
                raise ConfigError(where, "two output statements")
            rhs = part.split("=", 1)[1].strip()
            m = re.fullmatch(r"vote\s*\((.*)\)", rhs, re.S)
            output = tuple(x.strip() for x in m.group(1).split(",") if x.strip()) if m else rhs
            continue
        m = _NODE.match(part)
        if not m:
            raise ConfigError(where, f"{part!r} is not NAME=ROLE(MODEL,SAMPLES) or NAME=ROLE(MODEL,SAMPLES|INPUTS)")
        name, role, inner = m.group(1), m.group(2), m.group(3)
        args, _, ins = inner.partition("|")
        if "," not in args:
            raise ConfigError(where, f"{part!r}: expected (MODEL,SAMPLES)")
        model, count = (x.strip() for x in args.rsplit(",", 1))
        try:
            samples = int(count)
        except ValueError:
            raise ConfigError(where, f"{part!r}: sample count {count!r} is not an integer") from None
        inputs = tuple(x.strip() for x in ins.split(",") if x.strip()) if ins.strip() else ()
        nodes.append(Node(name, role, model, samples, inputs))
    return Graph.of(nodes, output=output, where=where, roles=roles)


def _from_json(raw: str | dict, roles: tuple[str, ...]) -> Graph:
    where = "graph " + (repr(raw) if isinstance(raw, str) else repr(json.dumps(raw)))
    if len(where) > 200:
        where = where[:197] + "...'"
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ConfigError(where, f"not valid JSON ({e.msg})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("nodes"), list):
        raise ConfigError(where, "a JSON graph is an object with a list 'nodes' (and 'output')")
    extra = set(raw) - {"nodes", "output"}
    if extra:
        raise ConfigError(where, f"unknown field {sorted(extra)[0]!r} (fields: nodes, output)")
    nodes = []
    for i, n in enumerate(raw["nodes"]):
        if not isinstance(n, dict):
            raise ConfigError(where, f"nodes[{i}] is not an object")
        missing = [k for k in ("name", "role", "model", "samples") if k not in n]
        if missing:
            raise ConfigError(where, f"nodes[{i}] has no {missing[0]!r}")
        extra = set(n) - {"name", "role", "model", "samples", "inputs"}
        if extra:
            raise ConfigError(where, f"nodes[{i}] has unknown field {sorted(extra)[0]!r}")
        ins = n.get("inputs") or []
        if not isinstance(ins, list) or not all(isinstance(x, str) for x in ins):
            raise ConfigError(where, f"nodes[{i}].inputs must be a list of node names")
        if not all(isinstance(n[k], str) for k in ("name", "role", "model")):
            raise ConfigError(where, f"nodes[{i}]: name, role and model must be strings")
        nodes.append(Node(n["name"], n["role"], n["model"], n["samples"], tuple(ins)))
    out = raw.get("output")
    if out is not None and not (isinstance(out, str) or (isinstance(out, list) and all(isinstance(x, str) for x in out))):
        raise ConfigError(where, "output must be a node name or a list of them (a vote)")
    return Graph.of(nodes, output=out, where=where, roles=roles)


def validate_graph(store, graph: Graph) -> None:
    """Check a graph against a store: every role is one of the store's, every model a
    candidate of its role, every count at most the largest pool of that (role, model).

    Raises:
        ConfigError: one line naming the graph and the problem.
    """
    problem = graph_problem(store, graph)
    if problem is not None:
        raise ConfigError(f"graph {str(graph)!r}", problem)


def graph_problem(store, graph: Graph) -> str | None:
    """What is wrong with a graph on a store (validate_graph's message), or None. The graph's
    text is made only for an error: a batch of valid graphs checks in microseconds each."""
    roles = store.manifest.stage_names
    models = store.manifest.model_names
    largest = store.derived.largest_pool
    ok = store.arrays.stage_model_ok
    graph_store = store.manifest.kind == "graph"
    for n in graph.nodes:
        if n.role not in roles:
            return f"node {n.name!r}: store {store.name!r} has no role {n.role!r} (roles: {', '.join(roles)})"
        if n.model not in models:
            return f"node {n.name!r}: unknown model {n.model!r} (models: {', '.join(models)})"
        ri, mi = roles.index(n.role), models.index(n.model)
        if not ok[ri, mi]:
            return f"node {n.name!r}: model {n.model!r} is not a candidate of role {n.role!r}"
        if n.samples > largest[ri, mi]:
            return (f"node {n.name!r}: {n.samples} samples, but the largest pool of {n.role} by {n.model!r} holds "
                    f"{largest[ri, mi]}")
    if graph_store:
        for n in graph.nodes:
            if n.role == "solve" and n.inputs:
                return f"node {n.name!r}: solve reads the question alone"
            if n.role != "solve" and not n.inputs:
                return f"node {n.name!r}: {n.role} reads other nodes' answers; it names none"
    return None


def as_graph(store, graph) -> Graph:
    """A Graph from a Graph, its text or JSON form, checked against the store.

    Raises:
        ConfigError: a graph the store cannot replay.
    """
    if isinstance(graph, Graph):
        validate_graph(store, graph)
        return graph
    return Graph.parse(graph, store=store)
