"""Replay speed on traces/aime24: compiled kernels against the pure-Python reference.

    python benchmarks/replay_speed.py            # the AIME work, then the synthetic scale run
    python benchmarks/replay_speed.py --no-scale # the AIME work only

The work is that of the AutoTTS README's table: 30 questions x 100 random orders, majority vote
at 1, 8 and 64 samples, every model, each (model, count) evaluated on its own. A draw is one
sample taken into one aggregate. Targets (issue 2): >= 200 M draws/s per core, >= 100x the
reference, and a full sweep of the store (4 models x 128 counts x 100 replicates, ~10^8 draws
if each count were evaluated alone) in under 0.1 s, which needs the shared pass along the
shuffle that `evaluate_batch` and `replay sweep` use.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import replay  # noqa: E402
from replay import kernels  # noqa: E402
from replay.engine import Config, evaluate_batch, kernel_inputs, replay_arrays  # noqa: E402
from replay.reference import evaluate_reference  # noqa: E402

COUNTS = (1, 8, 64)
REPLICATES = 100


def best_of(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(scale: bool = True) -> None:
    store = replay.open(ROOT / "traces" / "aime24")
    a = store.arrays
    models = store.manifest.model_names
    qidx = np.arange(a.n_questions, dtype=np.int64)
    n_q = len(qidx)
    draws = n_q * REPLICATES * sum(COUNTS) * len(models)
    evals = len(models) * len(COUNTS)  # one evaluation = one config over 30 questions x 100 replicates
    threads = numba.get_num_threads()
    print(f"traces/aime24: {n_q} questions, {len(models)} models; {REPLICATES} replicates; counts {COUNTS}")
    print(f"work: {evals} evaluations, {draws:,} draws; Numba threads: {threads}\n")

    # 1. the plain single-threaded loop (no sharing across counts)
    pools = np.array([[a.qsm_pool_off[(q * a.n_stages) * a.n_models + m] for q in qidx] for m in range(len(models))])
    counts = np.array(COUNTS, dtype=np.int64)
    out = np.zeros((len(models), len(counts)))
    A = kernel_inputs(store)
    s_packed, pack_bits = A.s_packed, A.pack_bits

    def plain():
        kernels.majority_draw_loop(a.question_hash, a.pool_off, s_packed, pack_bits, a.s_score, qidx, pools,
                                   REPLICATES, np.uint64(0), counts, out)

    plain()
    t_plain = best_of(plain)

    # 2. the engine: the 12 configs in one call, each evaluated alone (no sharing across
    # counts), parallel over (config, question)
    cfgs = [Config.of((m, n)) for m in models for n in COUNTS]

    def engine_alone():
        replay_arrays(store, cfgs, qidx, replicates=REPLICATES, seed=0, share_prefix=False)

    engine_alone()
    t_engine = best_of(engine_alone)

    # 3. the pure-Python reference, same work, same random numbers
    t = time.perf_counter()
    ref = []
    for c in cfgs:
        sc = evaluate_reference(a, [store.model_index(c.stages[0].model)], [c.stages[0].samples], qidx, REPLICATES, 0)[0]
        ref.append(sc.mean())
    t_ref = time.perf_counter() - t
    assert np.allclose(np.array(ref).reshape(len(models), len(COUNTS)), out), "kernel and reference disagree"

    print(f"{'implementation':<44}{'time':>10}{'draws/s':>14}{'evals/s':>11}{'vs reference':>14}")
    rows = [
        ("plain Numba loop, 1 thread", t_plain),
        (f"engine, one call, {threads} threads, no sharing", t_engine),
        ("pure-Python reference", t_ref),
    ]
    for name, tt in rows:
        print(f"{name:<44}{tt * 1e3:>8.2f}ms{draws / tt / 1e6:>12.1f} M{evals / tt:>11.0f}{t_ref / tt:>13.0f}x")

    # 4. the full sweep, one shared pass per model
    sweep = [Config.of((m, n)) for m in models for n in range(1, 129)]
    evaluate_batch(store, sweep, replicates=REPLICATES, seed=0)
    t_sweep = best_of(lambda: evaluate_batch(store, sweep, replicates=REPLICATES, seed=0))
    alone_draws = n_q * REPLICATES * len(models) * sum(range(1, 129))
    print(f"\nfull sweep: {len(sweep)} configs x {n_q} questions x {REPLICATES} replicates "
          f"({alone_draws:,} draws if each count were evaluated alone) in {t_sweep * 1e3:.1f} ms "
          f"= {alone_draws / t_sweep / 1e9:.2f} G equivalent draws/s")

    per_core = draws / t_plain / 1e6
    print("\ntargets:")
    print(f"  plain loop >= 200 M draws/s per core:   {per_core:8.1f} M   {'PASS' if per_core >= 200 else 'FAIL'}")
    engine_core = draws / t_engine / threads / 1e6
    print(f"  engine, per core (one call, no sharing):     {engine_core:8.1f} M")
    ratio = t_ref / min(t_plain, t_engine)
    print(f"  kernels >= 100x the reference:          {ratio:8.0f}x   {'PASS' if ratio >= 100 else 'FAIL'}")
    print(f"  full sweep < 0.1 s:                      {t_sweep:8.3f} s   {'PASS' if t_sweep < 0.1 else 'FAIL'}")

    if scale:
        scale_script = ROOT / "benchmarks" / "replay_scale.py"
        if not scale_script.exists():
            print("\n(benchmarks/replay_scale.py not present: no synthetic scale run)")
            return
        sys.path.insert(0, str(scale_script.parent))
        from replay_scale import run_scale

        print("\n--- synthetic scale run (SYNTHETIC store) ---")
        run_scale(print=print)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-scale", action="store_true", help="skip the synthetic 500-question store")
    main(scale=not ap.parse_args().no_scale)
