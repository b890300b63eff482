"""GPU replay (replay/gpu): the same numbers as the CPU engine, checked on Numba's CUDA simulator
in a process of its own (tests/gpu_sim_checks.py: the simulator must be on before numba.cuda is
imported, and this process keeps the real CPU kernels); device selection and its errors."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import replay
from replay.engine import StageChoice, largest_pool, scan_space
from replay.errors import ConfigError

from storekit import RandomStoreSpec, make_random_store

HERE = Path(__file__).parent
ROOT = HERE.parent
CHECKS = ("sums", "chunks", "memo", "scan", "evaluate", "auto", "cli", "graph", "graph-chunks", "graph-chain",
          "graph-device")


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_") and k != "TTS_REPLAY_DEVICE"}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def simulated():
    """Every check of gpu_sim_checks.py, run once on the simulator: {check: passed}."""
    proc = subprocess.run([sys.executable, str(HERE / "gpu_sim_checks.py"), *CHECKS], cwd=ROOT, capture_output=True,
                          text=True, timeout=900, env=_env(NUMBA_ENABLE_CUDASIM="1"))
    passed = {line.split()[1] for line in proc.stdout.splitlines() if line.startswith("ok ")}
    return passed, proc.stdout + proc.stderr


@pytest.mark.parametrize("check", CHECKS)
def test_gpu_matches_cpu_on_simulator(simulated, check):
    """sums: replay_sums on the GPU equals the CPU's memo method bit for bit and the reference;
    chunks: so it does with memo and lookup chunks of one; memo: the memo tables; scan: the
    exhaustive scan, and scan_top per budget on both devices; evaluate: evaluate_batch's
    results; auto: device selection; cli: `replay sweep --device cuda` writes the same table.
    graph: graph replay's arrays equal the CPU kernel's bit for bit and the reference (majority,
    best-score, set-vote and fusion roles, fallbacks, votes over several outputs); graph-chunks:
    so they do over several CPU chunks of questions and one question per GPU memory chunk;
    graph-chain: chain configurations as graphs give the chain engine's numbers; graph-device:
    auto, $TTS_REPLAY_DEVICE, Store.evaluate_batch and `replay eval`/`sweep --grid --device cuda`
    on a graph store."""
    passed, output = simulated
    assert check in passed, f"{check} failed on the CUDA simulator:\n{output[-4000:]}"


def _run_cli(args, **env):
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=_env(**env))


def test_cuda_without_gpu_is_one_line_exit_2(tmp_path):
    """--device cuda where numba.cuda finds no GPU: one line naming --device, exit 2, nothing
    written."""
    out = tmp_path / "sweep.parquet"
    proc = _run_cli(["replay.cli", "sweep", "traces/tiny-real-numseq", "--out", str(out), "--device", "cuda"],
                    NUMBA_DISABLE_CUDA="1")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --device: cuda:"), proc.stderr
    assert not out.exists()
    proc = _run_cli(["search.cli", "run", "--replay", "traces/tiny-real-numseq", "--searcher", "grid", "--device",
                     "cuda", "--out", str(tmp_path / "s")], NUMBA_DISABLE_CUDA="1")
    assert proc.returncode == 2 and "error: --device: cuda:" in proc.stderr, proc.stderr
    # a graph store: the same line (graph replay runs on the GPU too)
    proc = _run_cli(["replay.cli", "eval", "traces/sim-math", "-c", "s=solve(Qwen2.5-7B,2)", "-r", "2", "--device",
                     "cuda"], NUMBA_DISABLE_CUDA="1")
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("note:")]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: --device: cuda:"), proc.stderr
    proc = _run_cli(["search.cli", "run", "--replay", "traces/sim-math", "--space", "graph", "--searcher", "random",
                     "--device", "cuda", "--out", str(tmp_path / "g")], NUMBA_DISABLE_CUDA="1")
    assert proc.returncode == 2 and "error: --device: cuda:" in proc.stderr, proc.stderr


def test_auto_without_gpu_runs_on_cpu():
    """'auto' with no GPU is the CPU, whatever the work; an unknown device is refused."""
    code = ("from replay.gpu import resolve_device; import sys; "
            "sys.exit(0 if resolve_device('auto', work=1e30) == 'cpu' else 1)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=_env(NUMBA_DISABLE_CUDA="1"))
    assert proc.returncode == 0, proc.stderr
    from replay.gpu import check_device

    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        check_device("tpu")


def test_scan_top_streams_the_best_of_the_scan(tmp_path):
    """scan_top on the CPU, a few configurations per chunk, keeps per budget exactly the best
    of the whole scan in SpaceScan.best's order (score, then cheapest), and counts the feasible."""
    from replay.scan_top import scan_top

    st = replay.open(make_random_store(tmp_path / "s", RandomStoreSpec(
        seed=5, n_questions=4, aggregations=("majority_vote", "majority_vote"), n_models=2, max_pool=5)))
    lp = largest_pool(st)
    ch = [[StageChoice(m, n) for m in st.candidate_models(s) for n in range(1, int(lp[s, st.model_index(m)]) + 1)]
          for s in range(2)]
    full = scan_space(st, ch, replicates=5, seed=3, device="cpu")
    budgets = [None, float(np.quantile(full.expected, 0.3)), 1e-9]
    top = scan_top(st, ch, budgets=budgets, top=4, replicates=5, seed=3, device="cpu", chunk_cells=7)
    assert top.evaluated == full.score.size and top.device == "cpu"
    for b, budget in enumerate(budgets):
        ok = np.ones_like(full.score, bool) if budget is None else full.expected <= budget * (1 + 1e-9)
        assert top.feasible[b] == int(ok.sum())
        key = np.where(ok, full.score, -np.inf).ravel()
        order = [j for j in np.lexsort((full.units.ravel(), -key)) if ok.ravel()[j]][:4]
        want = [(full.config(*divmod(int(j), full.score.shape[1])), full.score.ravel()[j]) for j in order]
        assert [(t.config, t.score) for t in top.best[b]] == want
    assert top.best[2] == ()


def test_replay_scan_cli(tmp_path, capsys):
    """`replay scan`: the best per budget, its scores those `evaluate` gives the same
    configurations (to rounding: the scan sums in another order), feasible by the budget;
    bad options are one line, exit 2."""
    import json

    from click.testing import CliRunner

    from replay.cli import cli

    path = make_random_store(tmp_path / "s", RandomStoreSpec(seed=8, n_questions=4, aggregations=(
        "majority_vote", "set_vote"), max_pool=5))
    out = tmp_path / "scan.json"
    res = CliRunner().invoke(cli, ["scan", str(path), "--budget", "none", "--budget", "3", "--top", "2",
                                   "--replicates", "4", "--json", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    st = replay.open(path)
    assert doc["device"] == "cpu" and doc["configurations"] == int(np.prod([
        sum(int(largest_pool(st)[s, st.model_index(m)]) for m in st.candidate_models(s)) for s in range(2)]))
    assert [b["budget"] for b in doc["best"]] == [None, None, 3.0, 3.0][: len(doc["best"])]
    for row in doc["best"]:
        ev = st.evaluate(row["config"], replicates=4, seed=0)
        assert ev.score == pytest.approx(row["score"], rel=1e-12, abs=1e-12)
        assert row["budget"] is None or row["expected_units"] <= row["budget"] * (1 + 1e-9)
    from clikit import run_main

    from replay.cli import main

    code, _, err = run_main(main, ["scan", str(path), "--budget", "-1"], capsys)
    assert code == 2 and err.strip().startswith("error: --budget:") and len(err.strip().splitlines()) == 1


def test_kernels_compile_to_ptx():
    """Where numba-cuda and the CUDA compiler (the gpu-replay extra) are installed: every kernel
    compiles for sm_90 with the argument types of real launches, and no fused multiply-add is
    left in the PTX (it would round differently from the CPU). No GPU needed."""
    if importlib.util.find_spec("numba_cuda") is None:
        pytest.skip("numba-cuda not installed (pip install 'tts-replay[gpu-replay]')")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_compile_check.py")], cwd=ROOT,
                          capture_output=True, text=True, timeout=900, env=_env())
    if proc.returncode == 3:
        pytest.skip(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stdout + proc.stderr
