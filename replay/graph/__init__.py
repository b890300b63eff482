"""Collaboration graphs (Agent-REINFORCE, arXiv 2511.00086): nodes are LLM calls with a role
(solve, refine, aggregate), a model and a sample count; edges carry one node's aggregated
answer to the next. A graph store keeps pools per (role, model, question, input key); graph
replay draws every node's samples with common random numbers in topological order and reports
the score, the token cost and the latency (the longest path).

    config.py     `Graph`, `Node`: text and JSON forms, checks (DAG, roles, models, limits)
    keys.py       the canonical input key of a pool (what the node read)
    inputs.py     what the kernels read beyond the store's arrays (pool keys, classes, ...)
    kernels.py    the Numba kernel (a batch of graphs in one call)
    reference.py  the pure-Python oracle of the kernel
    engine.py     `evaluate_graph`, `evaluate_graphs`, `estimate_graph`, results
    expected.py   the budget rule: a graph's expected cost over the store's pools (and a latency estimate)
    cli.py        what `replay info/eval/sweep` print for graph stores

    from replay.graph import Graph, evaluate_graph
    r = evaluate_graph(replay.open("traces/sim-math"), "s=solve(Qwen2.5-7B,8)")
"""

from __future__ import annotations

from .config import MAX_NODES, Graph, Node, as_graph, validate_graph
from .keys import input_key, parse_input_key

__all__ = ["Graph", "Node", "MAX_NODES", "as_graph", "validate_graph", "input_key", "parse_input_key",
           "evaluate_graph", "evaluate_graphs", "estimate_graph", "GraphResult", "NodeResult"]

_LAZY = {"evaluate_graph": "engine", "evaluate_graphs": "engine", "estimate_graph": "engine",
         "GraphResult": "engine", "NodeResult": "engine"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)
