"""GPU replay checked on Numba's CUDA simulator: run by tests/test_gpu_replay.py in a process of
its own, since the simulator must be switched on (NUMBA_ENABLE_CUDASIM=1) before numba.cuda is
first imported, and the other tests' processes must keep the real CPU kernels.

Each check raises on a difference and prints `ok NAME` when it holds; the tests read those
lines. The stores are tiny: the simulator runs every GPU thread as a Python thread.

    NUMBA_ENABLE_CUDASIM=1 python tests/gpu_sim_checks.py [CHECK ...]
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    raise SystemExit("run with NUMBA_ENABLE_CUDASIM=1 (tests/test_gpu_replay.py does)")

sys.path.insert(0, str(Path(__file__).parent))
# NumPy scalars warn on the wrap-around that the 64-bit hashes rely on (the simulator runs the
# kernels' integer arithmetic as NumPy scalars; the compiled kernels wrap silently)
warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)

import numpy as np  # noqa: E402

import replay  # noqa: E402
from replay.engine import (Config, StageChoice, evaluate_batch, largest_pool, memo_tables, replay_sums,  # noqa: E402
                           scan_space)
from replay.reference import evaluate_reference  # noqa: E402
from storekit import RandomStoreSpec, make_random_store  # noqa: E402

SUM_FIELDS = ("score_q", "score_r", "tokens", "flops", "st_score", "st_tokens", "st_fallback")
TMP = Path(tempfile.mkdtemp(prefix="gpu-sim-"))
atexit.register(shutil.rmtree, TMP, ignore_errors=True)

# every aggregation and score rule, chained, with conditional and independent stages
SPECS = {
    "fuse-set-best": RandomStoreSpec(seed=1, n_questions=3, aggregations=("set_vote", "llm_fuse", "best_score"),
                                     float_scores=True, score_rule="product"),
    "majority-chain": RandomStoreSpec(seed=2, n_questions=3, aggregations=("majority_vote", "majority_vote"),
                                      independent=(False, True), score_rule="mean", n_answers=2),
    "all-rule": RandomStoreSpec(seed=3, n_questions=3, aggregations=("majority_vote", "llm_fuse"), score_rule="all",
                                context_keep=0.5),
    "one-stage": RandomStoreSpec(seed=4, n_questions=4, aggregations=("majority_vote",), max_pool=7, n_answers=4),
}
_stores: dict = {}


def store(name):
    if name not in _stores:
        _stores[name] = replay.open(make_random_store(TMP / name, SPECS[name]))
    return _stores[name]


def configs(st, k, seed=0):
    """k random configurations, counts from 1 to past the largest pool."""
    rng = np.random.default_rng(seed)
    lp = largest_pool(st)
    out = []
    for _ in range(k):
        ch = []
        for s in range(len(st.stages)):
            m = str(rng.choice(st.candidate_models(s)))
            ch.append(StageChoice(m, int(rng.integers(1, int(lp[s, st.model_index(m)]) + 2))))
        out.append(Config(tuple(ch)))
    return out


def same_sums(a, b, what):
    for f in SUM_FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        if not np.array_equal(x, y, equal_nan=True):
            raise AssertionError(f"{what}: {f} differs\ncpu {x}\ngpu {y}")


def check_sums():
    """replay_sums on the GPU equals the CPU's bit for bit, method for method (memo, direct,
    and 'auto', which picks the same method on both), and the reference to rounding."""
    for name in SPECS:
        st = store(name)
        cfgs = configs(st, 5)
        qidx = np.arange(st.arrays.n_questions)
        for method in ("memo", "direct", "auto"):
            cpu = replay_sums(st, cfgs, qidx, replicates=3, seed=7, method=method, device="cpu")
            gpu = replay_sums(st, cfgs, qidx, replicates=3, seed=7, method=method, device="cuda")
            assert gpu.method == f"{cpu.method}-cuda", (cpu.method, gpu.method)
            same_sums(cpu, gpu, f"{name} ({method})")
        for ci, cfg in enumerate(cfgs):
            score, tokens, flops, st_score, st_tokens, st_fb = evaluate_reference(
                st.arrays, [st.model_index(c.model) for c in cfg.stages], [c.samples for c in cfg.stages], qidx, 3, 7)
            close = lambda g, w, what: np.testing.assert_allclose(  # noqa: E731
                g, w, rtol=1e-12, atol=1e-9, equal_nan=True, err_msg=f"{name} {cfg}: {what} differs from the reference")
            close(gpu.score_q[ci], score.sum(axis=1), "score per question")
            close(gpu.score_r[ci], score.sum(axis=0), "score per replicate")
            close(gpu.tokens[ci], tokens.sum(), "tokens")
            close(gpu.flops[ci], flops.sum(), "flops")
            close(gpu.st_score[ci], st_score.sum(axis=1), "stage scores")
            close(gpu.st_fallback[ci], st_fb.sum(axis=1), "stage fallbacks")


def check_chunks():
    """Memo chunks of one question, lookup chunks of one configuration, direct chunks of one
    group: the same sums."""
    import replay.engine as engine
    from replay.gpu import host

    st = store("fuse-set-best")
    cfgs = configs(st, 4, seed=1) + configs(st, 2, seed=1)  # repeats share groups
    qidx = np.arange(st.arrays.n_questions)
    want = {m: replay_sums(st, cfgs, qidx, replicates=2, seed=3, method=m, device="cpu") for m in ("memo", "direct")}
    host.MEMO_ENTRIES, host.LOOKUP_BYTES, cells = 1, 1, engine.MAX_CELLS
    engine.MAX_CELLS = 1
    try:
        for m in ("memo", "direct"):
            same_sums(want[m], replay_sums(st, cfgs, qidx, replicates=2, seed=3, method=m, device="cuda"),
                      f"{m}, one question / configuration / group per chunk")
    finally:
        host.MEMO_ENTRIES, host.LOOKUP_BYTES, engine.MAX_CELLS = None, 1 << 30, cells


def check_memo():
    """The memo tables themselves, built on the GPU, equal the CPU's entry for entry."""
    st = store("fuse-set-best")
    nmax = largest_pool(st)
    qidx = np.arange(st.arrays.n_questions)
    cpu = memo_tables(st, nmax, qidx, replicates=2, seed=5)
    gpu = memo_tables(st, nmax, qidx, replicates=2, seed=5, device="cuda")
    for f in ("pool_row", "row_nmax", "row_base", "ans", "score", "tok", "flag"):
        x, y = getattr(cpu, f), getattr(gpu, f)
        if not np.array_equal(x, y, equal_nan=True):
            raise AssertionError(f"memo {f} differs")


def _choices(st, top=None):
    lp = largest_pool(st)
    return [[StageChoice(m, n) for m in st.candidate_models(s)
             for n in range(1, min(top or 99, int(lp[s, st.model_index(m)])) + 1)] for s in range(len(st.stages))]


def check_scan():
    """The exhaustive scan on the GPU equals the CPU's, so do its per-question sums (the grid
    searcher's selection rules), and the streamed best per budget (in chunks) equals the best of
    the whole scan, on either device."""
    from replay.scan_top import scan_top

    for name in ("majority-chain", "all-rule"):
        st = store(name)
        ch = _choices(st, top=4)
        cpu = scan_space(st, ch, replicates=3, seed=2, device="cpu")
        gpu = scan_space(st, ch, replicates=3, seed=2, device="cuda")
        for f in ("score", "stderr", "units", "ci_lo", "ci_hi", "expected", "prefix_idx"):
            if not np.array_equal(getattr(cpu, f), getattr(gpu, f), equal_nan=True):
                raise AssertionError(f"{name}: scan {f} differs")
        # the per-question sums behind the grid searcher's selection rules
        from replay.scan_stats import question_sums

        ref = np.linspace(0.0, 1.0, st.arrays.n_questions)
        qa, qb = (question_sums(st, cpu, questions=None, replicates=3, seed=2, reference=ref, device=d)
                  for d in ("cpu", "cuda"))
        for f in ("s1", "s2", "d1", "d2"):
            if not np.array_equal(getattr(qa, f), getattr(qb, f)):
                raise AssertionError(f"{name}: question sums {f} differ")
        # and they are sums of end-to-end scores by the store's rule (mean, all), as the scan's
        if not np.allclose(qa.s1 / st.arrays.n_questions, cpu.score, rtol=0, atol=1e-12):
            raise AssertionError(f"{name}: question sums do not follow the score rule {st.manifest.score_rule}")
        budget = float(np.median(cpu.expected))
        tops = [scan_top(st, ch, budgets=[None, budget], top=3, replicates=3, seed=2, device=dev, chunk_cells=5)
                for dev in ("cpu", "cuda")]
        assert tops[1].device == "cuda" and tops[0].device == "cpu"
        assert tops[0].best == tops[1].best, "scan_top differs between devices"
        for b, bud in enumerate([None, budget]):
            want = cpu.best(bud)
            got = tops[1].best[b][0]
            assert (got.config, got.score, got.units) == want, (got, want)
            assert tops[1].feasible[b] == int((cpu.expected <= (np.inf if bud is None else bud * (1 + 1e-9))).sum())


def check_evaluate():
    """evaluate_batch's results (score, errors, intervals, costs, per question) are the same."""
    st = store("majority-chain")
    cfgs = configs(st, 4, seed=2)
    a = evaluate_batch(st, cfgs, replicates=4, seed=1, device="cpu")
    b = evaluate_batch(st, cfgs, replicates=4, seed=1, device="cuda")
    for x, y in zip(a, b):
        assert x == y, (x, y)  # the frozen dataclass compares every field but per_question
        assert np.array_equal(x.per_question, y.per_question)


def check_auto():
    """'auto' takes the GPU (here, the simulator) only for large work; None reads the env."""
    from replay.gpu import AUTO_MIN_DRAWS, resolve_device

    assert resolve_device("auto", work=10.0) == "cpu"
    assert resolve_device("auto", work=AUTO_MIN_DRAWS) == "cuda"
    st = store("one-stage")
    cfgs = configs(st, 2)
    qidx = np.arange(st.arrays.n_questions)
    assert replay_sums(st, cfgs, qidx, replicates=2, seed=0, device="auto").method.endswith("-cuda") is False
    os.environ["TTS_REPLAY_DEVICE"] = "cuda"
    try:
        assert replay_sums(st, cfgs, qidx, replicates=2, seed=0).method.endswith("-cuda")
    finally:
        del os.environ["TTS_REPLAY_DEVICE"]


def check_cli():
    """`replay sweep --device cuda` writes the same table as --device cpu; `replay scan` the same
    best configurations."""
    import polars as pl
    from click.testing import CliRunner

    from replay.cli import cli

    st = store("one-stage")
    outs = []
    for dev in ("cpu", "cuda"):
        out = TMP / f"sweep-{dev}.parquet"
        res = CliRunner().invoke(cli, ["sweep", str(TMP / "one-stage"), "--out", str(out), "--replicates", "3",
                                       "--max-samples", "3", "--device", dev])
        assert res.exit_code == 0, res.output
        outs.append(pl.read_parquet(out))
    assert outs[0].equals(outs[1], null_equal=True), "sweep tables differ"
    assert len(outs[0]) == sum(min(3, int(x)) for x in largest_pool(st)[0] if x > 0)
    import json

    docs = []
    for dev in ("cpu", "cuda"):
        out = TMP / f"scan-{dev}.json"
        res = CliRunner().invoke(cli, ["scan", str(TMP / "majority-chain"), "--json", str(out), "--replicates", "3",
                                       "--top", "3", "--max-samples", "3", "--device", dev])
        assert res.exit_code == 0, res.output
        docs.append(json.loads(out.read_text()))
    assert docs[0].pop("device") == "cpu" and docs[1].pop("device") == "cuda"
    assert docs[0] == docs[1], "replay scan differs between devices"


# ---------------------------------------------------------------------------------------------
# Graph replay (replay/gpu/graph_kernels.py)

GRAPH_FIELDS = ("score_q", "tokens_q", "flops_q", "latency_q", "score_r", "node")
# graph stores (solve/refine/aggregate; majority or best-score roles, 0/1 or float scores, keys
# often not collected: fallbacks), and chain stores whose stages serve as roles (set votes,
# stored fusions, best score)
GRAPH_SPECS = {
    "g-majority": ("graph", dict(seed=1, n_questions=3, n_models=2, max_pool=4, n_answers=2, key_keep=0.6)),
    "g-best": ("graph", dict(seed=2, n_questions=3, n_models=2, max_pool=5, aggregation="best_score",
                             float_scores=True, key_keep=0.3, max_key=2)),
    "c-set-fuse": ("chain", dict(seed=3, n_questions=3, aggregations=("set_vote", "llm_fuse", "best_score"), n_models=2,
                                 max_pool=4, n_answers=3)),
}


def graph_store(name):
    if name not in _stores:
        kind, kw = GRAPH_SPECS[name]
        if kind == "graph":
            from graphkit import RandomGraphStoreSpec, make_random_graph_store

            _stores[name] = replay.open(make_random_graph_store(TMP / name, RandomGraphStoreSpec(**kw)))
        else:
            _stores[name] = replay.open(make_random_store(TMP / name, RandomStoreSpec(**kw)))
    return _stores[name]


def graphs_of(st, k, seed):
    """k random graphs: on a graph store graphkit's (1-5 nodes, a vote over several sinks); on a
    chain store one node per stage reading 1-2 earlier nodes, every sink an output."""
    from graphkit import random_chain_graph, random_graph

    rng = np.random.default_rng(seed)
    if st.manifest.kind == "graph":
        return [random_graph(st, rng) for _ in range(k)]
    return [random_chain_graph(st, rng) for _ in range(k)]


def same_graph_sums(a, b, what):
    for f in GRAPH_FIELDS:
        if not np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True):
            raise AssertionError(f"{what}: {f} differs\ncpu {getattr(a, f)}\ngpu {getattr(b, f)}")
    for f, x, y in zip(("score", "tokens", "flops", "latency"), a.detail, b.detail):
        if not np.array_equal(x, y, equal_nan=True):
            raise AssertionError(f"{what}: detail {f} differs")


def graph_reference(st, graphs, sums, qidx, R, seed, what):
    """Every graph's per-(question, replicate) figures equal the pure-Python reference's, its
    per-node sums to rounding."""
    from replay.graph.inputs import graph_inputs, seconds_per_token
    from replay.graph.reference import evaluate_graph_reference

    G = graph_inputs(st)
    pre, dec = seconds_per_token(st)
    u = 0
    for b, g in enumerate(graphs):
        idx = {n.name: i for i, n in enumerate(g.nodes)}
        arr = ([st.stage_index(n.role) for n in g.nodes], [st.model_index(n.model) for n in g.nodes],
               [n.samples for n in g.nodes], [[idx[p] for p in n.inputs] for n in g.nodes], [idx[o] for o in g.output])
        want = evaluate_graph_reference(st.arrays, G, pre, dec, arr, qidx, R, seed)
        for name, got, w in zip(("score", "tokens", "flops", "latency"), (x[b] for x in sums.detail), want[:4]):
            if not np.array_equal(got, w, equal_nan=True):
                raise AssertionError(f"{what}: {name} differs from the reference for {g}")
        K = len(g.nodes)
        for j in range(4):
            np.testing.assert_allclose(sums.node[u:u + K, j], want[4 + j], rtol=1e-12, atol=1e-9,
                                       err_msg=f"{what}: node figure {j} differs from the reference for {g}")
        u += K


def check_graph():
    """graph_sums on the GPU equals the CPU kernel's, every array bit for bit (with the CPU's
    memo and without), and the pure-Python reference; the stores have fallbacks, multi-output
    votes, majority, best-score, set-vote and fusion roles; results of evaluate_graphs too."""
    from replay.graph.engine import evaluate_graphs, graph_sums

    for k, name in enumerate(GRAPH_SPECS):
        st = graph_store(name)
        gs = graphs_of(st, 4, seed=k)
        qidx = np.arange(st.arrays.n_questions)
        gpu = graph_sums(st, gs, qidx, replicates=3, seed=9, detail=True, device="cuda")
        for memo in ("auto", "never", "always"):
            cpu = graph_sums(st, gs, qidx, replicates=3, seed=9, detail=True, memo=memo, device="cpu")
            same_graph_sums(cpu, gpu, f"{name} (cpu memo={memo})")
        graph_reference(st, gs, gpu, qidx, 3, 9, name)
        if not any(len(g.output) > 1 for g in gs) and name.startswith("g-"):
            raise AssertionError(f"{name}: no graph with a vote over several outputs")
        if not gpu.node[:, 3].any():
            raise AssertionError(f"{name}: no fallback exercised")
    st = graph_store("g-majority")
    gs = graphs_of(st, 3, seed=7)
    a = evaluate_graphs(st, gs, replicates=2, seed=1, device="cpu")
    b = evaluate_graphs(st, gs, replicates=2, seed=1, device="cuda")
    for x, y in zip(a, b):
        same_result(x, y)


def same_result(x, y):
    """Two GraphResults equal in every field (repr: exact floats, NaN equal to NaN) and per question."""
    assert repr(x) == repr(y), (x, y)
    for f in ("per_question", "per_question_tokens", "per_question_latency"):
        assert np.array_equal(getattr(x, f), getattr(y, f), equal_nan=True), f


def check_graph_chunks():
    """Several CPU chunks of questions (a parallel run's) and one question per GPU memory chunk:
    the same arrays, score_r and node sums included (carried across memory chunks)."""
    import numba

    import replay.graph.engine as engine
    from replay.gpu import graph_host
    from replay.graph.engine import graph_sums

    st = replay.open(make_graph_store_10())
    gs = graphs_of(st, 3, seed=4)
    qidx = np.arange(st.arrays.n_questions)
    serial, threads = engine.SERIAL_WORK, numba.get_num_threads
    engine.SERIAL_WORK, numba.get_num_threads = -1, (lambda: 2)  # n_chunks = min(Q, 8): chunks of 1-2 questions
    graph_host.GRAPH_BYTES = 1
    try:
        cpu = graph_sums(st, gs, qidx, replicates=2, seed=4, detail=True, device="cpu")
        gpu = graph_sums(st, gs, qidx, replicates=2, seed=4, detail=True, device="cuda")
    finally:
        engine.SERIAL_WORK, numba.get_num_threads, graph_host.GRAPH_BYTES = serial, threads, None
    same_graph_sums(cpu, gpu, "8 chunks of questions, one question per memory chunk")


def make_graph_store_10():
    from graphkit import RandomGraphStoreSpec, make_random_graph_store

    return make_random_graph_store(TMP / "g-ten", RandomGraphStoreSpec(seed=5, n_questions=10, max_pool=3))


def check_graph_chain():
    """Chain configurations as graphs on the GPU give the chain engine's numbers (to rounding:
    the chain engine sums in another order) and the CPU graph engine's exactly."""
    from replay.graph import Graph
    from replay.graph.engine import evaluate_graphs

    st = graph_store("c-set-fuse")  # set vote, stored fusions, best score; the score rule 'last'
    lp = largest_pool(st)
    cfgs = [Config(tuple(StageChoice(c.model, min(c.samples, int(lp[s, st.model_index(c.model)])))
                         for s, c in enumerate(cfg.stages))) for cfg in configs(st, 4, seed=3)]
    chain = evaluate_batch(st, cfgs, replicates=3, seed=2, device="cpu")
    gs = [Graph.from_chain(c, st) for c in cfgs]
    cpu = evaluate_graphs(st, gs, replicates=3, seed=2, device="cpu")
    gpu = evaluate_graphs(st, gs, replicates=3, seed=2, device="cuda")
    for c, x, y in zip(chain, cpu, gpu):
        same_result(x, y)
        for f in ("score", "tokens", "flops", "units"):
            if not np.isclose(getattr(c, f), getattr(y, f), rtol=1e-12, atol=1e-12):
                raise AssertionError(f"{c.config}: {f} {getattr(c, f)} (chain) != {getattr(y, f)} (graph on the GPU)")
        np.testing.assert_allclose(c.per_question, y.per_question, rtol=1e-12, atol=0)


def check_graph_device():
    """Graphs follow 'auto' (the CPU for small work) and $TTS_REPLAY_DEVICE (how `search
    --device` reaches a graph search); `replay eval` and `replay sweep --grid --device cuda` on a
    graph store print and write what --device cpu does."""
    import polars as pl
    from click.testing import CliRunner

    from replay.cli import cli
    from replay.gpu import graph_host
    from replay.graph.engine import evaluate_graphs

    st = graph_store("g-majority")
    gs = graphs_of(st, 2, seed=11)
    calls = []
    real = graph_host.graph_replay

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    graph_host.graph_replay = counted
    try:
        evaluate_graphs(st, gs, replicates=2, device="auto")
        assert not calls, "auto took the GPU for a tiny batch"
        os.environ["TTS_REPLAY_DEVICE"] = "cuda"
        try:
            evaluate_graphs(st, gs, replicates=2)
        finally:
            del os.environ["TTS_REPLAY_DEVICE"]
        assert calls, "TTS_REPLAY_DEVICE=cuda did not reach graph replay"
        n = len(calls)
        st.evaluate_batch(gs, replicates=2, device="cuda")
        assert len(calls) > n, "Store.evaluate_batch(device='cuda') on a graph store did not use the GPU"
    finally:
        graph_host.graph_replay = real
    path = str(TMP / "g-majority")
    texts = [str(g) for g in gs]
    outs = []
    for dev in ("cpu", "cuda"):
        args = ["eval", path, "-r", "2", "--json", "--device", dev]
        for t in texts:
            args += ["-c", t]
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 0, res.output
        outs.append(res.output)
    assert outs[0] == outs[1], "replay eval differs between devices on a graph store"
    grid = TMP / "grid.txt"
    grid.write_text("\n".join(texts) + "\n")
    tables = []
    for dev in ("cpu", "cuda"):
        out = TMP / f"gsweep-{dev}.parquet"
        res = CliRunner().invoke(cli, ["sweep", path, "--grid", str(grid), "--out", str(out), "-r", "2", "--device",
                                       dev])
        assert res.exit_code == 0, res.output
        tables.append(pl.read_parquet(out))
    assert tables[0].equals(tables[1], null_equal=True), "graph sweep tables differ"


CHECKS = {"sums": check_sums, "chunks": check_chunks, "memo": check_memo, "scan": check_scan,
          "evaluate": check_evaluate, "auto": check_auto, "cli": check_cli, "graph": check_graph,
          "graph-chunks": check_graph_chunks, "graph-chain": check_graph_chain, "graph-device": check_graph_device}

if __name__ == "__main__":
    for name in sys.argv[1:] or list(CHECKS):
        CHECKS[name]()
        print(f"ok {name}", flush=True)
