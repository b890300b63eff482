"""Adaptive controllers against majority vote at 64 on traces/aime24, per model.

For each model: accuracy and mean tokens per question of majority vote at 64, of adaptive
consistency (threshold 0.95, at most 64 samples: the AutoTTS authors' reference setting), of
early-stopping consistency (window 5, at most 64) and of the probe controller (its defaults);
then, along each controller's beta sweep, the cheapest setting whose accuracy reaches that of
majority vote at 64, and the tokens it saves. Same seed and replicates everywhere (common random
numbers: every controller sees the same opening orders). Prints Markdown.

    python benchmarks/controller_table.py [--replicates 200] [--seed 0] [--questions all|train|test]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl

import replay
from replay.controllers import Setting, evaluate_settings
from replay.controllers.frontier import match_table, sweep

ROOT = Path(__file__).resolve().parents[1]

FIXED = [
    ("majority@64", Setting.make("majority", {"n": 64})),
    ("adaptive 0.95/64", Setting.make("adaptive", {"threshold": 0.95, "max_samples": 64})),
    ("esc W=5/64", Setting.make("esc", {"window": 5, "max_samples": 64})),
    ("probe (defaults)", Setting.make("probe", {})),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=str(ROOT / "traces" / "aime24"))
    ap.add_argument("--replicates", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--questions", default="all", help="all, train or test")
    ap.add_argument("--betas", type=int, default=21, help="points of each beta sweep on [0, 1]")
    args = ap.parse_args()
    store = replay.open(args.store)
    qsel = None if args.questions == "all" else args.questions
    betas = list(np.linspace(0, 1, args.betas))
    R, seed = args.replicates, args.seed
    print(f"store {store.name} ({'SYNTHETIC' if store.synthetic else 'real'}), questions: {args.questions}, "
          f"{R} replicates, seed {seed}\n")
    print("| model | controller | accuracy % | tokens / question | vs majority@64 |")
    print("| --- | --- | --- | --- | --- |")
    sweeps = []
    for model in store.candidate_models(0):
        res = evaluate_settings(store, model, [s for _, s in FIXED], questions=qsel, replicates=R, seed=seed)
        base = res[0]
        for (label, _), r in zip(FIXED, res):
            rel = "" if r is base else f"{r.tokens / base.tokens:.1%} of the tokens, {100 * (r.score - base.score):+.2f} pts"
            print(f"| {model} | {label} | {100 * r.score:.2f} ± {100 * r.stderr:.2f} | {r.tokens:,.0f} | {rel} |")
        sw = [Setting.make("majority", {"n": 64})]
        for name in ("adaptive", "esc", "probe"):
            sw += sweep(name, betas)
        sweeps += [r.as_row() for r in evaluate_settings(store, model, sw, questions=qsel, replicates=R, seed=seed)]
    df = pl.DataFrame(sweeps, schema_overrides={"beta": pl.Float64})
    m = match_table(df, "majority").filter(pl.col("controller") != "majority")
    print("\nCheapest setting of each beta sweep (21 points) whose accuracy reaches majority@64's, same seed:\n")
    print("| model | controller | setting | accuracy % | tokens / question | saved vs majority@64 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in m.iter_rows(named=True):
        saved = (f"{r['saved_tokens']:,.0f} tokens ({r['saved_pct']:.1f}%)" if r["reached"]
                 else f"not reached (best {100 * r['accuracy']:.2f} vs {100 * r['ref_accuracy']:.2f})")
        print(f"| {r['model']} | {r['controller']} | {r['params']} | {100 * r['accuracy']:.2f} | {r['tokens']:,.0f} | {saved} |")


if __name__ == "__main__":
    main()
