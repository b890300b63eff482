"""Issue 17's unit of work: one controller program replayed over a 21-point beta sweep on the 15
training questions x 16 replicates of traces/aime24 (one model), as the discovery loop runs it.

Two parts, each measured in this run:

1. The engine: the fast Python engine (replay/controllers/base.py) against the engine as first
   written (replay/controllers/reference.py, the tests' oracle), same controller classes, same
   episodes, results checked equal; on a subset of betas (the reference is slow), printed as a
   ratio.
2. A discovery round's evaluation of one program, sandboxed (search/discovery/evaluate.py's
   run_program): static checks, sandbox start, the whole 21-point sweep (one sandbox call),
   the traces and diagnostics.

    python benchmarks/program_speed.py [--model Qwen3-8B] [--betas 21] [--ref-betas 0,0.5,1]

The controllers are the seed programs of search/discovery/seeds.py: `adaptive` (full chains, no
probes) and `probe` (width-depth: a probe per running chain per interval), which equal the
compiled built-ins of the same names; part 3 adds `probe-recount`, the probe seed as first
written (recounting every vote each round), to show what a program's own per-round work costs.
"""

from __future__ import annotations

import argparse
import time
import types
from collections import Counter
from pathlib import Path

import numpy as np

import replay
from replay.aggregation import majority
from replay.controllers import Advance, Answer, Open, Prune, Setting, step_arrays
from replay.controllers.builtin import majority_confidence
from replay.controllers.base import run_episodes
from replay.controllers.reference import run_reference_episodes
from search.discovery.evaluate import Context, Program, run_program
from search.discovery.score import ScoreRule
from search.discovery.seeds import SEEDS

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    """The seed program `name`'s controller class (our own seed text, trusted: run in-process)."""
    if name == "probe-recount":
        return probe_recount(load("probe"))
    mod = types.ModuleType(f"seed_{name}")
    exec(compile(SEEDS[name], f"seed_{name}.py", "exec"), mod.__dict__)
    return next(v for v in vars(mod).values() if isinstance(v, type) and v.__module__ == mod.__name__
                and hasattr(v, "beta_params") and v.__name__ != "ScriptedController")


def probe_recount(probe: type) -> type:
    """The probe seed as first written: the same parameters and decisions as `probe` (the seed's
    class, which it extends), but it recounts every vote each round (Counter, sorted) where the
    seed counts votes as chains finish."""

    class ProbeRecount(probe):
        name = "probe-recount"

        def script(self, ep):
            cap = min(self.max_samples, ep.pool_size)
            against = {}
            for _ in range(min(self.width, cap)):
                yield Open()
            while ep.running():
                yield Advance(ep.running())
                votes = [ep.final[i] for i in ep.active() if ep.finished[i]]
                leader, v1 = None, 0
                if votes:
                    leader = majority(votes)
                    top = sorted(Counter(votes).values(), reverse=True)
                    v1, v2 = top[0], (top[1] if len(top) > 1 else 0)
                    if len(votes) >= 2 and majority_confidence(v1, v2) > self.threshold:
                        yield Answer(leader)
                        return
                for i in ep.running():
                    if ep.reading[i] is None:
                        continue
                    against[i] = against.get(i, 0) + 1 if (v1 >= 2 and ep.reading[i] != leader) else 0
                    if against[i] >= self.patience:
                        yield Prune(i)
                for _ in range(min(self.width - len(ep.running()), cap - ep.n_opened)):
                    yield Open()
            votes = [ep.final[i] for i in ep.active() if ep.finished[i]]
            yield Answer(majority(votes) if votes else None)

    return ProbeRecount


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=str(ROOT / "traces" / "aime24"))
    ap.add_argument("--model", default="Qwen3-8B")
    ap.add_argument("--replicates", type=int, default=16)
    ap.add_argument("--betas", type=int, default=21)
    ap.add_argument("--ref-betas", default="0,0.5,1", help="betas on which the slow reference engine is timed")
    ap.add_argument("--workers", default="1,2", help="sandboxes sharing a program's sweep, comma list")
    args = ap.parse_args()

    store = replay.open(args.store)
    steps = step_arrays(store, args.model)
    qidx = store.question_indices("train")
    R = args.replicates
    ref_betas = [float(x) for x in args.ref_betas.split(",")]
    print(f"{store.name}/{args.model}: {len(qidx)} training questions x {R} replicates")
    print("\n1. engine: reference (as first written) against the fast engine, same episodes, betas "
          f"{args.ref_betas}")
    print(f"{'program':<10} {'reference s':>12} {'fast s':>8} {'ratio':>7}   (CPU seconds)")
    for name in ("adaptive", "probe"):
        cls = load(name)
        t_ref = t_fast = 0.0
        for b in ref_betas:
            ctrl = Setting.make(cls, beta=b).instance()
            t0 = time.process_time()
            ref = run_reference_episodes(ctrl, steps, qidx, replicates=R, seed=0)
            t_ref += time.process_time() - t0
            t0 = time.process_time()
            fast = run_episodes(ctrl, steps, qidx, replicates=R, seed=0)
            t_fast += time.process_time() - t0
            assert all(np.array_equal(x, y) for x, y in zip(ref, fast)), (name, b)
        print(f"{name:<10} {t_ref:>12.2f} {t_fast:>8.2f} {t_ref / t_fast:>6.1f}x")

    print(f"\n2. one discovery evaluation, sandboxed: {args.betas} betas x {len(qidx)} questions x {R} replicates "
          "(wall-clock seconds, and the sweep's CPU seconds summed over the sandboxes, which other load does not "
          "inflate)")
    betas = tuple(float(b) for b in np.linspace(0, 1, args.betas))
    from search.discovery.evaluate import majority_reference

    base = Context(store=store, model=args.model, rule=ScoreRule.parse("tokens@majority:64"), betas=betas)
    ref = majority_reference(base, 64, qidx, R, 0)
    print(f"{'program':<10} {'workers':>7} {'checks ms':>9} {'start s':>8} {'sweep s':>8} {'sweep CPU s':>11} "
          f"{'traces s':>9} {'total s':>8}  score")
    for name in ("adaptive", "probe"):
        for w in [int(x) for x in args.workers.split(",")]:
            ctx = Context(store=store, model=args.model, rule=base.rule, betas=betas, workers=w)
            t0 = time.perf_counter()
            run = run_program(Program(SEEDS[name], ""), ctx, qidx, R, 0, reference=ref,
                              question_ids=tuple(store.question_ids))
            total = time.perf_counter() - t0
            tm = run.timing
            assert run.status == "ok", run.error
            print(f"{name:<10} {w:>7} {tm['checks_s'] * 1e3:>9.1f} {tm['sandbox_start_s']:>8.2f} {tm['sweep_s']:>8.2f} "
                  f"{tm.get('sweep_cpu_s', float('nan')):>11.2f} {tm.get('trace_s', 0.0):>9.2f} {total:>8.2f}  {run.reduced.score:.4f}")
    # the same sweep in this process, single-threaded, on CPU time (less disturbed by other load);
    # probe-recount is the probe seed as first written (its votes recounted every round): the
    # program's own Python per round is the other half of the cost, beside the engine
    print("\n3. in-process sweep, CPU seconds (the sandbox runs the same engine; every beta replayed):")
    cpu = {}
    for name in ("adaptive", "probe", "probe-recount"):
        cls = load(name)
        c0 = time.process_time()
        outs = [run_episodes(Setting.make(cls, beta=b).instance(), steps, qidx, replicates=R, seed=0) for b in betas]
        cpu[name] = time.process_time() - c0
        print(f"{name:<14} {cpu[name]:>8.2f} s CPU")
        if name == "probe-recount":  # the same decisions, so the same episodes
            assert all(np.array_equal(x, y) for o, p in zip(outs, probe_outs) for x, y in zip(o, p))
        if name == "probe":
            probe_outs = outs
    print(f"probe-recount / probe: {cpu['probe-recount'] / cpu['probe']:.1f}x (same episodes, checked)")


if __name__ == "__main__":
    main()
