"""Coverage of the 95% interval over questions, on a SYNTHETIC store whose true mean is known.

    python benchmarks/interval_coverage.py               # 2,000 draws of the questions per size
    python benchmarks/interval_coverage.py --trials 500  # quicker

A simulated one-stage store (`collect simulate`, 2,000 questions, pools of 9, a weak and a strong
model) is the question population. For each configuration the truth is the mean over all 2,000
questions of its expected score: exact for one sample (the pool's mean score), and for more
samples the replay at 4,000 replicates per question (its error on the mean, under 2e-4, is
negligible next to intervals 0.1 to 0.5 wide). Each trial draws n questions without replacement
(n = 15, 30, 50), replays them at 16 replicates with a fresh seed (as a search's training
questions are), and asks whether the interval covers the truth; the same for the paired
difference of two configurations. It prints the observed coverage of `replay.stats` (the Wilson
interval at the effective number of questions) beside the Student-t interval it replaced, with
the Monte-Carlo error of a coverage estimate, sqrt(0.95 x 0.05 / trials).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import replay  # noqa: E402
from collect.simulate import simulate, spec_from_dict  # noqa: E402
from replay.stats import question_interval, t_quantile  # noqa: E402

SPEC = {
    "name": "sim-coverage", "questions": 2000, "samples": 9, "train_fraction": 0.5,
    "models": [{"name": "weak-1B", "params": 1e9, "ability": 0.0},
               {"name": "strong-8B", "params": 8e9, "ability": 2.5}],
    "stages": [{"name": "solve", "completion_tokens": 50}],
}
CONFIGS = ("weak-1B:1", "weak-1B:9", "strong-8B:1", "strong-8B:5", "strong-8B:9")
PAIRS = (("strong-8B:9", "strong-8B:5"), ("strong-8B:5", "weak-1B:9"), ("strong-8B:1", "weak-1B:1"))
SIZES = (15, 30, 50)
REPLICATES = 16


def t_interval(x: np.ndarray, bounds=(0.0, 1.0)) -> tuple[float, float]:
    """The Student-t interval on per-question means, clipped (what replay.stats used before)."""
    n = len(x)
    h = t_quantile(0.975, n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
    return max(x.mean() - h, bounds[0]), min(x.mean() + h, bounds[1])


def make_store(folder: Path):
    return replay.open(simulate(spec_from_dict(SPEC), folder / "sim-coverage", seed=0))


def truths(store) -> dict[str, float]:
    """Each configuration's mean over all questions of its expected score."""
    out = {}
    exact = [c for c in CONFIGS if c.endswith(":1")]
    for c in exact:  # one sample: the pool's mean score, exactly
        m = store.model_index(c.split(":")[0])
        a = store.arrays
        pools = [a.qsm_pool_off[q * a.n_models + m] for q in range(a.n_questions)]
        out[c] = float(np.mean([a.s_score[a.pool_off[p]:a.pool_off[p + 1]].mean() for p in pools]))
    rest = [c for c in CONFIGS if c not in exact]
    for c, r in zip(rest, store.evaluate_batch(rest, replicates=4000, seed=10_000)):
        out[c] = r.score
    return out


def study(store, truth: dict[str, float], sizes=SIZES, trials: int = 2000, seed: int = 0) -> dict:
    """Coverage of both intervals per configuration, pair and size: {(what, n): {...}}."""
    Q = store.arrays.n_questions
    rng = np.random.default_rng(seed)
    res = {}
    for n in sizes:
        hit = {(w, m): 0 for w in CONFIGS + PAIRS for m in ("new", "t")}
        width = {k: 0.0 for k in hit}
        wrong = {k: 0 for k in hit}  # pairs: the interval excludes 0 on the wrong side of the truth
        for trial in range(trials):
            qs = np.sort(rng.choice(Q, size=n, replace=False))
            rs = dict(zip(CONFIGS, store.evaluate_batch(CONFIGS, questions=qs, replicates=REPLICATES,
                                                         seed=trial + 1 + 100_000 * n)))
            for c in CONFIGS:
                x = rs[c].per_question
                for m, (lo, hi) in (("new", (rs[c].ci_lo, rs[c].ci_hi)), ("t", t_interval(x))):
                    hit[c, m] += lo <= truth[c] <= hi
                    width[c, m] += hi - lo
            for a, b in PAIRS:
                d = rs[a].difference(rs[b])
                diff = rs[a].per_question - rs[b].per_question
                want = truth[a] - truth[b]
                for m, (lo, hi) in (("new", (d.lo, d.hi)), ("t", t_interval(diff, (-1.0, 1.0)))):
                    hit[(a, b), m] += lo <= want <= hi
                    width[(a, b), m] += hi - lo
                    wrong[(a, b), m] += (hi < 0 < want) or (want < 0 < lo)
        for w in CONFIGS + PAIRS:
            res[w, n] = {m: (hit[w, m] / trials, width[w, m] / trials, wrong[w, m] / trials) for m in ("new", "t")}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2000, help="draws of the questions per size")
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        store = make_store(Path(d))
        truth = truths(store)
        res = study(store, truth, trials=args.trials)
    mc = math.sqrt(0.95 * 0.05 / args.trials)
    print(f"SYNTHETIC store ({SPEC['questions']} questions, pools of {SPEC['samples']}); {args.trials} draws of the "
          f"questions per size, {REPLICATES} replicates each; Monte-Carlo error of a coverage: ±{mc:.3f} (1 sd)")
    print("coverage of the 95% interval (mean width): replay.stats (Wilson at n_eff) | Student-t\n")
    print(f"| configuration | true mean | " + " | ".join(f"n = {n}" for n in SIZES) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in SIZES) + " |")
    for w in CONFIGS + PAIRS:
        name = w if isinstance(w, str) else f"{w[0]} - {w[1]}"
        tm = truth[w] if isinstance(w, str) else truth[w[0]] - truth[w[1]]
        cells = []
        for n in SIZES:
            (cn, wn, _), (ct, wt, _) = res[w, n]["new"], res[w, n]["t"]
            cells.append(f"{cn:.3f} ({wn:.3f}) / {ct:.3f} ({wt:.3f})")
        print(f"| {name} | {tm:.3f} | " + " | ".join(cells) + " |")
    for m, label in (("new", "replay.stats"), ("t", "Student-t")):
        for n in SIZES:
            cov = [res[w, n][m][0] for w in CONFIGS]
            pc = [res[w, n][m][0] for w in PAIRS]
            bad = max(res[w, n][m][2] for w in PAIRS)
            print(f"{label:>13} n = {n}: scores: coverage min {min(cov):.3f}, mean {np.mean(cov):.3f}; "
                  f"paired differences: min {min(pc):.3f}, mean {np.mean(pc):.3f}, "
                  f"a difference of the wrong sign claimed in {bad:.1%} of draws at most")
    print(f"\n{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
