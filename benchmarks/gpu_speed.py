"""GPU replay against the CPU engine, in the same run, on the issue's three workloads.

    python benchmarks/gpu_speed.py            # the full shapes (a GPU machine: minutes, the CPU parts most)
    python benchmarks/gpu_speed.py --quick    # smaller shapes, for a smoke run
    python benchmarks/gpu_speed.py --no-cpu   # GPU only (the CPU parts of the full shapes take long)
    python benchmarks/gpu_speed.py --workloads graph   # the graph batch alone
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/gpu_speed.py --simulator --workloads graph   # its GPU path, tiny

1. sweep: every sample count of every model of traces/aime24 (all 30 questions), 1,000
   replicates (`evaluate_batch`; on the GPU, the memo method);
2. scan: every configuration of traces/sim-taskbench (3 stages x 128 choices: 2.1 M), its 50
   training questions, 16 replicates, the best 10 per budget streamed (`replay.scan_top.scan_top`);
3. scan: a generated three-stage store (SYNTHETIC, `collect simulate`: 4 models, pools of 64,
   15 questions; 256^3 = 16.8 M configurations), 16 replicates, streamed the same way;
4. graph: a batch of 256 random 6-node graphs (three solve nodes of 1-8 samples, two refiners
   and an aggregator of 1-2 samples reading 1-2 earlier nodes, every sink an output: the batch
   of benchmarks/graph_speed.py) on a simulated 500-question `math` graph store (SYNTHETIC), 16
   replicates, in one `evaluate_graphs` call (replay/gpu/graph_kernels.py on the GPU).

Each is timed on the CPU (the Numba kernels, all threads) and on the GPU, with a fresh store
object per timing so that the GPU times include copying the store to the GPU and the results
back (the kernels are compiled once beforehand, on a tiny store). Printed per workload: wall
time, "draws per second" and the GPU's speed-up, and whether the two devices gave identical
numbers. Draws are counted as a plain replay makes them: for each configuration, question and
replicate, the samples drawn at every stage (the memo method shares draws between
configurations, so this is an effective rate, the one comparable across methods and devices).
Targets (issue 18): at least 1e11 draws/s on the sweep; the 16.8 M scan in under 2 s.

Without a usable GPU (or with NUMBA_ENABLE_CUDASIM=1, whose timings mean nothing) it says so
and prints the CPU numbers only. Needs the gpu-replay extra for the GPU part.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

if not hasattr(np, "row_stack"):  # numba-cuda reads it; NumPy 2.5 removed it (replay.gpu.numpy_shim)
    np.row_stack = np.vstack

ROOT = Path(__file__).resolve().parents[1]


def _sweep_configs(store):
    from replay.engine import Config, StageChoice, largest_pool

    lp = largest_pool(store)
    return [Config((StageChoice(m, n),)) for m in store.candidate_models(0)
            for n in range(1, int(lp[0, store.model_index(m)]) + 1)]


def _full_choices(store, top=None):
    from replay.engine import StageChoice, largest_pool

    lp = largest_pool(store)
    return [[StageChoice(m, n) for m in store.candidate_models(s)
             for n in range(1, min(top or 10**9, int(lp[s, store.model_index(m)])) + 1)]
            for s in range(len(store.stages))]


def _scan_draws(store, choices, Q, R) -> float:
    """Draws a plain replay of every configuration makes: for each stage, the sum of its
    choices' counts times the number of configurations of the other stages, times Q x R."""
    n = [len(c) for c in choices]
    total = 0.0
    for s, cs in enumerate(choices):
        other = float(np.prod([n[j] for j in range(len(n)) if j != s]))
        total += other * sum(min(c.samples, int(store.derived.largest_pool[s, store.model_index(c.model)]))
                             for c in cs)
    return total * Q * R


def _generate(tmp: Path, quick: bool):
    """The SYNTHETIC three-stage store: the `scale` preset narrowed to 4 models, pools of 64
    and 15 questions (8 and 5 with --quick)."""
    from collect.simulate import simulate
    from collect.simulate.presets import preset_dict, spec_from_dict

    raw = copy.deepcopy(preset_dict("scale"))
    raw.update(name="sim-gpu-scan", questions=5 if quick else 15, samples=8 if quick else 64, train_fraction=0.5)
    raw["models"] = raw["models"][:4]
    return simulate(spec_from_dict(raw), tmp / "sim-gpu-scan", seed=0)


def _graph_store(tmp: Path, questions: int) -> Path:
    """The simulated `math` graph store of benchmarks/graph_speed.py (SYNTHETIC)."""
    from collect.simulate.graph import graph_spec_from_dict, simulate_graph
    from collect.simulate.presets import merge, preset_dict

    return simulate_graph(graph_spec_from_dict(merge(preset_dict("math"), {"name": "sim-math-bench",
                                                                           "questions": questions})),
                          tmp / f"sim-math-{questions}", seed=0)


def _random_graphs(store, n: int):
    """n random 6-node graphs: benchmarks/graph_speed.py's batch (seed 0)."""
    from graph_speed import random_graphs

    return random_graphs(store, n, np.random.default_rng(0))


def _graph_draws(store, graphs) -> float:
    """Samples a plain replay draws per (question, replicate): every node's count, before the
    batch's sharing of nodes."""
    return float(sum(n.samples for g in graphs for n in g.nodes))


def _timed(fn):
    t0 = time.perf_counter()
    c0 = time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller shapes (a smoke run)")
    ap.add_argument("--no-cpu", action="store_true", help="skip the CPU timings (and the equality checks)")
    ap.add_argument("--replicates", type=int, default=None, help="sweep replicates (default 1000; --quick 50)")
    ap.add_argument("--scan-replicates", type=int, default=16)
    ap.add_argument("--workloads", default="sweep,taskbench,generated,graph",
                    help="comma-separated, of sweep, taskbench, generated, graph (default: all four)")
    ap.add_argument("--graph-questions", type=int, default=None, help="graph store questions (default 500)")
    ap.add_argument("--simulator", action="store_true",
                    help="with NUMBA_ENABLE_CUDASIM=1: run the GPU part on the simulator, on tiny shapes (checks this "
                         "script's GPU path and the equality, not speed)")
    args = ap.parse_args()
    todo = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = sorted(set(todo) - {"sweep", "taskbench", "generated", "graph"})
    if unknown:
        raise SystemExit(f"error: --workloads: unknown workload {unknown[0]!r} (choose from sweep, taskbench, "
                         "generated, graph)")
    import numba

    import replay
    from replay.engine import evaluate_batch
    from replay.gpu import gpu_status
    from replay.scan_top import scan_top

    ok, why = gpu_status()
    sim = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
    devices = ["cpu"] if args.no_cpu is False else []
    tiny = sim and args.simulator
    if ok and (not sim or tiny):
        devices.append("cuda")
        if tiny:
            import warnings

            # the simulator runs the 64-bit hashes as NumPy scalars, which warn on their wrap-around
            warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)
            print("CUDA SIMULATOR: tiny shapes; the GPU timings below mean nothing")
            args.quick = True
        else:
            from numba import cuda

            dev = cuda.get_current_device()
            free, total = cuda.current_context().get_memory_info()
            name = dev.name.decode() if isinstance(dev.name, bytes) else dev.name
            print(f"GPU: {name}, compute capability {dev.compute_capability}, {total / 2**30:.0f} GiB "
                  f"({free / 2**30:.0f} free); numba {numba.__version__}, NumPy {np.__version__}")
    else:
        print("no GPU present: CPU numbers only" + (" (the CUDA simulator is on: its timings mean nothing)" if sim
                                                     else f" ({why})"))
    if not devices:
        print("nothing to time (--no-cpu without a GPU)")
        return
    print(f"CPU: {os.cpu_count()} cores, Numba {numba.get_num_threads()} threads; load average "
          f"{os.getloadavg()[0]:.1f} at start")
    R = args.replicates or (2 if tiny else 50 if args.quick else 1000)
    RS = 2 if tiny else args.scan_replicates
    top_n = 2 if tiny else 8 if args.quick else None  # choices per (stage, model): counts 1..top_n
    tmp = Path(tempfile.mkdtemp(prefix="gpu-speed-"))
    try:
        chains = bool({"sweep", "taskbench", "generated"} & set(todo))
        gen = _generate(tmp, args.quick) if chains else None
        # compile (or load from cache) every kernel on both devices, on a tiny problem
        if chains:
            warm = replay.open(gen)
            for d in devices:
                evaluate_batch(warm, [",".join(f"{warm.candidate_models(s)[0]}:2" for s in range(3))], questions=[0],
                               replicates=2, device=d)
                scan_top(warm, _full_choices(warm, top=2), questions=[0], replicates=2, device=d)
        rows = []
        checks = {}

        # 1. the aime24 sweep
        def sweep(d):
            st = replay.open(ROOT / "traces" / "aime24")
            cfgs = _sweep_configs(st)[:: 16 if tiny else 1]
            res = evaluate_batch(st, cfgs, replicates=R, seed=0, device=d)
            return res, sum(c.stages[0].samples for c in cfgs) * st.arrays.n_questions * R, len(cfgs)

        out = {}
        for d in devices if "sweep" in todo else []:
            (res, draws, n_cfg), wall, cpu_s = _timed(lambda: sweep(d))
            out[d] = res
            rows.append(("aime24 sweep", f"{n_cfg} configs x 30 q x {R} rep", d, wall, cpu_s, draws))
        same = ("cpu" in out and "cuda" in out and
                all(a == b and np.array_equal(a.per_question, b.per_question) for a, b in zip(out["cpu"], out["cuda"])))
        if "sweep" in todo:
            checks["aime24 sweep"] = same if len(out) == 2 else None

        # 2 and 3. the scans, streamed: the best 10 per budget (no budget, the default budget)
        scans = [("sim-taskbench scan", ROOT / "traces" / "sim-taskbench", "train")] if "taskbench" in todo else []
        if "generated" in todo:
            scans.append(("16.8M generated scan" if not args.quick else "generated scan", gen, None))
        for label, path, questions in scans:
            out = {}
            for d in devices:
                def scan(d=d, questions=questions):
                    from replay.engine import default_budget

                    st = replay.open(path)
                    ch = _full_choices(st, top=top_n)
                    if tiny:
                        questions = st.question_indices(questions)[:2]
                    qn = len(st.question_indices(questions))
                    top = scan_top(st, ch, budgets=[None, default_budget(st)], top=10, questions=questions,
                                   replicates=RS, seed=0, device=d)
                    return top, _scan_draws(st, ch, qn, RS), qn
                (top, draws, qn), wall, cpu_s = _timed(scan)
                out[d] = top
                rows.append((label, f"{top.evaluated:,} configs x {qn} q x {RS} rep", d, wall, cpu_s, draws))
            checks[label] = (out["cpu"].best == out["cuda"].best) if len(out) == 2 else None

        # 4. a batch of 256 random 6-node graphs on a simulated math graph store
        if "graph" in todo:
            from replay.graph.engine import evaluate_graphs

            gq = args.graph_questions or (20 if tiny else 100 if args.quick else 500)
            n_graphs = 8 if tiny else 256
            RG = 2 if tiny else 16
            gpath = _graph_store(tmp, gq)
            graphs = _random_graphs(replay.open(gpath), n_graphs)
            for d in devices:  # compile (or load) the graph kernels
                evaluate_graphs(replay.open(gpath), graphs[:2], questions=[0], replicates=2, device=d)
            out = {}
            for d in devices:
                def graph_batch(d=d):
                    st = replay.open(gpath)
                    res = evaluate_graphs(st, graphs, replicates=RG, seed=0, device=d)
                    return res, _graph_draws(st, graphs) * gq * RG
                (res, draws), wall, cpu_s = _timed(graph_batch)
                out[d] = res
                rows.append(("graph batch", f"{n_graphs} graphs x {gq} q x {RG} rep", d, wall, cpu_s, draws))
            checks["graph batch"] = (all(repr(a) == repr(b) and np.array_equal(a.per_question, b.per_question)
                                         for a, b in zip(out["cpu"], out["cuda"])) if len(out) == 2 else None)

        print()
        print(f"{'workload':<22}{'shape':<36}{'device':<8}{'wall s':>9}{'CPU s':>9}{'draws/s':>12}{'GPU speed-up':>14}")
        for label, shape, d, wall, cpu_s, draws in rows:
            ref = next((r for r in rows if r[0] == label and r[2] == "cpu"), None)
            up = f"{ref[3] / wall:.1f}x" if d == "cuda" and ref is not None else ""
            print(f"{label:<22}{shape:<36}{d:<8}{wall:>9.3f}{cpu_s:>9.2f}{draws / wall:>12.3g}{up:>14}")
        print()
        for label, same in checks.items():
            print(f"{label}: CPU and GPU numbers {'identical' if same else 'DIFFER' if same is False else 'not compared'}")
        for label, _, d, wall, _, draws in rows:
            if d != "cuda" or tiny:
                continue
            if label == "aime24 sweep":
                print(f"target >= 1e11 draws/s on the sweep: {draws / wall:.3g} ({'met' if draws / wall >= 1e11 else 'MISSED'})")
            if label.startswith("16.8M"):
                print(f"target: the 16.8 M scan in < 2 s including transfers: {wall:.2f} s "
                      f"({'met' if wall < 2 else 'MISSED'})")
        print(f"load average {os.getloadavg()[0]:.1f} at the end (CPU s: process CPU time; wall includes waiting "
              "for the GPU)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
