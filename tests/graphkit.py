"""Small random graph stores and random graphs, for tests (written with replay.write_store)."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from replay import schema as S
from replay.graph import Graph, Node, input_key
from replay.store import write_store


@dataclass(frozen=True)
class RandomGraphStoreSpec:
    seed: int
    n_questions: int = 3
    n_models: int = 2
    roles: tuple[str, ...] = ("solve", "refine", "aggregate")
    aggregation: str = "majority_vote"
    max_pool: int = 5
    n_answers: int = 3  # alphabet: small means many ties and many collected keys
    key_keep: float = 0.6  # share of possible input keys that get a pool
    max_key: int = 3  # the largest multiset collected
    float_scores: bool = False
    throughput: bool = True


def make_random_graph_store(path: Path, spec: RandomGraphStoreSpec) -> Path:
    rng = np.random.default_rng(spec.seed)
    models = []
    for i in range(spec.n_models):
        tp = dict(prefill_tokens_per_s=float(rng.choice([1000.0, 4000.0])),
                  decode_tokens_per_s=float(rng.choice([20.0, 50.0]))) if spec.throughput else {}
        models.append(S.Model(name=f"m{i}", params=float(rng.choice([1e9, 3e9, 8e9])), **tp))
    roles = tuple(S.Stage(name=r, aggregation=spec.aggregation, scorer="test") for r in spec.roles)
    qids = [f"q{i}" for i in range(spec.n_questions)]
    alphabet = [f"a{k}" for k in range(spec.n_answers)]
    gold = {q: str(rng.choice(alphabet)) for q in qids}
    cols = {k: [] for k in ("question_id", "stage", "model", "context", "sample_index", "answer", "score",
                            "prompt_tokens", "completion_tokens")}
    keys = [""]
    for size in range(1, spec.max_key + 1):
        keys += [input_key(c) for c in itertools.combinations_with_replacement(alphabet + ["zz"], size)]
    for q in qids:
        for role in spec.roles:
            for m in models:
                ctxs = [""] if role == "solve" else [k for k in keys[1:] if rng.random() < spec.key_keep]
                if role != "solve" and not ctxs:
                    ctxs = [keys[1 + int(rng.integers(len(keys) - 1))]]
                for ctx in ctxs:
                    n = int(rng.integers(1, spec.max_pool + 1))
                    prompt = int(rng.integers(0, 50))
                    for j in range(n):
                        a = str(rng.choice(alphabet))
                        cols["question_id"].append(q)
                        cols["stage"].append(role)
                        cols["model"].append(m.name)
                        cols["context"].append(ctx)
                        cols["sample_index"].append(j)
                        cols["answer"].append(a)
                        sc = float(np.round(rng.random(), 3)) if spec.float_scores else float(a == gold[q])
                        cols["score"].append(sc)
                        cols["prompt_tokens"].append(prompt)
                        cols["completion_tokens"].append(int(rng.integers(1, 100)))
    questions = {"question_id": qids, "split": ["train" if i % 2 == 0 else "test" for i in range(len(qids))],
                 "gold": [gold[q] for q in qids], "metadata": [json.dumps({"i": i}) for i in range(len(qids))]}
    manifest = S.Manifest(name=f"test-graph-{spec.seed}", stages=roles, models=tuple(models), synthetic=True,
                          provenance={"generator": "tests/graphkit.py", "spec": repr(spec)},
                          split={"train": tuple(qids[0::2]), "test": tuple(qids[1::2])}, kind="graph")
    return write_store(path, manifest, questions, cols)


def random_graph(store, rng: np.random.Generator, max_nodes: int = 5) -> Graph:
    """A random valid graph on a graph store: solves first, then refiners/aggregators reading
    1-3 earlier nodes; the output is the one sink, or a vote over the sinks."""
    roles = store.manifest.stage_names
    largest = store.derived.largest_pool
    k = int(rng.integers(1, max_nodes + 1))
    nodes: list[Node] = []
    for i in range(k):
        role = "solve" if i == 0 or len(roles) == 1 else str(rng.choice(roles))
        ri = roles.index(role)
        m = str(rng.choice(store.candidate_models(ri)))
        top = int(largest[ri, store.model_index(m)])
        n = int(rng.choice([1, top, int(rng.integers(1, top + 1))]))
        ins: tuple[str, ...] = ()
        if role != "solve":
            j = int(rng.integers(1, min(3, i) + 1))
            ins = tuple(sorted(rng.choice([x.name for x in nodes], size=j, replace=False).tolist()))
        nodes.append(Node(f"n{i}", role, m, n, ins))
    read = {p for x in nodes for p in x.inputs}
    sinks = [x.name for x in nodes if x.name not in read]
    return Graph.of(nodes, output=sinks if len(sinks) > 1 else None)


def random_chain_graph(store, rng: np.random.Generator) -> Graph:
    """A random graph over a chain store's stages (as roles): one node per stage, in stage
    order, each after the first reading 1-2 earlier nodes; every sink an output (a vote when
    several)."""
    names = store.manifest.stage_names
    largest = store.derived.largest_pool
    nodes: list[Node] = []
    for s, name in enumerate(names):
        m = str(rng.choice(store.candidate_models(s)))
        top = int(largest[s, store.model_index(m)])
        ins = tuple(sorted(rng.choice([x.name for x in nodes], size=min(len(nodes), int(rng.integers(1, 3))),
                                      replace=False).tolist())) if nodes else ()
        nodes.append(Node(f"n{s}", name, m, int(rng.integers(1, top + 1)), ins))
    read = {p for x in nodes for p in x.inputs}
    return Graph.of(nodes, output=[x.name for x in nodes if x.name not in read], roles=names)
