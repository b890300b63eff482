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


CHECKS = {"sums": check_sums, "chunks": check_chunks, "memo": check_memo, "scan": check_scan,
          "evaluate": check_evaluate, "auto": check_auto, "cli": check_cli}

if __name__ == "__main__":
    for name in sys.argv[1:] or list(CHECKS):
        CHECKS[name]()
        print(f"ok {name}", flush=True)
