"""Graph replay: the kernel equals the pure-Python reference, chains replay as graphs to the
chain engine's numbers, costs and latency follow the documented rules, bad graphs and bad
graph stores are one line and exit 2."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import replay
from replay import schema as S
from replay.engine import Config, StageChoice, evaluate_batch, largest_pool
from replay.errors import ConfigError, StoreError
from replay.graph import Graph, input_key, parse_input_key
from replay.graph.engine import evaluate_graph, evaluate_graphs, graph_sums, estimate_graph
from replay.graph.inputs import graph_inputs, seconds_per_token
from replay.graph.reference import evaluate_graph_reference
from replay.store import write_store

from clikit import run_main
from conftest import TRACES
from graphkit import RandomGraphStoreSpec, make_random_graph_store, random_chain_graph, random_graph


def _arrays_of(store, g: Graph):
    idx = {n.name: i for i, n in enumerate(g.nodes)}
    return ([store.stage_index(n.role) for n in g.nodes], [store.model_index(n.model) for n in g.nodes],
            [n.samples for n in g.nodes], [[idx[p] for p in n.inputs] for n in g.nodes], [idx[o] for o in g.output])


def _compare_to_reference(store, graphs, replicates=3, seed=11):
    qidx = np.arange(store.arrays.n_questions)
    for memo in ("never", "always"):  # direct draws, and every majority/best node from the memo
        _compare_sums(store, graphs, graph_sums(store, graphs, qidx, replicates=replicates, seed=seed, detail=True,
                                                memo=memo), qidx, replicates, seed)


def _compare_sums(store, graphs, sums, qidx, replicates, seed):
    G = graph_inputs(store)
    pre, dec = seconds_per_token(store)
    u = 0
    for b, g in enumerate(graphs):
        want = evaluate_graph_reference(store.arrays, G, pre, dec, _arrays_of(store, g), qidx, replicates, seed)
        for name, got, w in zip(("score", "tokens", "flops", "latency"), (x[b] for x in sums.detail), want[:4]):
            assert np.array_equal(got, w, equal_nan=True), f"{name} differs for {g}"
        K = len(g.nodes)
        for j, name in enumerate(("node score", "node tokens", "node latency", "node fallbacks")):
            np.testing.assert_allclose(sums.node[u:u + K, j], want[4 + j], rtol=1e-12, atol=1e-9,
                                       err_msg=f"{name} differs for {g}")
        np.testing.assert_allclose(sums.score_q[b], want[0].sum(axis=1), rtol=1e-12)
        np.testing.assert_allclose(sums.latency_q[b], want[3].sum(axis=1), rtol=1e-12)
        u += K


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n_models=st.integers(1, 3), max_pool=st.integers(1, 6),
       n_answers=st.integers(1, 4), keep=st.sampled_from([0.2, 0.6, 1.0]), max_key=st.integers(1, 3),
       aggregation=st.sampled_from(["majority_vote", "best_score"]), float_scores=st.booleans(),
       roles=st.sampled_from([("solve",), ("solve", "refine"), ("solve", "refine", "aggregate")]))
def test_graph_kernel_matches_reference(seed, n_models, max_pool, n_answers, keep, max_key, aggregation,
                                        float_scores, roles):
    spec = RandomGraphStoreSpec(seed=seed, n_models=n_models, max_pool=max_pool, n_answers=n_answers, key_keep=keep,
                                max_key=max_key, aggregation=aggregation, float_scores=float_scores, roles=roles)
    with tempfile.TemporaryDirectory() as d:
        store = replay.open(make_random_graph_store(Path(d) / "s", spec))
        rng = np.random.default_rng(seed)
        _compare_to_reference(store, [random_graph(store, rng) for _ in range(4)])


def test_graph_kernel_on_chain_stores_with_every_aggregation(tmp_path):
    """Set votes, stored fusions and best-score stages, in graphs over a chain store's stages."""
    from storekit import RandomStoreSpec, make_random_store

    for seed, aggs in ((1, ("set_vote", "majority_vote")), (2, ("llm_fuse", "best_score")),
                       (3, ("majority_vote", "set_vote", "llm_fuse"))):
        store = replay.open(make_random_store(tmp_path / f"c{seed}", RandomStoreSpec(
            seed=seed, n_questions=3, aggregations=aggs, n_models=2, max_pool=5, n_answers=3)))
        rng = np.random.default_rng(seed)
        graphs = [random_chain_graph(store, rng) for _ in range(4)]
        _compare_to_reference(store, graphs)


# ---------------------------------------------------------------------------------------------
# Chains as graphs


@pytest.mark.parametrize("name", ["aime24", "sim-2wiki", "sim-hotpotqa", "sim-cwq", "sim-taskbench", "sim-chatdev"])
def test_chain_configs_replay_as_graphs_to_the_chain_engines_numbers(name):
    store = replay.open(TRACES / name)
    rng = np.random.default_rng(len(name))
    big = largest_pool(store)
    cfgs = []
    for _ in range(6):
        ch = []
        for s in range(len(store.stages)):
            m = str(rng.choice(store.candidate_models(s)))
            sizes = store.fusion_sizes(s)
            n = int(rng.choice(sizes)) if sizes else int(rng.integers(1, int(big[s, store.model_index(m)]) + 1))
            ch.append(StageChoice(m, n))
        cfgs.append(Config(tuple(ch)))
    chain = evaluate_batch(store, cfgs, questions="train", replicates=6, seed=3)
    graph = evaluate_graphs(store, [Graph.from_chain(c, store) for c in cfgs], questions="train", replicates=6, seed=3)
    for c, g in zip(chain, graph):
        assert len(g.graph.nodes) == len(store.stages)
        for f in ("score", "tokens", "flops", "units", "stderr"):
            assert math.isclose(getattr(c, f), getattr(g, f), rel_tol=1e-12, abs_tol=1e-12), (c.config, f)
        np.testing.assert_allclose(c.per_question, g.per_question, rtol=1e-12, atol=0)
        for s, n in zip(c.stages, g.nodes):
            assert math.isclose(s.fallback_rate, n.fallback_rate, abs_tol=1e-12)
            assert (math.isnan(s.score) and math.isnan(n.score)) or math.isclose(s.score, n.score, abs_tol=1e-12)
            assert math.isclose(s.tokens, n.tokens, rel_tol=1e-12)
        assert math.isnan(g.latency)  # a version-1 store has no throughputs


# ---------------------------------------------------------------------------------------------
# Graph configurations


def test_text_and_json_forms_round_trip():
    text = "s1=solve(Llama-8B,4); s2=solve(Qwen-7B,4); r=refine(Llama-70B,1|s1,s2)"
    g = Graph.parse(text)
    assert str(g) == text and g.output == ("r",) and g.depth() == 2 and g.width() == 2
    assert Graph.parse(json.dumps(g.to_json())) == g == Graph.parse(g.to_json())
    v = Graph.parse("a=solve(M,1); b=solve(N,2); c=solve(M,3); output=vote(a,b,c)")
    assert v.output == ("a", "b", "c") and str(v).endswith("output=vote(a,b,c)")
    assert Graph.parse(str(v)) == v
    # written out of order: put in topological order, the output is the one sink
    w = Graph.parse("r=refine(M,1|s); s=solve(M,2)")
    assert w.names == ("s", "r") and w.output == ("r",)


BAD_GRAPHS = [
    ("a=solve(M,1); b=refine(M,1|c); c=refine(M,1|b)", "not a DAG: a cycle through"),
    ("a=solve(M,1); b=refine(M,1|b)", "not a DAG"),
    ("a=solve(M,1); b=refine(M,1|x)", "reads 'x', which is not a node"),
    ("a=solve(M,1); b=critique(M,1|a)", "unknown role 'critique'"),
    ("a=solve(M,1); b=solve(M,1)", "no output node: 2 nodes are read by none"),
    ("a=solve(M,1); output=z", "output node 'z' is not a node"),
    ("a=solve(M,1); a=solve(M,2)", "used twice"),
    ("a=solve(M,0)", "at least 1"),
    ("a=solve(M,x)", "is not an integer"),
    ("a=solve(M,1|b); b=solve(M,1)", "solve reads the question alone"),
    ("a=refine(M,1)", "reads other nodes' answers; it names none"),
    ("a=solve(M,1); b=solve(M,1); c=refine(M,1|a); output=c", "node 'b' reaches no output node"),
    ("; ".join(f"n{i}=solve(M,1)" for i in range(40)) + "; output=vote(" + ",".join(f"n{i}" for i in range(40)) + ")",
     "more than the limit of 32"),
    ("a=solve M 1", "is not NAME=ROLE"),
    ('{"nodes": [{"name": "a", "role": "solve", "model": "M"}]}', "has no 'samples'"),
    ('{"nodes": [], "extra": 1}', "unknown field 'extra'"),
]


@pytest.mark.parametrize("text,needle", BAD_GRAPHS)
def test_bad_graphs_are_one_line_naming_the_graph(text, needle):
    with pytest.raises(ConfigError) as e:
        Graph.parse(text)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg and msg.startswith("graph ")


def test_bad_graphs_against_a_store_exit_2(capsys, tmp_path):
    from replay.cli import main

    store = str(TRACES / "sim-math")
    # a graph file, a grid file: the error names the file (and the line)
    (tmp_path / "g.json").write_text('{"nodes": [{"name": "a", "role": "solve", "model": "Qwen2.5-7B", "samples": 1}], '
                                     '"output": "zz"}')
    (tmp_path / "grid.txt").write_text("# graphs\ns=solve(Qwen2.5-7B,1)\ns=solve(Qwen2.5-7B,1); r=refine(Qwen2.5-7B,1|s); r=solve(Qwen2.5-7B,2)\n")
    for args, needle in [(["eval", store, "-c", str(tmp_path / "g.json")], f"{tmp_path / 'g.json'}: graph '"),
                         (["sweep", store, "--grid", str(tmp_path / "grid.txt"), "--out", str(tmp_path / "o.parquet")],
                          f"{tmp_path / 'grid.txt'}: line 3: graph '")]:
        code, out, err = run_main(main, args + ["-r", "2"], capsys)
        lines = [ln for ln in err.splitlines() if not ln.startswith("note:")]
        assert code == 2 and len(lines) == 1 and needle in lines[0], (args, err)
    assert not (tmp_path / "o.parquet").exists()
    for text, needle in [("s=solve(GPT-9,1)", "unknown model 'GPT-9'"),
                         ("s=solve(Qwen2.5-7B,1); r=critique(Qwen2.5-7B,1|s)", "unknown role 'critique'"),
                         ("s=solve(Qwen2.5-7B,1); r=refine(Qwen2.5-7B,1|q)", "which is not a node"),
                         ("s=solve(Qwen2.5-7B,999)", "the largest pool"),
                         ("a=solve(Qwen2.5-7B,1); b=refine(Qwen2.5-7B,1|c); c=refine(Qwen2.5-7B,1|b)", "not a DAG")]:
        code, out, err = run_main(main, ["eval", store, "-c", text, "-r", "2"], capsys)
        lines = [ln for ln in err.splitlines() if not ln.startswith("note:")]
        assert code == 2 and len(lines) == 1 and needle in lines[0] and "graph '" in lines[0], (text, err)


# ---------------------------------------------------------------------------------------------
# Costs and latency, by hand


def _tiny_graph_store(path: Path, **model_kw) -> Path:
    """One question; solve pools of M (4 samples) and a refine pool for the key ["x"]."""
    rows = {k: [] for k in ("question_id", "stage", "model", "context", "sample_index", "answer", "score",
                            "prompt_tokens", "completion_tokens")}

    def add(role, ctx, answers, comps, prompt):
        for j, (a, c) in enumerate(zip(answers, comps)):
            for k, v in zip(rows, ("q0", role, "M", ctx, j, a, float(a == "y"), prompt, c)):
                rows[k].append(v)

    add("solve", "", ["x", "x", "x", "x"], [100, 200, 300, 400], 50)
    add("refine", input_key(["x"]), ["y", "y"], [10, 10], 500)
    add("refine", input_key(["x", "x"]), ["y", "z"], [20, 40], 900)
    man = S.Manifest(name="tiny", synthetic=True, kind="graph",
                     stages=(S.Stage("solve"), S.Stage("refine")),
                     models=(S.Model("M", 1e9, prefill_tokens_per_s=100.0, decode_tokens_per_s=10.0, **model_kw),),
                     split={"train": ("q0",)})
    return write_store(path, man, {"question_id": ["q0"], "split": ["train"], "gold": ["y"]}, rows)


def test_costs_and_latency_follow_the_rules(tmp_path):
    store = replay.open(_tiny_graph_store(tmp_path / "tiny"))
    assert store.manifest.format_version == 2 and store.manifest.kind == "graph"
    # all four samples: tokens = prompt + every completion; latency = prefill + the longest decode
    r = evaluate_graph(store, "s=solve(M,4)", replicates=3)
    assert r.tokens == 50 + 1000 and r.latency == pytest.approx(50 / 100 + 400 / 10) and r.score == 0.0
    # a refiner after it: its pool is the one keyed ["x"]; latency adds along the path
    r = evaluate_graph(store, "s=solve(M,4); r=refine(M,2|s)", replicates=3)
    assert r.score == 1.0 and r.nodes[1].fallback_rate == 0.0
    assert r.tokens == 1050 + 500 + 20 and r.latency == pytest.approx(40.5 + 5 + 1)
    # two parallel solvers read by one refiner (key ["x","x"]): the slower path counts, once
    r = evaluate_graph(store, "a=solve(M,4); b=solve(M,1); r=refine(M,2|a,b)", replicates=5)
    assert r.nodes[2].fallback_rate == 0.0
    assert r.latency == pytest.approx(40.5 + 9 + 4)
    assert r.flops == pytest.approx(2e9 * r.tokens) and r.per_question_latency.shape == (1,)
    # a key that was not collected falls back to the largest pool and says so
    r = evaluate_graph(store, "a=solve(M,1); b=solve(M,1); c=solve(M,1); r=refine(M,1|a,b,c)", replicates=4)
    assert r.nodes[3].fallback_rate == 1.0 and r.fallback_rate == 1.0
    # a vote over output nodes
    r = evaluate_graph(store, "s=solve(M,1); r=refine(M,2|s); t=refine(M,2|s); output=vote(s,r,t)", replicates=2)
    assert r.score == 1.0
    # a latency limit makes it infeasible, not scored
    r = evaluate_graph(store, "s=solve(M,4)", replicates=2, latency_limit=10.0)
    assert not r.feasible and math.isnan(r.score) and r.latency > 10
    # throughput given at replay time replaces the manifest's
    r = evaluate_graph(store, "s=solve(M,4)", replicates=2, throughput={"M": (50.0, 100.0)})
    assert r.latency == pytest.approx(1 + 4)


def test_estimate_is_close_to_the_replayed_cost():
    store = replay.open(TRACES / "sim-mmlu")
    g = "s1=solve(Llama-3.1-8B,3); s2=solve(Qwen2.5-7B,2); a=aggregate(Llama-3.1-8B,2|s1,s2)"
    units, latency = estimate_graph(store, g, questions="train")
    r = evaluate_graph(store, g, questions="train", replicates=64)
    assert units == pytest.approx(r.units, rel=0.05) and latency == pytest.approx(r.latency, rel=0.1)


# ---------------------------------------------------------------------------------------------
# The format: version 2, a reader for version 1, bad graph stores


def test_version_1_stores_are_read_and_new_stores_are_version_2(tmp_path):
    raw = json.loads((TRACES / "sim-2wiki" / "manifest.json").read_text())
    assert raw["format_version"] == 1 and "kind" not in raw
    st = replay.open(TRACES / "sim-2wiki")
    assert st.manifest.kind == "chain" and st.manifest.format_version == 1
    assert all(m.prefill_tokens_per_s is None for m in st.models)
    out = write_store(tmp_path / "again", st.manifest, st.questions, st.samples, stage_golds=st.stage_golds)
    again = json.loads((out / "manifest.json").read_text())
    assert again["format_version"] == 2 and again["kind"] == "chain"
    bad = tmp_path / "v9"
    import shutil

    shutil.copytree(out, bad)
    (bad / "manifest.json").write_text(json.dumps({**again, "format_version": 9}))
    with pytest.raises(StoreError, match="format_version is 9; this tool reads versions 1, 2"):
        replay.open(bad)


def _rewrite(src: Path, dst: Path, *, manifest=None, samples=None) -> Path:
    import shutil

    shutil.copytree(src, dst)
    raw = json.loads((dst / "manifest.json").read_text())
    raw.pop("checksums", None)  # an edited store is unsealed: what is tested is validation, not the seal
    (dst / "manifest.json").write_text(json.dumps(manifest(raw) if manifest is not None else raw))
    if samples is not None:
        samples(pl.read_parquet(dst / "samples.parquet")).write_parquet(dst / "samples.parquet")
    return dst


def test_bad_graph_stores_are_one_line_naming_the_file(tmp_path, capsys):
    from replay.cli import main

    good = _tiny_graph_store(tmp_path / "good")
    cases = [
        (_rewrite(good, tmp_path / "k1", samples=lambda s: s.with_columns(
            pl.when(pl.col("context") == '["x"]').then(pl.lit("x")).otherwise(pl.col("context")).alias("context"))),
         "samples.parquet", "does not parse"),
        (_rewrite(good, tmp_path / "k2", samples=lambda s: s.with_columns(
            pl.when(pl.col("context") == '["x"]').then(pl.lit('["x" ]')).otherwise(pl.col("context")).alias("context"))),
         "samples.parquet", "canonical form"),
        (_rewrite(good, tmp_path / "k3", samples=lambda s: s.filter(pl.col("stage") != "refine")),
         "samples.parquet", "empty pool"),
        (_rewrite(good, tmp_path / "k4", manifest=lambda m: {**m, "stages": m["stages"][::-1]}),
         "manifest.json", "first role must be 'solve'"),
        (_rewrite(good, tmp_path / "k5", manifest=lambda m: {**m, "stages": m["stages"] + [{"name": "critique"}]}),
         "manifest.json", "unknown role 'critique'"),
        (_rewrite(good, tmp_path / "k6", manifest=lambda m: {**m, "kind": "tree"}), "manifest.json", "kind is 'tree'"),
        (_rewrite(good, tmp_path / "k7", manifest=lambda m: {**m, "models": [{**m["models"][0], "decode_tokens_per_s": -1}]}),
         "manifest.json", "decode_tokens_per_s must be a positive number"),
    ]
    for path, fname, needle in cases:
        code, out, err = run_main(main, ["info", str(path)], capsys)
        lines = [ln for ln in err.splitlines() if not ln.startswith("note:")]
        assert code == 2 and len(lines) == 1, (path, err)
        assert fname in lines[0] and needle in lines[0], (needle, lines[0])


def test_input_keys_are_canonical():
    assert input_key(["7", "12", "7"]) == '["12","7","7"]'
    assert parse_input_key('["12","7","7"]') == ["12", "7", "7"]
    for bad in ("", "[]", '["7","12"]', '"7"', '[1]', '["a", "b"]'):
        with pytest.raises(ValueError):
            parse_input_key(bad)


def test_graph_results_carry_the_question_interval_and_follow_the_budget_rule(capsys):
    from replay.cli import main
    from replay.stats import question_interval

    store = replay.open(TRACES / "sim-mmlu")
    g = "s1=solve(Llama-3.1-8B,3); s2=solve(Qwen2.5-7B,2); a=aggregate(Llama-3.1-8B,2|s1,s2)"
    r, one = evaluate_graphs(store, [g, "s=solve(Qwen2.5-3B,1)"], questions="train", replicates=16)
    ci = question_interval(r.per_question)
    assert (r.ci_lo, r.ci_hi) == (ci.lo, ci.hi) and r.ci_lo < r.score < r.ci_hi
    assert r.ci_hi - r.ci_lo > 4 * r.stderr  # on 50 questions the interval over questions dominates
    d = one.difference(r)
    assert d.hi < 0 and d.hi - d.lo < (one.ci_hi - one.ci_lo) + (r.ci_hi - r.ci_lo)
    # the budget rule: feasibility by the expected cost over the store's questions, the same on
    # train and test, whatever these draws cost
    units, latency = estimate_graph(store, g)
    for budget, ok in ((units * 1.001, True), (units * 0.999, False)):
        for split in ("train", "test"):
            x = evaluate_graph(store, g, questions=split, replicates=4, budget=budget)
            assert x.feasible is ok and x.expected_units == pytest.approx(units, rel=1e-12), (budget, split)
            assert ok or (math.isnan(x.score) and math.isnan(x.ci_lo) and x.per_question is None)
    assert evaluate_graph(store, g, replicates=4, latency_limit=latency * 0.999).feasible is False
    # a latency limit needs every model's throughput
    chain = replay.open(TRACES / "sim-2wiki")
    with pytest.raises(ConfigError, match="'Llama-3.1-8B' has no throughput"):
        evaluate_graph(chain, Graph.from_chain("Llama-3.1-8B:1,Llama-3.1-8B:1", chain), replicates=2, latency_limit=10.0)
    # the CLI: the interval in the table and the JSON, paired differences in replay compare
    code, out, err = run_main(main, ["eval", str(TRACES / "sim-mmlu"), "-c", g, "-r", "4", "--json"], capsys)
    row = json.loads(out.strip().splitlines()[0])
    assert code == 0 and row["ci_lo"] < row["score"] < row["ci_hi"] and row["ci_method"] == "wilson-neff"
    code, out, err = run_main(main, ["eval", str(TRACES / "sim-mmlu"), "-c", g, "-r", "4"], capsys)
    assert code == 0 and "95% CI (questions)" in out and "interval over the 150 questions" in out
    code, out, err = run_main(main, ["compare", str(TRACES / "sim-mmlu"), g, "s=solve(Qwen2.5-3B,1)", "-r", "4"], capsys)
    assert code == 0 and "(reference)" in out and out.count(" yes") + out.count(" no") >= 1, out
