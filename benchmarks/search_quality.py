"""Trials each non-LLM searcher needs to reach the grid optimum, over seeds, on the shipped stores.

For each store: the exhaustive optimum of the training objective (every configuration within the
budget by the budget rule; same questions, replicates and replay seed as the searches), then `random`, `bo` and
`rules` with a 50-trial budget for each seed. A search reaches the optimum when one of its
trials scores at least the optimum's training score (ties count: on small question sets several
configurations share the top score); "within 1%" counts a trial scoring at least 0.99 x the
optimum. Prints a Markdown table.

    python benchmarks/search_quality.py [--stores aime24,aime24@100,sim-2wiki,...] [--seeds 0-9]

A store name `NAME@B` searches NAME with budget B units instead of the default budget.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

import replay
from search import report
from search import runner as R
from search.settings import ConfigSpaceSettings, parse_seeds

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STORES = "aime24,aime24@100,sim-2wiki,sim-chatdev,sim-taskbench"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stores", default=DEFAULT_STORES, help="comma-separated stores in traces/ (NAME or NAME@BUDGET)")
    ap.add_argument("--searchers", default="random,bo,rules", help="add bo-gp for Optuna's GP sampler (needs torch)")
    ap.add_argument("--seeds", default="0-9")
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--replicates", type=int, default=16)
    ap.add_argument("--optimum-limit", type=int, default=3_000_000, help="configurations the grid may score")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    seeds = parse_seeds(args.seeds)
    searchers = [s for s in args.searchers.split(",") if s]
    rows = []
    print("| store | space | grid optimum (train) | grid: configs scored, s | searcher | reached | trials to optimum: mean | median | within 1%: reached, mean trials | best train (mean) | gap to optimum (mean) | test of best (mean) | s per search |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for spec in args.stores.split(","):
        name, _, budget = spec.partition("@")
        path = ROOT / "traces" / name
        if not path.is_dir():
            print(f"| {spec} | (not present) | | | | | | | | | | | |")
            continue
        store = replay.open(path)
        setup = R.make_setup(store, ConfigSpaceSettings(budget=float(budget) if budget else None), replicates=args.replicates)
        R.run_search(setup, "random", trials=1)  # load the compiled kernels before timing anything
        t0 = time.perf_counter()
        opt = R.known_optimum(setup, limit=args.optimum_limit)
        t_opt = time.perf_counter() - t0
        label = f"{name}{' (synthetic)' if store.synthetic else ''}, budget {setup.space.budget:.4g}"
        opt_txt = "unknown" if opt is None else f"{opt['config']}: {opt['score']:.4f}"
        grid_txt = "-" if opt is None else f"{opt['evaluated']} in {t_opt:.1f} s"
        for sname in searchers:
            reach, near, train, test, wall = [], [], [], [], []
            for seed in seeds:
                t0 = time.perf_counter()
                searcher, options = (("bo", {"sampler": "gp"}) if sname == "bo-gp" else (sname, {}))
                run = R.run_search(setup, searcher, seed=seed, trials=args.trials, options=options)
                wall.append(time.perf_counter() - t0)
                b = report.best_trial(run.trials)
                train.append(b.score)
                test.append(R.score_on_test(setup, b.point)["score"])
                reach.append(report.trials_to_reach(run.trials, None if opt is None else opt["score"]))
                near.append(report.trials_to_reach(run.trials, None if opt is None else 0.99 * opt["score"]))
            got = [r for r in reach if r is not None]
            mean = f"{np.mean(got):.1f}" if got else "-"
            med = f"{np.median(got):.1f}" if got else "-"
            reached = "-" if opt is None else f"{len(got)}/{len(seeds)}"
            got99 = [r for r in near if r is not None]
            near_txt = "-" if opt is None else (f"{len(got99)}/{len(seeds)}, {np.mean(got99):.1f}" if got99
                                                else f"0/{len(seeds)}")
            gap = "-" if opt is None else f"{max(0.0, opt['score'] - np.mean(train)):.4f}"
            print(f"| {label} | {setup.space.size()} | {opt_txt} | {grid_txt} | {sname} | {reached} | {mean} | {med} | {near_txt} | "
                  f"{np.mean(train):.4f} | {gap} | {np.mean(test):.4f} | {np.mean(wall):.2f} |", flush=True)
            label, opt_txt, grid_txt = "", "", ""
            rows.append((spec, sname, reach))


if __name__ == "__main__":
    main()
