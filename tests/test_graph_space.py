"""The graph search space: the expected-cost budget rule against its definition, sampling and
mutations stay valid and feasible, the grid refuses a large space in one line, the Optuna
encoding round-trips, the objective parses strictly, and random/bo/grid run on it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import replay
from replay.errors import ConfigError
from replay.graph import Graph
from replay.graph.expected import (expected_graph_units, expected_latency_table, latency_estimate, max_key_lengths)
from replay.graph.engine import evaluate_graph
from replay.graph.inputs import graph_inputs, seconds_per_token

from clikit import run_main
from conftest import TRACES
from graphkit import RandomGraphStoreSpec, make_random_graph_store, random_graph

from search.setup import make_setup
from search.settings import GraphSpaceSettings
from search.spaces.graph import MOVES, GraphObjective, GraphSpace


@pytest.fixture(scope="module")
def math_store():
    return replay.open(TRACES / "sim-math")


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    path = make_random_graph_store(tmp_path_factory.mktemp("g") / "s", RandomGraphStoreSpec(seed=3, n_questions=4))
    return replay.open(path)


def _brute_units(store, g: Graph) -> float:
    """The budget rule, written from its definition (replay/graph/expected.py), pool by pool."""
    a, d = store.arrays, store.derived
    G = graph_inputs(store)
    S, M = a.n_stages, a.n_models
    total = 0.0
    for node in g.nodes:
        s, m, k, n = store.stage_index(node.role), store.model_index(node.model), len(node.inputs), node.samples
        per_q = []
        for q in range(a.n_questions):
            j = (q * S + s) * M + m
            pools = list(range(int(a.qsm_pool_off[j]), int(a.qsm_pool_off[j + 1])))
            if not pools:
                continue
            match = [p for p in pools if G.pool_key_off[p + 1] - G.pool_key_off[p] == k]
            use = match or pools
            tok = []
            for p in use:
                comps = a.s_completion[a.pool_off[p]:a.pool_off[p + 1]].astype(float)
                tok.append(float(a.pool_prompt[p]) + min(n, len(comps)) * comps.mean())
            per_q.append(np.mean(tok))
        total += 2.0 * float(a.model_params[m]) * float(np.mean(per_q))
    return total / float(d.budget_unit)


def test_expected_cost_is_its_definition_and_ignores_the_questions(tiny_store, math_store):
    rng = np.random.default_rng(0)
    for _ in range(25):
        g = random_graph(tiny_store, rng, max_nodes=5)
        assert expected_graph_units(tiny_store, g) == pytest.approx(_brute_units(tiny_store, g), rel=1e-9)
    # a solve node's expected cost is the exact mean of what the replay charges over every question
    g = "s=solve(Qwen2.5-7B,6)"
    r = evaluate_graph(math_store, g, questions=None, replicates=400)
    assert expected_graph_units(math_store, g) == pytest.approx(r.units, rel=0.005)
    # the space's cost is the rule, whatever the objective's questions
    sp = GraphSpace.from_store(math_store, budget=30.0)
    g2 = Graph.parse("s=solve(Qwen2.5-7B,2); r=refine(Llama-3.1-8B,2|s)")
    ev_train = sp.evaluate([g2], make_setup(math_store, GraphSpaceSettings(budget=30.0)).objective)[0]
    ev_test = sp.evaluate([g2], make_setup(math_store, GraphSpaceSettings(budget=30.0)).test_objective)[0]
    assert ev_train.cost == ev_test.cost == pytest.approx(expected_graph_units(math_store, g2))
    assert ev_train.metrics["measured_units"] != ev_test.metrics["measured_units"]


def test_latency_estimate_is_exact_for_one_solve_node_and_below_for_parallel(math_store):
    g = "s=solve(Qwen2.5-3B,8)"
    r = evaluate_graph(math_store, g, questions=None, replicates=400)
    assert latency_estimate(math_store, g) == pytest.approx(r.latency, rel=0.01)
    par = "a=solve(Qwen2.5-3B,2); b=solve(Llama-3.1-8B,2); output=vote(a,b)"
    r = evaluate_graph(math_store, par, questions=None, replicates=200)
    assert latency_estimate(math_store, par) < r.latency


def test_budget_feasibility_by_expected_cost(math_store):
    sp = GraphSpace.from_store(math_store, budget=20.0)
    rng = np.random.default_rng(1)
    seen: set = set()
    pts = [p for _, p in zip(range(60), sp.random_points(rng, seen))]
    assert len(pts) == 60 and len({sp.key(p) for p in pts}) == 60
    assert all(sp.valid(p) and sp.estimate_cost(p) <= 20.0 * (1 + 1e-9) for p in pts)
    assert max(len(p.nodes) for p in pts) > 1  # not only single nodes
    over = Graph.parse("s=solve(Qwen2.5-7B,16)")
    assert sp.estimate_cost(over) > 20.0 and not sp.feasible(over)
    obj = make_setup(math_store, GraphSpaceSettings(budget=20.0)).objective
    ev = sp.evaluate([over, pts[0]], obj)
    assert not ev[0].feasible and ev[0].score is None and "over budget" in ev[0].metrics["infeasible"]
    assert ev[1].feasible and ev[1].per_question is not None and len(ev[1].per_question) == len(obj.questions)
    # scored without the budget (the final pick on test), the over-budget graph has a score
    assert sp.evaluate([over], obj, enforce_budget=False)[0].score is not None


def test_latency_limit_and_weighted_objective(math_store):
    obj = make_setup(math_store, GraphSpaceSettings(budget=40.0)).objective
    slow = Graph.parse("s=solve(Qwen2.5-7B,1); r=refine(Qwen2.5-7B,1|s); t=refine(Qwen2.5-7B,1|r)")
    sp = GraphSpace.from_store(math_store, budget=40.0, latency_limit=9.0)
    ev = sp.evaluate([slow], obj)[0]
    assert ev.metrics["latency"] > 9.0 and not ev.feasible and "latency" in ev.metrics["infeasible"]
    lam = 0.02
    sp2 = GraphSpace.from_store(math_store, budget=40.0, objective=f"accuracy - {lam} * latency")
    e = sp2.evaluate([slow], obj)[0]
    assert e.score == pytest.approx(e.metrics["accuracy"] - lam * e.metrics["latency"])
    assert float(np.mean(e.per_question)) == pytest.approx(e.score)
    for bad in ("accuracy - latency", "accuracy + 0.1 * latency", "acc", "accuracy - -1 * latency", "accuracy - 1e999 * latency"):
        with pytest.raises(ConfigError, match="--objective"):
            GraphObjective.parse(bad)
    assert GraphObjective.parse("accuracy-0.5*latency").lam == 0.5


def test_mutations_are_valid_feasible_and_one_move_away(math_store):
    sp = GraphSpace.from_store(math_store, budget=30.0, max_nodes=4)
    rng = np.random.default_rng(2)
    kinds = set()
    for _ in range(30):
        g = next(sp.random_points(rng, set()))
        for kind, h in sp.moves(g):
            kinds.add(kind)
            assert sp.valid(h) and sp.key(h) != sp.key(g)
            assert abs(len(h.nodes) - len(g.nodes)) <= 1
        m = sp.mutate(g, rng)
        assert sp.feasible(m) and sp.key(m) != sp.key(g)
    assert kinds == set(MOVES)


def test_size_counts_the_grid_and_the_grid_refuses_a_large_space(math_store, capsys, tmp_path):
    sp = GraphSpace.from_store(math_store, max_nodes=2, max_samples=2, models=("Qwen2.5-1.5B", "Qwen2.5-7B"),
                               budget=40.0)
    specs = list(sp.all_specs())
    assert len(specs) == sp.size()
    assert len({sp.key(sp.make(s)) for s in specs}) == len(specs)
    from search.cli import main

    code, out, err = run_main(main, ["--replay", str(TRACES / "sim-math"), "--space", "graph", "--searcher", "grid",
                                     "--out", str(tmp_path / "g")], capsys)
    assert code == 2 and "7,818,900,672 graphs" in err and len(err.strip().splitlines()[-1]) < 250
    assert not (tmp_path / "g" / "archive.jsonl").exists()


def test_parametrisation_round_trips_and_decodes_to_valid_graphs(math_store):
    sp = GraphSpace.from_store(math_store, budget=30.0)
    par = sp.parametrisation()
    rng = np.random.default_rng(3)
    for _ in range(40):
        g = next(sp.random_points(rng, set()))
        assert sp.key(par.point(par.values(g))) == sp.key(g)
        vals = {}
        for d in par.dims:
            vals[d.name] = d.choices[int(rng.integers(len(d.choices)))] if d.kind == "categorical" else \
                int(rng.integers(int(d.low), int(d.high) + 1))
        assert sp.valid(par.point(vals))


def test_random_bo_and_grid_run_on_the_graph_space(math_store, tmp_path):
    from search.runner import report_search, run_search

    setup = make_setup(math_store, GraphSpaceSettings(budget=25.0, max_nodes=3), replicates=4, test_replicates=8)
    for name in ("random", "bo"):
        run = run_search(setup, name, seed=0, trials=12, out=tmp_path / name)
        assert len(run.trials) == 12 and all(t.feasible for t in run.trials)
        summary = report_search(setup, run, out=tmp_path / name, optimum=None)
        assert summary["test"]["ci_lo"] <= summary["test"]["score"] <= summary["test"]["ci_hi"]
    small = make_setup(math_store, GraphSpaceSettings(budget=25.0, max_nodes=1, models=("Qwen2.5-7B",)),
                       replicates=4, test_replicates=8)
    run = run_search(small, "grid", seed=0, trials=None)
    assert run.stop == "searcher finished"
    # every single-node graph within budget was scored: the counts whose expected cost fits
    fits = [n for n in small.space.counts[("solve", "Qwen2.5-7B")]
            if small.space.node_cost("solve", "Qwen2.5-7B", 0, n) <= 25.0 * (1 + 1e-9)]
    assert len(run.trials) == len(fits)


def test_pareto_front_is_the_brute_force_front():
    from search.spaces.graph_report import pareto_front

    rng = np.random.default_rng(4)
    for _ in range(50):
        n = int(rng.integers(1, 30))
        pts = [(float(rng.integers(0, 6)) / 5, float(rng.integers(0, 6))) for _ in range(n)]
        front = pareto_front(pts)

        def dominated(i):
            return any(pts[j][0] >= pts[i][0] and pts[j][1] <= pts[i][1] and pts[j] != pts[i] for j in range(n))

        want = set()
        for i in range(n):
            if not dominated(i) and pts[i] not in [pts[j] for j in want]:
                want.add(i)
        assert set(front) == want
        assert [pts[i][1] for i in front] == sorted(pts[i][1] for i in front)
    assert pareto_front([(0.5, math.nan), (0.4, 1.0)]) == [1]


def test_references_are_the_best_of_their_families(math_store, tmp_path):
    from search.runner import report_search, run_search
    from search.spaces.graph_report import parallel_family, sequential_family

    setup = make_setup(math_store, GraphSpaceSettings(budget=12.0, max_nodes=3, max_samples=3,
                                                      models=("Qwen2.5-1.5B", "Qwen2.5-7B")),
                       replicates=4, test_replicates=8)
    sp, obj = setup.space, setup.objective
    refs = sp.references(obj)
    for name, fam in (("parallel", parallel_family(sp)), ("sequential", sequential_family(sp))):
        assert fam and all(sp.feasible(g) for g in fam)
        scores = [sp.evaluate([g], obj)[0] for g in fam]  # one by one: the batch must not matter
        best = max(s.score for s in scores if s.feasible)
        assert refs[name]["train_score"] == pytest.approx(best)
        assert refs[name]["family_size"] == len(fam)
    fam = sequential_family(sp)
    assert all(len(g.nodes) >= 2 and all(n.role == "refine" for n in g.nodes[1:]) for g in fam)
    assert {len(g.nodes) for g in fam} <= {2, 3}
    # every summary shows them, with the pick's paired advantage on test, and the Pareto front
    run = run_search(setup, "random", seed=0, trials=10, out=tmp_path / "r")
    summary = report_search(setup, run, out=tmp_path / "r", optimum=None)
    g = summary["graph"]
    assert g["references"]["parallel"]["test_score"] is not None
    assert "pick_minus_reference" in g["references"]["sequential"]
    assert g["pareto"] and (tmp_path / "r" / "pareto.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert saved["graph"]["pareto"][0]["graph"] == g["pareto"][0]["graph"]


def test_graph_sweep_writes_the_paper_tables(tmp_path, capsys):
    import polars as pl
    import yaml

    from search.cli import main
    from search.sweep.report import trials_to_within

    spec = {"name": "g", "space": "graph", "max_nodes": 2, "stores": [str(TRACES / "sim-math")],
            "searchers": ["random", "bo"], "seeds": "0-1", "trials": 6, "replicates": 2, "test_replicates": 4,
            "optimum": False}
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(spec))
    code, out, err = run_main(main, ["sweep", str(path), "--workers", "1", "--out", str(tmp_path / "o")], capsys)
    assert code == 0, err
    res = pl.read_parquet(tmp_path / "o" / "results.parquet")
    assert res["space"].to_list() == ["graph"] * 4
    assert res["ref_parallel_graph"].n_unique() == 1 and res["ref_sequential_test"].null_count() == 0
    report = (tmp_path / "o" / "report.md").read_text()
    assert "## 5. Collaboration graphs" in report and "*pure-sequential (reference)*" in report
    assert "SYNTHETIC" in report and "Pareto front of training accuracy" in report
    # trials to within 0.5 points of the best any searcher found, against the curves by hand
    curves = pl.read_parquet(tmp_path / "o" / "curves.parquet").to_dicts()
    rows = res.to_dicts()
    best, reach = trials_to_within(curves, rows)
    assert best == max(c["best_so_far"] for c in curves if c["best_so_far"] is not None)
    for r in rows:
        mine = [c["best_so_far"] for c in curves if c["label"] == r["label"] and c["seed"] == r["seed"]]
        want = next((i + 1 for i, x in enumerate(mine) if x is not None and x >= best - 0.005), None)
        assert reach[(r["label"], r["seed"])] == want
    assert any(v is not None for v in reach.values())
    # another store's curves (higher scores) do not move this store's best
    other = [{**c, "store": "elsewhere", "best_so_far": 1.0} for c in curves]
    assert trials_to_within(curves + other, rows)[0] == best
    # graph fields are refused for the configuration space, a bad objective in one line
    for patch, field in (({"space": "config", "max_nodes": 3}, "max_nodes"),
                         ({"objective": "accuracy * 2"}, "objective"), ({"space": "graphs"}, "space")):
        path.write_text(yaml.safe_dump({**spec, **patch}))
        code, out, err = run_main(main, ["sweep", str(path), "--out", str(tmp_path / "bad")], capsys)
        assert code == 2 and err.startswith(f"error: {path}: {field}: ") and err.count("\n") == 1, err


def test_agenttts_runs_unchanged_on_the_graph_space(math_store):
    from llm_server import ScriptedLLMServer

    from search.runner import run_search

    setup = make_setup(math_store, GraphSpaceSettings(budget=25.0, max_nodes=3, models=("Qwen2.5-1.5B", "Qwen2.5-7B")),
                       replicates=2)
    two = {"nodes": [{"name": "a", "role": "solve", "model": "Qwen2.5-7B", "samples": 2},
                     {"name": "b", "role": "refine", "model": "Qwen2.5-7B", "samples": 1, "inputs": ["a"]}],
           "output": "b"}
    too_many = {"nodes": [{"name": "a", "role": "solve", "model": "Qwen2.5-7B", "samples": 99}]}
    with ScriptedLLMServer() as srv:
        srv.push(json.dumps({"guidelines": ["x"], "trials": [two, too_many]}),
                 json.dumps({"guidelines": ["y"], "trials": [two, "s=solve(Qwen2.5-1.5B,4)"]}))
        run = run_search(setup, "agenttts", trials=4, options={"llm_base_url": srv.base_url, "llm_model": "m",
                                                               "trials_per_round": 2})
        first = srv.requests[0]["messages"][-1]["content"]
        retry = srv.requests[1]["messages"][-1]["content"]
    assert "Design a collaboration graph" in first and "Role 'refine' (reads 1 to 2 parents)" in first
    assert "99 samples" in retry
    keys = [setup.space.key(t.point) for t in run.trials]
    assert keys[2:] == [setup.space.key(Graph.parse(two)), setup.space.key(Graph.parse("s=solve(Qwen2.5-1.5B,4)"))]
    assert run.states[-1]["counters"]["schema_errors"] == 1


def _brute_latency(store, g: Graph, throughput=None) -> float:
    """The latency estimate from its definition: per question, every pool the cost rule weighs
    (equally), its prompt over the prefill rate plus the mean, over every subset of min(n, size)
    of its completions, of the subset's longest over the decode rate; the longest path; the
    mean over questions."""
    import itertools

    a = store.arrays
    G = graph_inputs(store)
    pre, dec = seconds_per_token(store, throughput)
    S, M = a.n_stages, a.n_models
    per_q = []
    for q in range(a.n_questions):
        finish = {}
        for node in g.nodes:
            s, m, k, n = store.stage_index(node.role), store.model_index(node.model), len(node.inputs), node.samples
            j = (q * S + s) * M + m
            pools = list(range(int(a.qsm_pool_off[j]), int(a.qsm_pool_off[j + 1])))
            use = [p for p in pools if G.pool_key_off[p + 1] - G.pool_key_off[p] == k] or pools
            lat = []
            for p in use:
                comps = [int(c) for c in a.s_completion[a.pool_off[p]:a.pool_off[p + 1]]]
                subsets = list(itertools.combinations(comps, min(n, len(comps))))
                lat.append(float(a.pool_prompt[p]) * pre[m] + np.mean([max(c) for c in subsets]) * dec[m])
            finish[node.name] = max((finish[x] for x in node.inputs), default=0.0) + np.mean(lat)
        per_q.append(max(finish[o] for o in g.output))
    return float(np.mean(per_q))


def test_the_expected_cost_of_replay_eval_and_of_the_space_is_its_definition(tiny_store):
    """One implementation (replay.graph.expected.expected_graph_cost) serves the space and
    `replay eval --budget` (the engine's estimate_graph): checked against the definitions
    written out pool by pool and subset by subset, with the manifest's throughputs and others."""
    from replay.graph.engine import estimate_graph
    from replay.graph.expected import expected_graph_cost

    rng = np.random.default_rng(4)
    fast = {m: (1000.0, 50.0) for m in tiny_store.manifest.model_names}
    for _ in range(8):
        g = random_graph(tiny_store, rng, max_nodes=4)
        for throughput in (None, fast):
            units, latency = estimate_graph(tiny_store, g, throughput=throughput)
            assert (units, latency) == expected_graph_cost(tiny_store, g, throughput=throughput)
            assert units == pytest.approx(_brute_units(tiny_store, g), rel=1e-9)
            assert latency == pytest.approx(_brute_latency(tiny_store, g, throughput), rel=1e-9)
        assert latency_estimate(tiny_store, g, throughput=fast) != latency_estimate(tiny_store, g)

