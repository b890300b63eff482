"""Agent-REINFORCE without the LLM (`--ablate feedback`: a plain REINFORCE update) against random
search and BO on the graph space, over seeds: the final pick's test accuracy and how many trials
each search needed.

    python benchmarks/agent_reinforce_compare.py                       # sim-math, sim-mmlu, sim-humaneval; 10 seeds
    python benchmarks/agent_reinforce_compare.py --stores traces/sim-math --seeds 3 --trials 32

The stores are SYNTHETIC (collect simulate): the numbers say how the searchers compare on these
simulated tasks, not how real models behave. Per store and searcher it prints the mean (and
standard deviation over seeds) of: the picked graph's test accuracy (the default selection rule,
scored on the store's test questions), its training score, the trials to the search's own best,
and the trials until a graph within 0.5 points (0.005) of the best training score any method
found on that store was reached (a search that never gets there counts as the trial budget + 1,
and the share that got there is shown).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SEARCHERS = (("random", {}), ("agent-reinforce:feedback", {"ablate": "feedback"}), ("bo", {}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stores", default="traces/sim-math,traces/sim-mmlu,traces/sim-humaneval")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--max-nodes", type=int, default=4)
    ap.add_argument("--searchers", default=",".join(x for x, _ in SEARCHERS), help="a subset of the three, in order")
    ap.add_argument("--learning", action="store_true",
                    help="instead: the expected training score of the REINFORCE distribution, uniform vs after the run")
    ap.add_argument("--json", default=None, help="write every run's numbers here")
    a = ap.parse_args()

    from replay.store import open_store
    from search.runner import make_setup, run_search, score_on_test
    from search.selection import DEFAULT_RULE, select
    from search.settings import GraphSpaceSettings

    if a.learning:
        return learning(a)
    rows = []
    for path in a.stores.split(","):
        store = open_store(str(ROOT / path) if not Path(path).is_absolute() else path)
        setup = make_setup(store, GraphSpaceSettings(max_nodes=a.max_nodes))
        print(f"\n{store.name} ({'SYNTHETIC' if store.synthetic else 'collected'}): budget "
              f"{setup.space.budget:.4g} units/question, {len(setup.split.train)} train / {len(setup.split.test)} test "
              f"questions, graphs of up to {a.max_nodes} nodes, {a.trials} trials, seeds 0..{a.seeds - 1}", flush=True)
        runs = []
        for label, opts in [x for x in SEARCHERS if x[0] in a.searchers.split(",")]:
            name = label.split(":")[0]
            for seed in range(a.seeds):
                t0 = time.perf_counter()
                run = run_search(setup, name, seed=seed, trials=a.trials, options=opts)
                pick = select(run.trials, DEFAULT_RULE).trial
                test = score_on_test(setup, pick.point)
                curve = [t.score if t.feasible and t.score is not None else -np.inf for t in run.trials]
                runs.append({"store": store.name, "searcher": label, "seed": seed, "curve": curve,
                             "pick": str(pick.point), "train": pick.score, "test": test["score"],
                             "wall_s": time.perf_counter() - t0})
            table(runs, a.trials)  # after each searcher: a table that holds what has run so far
        rows += runs
    if a.json:
        for r in rows:
            r["curve"] = [None if not np.isfinite(x) else x for x in r["curve"]]
        Path(a.json).write_text(json.dumps(rows, indent=1))


def learning(a) -> None:
    """The expected training score of a graph drawn from the distribution (64 draws within
    budget, one draw seed for every distribution): the uniform start, and the distribution the
    last batch was drawn from, per seed."""
    from replay.store import open_store
    from search.graphs.probabilistic import GraphDistribution, Vocabulary
    from search.runner import make_setup, run_search
    from search.searchers.agent_reinforce import expected_score
    from search.settings import GraphSpaceSettings

    for path in a.stores.split(","):
        store = open_store(str(ROOT / path) if not Path(path).is_absolute() else path)
        setup = make_setup(store, GraphSpaceSettings(max_nodes=a.max_nodes))
        sp = setup.space
        uniform = GraphDistribution.uniform(Vocabulary.from_space(sp))
        before = expected_score(sp, uniform, setup.objective, n=64, seed=99)
        after = []
        for seed in range(a.seeds):
            run = run_search(setup, "agent-reinforce", seed=seed, trials=a.trials, options={"ablate": "feedback"})
            d = GraphDistribution.from_archive(uniform.vocab, run.trials[-1].extra["distribution"])
            after.append(expected_score(sp, d, setup.objective, n=64, seed=99))
        print(f"{store.name}: uniform {before:.4f} -> after {a.trials} trials {np.mean(after):.4f} "
              f"(seeds: {', '.join(f'{x:.4f}' for x in after)})", flush=True)


def table(runs: list[dict], trials: int) -> None:
    top = max(max(r["curve"]) for r in runs)  # the best training score any method (run so far) found here
    for r in runs:
        c = np.array(r["curve"])
        r["to_own_best"] = int(np.argmax(c)) + 1
        hit = np.flatnonzero(c >= top - 0.005)
        r["to_top"] = int(hit[0]) + 1 if len(hit) else trials + 1
        r["reached_top"] = bool(len(hit))
    labels = list(dict.fromkeys(r["searcher"] for r in runs))
    print(f"{runs[0]['store']}: best training score found by {', '.join(labels)}: {top:.4f}")
    print("| searcher | test accuracy | train score of the pick | trials to own best | trials to within 0.5 pt of "
          "the best | reached | s/search |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label in labels:
        rs = [r for r in runs if r["searcher"] == label]

        def ms(k):
            x = np.array([r[k] for r in rs], dtype=float)
            return f"{x.mean():.4f} ± {x.std(ddof=1) if len(x) > 1 else 0:.4f}"

        print(f"| {label} | {ms('test')} | {ms('train')} | {np.mean([r['to_own_best'] for r in rs]):.1f} | "
              f"{np.mean([r['to_top'] for r in rs]):.1f} | {sum(r['reached_top'] for r in rs)}/{len(rs)} | "
              f"{np.mean([r['wall_s'] for r in rs]):.2f} |", flush=True)


if __name__ == "__main__":
    main()
