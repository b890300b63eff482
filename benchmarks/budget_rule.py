"""Share of searches whose pick is over the budget on the test questions: before and after the
budget rule (feasibility by the expected cost over the store's pools).

On every shipped store at its default budget and its own train/test split: `random`, `bo` and
`rules` (50 trials, seeds 0-9) and `grid` (one seed; deterministic), through the `search`
command, reading each search's summary.json. A pick is *over budget on test* when its cost on the
test questions exceeds the budget: before the rule, feasibility was the measured cost of the
training draws, and the summary's `within_budget` compares the measured test cost; after it,
`within_budget` is the rule (the expected cost, the same on every question set) and
`measured_within_budget` still compares what the test draws cost.

    python benchmarks/budget_rule.py                        # this checkout
    git worktree add /tmp/before 76b74b2                    # (or git archive ... | tar -x)
    python benchmarks/budget_rule.py --code /tmp/before     # the same searches, that code

Prints a Markdown table; the sim-* stores are SYNTHETIC.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STORES = "aime24,sim-2wiki,sim-hotpotqa,sim-cwq,sim-webqsp,sim-taskbench,sim-chatdev"
RUN = "import sys; from search.cli import main; main(sys.argv[1:])"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", default=str(ROOT), help="the source tree whose `search` runs (default: this one)")
    ap.add_argument("--stores", default=STORES)
    ap.add_argument("--seeds", default="0-9")
    ap.add_argument("--workers", default="2")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(Path(args.code).resolve())}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.stores.split(","):
            store = ROOT / "traces" / name
            picks = []
            for searcher in ("random", "bo", "rules", "grid"):
                out = Path(tmp) / name / searcher
                seeds = ["--seed", "0"] if searcher == "grid" else ["--seeds", args.seeds, "--workers", args.workers]
                cmd = [sys.executable, "-c", RUN, "--replay", str(store), "--searcher", searcher, *seeds,
                       "--test-replicates", "256", "--no-optimum", "--out", str(out)]
                p = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True)
                if p.returncode != 0:
                    raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
                for f in sorted(out.rglob("summary.json")):
                    s = json.loads(f.read_text())
                    t = s.get("test") or {}
                    measured = t.get("measured_units", t.get("units"))
                    picks.append({"searcher": searcher, "seed": s["seed"], "budget": s["budget"],
                                  "train_units": (s.get("best") or {}).get("measured_units", (s.get("best") or {}).get("units")),
                                  "test_measured": measured, "rule_within": t.get("within_budget"),
                                  "config": (s.get("best") or {}).get("config")})
            n = len(picks)
            by_rule = sum(1 for x in picks if not x["rule_within"])
            measured = sum(1 for x in picks if x["test_measured"] > x["budget"] * (1 + 1e-9))
            worst = max(picks, key=lambda x: x["test_measured"] / x["budget"])
            rows.append((name, picks[0]["budget"], n, by_rule, measured, worst))
            print(f"[{name} done]", file=sys.stderr, flush=True)
    print(f"code: {args.code}\n")
    print("| store | budget (units) | picks | over budget on test by the summary's verdict | measured test cost over budget | worst: measured test cost / budget |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, budget, n, by_rule, measured, worst in rows:
        print(f"| {name} | {budget:.4g} | {n} | {by_rule}/{n} ({by_rule / n:.0%}) | {measured}/{n} ({measured / n:.0%}) | "
              f"{worst['test_measured'] / worst['budget']:.4f} ({worst['searcher']} s{worst['seed']}: "
              f"`{worst['config']}`) |")


if __name__ == "__main__":
    main()
