"""Wall and CPU time of a 50-trial search per non-LLM searcher, and the replay's share of it.

For each store and searcher: one warm-up search (loads the compiled kernels), then `--repeat`
searches of `--trials` trials (seeds 0..repeat-1); reports the mean wall time of one search, its
mean CPU time (this process, all threads: the replay kernels run on NUMBA_NUM_THREADS threads;
on a shared machine wall time mostly measures the other jobs, so compare CPU times), the replay
time inside it (wall; the batched replay calls that score the trials) and its share, and the
searcher's own time (wall; ask/tell, Optuna's sampler included). The last column compares the
whole search against scoring the same number of configurations in one batched replay call,
measured in the same run: the overhead of searching one trial at a time.

    python benchmarks/search_speed.py [--stores aime24@100,sim-2wiki,...] [--trials 50] [--repeat 3]
    NUMBA_NUM_THREADS=1 python benchmarks/search_speed.py   # one replay thread (a shared machine)

One trial is one small replay call; on a machine whose cores are busy with other jobs its
parallel region waits for (and OpenMP spins on) the other threads, which costs more CPU than it
saves: compare runs with the same NUMBA_NUM_THREADS (printed first).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numba
import numpy as np

import replay
from replay.engine import evaluate_batch
from search import runner as R
from search.settings import ConfigSpaceSettings

ROOT = Path(__file__).resolve().parents[1]


def _ratio(r: float) -> str:
    return f"{r:.0f}x" if r >= 10 else f"{r:.1f}x"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stores", default="aime24@100,sim-2wiki,sim-chatdev,sim-taskbench")
    ap.add_argument("--searchers", default="random,bo,rules", help="add bo-gp for Optuna's GP sampler (needs torch)")
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--replicates", type=int, default=16)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    print(f"Numba threads: {numba.get_num_threads()} (NUMBA_NUM_THREADS)\n")
    print("| store | searcher | trials | wall s per search | CPU s per search | replay s | replay share | searcher s | "
          "one batched call for as many configs, s | search / batched |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for spec in args.stores.split(","):
        name, _, budget = spec.partition("@")
        path = ROOT / "traces" / name
        if not path.is_dir():
            continue
        store = replay.open(path)
        setup = R.make_setup(store, ConfigSpaceSettings(budget=float(budget) if budget else None), replicates=args.replicates)
        R.run_search(setup, "random", trials=2)  # warm-up: compiled kernels loaded
        for sname in args.searchers.split(","):
            searcher, options = sname, {}
            if sname == "bo-gp":
                searcher, options = "bo", {"sampler": "gp"}
            walls, cpus, replays, own, n = [], [], [], [], []
            for seed in range(args.repeat):
                t0, c0 = time.perf_counter(), time.process_time()
                run = R.run_search(setup, searcher, seed=seed, trials=args.trials, options=options)
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
                replays.append(run.replay_s)
                own.append(run.searcher_s)
                n.append(len(run.trials))
                configs = [t.point for t in run.trials]
            t0 = time.perf_counter()
            evaluate_batch(store, configs, questions=setup.split.train, replicates=setup.replicates,
                           seed=setup.replay_seed, budget=setup.space.budget)
            batched = time.perf_counter() - t0
            w = float(np.mean(walls))
            print(f"| {spec} | {sname} | {np.mean(n):.0f} | {w:.3f} | {np.mean(cpus):.3f} | {np.mean(replays):.3f} | "
                  f"{np.mean(replays) / w:.0%} | {np.mean(own):.3f} | {batched:.4f} | {_ratio(w / batched)} |", flush=True)


if __name__ == "__main__":
    main()
