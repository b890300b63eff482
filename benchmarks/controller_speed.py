"""Controller evaluations per second on traces/aime24: compiled (Numba) against the pure-Python
reference (the same controllers, as plain Python classes run by the Python engine), measured in
the same run, same settings and same (question, replicate) episodes, results checked equal.

An episode is one controller setting on one question and one replicate (one random opening
order); an evaluation is one setting on all 30 questions x R replicates.

    python benchmarks/controller_speed.py [--model Qwen3-8B] [--replicates 16] [--threads N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import replay
from replay.controllers import BUILTINS, Setting, step_arrays
from replay.controllers.engine import run_compiled, run_python

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=str(ROOT / "traces" / "aime24"))
    ap.add_argument("--model", default="Qwen3-8B")
    ap.add_argument("--replicates", type=int, default=16, help="replicates per evaluation")
    ap.add_argument("--python-replicates", type=int, default=2, help="replicates the Python reference runs (slow)")
    ap.add_argument("--threads", type=int, default=None, help="Numba threads (default: all cores)")
    args = ap.parse_args()

    import numba

    if args.threads:
        numba.set_num_threads(args.threads)
    store = replay.open(args.store)
    steps = step_arrays(store, args.model)
    q = np.arange(store.arrays.n_questions)
    R, Rp = args.replicates, args.python_replicates
    betas = np.linspace(0, 1, 11)
    run_compiled(steps, [Setting.make("majority", {"n": 1})], q[:1], replicates=1, seed=0)  # compile / load the cache
    print(f"store {store.name}, model {args.model}, {len(q)} questions; numba threads {numba.get_num_threads()}")
    print(f"{'controller':<10} {'compiled eval/s':>16} {'python eval/s':>14} {'ratio':>9}   (episodes/s compiled, python)")
    ratios = []
    for name in BUILTINS:
        settings = [Setting.make(name, beta=float(b)) for b in betas]
        # compiled: all 11 settings x Q x R in one call, repeated until ~1 s has passed
        n_calls, t0 = 0, time.perf_counter()
        while True:
            got = run_compiled(steps, settings, q, replicates=R, seed=0)
            n_calls += 1
            if time.perf_counter() - t0 > 1.0:
                break
        tc = (time.perf_counter() - t0) / n_calls
        comp_eps = len(settings) * len(q) * R / tc
        # python reference: the same settings, fewer replicates (the first Rp of the same episodes)
        t0 = time.perf_counter()
        for c, st in enumerate(settings):
            ref = run_python(steps, st, q, replicates=Rp, seed=0)
            for a, b in zip(got, ref):
                assert np.array_equal(a[c][:, :Rp], b), f"{st.label()}: compiled and reference differ"
        tp = time.perf_counter() - t0
        py_eps = len(settings) * len(q) * Rp / tp
        ratio = comp_eps / py_eps
        ratios.append(ratio)
        per_eval = len(q) * R
        print(f"{name:<10} {comp_eps / per_eval:>16,.1f} {py_eps / per_eval:>14,.2f} {ratio:>8,.0f}x   "
              f"({comp_eps:,.0f}, {py_eps:,.0f})")
    print(f"geometric mean speed-up, compiled over Python reference: {np.exp(np.mean(np.log(ratios))):,.0f}x "
          f"(an evaluation = {len(q)} questions x {R} replicates; results checked equal)")


if __name__ == "__main__":
    main()
