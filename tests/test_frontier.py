"""The compute-optimal frontier (`replay frontier`) and the pilot figures (`replay pilot`):
the frontier against a brute-force reference on tiny stores, its monotonicity and the budget
rule, a pilot on a store with a known interior optimum, and bad input."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from clikit import run_main
from graphkit import RandomGraphStoreSpec, make_random_graph_store
from storekit import RandomStoreSpec, make_random_store

import replay
from replay import schema as S
from replay.cli import main
from replay.engine import Config, evaluate_batch, expected_units, scan_space
from replay.store import write_store
from search.frontier import (TEST_OPTIMUM, TRAIN_PICK, best_per_budget, chain_frontier, frontier_split, graph_frontier,
                             parse_budgets)
from search.frontier import pilot
from search.selection import DEFAULT_RULE, RULES, select
from search.spaces.config import ConfigSpace
from search.trial import Trial

R = 4


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    p = tmp_path_factory.mktemp("fr") / "chain"
    make_random_store(p, RandomStoreSpec(seed=3, n_questions=8, aggregations=("majority_vote", "majority_vote"),
                                         max_pool=4))
    return replay.open(p)


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    p = tmp_path_factory.mktemp("fr") / "graph"
    make_random_graph_store(p, RandomGraphStoreSpec(seed=2, n_questions=6, max_pool=3))
    return replay.open(p)


def _best(score, cost, budget):
    """The reference pick: the highest score within the budget, ties to the cheaper; None if none."""
    ok = [j for j in range(len(score)) if cost[j] <= budget * (1 + 1e-9)]
    if not ok:
        return None
    return min(ok, key=lambda j: (-score[j], cost[j]))


def test_best_per_budget_matches_a_loop():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(1, 40))
        cost = rng.choice([1.0, 2.0, 3.0, 5.0, 8.0], size=n)
        score = rng.choice([0.0, 0.25, 0.5, 0.75], size=n)  # many ties
        budgets = [0.5, 1.0, 2.5, 4.0, 8.0, 100.0]
        got = best_per_budget(cost, score, budgets)
        for b, j in zip(budgets, got):
            ref = _best(score, cost, b)
            if ref is None:
                assert j == -1
            else:
                assert (score[j], cost[j]) == (score[ref], cost[ref])


@pytest.fixture(scope="module")
def chain_ref(chain):
    """Every configuration of the chain store in the frontier's scan order (the order a rule's
    last tie-break uses), scored by `evaluate_batch` on train and on test, with its cost."""
    space = ConfigSpace.from_store(chain)
    scan = scan_space(chain, space.choices(), questions="train", replicates=R, seed=1)
    K = scan.score.shape[1]
    cfgs = [scan.config(*divmod(j, K)) for j in range(scan.score.size)]
    tr = evaluate_batch(chain, cfgs, questions="train", replicates=R, seed=1)
    te = evaluate_batch(chain, cfgs, questions="test", replicates=R, seed=1)
    return cfgs, tr, te, [expected_units(chain, c) for c in cfgs]


@pytest.mark.parametrize("rule", RULES)
def test_chain_frontier_agrees_with_brute_force(chain, chain_ref, rule):
    """The train pick is what search/selection.py `select` picks among the configurations within
    the budget, as trials (per-question training scores from evaluate_batch); the test optimum
    the highest test mean."""
    fr = chain_frontier(chain, points=7, replicates=R, seed=1, select=rule)
    cfgs, tr, te, cost = chain_ref
    trials = [Trial(number=j, point=c, feasible=True, score=r.score, stderr=r.stderr, cost=cost[j], tokens=0.0,
                    wall_s=0.0, per_question=tuple(r.per_question)) for j, (c, r) in enumerate(zip(cfgs, tr))]
    assert fr.info["scanned"] == len(cfgs) and fr.info["select"] == rule
    for row in fr.table.iter_rows(named=True):
        if row["curve"] == TRAIN_PICK:
            assert row["select"] == rule
            sel = select([t for t in trials if t.cost <= row["budget"] * (1 + 1e-9)], rule)
            ref = None if sel.trial is None else sel.trial.number
        else:
            ref = _best([r.score for r in te], cost, row["budget"])
        if ref is None:
            assert row["config"] is None
            continue
        picked = Config.parse(row["config"], store=chain)  # the canonical text parses back
        j = cfgs.index(picked)
        if row["curve"] == TRAIN_PICK:
            assert j == ref, (row["budget"], cfgs[j], cfgs[ref])
        else:
            assert te[j].score == pytest.approx(te[ref].score, abs=1e-12) and cost[j] == pytest.approx(cost[ref])
        assert row["score"] == pytest.approx(te[j].score, abs=1e-12)
        assert row["ci_lo"] == pytest.approx(te[j].ci_lo, abs=1e-9)
        assert row["ci_hi"] == pytest.approx(te[j].ci_hi, abs=1e-9)
        assert row["train_score"] == pytest.approx(tr[j].score, abs=1e-12)


def test_default_rule_breaks_training_ties_to_the_costlier(chain):
    """On this store training means tie (8 questions, 4 replicates): `mean` keeps the cheaper
    configuration, the default `mean-costliest` spends the budget. Same training score, more cost."""
    assert DEFAULT_RULE == "mean-costliest"
    by = {rule: chain_frontier(chain, points=7, replicates=R, seed=1, select=rule).curve(TRAIN_PICK)
          for rule in ("mean", DEFAULT_RULE)}
    a, b = by["mean"], by[DEFAULT_RULE]
    differ = (a["config"] != b["config"]).to_numpy()
    assert differ.any()
    assert np.allclose(a["train_score"].to_numpy(), b["train_score"].to_numpy(), atol=1e-12)
    assert (b["expected_units"].to_numpy()[differ] > a["expected_units"].to_numpy()[differ]).all()
    assert (b["expected_units"].to_numpy() >= a["expected_units"].to_numpy() - 1e-12).all()


def test_test_optimum_is_monotone_and_every_pick_is_feasible(chain):
    fr = chain_frontier(chain, points=9, replicates=R)
    opt = fr.curve(TEST_OPTIMUM).filter(pl.col("config").is_not_null())
    assert len(opt) == 9
    assert (np.diff(opt["score"].to_numpy()) >= -1e-12).all()
    assert (np.diff(opt["n_feasible"].to_numpy()) >= 0).all()
    for row in fr.table.iter_rows(named=True):
        cost = expected_units(chain, Config.parse(row["config"], store=chain))
        assert cost <= row["budget"] * (1 + 1e-9) and cost == pytest.approx(row["expected_units"])
    # the cheapest default budget admits exactly the cheapest configuration
    assert fr.table["n_feasible"].min() >= 1
    assert set(fr.table["split"]) == {"train", "test"}


def test_graph_frontier_on_a_bounded_space_agrees_with_brute_force(graph):
    from replay.graph.engine import evaluate_graphs
    from search.spaces.graph import GraphSpace

    fr = graph_frontier(graph, points=5, max_nodes=2, max_samples=2, replicates=R, select="tied-costliest")
    sp = GraphSpace.from_store(graph, max_nodes=2, max_samples=2, budget=1e300)
    gs = {}
    for s in sp.all_specs():
        try:
            g = sp.make(s)
        except replay.errors.ConfigError:
            continue
        gs.setdefault(sp.key(g), g)
    gl = list(gs.values())
    te = [r.score for r in evaluate_graphs(graph, gl, questions="test", replicates=R, seed=0)]
    tr = evaluate_graphs(graph, gl, questions="train", replicates=R, seed=0)
    cost = [sp.estimate_cost(g) for g in gl]
    trials = [Trial(number=j, point=g, feasible=True, score=r.score, stderr=r.stderr, cost=cost[j], tokens=0.0,
                    wall_s=0.0, per_question=tuple(r.per_question)) for j, (g, r) in enumerate(zip(gl, tr))]
    for row in fr.curve(TRAIN_PICK).iter_rows(named=True):  # the rule that needs per-question scores
        ref = select([t for t in trials if t.cost <= row["budget"] * (1 + 1e-9)], "tied-costliest").trial.number
        assert sp.key(replay.graph.Graph.parse(row["config"], store=graph)) == sp.key(gl[ref])
        assert row["select"] == "tied-costliest"
    opt = fr.curve(TEST_OPTIMUM)
    assert (np.diff(opt["score"].to_numpy()) >= -1e-12).all()
    for row in opt.iter_rows(named=True):
        ref = _best(te, cost, row["budget"])
        assert row["score"] == pytest.approx(te[ref], abs=1e-12)
        g = replay.graph.Graph.parse(row["config"], store=graph)  # parses back
        assert sp.estimate_cost(g) <= row["budget"] * (1 + 1e-9)


def test_parse_budgets():
    assert parse_budgets("40,10,20") == [10.0, 20.0, 40.0]
    assert parse_budgets("1:100:3") == pytest.approx([1.0, 10.0, 100.0])
    assert parse_budgets("2e15", unit="flops", unit_flops=1e15) == [2.0]
    for bad in ("", "a", "0", "-1", "nan", "inf", "1:2", "10:1:3", "1:10:0"):
        with pytest.raises(replay.errors.InputError, match="--budgets"):
            parse_budgets(bad)


def test_cli_writes_the_frontier_under_out(chain, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(main, ["frontier", str(chain.path), "--points", "4", "-r", "2"], capsys)
    assert code == 0, err
    d = tmp_path / "out" / "frontier" / chain.path.name
    df = pl.read_parquet(d / "frontier.parquet")
    assert {"budget", "config", "split", "curve", "score", "ci_lo", "ci_hi", "expected_units"} <= set(df.columns)
    assert len(df) == 8 and (d / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    assert f"train pick ({DEFAULT_RULE})" in out and "test optimum" in out and (d / "frontier.txt").is_file()
    assert set(df.filter(pl.col("curve") == TRAIN_PICK)["select"]) == {DEFAULT_RULE}
    code, out, err = run_main(main, ["frontier", str(chain.path), "--points", "4", "-r", "2", "--select", "lcb",
                                     "--out", str(tmp_path / "lcb")], capsys)
    assert code == 0, err
    assert "train pick (lcb)" in out and "selection rule lcb" in out
    assert set(pl.read_parquet(tmp_path / "lcb" / "frontier.parquet").filter(
        pl.col("curve") == TRAIN_PICK)["select"]) == {"lcb"}


def test_cli_graph_space_too_large_is_refused_naming_its_size(graph, tmp_path, capsys):
    code, _, err = run_main(main, ["frontier", str(graph.path), "--max-nodes", "3", "--max-graphs", "10",
                                   "--out", str(tmp_path / "g")], capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "--max-graphs" in lines[0] and "graphs, more than 10" in lines[0]
    assert not (tmp_path / "g" / "frontier.parquet").exists()


@pytest.mark.parametrize("args, needle", [
    (["--budgets", "-3"], "--budgets"),
    (["--budgets", "x,y"], "--budgets"),
    (["--points", "0"], "--points"),
    (["--budgets", "5", "--controllers", "majority"], "--budgets"),
    (["--models", "nosuch"], "unknown model 'nosuch'"),
    (["--select", "best"], "--select"),
    (["--select", "mean", "--controllers", "majority"], "--select"),
])
def test_cli_bad_input_is_one_line_exit_2(chain, tmp_path, capsys, args, needle):
    code, _, err = run_main(main, ["frontier", str(chain.path), "--out", str(tmp_path / "o"), *args], capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and needle in lines[0], err


def test_cli_unknown_store_is_one_line_exit_2(tmp_path, capsys):
    for cmd in (["frontier", str(tmp_path / "nope")], ["pilot", "insight1", str(tmp_path / "nope")]):
        code, _, err = run_main(main, [*cmd, "--out", str(tmp_path / "o")], capsys)
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert code == 2 and len(lines) == 1 and "nope" in lines[0], err


def test_store_without_split_and_few_questions_trains_on_half(tmp_path, capsys):
    """search's default (50 training questions) leaves none of 12 for test: the frontier takes
    half of them, says so, and --train N still chooses; a one-question store is refused naming
    --train."""
    st = replay.open(_peaked_store(tmp_path / "nosplit", split=False))
    sp = frontier_split(st, seed=0)
    assert (len(sp.train), len(sp.test)) == (6, 6) and not set(sp.train) & set(sp.test)
    assert "6 train, 6 test" in sp.source
    code, out, err = run_main(main, ["frontier", str(st.path), "--points", "3", "-r", "2", "--out",
                                     str(tmp_path / "o")], capsys)
    assert code == 0, err
    assert "6 train, 6 test" in out
    fr = chain_frontier(st, points=2, replicates=2, train=8)  # --train still decides (search's protocol)
    assert fr.info["n_train"] == 8
    one = _one_question_store(tmp_path / "one")
    code, _, err = run_main(main, ["frontier", str(one), "--out", str(tmp_path / "o1")], capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "--train" in lines[0] and "at least 2" in lines[0], err


def _one_question_store(path):
    cols = {"question_id": ["q"], "stage": ["solve"], "model": ["m"], "context": [S.ROOT_CONTEXT],
            "sample_index": [0], "answer": ["g"], "score": [1.0], "prompt_tokens": [10], "completion_tokens": [20]}
    questions = {"question_id": ["q"], "split": ["all"], "gold": ["g"], "metadata": [json.dumps({})]}
    manifest = S.Manifest(name="one", stages=(S.Stage(name="solve", aggregation="majority_vote", scorer="test"),),
                          models=(S.Model(name="m", params=1e9),), synthetic=True,
                          provenance={"generator": "tests/test_frontier.py"}, split={})
    return write_store(path, manifest, questions, cols)


# --------------------------------------------------------------------------------------------
# pilot figures


def _peaked_store(path, *, pairs: int = 6, split: bool = True):
    """One stage, one model, majority vote, 12 questions of two kinds. An easy question's pool
    is 4 right, 1 wrong: a few samples already vote right. A hard one's is 9 right, 11 wrong:
    one sample is right 45% of the time, a vote over the whole pool never. The mean over both
    peaks at an interior count, and falls by about 0.2 from it to the whole pool."""
    pools = {}
    for i in range(pairs):
        pools[f"e{i}"] = ["g"] * 4 + ["x"]
        pools[f"h{i}"] = ["g"] * 9 + ["x"] * 11
    cols = {k: [] for k in ("question_id", "stage", "model", "context", "sample_index", "answer", "score",
                            "prompt_tokens", "completion_tokens")}
    for q, answers in pools.items():
        for j, a in enumerate(answers):
            for k, v in zip(cols, (q, "solve", "m", S.ROOT_CONTEXT, j, a, float(a == "g"), 10, 20)):
                cols[k].append(v)
    n = len(pools)
    questions = {"question_id": list(pools), "split": ["train" if split else "all"] * n, "gold": ["g"] * n,
                 "metadata": [json.dumps({})] * n}
    manifest = S.Manifest(name="peaked", stages=(S.Stage(name="solve", aggregation="majority_vote", scorer="test"),),
                          models=(S.Model(name="m", params=1e9),), synthetic=True,
                          provenance={"generator": "tests/test_frontier.py"},
                          split={"train": tuple(pools)} if split else {})
    return write_store(path, manifest, questions, cols)


def test_pilot_insight2_finds_the_known_interior_optimum(tmp_path, capsys):
    st = replay.open(_peaked_store(tmp_path / "peaked"))
    curves, optima = pilot.insight2(st, replicates=400, seed=0)
    o = optima.row(0, named=True)
    assert o["interior"] and 2 <= o["best_samples"] <= 10 and o["largest_samples"] == 20
    assert o["largest_score"] == pytest.approx(0.5)  # easy ones always right, hard ones never, at the whole pool
    assert o["beyond_noise"] and o["drop_ci_lo"] > 0
    code, out, err = run_main(main, ["pilot", "insight2", str(st.path), "--out", str(tmp_path / "p"), "-r", "50"], capsys)
    assert code == 0, err
    df = pl.read_parquet(tmp_path / "p" / "insight2.parquet")
    assert df.filter(pl.col("is_best"))["interior"].to_list() == [True]
    assert (tmp_path / "p" / "insight2.png").is_file()


def test_pilot_insight1_and_3_on_a_two_stage_store(chain, tmp_path, capsys):
    df = pilot.insight1(chain, replicates=R)
    assert set(df["stage"]) == set(chain.manifest.stage_names)
    ok = df.filter(pl.col("samples").is_not_null())
    for row in ok.iter_rows(named=True):
        assert row["expected_units"] <= row["budget"] * (1 + 1e-9)
        assert row["samples"] <= row["max_samples_within"]
    assert df.filter(pl.col("best_at_budget")).height >= len(chain.stages)
    d3 = pilot.insight3(chain, replicates=R)
    n_models = len(chain.manifest.model_names)
    assert len(d3) == n_models * n_models
    for cmd in ("insight1", "insight3"):
        code, _, err = run_main(main, ["pilot", cmd, str(chain.path), "--out", str(tmp_path / "p"), "-r", "2"], capsys)
        assert code == 0, err
        assert (tmp_path / "p" / f"{cmd}.parquet").is_file()


def test_pilot_insight3_needs_two_stages(tmp_path, capsys):
    st = _peaked_store(tmp_path / "one")
    code, _, err = run_main(main, ["pilot", "insight3", str(st), "--out", str(tmp_path / "p")], capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "two stages" in lines[0]


def test_controller_frontier_prints_the_front_by_default_and_every_point_with_all(tmp_path, capsys):
    from conftest import TRACES

    args = ["frontier", str(TRACES / "aime24"), "--model", "Qwen3-8B", "--controllers", "majority,adaptive",
            "--betas", "0:1:6", "--questions", "aime24-000,aime24-001,aime24-002", "-r", "2", "--out",
            str(tmp_path / "c.png")]
    code, short, err = run_main(main, args, capsys)
    assert code == 0, err
    df = pl.read_parquet(tmp_path / "c.parquet")  # every point, beside the plot
    n_front = int(df["on_front"].sum())
    assert f"{n_front} of {len(df)} points" in short and n_front < len(df)
    code, full, err = run_main(main, [*args, "--all"], capsys)
    assert code == 0, err
    assert len(full.splitlines()) - len(short.splitlines()) >= len(df) - n_front - 1


def test_pilot_on_a_graph_store_probes_each_role(graph, tmp_path, capsys):
    from replay.graph.engine import evaluate_graphs

    curves, optima = pilot.insight2(graph, replicates=R, max_samples=3)
    assert set(curves["stage"]) == set(graph.manifest.stage_names)  # solve alone, then refine and aggregate
    row = curves.filter(pl.col("stage") == "refine").row(0, named=True)
    g = replay.graph.Graph.parse(row["config"], store=graph)
    assert [n.role for n in g.nodes] == ["solve", "refine"]
    assert row["score"] == pytest.approx(evaluate_graphs(graph, [g], replicates=R)[0].score)  # all questions
    d3 = pilot.insight3(graph, replicates=R, max_samples=3)
    assert set(d3["upstream_stage"]) == {"solve"} and set(d3["stage"]) == {"refine", "aggregate"}
    code, _, err = run_main(main, ["pilot", "insight1", str(graph.path), "--out", str(tmp_path / "p"), "-r", "2"],
                            capsys)
    assert code == 0, err
    assert (tmp_path / "p" / "insight1.png").is_file()
