"""`search sweep` throughput: cells per second against worker count, serial vs processes vs Ray.

One sweep (by default aime24 and sim-2wiki x random, bo, rules x 8 seeds x 20 trials: 48
cells, plus the grid optimum of each objective) run in a fresh output folder per mode, all in
the same run:

- serial:     in this process (`--workers 1`)
- processes:  spawned worker processes (`--workers N`, N = 1..--max-workers)
- ray:        a local Ray instance with N CPUs (`--ray local --workers N`; its start-up is
              timed separately and not counted in the sweep's time)

Each mode runs the sweep and a quarter of it (the first seeds), so that its wall time splits
into a fixed cost (the intercept: worker start-up, the grid optima, collecting results) and a
cost per extra cell (the slope). Printed: wall time, cells per second, speed-up over serial,
both parts, and the cost of a cell relative to serial (slope x workers / the serial slope: 1.00
means a parallel cell costs what a serial one does; above 1, per-cell overhead of the pool or of
Ray, or cores shared with something else). Results are checked equal to the serial run's
(timing columns aside). Nothing else should be running.

    python benchmarks/sweep_scaling.py [--seeds 0-7] [--trials 20] [--max-workers 2] [--no-ray]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stores", default="aime24,sim-2wiki")
    ap.add_argument("--searchers", default="random,bo,rules")
    ap.add_argument("--seeds", default="0-7", help="the large sweep; the small one takes the first quarter")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--max-workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    from search.settings import parse_seeds
    from search.sweep import TIMING_COLUMNS, parse_spec, run_sweep

    seeds = parse_seeds(args.seeds)
    small_seeds = seeds[: max(1, len(seeds) // 4)]
    raw = {"stores": [str(ROOT / "traces" / s) for s in args.stores.split(",")], "searchers": args.searchers.split(","),
           "trials": [args.trials]}
    tmp = Path(tempfile.mkdtemp(prefix="sweep-scaling-"))

    def once(tag: str, seed_list, **kw):
        spec = parse_spec({**raw, "seeds": seed_list, "out": str(tmp / tag)}, "benchmark")
        t0 = time.perf_counter()
        res = run_sweep(spec, report=False, **kw)
        return time.perf_counter() - t0, res

    def both(tag: str, **kw):
        """(wall of the large sweep, its result, wall of the small one, cells of each)"""
        w_small, r_small = once(tag + "-small", small_seeds, **kw)
        w_large, r_large = once(tag, seeds, **kw)
        return w_large, r_large, w_small, len(r_small.plan.cells), len(r_large.plan.cells)

    once("warmup", small_seeds[:1], workers=1, backend="serial")  # stores opened, kernels loaded here
    runs = [("serial", 1, *both("serial", workers=1, backend="serial"))]
    for w in range(1, args.max_workers + 1):
        runs.append(("processes", w, *both(f"proc{w}", workers=w, backend="processes")))
    if not args.no_ray:
        import ray

        for w in range(1, args.max_workers + 1):
            t0 = time.perf_counter()
            ray.init(num_cpus=w, include_dashboard=False, logging_level="ERROR")
            start = time.perf_counter() - t0
            try:
                runs.append((f"ray (ray.init {start:.1f} s, not counted)", w, *both(f"ray{w}", ray="auto")))
            finally:
                ray.shutdown()

    base = runs[0][3]
    a0 = base.results.drop(TIMING_COLUMNS)
    serial_wall = runs[0][2]
    serial_marginal = (runs[0][2] - runs[0][4]) / (runs[0][6] - runs[0][5])
    n = runs[0][6]
    print(f"{n} cells ({args.stores}; {args.searchers}; seeds {args.seeds}; {args.trials} trials) and "
          f"{runs[0][5]} cells (the first {len(small_seeds)} seeds), {os.cpu_count()} CPUs")
    print("| mode | workers | wall s | cells/s | speed-up vs serial | fixed cost s | s per extra cell | "
          "cost per cell vs serial | same results |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for mode, w, wall, res, w_small, n_small, n_large in runs:
        marginal = (wall - w_small) / (n_large - n_small)
        fixed = wall - marginal * n_large
        same = "-" if res is base else ("yes" if res.results.drop(TIMING_COLUMNS).equals(a0) else "NO")
        print(f"| {mode} | {w} | {wall:.2f} | {n / wall:.1f} | {serial_wall / wall:.2f}x | {fixed:.2f} | {marginal:.3f} | "
              f"{marginal * w / serial_marginal:.2f} | {same} |")
    print("fixed cost: the intercept of wall time against cells (worker start-up, grid optima, results); "
          "cost per cell vs serial: seconds per extra cell x workers / the serial's (1.00: no overhead per cell)")


if __name__ == "__main__":
    main()
