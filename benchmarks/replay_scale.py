"""The replay engine at scale, on a simulated store (synthetic: `collect simulate scale`).

    python benchmarks/replay_scale.py            # about a minute or two on 2 cores
    python benchmarks/replay_scale.py --quick    # smaller sweep, for a smoke run

Prints:
  1. the time `collect simulate` takes for the issue's shape: 500 questions x 3 stages x 6
     models x 128 samples, with conditional pools (target: under a minute);
  2. configurations evaluated per second with 16 replicates on 2 threads, for random
     configurations over all 500 questions and over the 50 training questions, against the
     target of 500 per second (the ratio is printed);
  3. how the time per configuration grows with questions, stages and sample count, each
     against its smallest setting, beside the size ratio (linear growth: the two match).

`run_scale(print=print)` is what benchmarks/replay_speed.py calls.
"""

from __future__ import annotations

import argparse
import builtins
import copy
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_PER_S = 500.0
THREADS = 2
REPLICATES = 16


def _random_configs(store, n: int, rng: np.random.Generator, counts: str = "log") -> list[str]:
    """Random configurations as a searcher proposes them: a random candidate model per stage and
    a sample count log-uniform in [1, 128] ("log") or uniform ("uniform")."""
    out = []
    for _ in range(n):
        parts = []
        for si in range(len(store.stages)):
            cands = store.candidate_models(si)
            top = int(store.max_pool_size[si].max())
            k = int(np.exp(rng.uniform(0, np.log(top + 1)))) if counts == "log" else int(rng.integers(1, top + 1))
            parts.append(f"{cands[rng.integers(len(cands))]}:{max(1, min(top, k))}")
        out.append(",".join(parts))
    return out


def _per_config_s(store, configs, questions=None, repeats: int = 2) -> float:
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        store.evaluate_batch(configs, questions=questions, replicates=REPLICATES, seed=0)
        best = min(best, time.perf_counter() - t0)
    return best / len(configs)


def run_scale(print=builtins.print, quick: bool = False) -> dict:
    import numba

    import replay
    from collect.simulate import simulate
    from collect.simulate.presets import preset_dict, spec_from_dict

    numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))
    results: dict = {}
    tmp = Path(tempfile.mkdtemp(prefix="replay-scale-"))
    try:
        print(f"replay at scale (SYNTHETIC store, `collect simulate scale`), {numba.get_num_threads()} threads, "
              f"{REPLICATES} replicates")
        raw = preset_dict("scale")
        t0 = time.perf_counter()
        simulate(spec_from_dict(raw), tmp / "sim-scale", seed=0)
        gen_s = time.perf_counter() - t0
        store = replay.open(tmp / "sim-scale")
        n_rows = len(store.samples)
        n_pools = store.arrays.n_pools
        print(f"  generate 500 q x 3 stages x 6 models x 128 samples: {gen_s:.1f} s "
              f"({n_rows:,} samples in {n_pools:,} pools; target < 60 s: {'ok' if gen_s < 60 else 'MISSED'})")
        results["generate_s"] = gen_s

        rng = np.random.default_rng(0)
        store.evaluate_batch(_random_configs(store, 4, rng), replicates=2)  # compile / load the kernel
        n_cfg = 400 if quick else 2000
        print(f"  configurations per second ({n_cfg} random configurations each):")
        print(f"    {'questions':<16}{'counts':<10}{'configs/s':>10}{'vs target 500/s':>17}")
        for qsel, qlabel in ((None, "all 500"), ("train", "train (50)")):
            for counts in ("log", "uniform"):
                cfgs = _random_configs(store, n_cfg, rng, counts)
                per = _per_config_s(store, cfgs, questions=qsel, repeats=1)
                rate = 1.0 / per
                results[f"rate_{qlabel.split()[0]}_{counts}"] = rate
                print(f"    {qlabel:<16}{counts:<10}{rate:>10.0f}{rate / TARGET_PER_S:>16.2f}x")

        # Growth with each dimension, the others fixed. Six configurations per measurement, each
        # in its own group (different models), so that no two share a pass along the shuffle.
        print("  time per configuration as each dimension grows (ratio to the smallest; linear: = size ratio):")
        print(f"    {'dimension':<12}{'size':>6}{'size ratio':>12}{'us/config':>12}{'time ratio':>12}")
        m = store.manifest.model_names

        def distinct(n_stages: int, count: int) -> list[str]:
            return [",".join(f"{m[(i + j) % len(m)]}:{count}" for j in range(n_stages)) for i in range(len(m))]

        rows = []
        for nq in (63, 125, 250, 500):
            rows.append(("questions", nq, _per_config_s(store, distinct(3, 16), questions=list(range(nq)), repeats=3)))
        for n in (8, 16, 32, 64, 128):
            rows.append(("samples", n, _per_config_s(store, distinct(3, n), questions=list(range(125)), repeats=3)))
        # Stages: stores of 1, 2 and 3 stages with the same per-stage shape (125 questions, to keep it quick).
        for ns in (1, 2, 3):
            r = copy.deepcopy(raw)
            r.update(name=f"sim-scale-{ns}", questions=125, stages=r["stages"][:ns])
            st = replay.open(simulate(spec_from_dict(r), tmp / f"s{ns}", seed=0))
            rows.append(("stages", ns, _per_config_s(st, distinct(ns, 16), repeats=3)))
        for dim in ("questions", "samples", "stages"):
            sub = [r for r in rows if r[0] == dim]
            base_n, base_t = sub[0][1], sub[0][2]
            for _, n, t in sub:
                print(f"    {dim:<12}{n:>6}{n / base_n:>12.2f}{t * 1e6:>12.0f}{t / base_t:>12.2f}")
                results[f"{dim}_{n}_us"] = t * 1e6
        # Per drawn sample: the slope of time against the sample count (the intercept is the fixed
        # cost of a stage evaluation: its random stream, pool lookup and bookkeeping).
        sub = [r for r in rows if r[0] == "samples"]
        ns_, ts = np.array([r[1] for r in sub], float), np.array([r[2] for r in sub])
        slope, icpt = np.polyfit(ns_, ts, 1)
        evals = 125 * REPLICATES * 3
        print(f"  per drawn sample {slope / evals * 1e9:.1f} ns, fixed per stage evaluation {icpt / evals * 1e9:.0f} ns "
              f"(machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs while measuring)")
        results["ns_per_sample"] = slope / evals * 1e9
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer configurations (smoke run)")
    run_scale(quick=ap.parse_args().quick)
