"""What the sandbox costs: a Python controller's replay sandboxed against the same controller
run in this process, and a run-once program sandboxed against a plain subprocess, measured in
the same run (results checked equal).

The controller case is issue 17's unit of work: one program over a 21-point beta sweep on 15
questions x 16 replicates of traces/aime24 (one model). Sandboxed, that is: start the sandbox
and load the class (once per program), ship the step arrays (once per model), then one call
per beta point; in-process, the same settings through the same Python engine.

    python benchmarks/sandbox_overhead.py [--model Qwen3-8B] [--questions 15] [--replicates 16] [--betas 21]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import replay
from replay.controllers import Setting, evaluate_settings, load_controller
from replay.sandbox import isolation, run_script

ROOT = Path(__file__).resolve().parents[1]

FIRST_READING = '''
from replay.controllers import ScriptedController, Param, Open, Continue, Probe, Answer, lerp

class FirstReading(ScriptedController):
    """Open n samples, run each `depth` intervals, probe it; answer the majority of the readings."""
    name = "first-reading"
    params = (Param("n", 1, 64, integer=True, default=3), Param("depth", 1, 100, integer=True, default=2))

    @classmethod
    def beta_params(cls, beta):
        return {"n": lerp(1, 16, beta, integer=True), "depth": lerp(1, 12, beta, integer=True)}

    def script(self, ep):
        for _ in range(min(self.n, ep.pool_size)):
            yield Open()
            i = ep.n_opened - 1
            yield Continue(i, self.depth)
            yield Probe(i)
        yield Answer()
'''


def sweep(store, cls, model, qs, betas, R):
    t0 = time.perf_counter()
    settings = [Setting.make(cls, beta=float(b)) for b in betas]
    res = evaluate_settings(store, model, settings, questions=qs, replicates=R, seed=0)
    return res, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=str(ROOT / "traces" / "aime24"))
    ap.add_argument("--model", default="Qwen3-8B")
    ap.add_argument("--questions", type=int, default=15)
    ap.add_argument("--replicates", type=int, default=16)
    ap.add_argument("--betas", type=int, default=21)
    ap.add_argument("--runs", type=int, default=10, help="run-once programs to time")
    args = ap.parse_args()

    iso = isolation()
    print(iso.summary())
    store = replay.open(args.store)
    qs = list(store.question_ids[: args.questions])
    betas = np.linspace(0, 1, args.betas)
    R = args.replicates
    print(f"\ncontrollers: {len(betas)} betas x {len(qs)} questions x {R} replicates on {store.name}/{args.model}")
    print(f"{'controller':<26} {'in-process s':>12} {'start+load s':>12} {'sandboxed sweep s':>17} "
          f"{'total s':>8} {'ratio':>6}  (ratio: sandboxed total over in-process)")
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "first_reading.py"
        f.write_text(FIRST_READING)
        cases = [("first-reading (file)", f"{f}:FirstReading"),
                 ("adaptive (module:Class)", "replay.controllers.builtin:AdaptiveConsistency")]
        for label, spec in cases:
            local = load_controller(spec, sandbox=False)
            ref, t_local = sweep(store, local, args.model, qs, betas, R)
            t0 = time.perf_counter()
            boxed = load_controller(spec)
            t_load = time.perf_counter() - t0
            got, t_box = sweep(store, boxed, args.model, qs, betas, R)  # includes shipping the traces once
            for a, b in zip(got, ref):
                assert (a.score, a.tokens, a.opened, a.probes) == (b.score, b.tokens, b.opened, b.probes), label
            total = t_load + t_box
            print(f"{label:<26} {t_local:>12.2f} {t_load:>12.2f} {t_box:>17.2f} {total:>8.2f} "
                  f"{total / t_local:>5.2f}x")
            # per call: a round trip with no work (parameter validation) against doing it here
            n = 200
            t0 = time.perf_counter()
            for _ in range(n):
                boxed.sandbox.make({})
            rt = (time.perf_counter() - t0) / n
            print(f"{'':<26} one round trip to the sandbox: {rt * 1e6:,.0f} us")
            boxed.sandbox.close()

    print(f"\nrun once: a program that does nothing, {args.runs} times")
    plain, boxed = [], []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-c", "pass"], check=True)
        plain.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        r = run_script("pass")
        boxed.append(time.perf_counter() - t0)
        assert r.ok
    mp, mb = statistics.median(plain), statistics.median(boxed)
    print(f"plain subprocess {mp * 1e3:.0f} ms, sandboxed {mb * 1e3:.0f} ms (median): {mb / mp:.1f}x, "
          f"+{(mb - mp) * 1e3:.0f} ms per program")


if __name__ == "__main__":
    main()
