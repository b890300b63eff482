"""Graph batches whose graphs share nodes: the kernel runs a node that several graphs have (same
place, role, model, count and parents) once per question, and shares the key lookups and memo
draws; every graph still gets the pure-Python reference's numbers exactly."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np

import replay
from replay.graph import Graph
from replay.graph.engine import GraphBatch

from graphkit import RandomGraphStoreSpec, make_random_graph_store, random_graph
from test_graph_replay import _compare_to_reference


def _variants(store, g: Graph, rng) -> list[Graph]:
    """g, a copy of it, and g with its last node's count or model changed (shares every other node)."""
    out = [g, Graph.of(list(g.nodes), output=list(g.output))]
    last = g.nodes[-1]
    top = int(store.derived.largest_pool[store.stage_index(last.role), store.model_index(last.model)])
    out.append(Graph.of(list(g.nodes[:-1]) + [dataclasses.replace(last, samples=int(rng.integers(1, top + 1)))],
                        output=list(g.output)))
    models = store.candidate_models(store.stage_index(last.role))
    out.append(Graph.of(list(g.nodes[:-1]) + [dataclasses.replace(last, model=str(rng.choice(models)))],
                        output=list(g.output)))
    return out


def test_batches_that_share_nodes_equal_the_reference():
    for seed in (1, 2, 3):
        spec = RandomGraphStoreSpec(seed=seed, n_models=2, max_pool=5, n_answers=3, key_keep=0.6, max_key=2,
                                    roles=("solve", "refine", "aggregate"))
        with tempfile.TemporaryDirectory() as d:
            store = replay.open(make_random_graph_store(Path(d) / "s", spec))
            rng = np.random.default_rng(seed)
            graphs = [v for _ in range(3) for v in _variants(store, random_graph(store, rng), rng)]
            nodes = GraphBatch.of(store, graphs).distinct()
            assert len(nodes.role) < len(nodes.node_uid)  # the batch does share nodes
            _compare_to_reference(store, graphs)


def test_one_graph_takes_the_short_path_to_the_same_distinct_nodes():
    """distinct() of a one-graph batch (its fast path) equals what the general path finds for the
    same graph (a batch of the graph twice: every node shared)."""
    spec = RandomGraphStoreSpec(seed=4, n_models=2, max_pool=5, n_answers=3, key_keep=0.6, max_key=2,
                                roles=("solve", "refine", "aggregate"))
    with tempfile.TemporaryDirectory() as d:
        store = replay.open(make_random_graph_store(Path(d) / "s", spec))
        rng = np.random.default_rng(4)
        for _ in range(10):
            g = random_graph(store, rng)
            one = GraphBatch.of(store, [g]).distinct()
            two = GraphBatch.of(store, [g, g]).distinct()
            U = len(g.nodes)
            assert np.array_equal(two.node_uid, np.tile(one.node_uid, 2))
            for f in ("index", "role", "model", "count", "par_off", "par"):
                assert np.array_equal(getattr(one, f), getattr(two, f)), f
            assert len(one.role) == U
