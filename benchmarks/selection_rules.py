"""Which rule should pick a search's final configuration? Test regret of each selection rule.

AgentTTS's protocol on every shipped store: one fixed test set (the store's test split), and
for each training size N and seed s a training set of N questions drawn from the other
questions (`search.setup.split_questions(train=N, seed=s)`). On each training set:

- `grid`: every configuration within the budget (the exhaustive grid; each rule's pick over the
  whole space by compiled scans, `ConfigSpace.scan_picks`, which is the pick the rule makes
  among a full grid's trials: tests/test_search.py checks it);
- `random`, `bo`, `rules`: a 50-trial search with searcher seed s; every rule picks among its trials.

Each pick is scored on the test questions (`--test-replicates` draws per question, replay seed
0), and so is every configuration of the space (one compiled scan per store): the *test regret*
of a pick is the best feasible configuration's test score minus the pick's (>= 0: feasibility is
the budget rule, the same on every question set). Printed: mean regret per store and rule (over
seeds, sizes and searchers), then per training size, then per searcher, and the rule with the
lowest mean regret over stores (search.selection.DEFAULT_RULE should name it). The sim-* stores
are SYNTHETIC.

    python benchmarks/selection_rules.py [--stores aime24,sim-2wiki] [--seeds 0-9] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

import replay
from replay.engine import scan_space
from search import runner as R
from search.selection import RULES, select
from search.settings import parse_seeds

ROOT = Path(__file__).resolve().parents[1]
STORES = "aime24,sim-2wiki,sim-hotpotqa,sim-cwq,sim-webqsp,sim-taskbench,sim-chatdev"
SEARCHERS = ("grid", "random", "bo", "rules")


def sizes_for(pool: int) -> list[int]:
    """Three nested training sizes within the questions outside the test set."""
    return [5, 10, 20] if pool >= 20 else [5, 10, pool]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stores", default=STORES)
    ap.add_argument("--seeds", default="0-9")
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--replicates", type=int, default=16)
    ap.add_argument("--test-replicates", type=int, default=64)
    ap.add_argument("--json", default=None, help="write every regret here")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    seeds = parse_seeds(args.seeds)
    records = []
    t_start = time.perf_counter()
    for name in args.stores.split(","):
        store = replay.open(ROOT / "traces" / name)
        base = R.make_setup(store, replicates=args.replicates, test_replicates=args.test_replicates)
        sp = base.space
        t0 = time.perf_counter()
        test = scan_space(store, sp.choices(), questions=base.split.test, replicates=args.test_replicates, seed=0)
        ok = test.expected <= sp.budget * (1 + 1e-9)
        best_test = float(test.score[ok].max())
        t_scan = time.perf_counter() - t0
        cache: dict = {}

        def test_score(cfg) -> float:
            if cfg not in cache:
                ev = sp.evaluate([cfg], base.test_objective, enforce_budget=False)[0]
                cache[cfg] = float(ev.score)
            return cache[cfg]

        for n in sizes_for(base.split.pool):
            for seed in seeds:
                setup = R.make_setup(store, train=n, split_seed=seed, replicates=args.replicates,
                                     test_replicates=args.test_replicates)
                assert np.array_equal(setup.split.test, base.split.test)
                for searcher in SEARCHERS:
                    if searcher == "grid":
                        points, info = setup.space.scan_picks(setup.objective)
                        trials, _ = R.score_proposals(setup, [R.Proposal(p, "grid-scan") for p in points], 0)
                    else:
                        trials = R.run_search(setup, searcher, seed=seed, trials=args.trials).trials
                    for rule in RULES:
                        pick = select(trials, rule).trial
                        regret = best_test - test_score(pick.point)
                        records.append({"store": name, "synthetic": bool(store.synthetic), "train": n, "seed": seed,
                                        "searcher": searcher, "rule": rule, "config": pick.label,
                                        "train_score": pick.score, "test_score": best_test - regret,
                                        "regret": regret})
        print(f"[{name}: {len(records)} picks so far, test scan {t_scan:.1f} s, "
              f"{time.perf_counter() - t_start:.0f} s in all]", flush=True)
    report(records, args)
    if args.json:
        Path(args.json).write_text(json.dumps(records))


def mean(rs, **where) -> float:
    v = [r["regret"] for r in rs if all(r[k] == x for k, x in where.items())]
    return float(np.mean(v)) if v else float("nan")


def report(records, args) -> None:
    stores = list(dict.fromkeys(r["store"] for r in records))
    print(f"\nTest regret (best feasible configuration on the test questions minus the pick's test score), mean over "
          f"seeds {args.seeds}, three training sizes and the searchers {', '.join(SEARCHERS)} "
          f"({args.trials} trials; grid: every configuration), {args.test_replicates} replicates per test question:\n")
    print("| store | " + " | ".join(RULES) + " |")
    print("| --- | " + " | ".join("---" for _ in RULES) + " |")
    overall = {rule: [] for rule in RULES}
    for st in stores:
        syn = " (SYNTHETIC)" if any(r["synthetic"] for r in records if r["store"] == st) else ""
        cells = []
        for rule in RULES:
            m = mean(records, store=st, rule=rule)
            overall[rule].append(m)
            cells.append(f"{m:.4f}")
        best = min(RULES, key=lambda x: mean(records, store=st, rule=x))
        cells = [f"**{c}**" if rule == best else c for c, rule in zip(cells, RULES)]
        print(f"| {st}{syn} | " + " | ".join(cells) + " |")
    print("| mean over stores | " + " | ".join(f"{np.mean(overall[r]):.4f}" for r in RULES) + " |")
    print("\nBy training size (mean over stores, seeds and searchers):\n")
    sizes = sorted({r["train"] for r in records})
    print("| train questions | " + " | ".join(RULES) + " |")
    print("| --- | " + " | ".join("---" for _ in RULES) + " |")
    for n in sizes:
        print(f"| {n} | " + " | ".join(f"{np.mean([mean(records, store=s, train=n, rule=r) for s in stores if any(x['store'] == s and x['train'] == n for x in records)]):.4f}" for r in RULES) + " |")
    print("\nBy searcher (mean over stores, seeds and sizes):\n")
    print("| searcher | " + " | ".join(RULES) + " |")
    print("| --- | " + " | ".join("---" for _ in RULES) + " |")
    for s in SEARCHERS:
        print(f"| {s} | " + " | ".join(f"{np.mean([mean(records, store=st, searcher=s, rule=r) for st in stores]):.4f}" for r in RULES) + " |")
    best = min(RULES, key=lambda r: np.mean(overall[r]))
    print(f"\nlowest mean regret over stores: {best}")


if __name__ == "__main__":
    main()
